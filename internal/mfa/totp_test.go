package mfa

import (
	"bytes"
	"crypto/fips140"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"rsc.io/qr"
)

// rfcSeed is the SHA-1 seed of RFC 6238 Appendix B and RFC 4226 Appendix D.
var rfcSeed = []byte("12345678901234567890")

func TestAUTH08_TOTPMatchesRFC6238Vectors(t *testing.T) {
	// RFC 6238 Appendix B, the SHA-1 rows: time, T (hex), 8-digit TOTP.
	for _, v := range []struct {
		unix  int64
		step  int64
		eight string
	}{
		{59, 0x1, "94287082"},
		{1111111109, 0x23523EC, "07081804"},
		{1111111111, 0x23523ED, "14050471"},
		{1234567890, 0x273EF07, "89005924"},
		{2000000000, 0x3F940AA, "69279037"},
		{20000000000, 0x27BC86AA, "65353130"},
	} {
		at := time.Unix(v.unix, 0).UTC()
		if got := Step(at); got != v.step {
			t.Errorf("Step(%d) = %#x, want %#x", v.unix, got, v.step)
		}
		if got := hotp(rfcSeed, uint64(v.step), 8); got != v.eight {
			t.Errorf("8-digit TOTP at %d = %s, want %s", v.unix, got, v.eight)
		}
		// Six digits are the same value modulo 10^6: the last six.
		if got, want := Code(rfcSeed, Step(at)), v.eight[2:]; got != want {
			t.Errorf("6-digit TOTP at %d = %s, want %s", v.unix, got, want)
		}
	}
	// RFC 4226 Appendix D: HOTP values for counters 0 to 9.
	for counter, want := range []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"} {
		if got := hotp(rfcSeed, uint64(counter), 6); got != want {
			t.Errorf("HOTP(%d) = %s, want %s", counter, got, want)
		}
	}
}

func TestAUTH08_TOTPAcceptsOneStepOfDrift(t *testing.T) {
	now := time.Unix(1111111111, 0)
	cur := Step(now)
	for off := int64(-3); off <= 3; off++ {
		step, ok := matchStep(rfcSeed, Code(rfcSeed, cur+off), now)
		want := off >= -Skew && off <= Skew
		if ok != want {
			t.Errorf("code of step %+d: accepted %v, want %v", off, ok, want)
		}
		if ok && step != cur+off {
			t.Errorf("code of step %+d matched step %d, want %d", off, step, cur+off)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "12345a", " 14050471", "０５０４７１"} {
		if _, ok := matchStep(rfcSeed, bad, now); ok {
			t.Errorf("malformed code %q accepted", bad)
		}
	}
}

func TestAUTH08_OTPAuthURIAndQRCode(t *testing.T) {
	secret := bytes.Repeat([]byte{0xA5}, SecretSize)
	uri := URI("ada.lovelace+clinic@example.org", secret)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Custodia:ada.lovelace+clinic@example.org" {
		t.Errorf("URI %s: wrong scheme, type or label", uri)
	}
	q := u.Query()
	if q.Get("secret") != secretEncoding.EncodeToString(secret) || q.Get("issuer") != "Custodia" ||
		q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Errorf("URI %s: wrong parameters", uri)
	}
	if len(q.Get("secret")) != 32 {
		t.Errorf("secret in base32 has %d characters, want 32 (20 bytes)", len(q.Get("secret")))
	}

	b, err := QRCode(uri)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("QR code is not a PNG: %v", err)
	}
	// The image shows the modules of the URI's QR code, 6 pixels each,
	// inside a 4-module quiet zone.
	c, err := qr.Encode(uri, qr.M)
	if err != nil {
		t.Fatal(err)
	}
	const scale, quiet = 6, 4
	if got, want := img.Bounds().Dx(), (c.Size+2*quiet)*scale; got != want || img.Bounds().Dy() != want {
		t.Fatalf("QR image is %v, want %dx%d", img.Bounds(), want, want)
	}
	for y := -quiet; y < c.Size+quiet; y++ {
		for x := -quiet; x < c.Size+quiet; x++ {
			r, _, _, _ := img.At((x+quiet)*scale+scale/2, (y+quiet)*scale+scale/2).RGBA()
			if black := r < 0x8000; black != c.Black(x, y) {
				t.Fatalf("QR image module (%d,%d): black %v, want %v", x, y, black, c.Black(x, y))
			}
		}
	}
}

// Recovery codes carry at least 112 random bits (ASVS V6.5.2): 24 symbols
// of a 32-symbol alphabet, shown in four groups of six; typing them
// loosely still works, and a code of the former, 10-symbol kind (50 bits)
// is refused.
func TestAUTH08_RecoveryCodesShapeAndNormalization(t *testing.T) {
	if bits := recoveryLen * 5; bits < 112 {
		t.Fatalf("recovery codes carry %d bits, fewer than 112", bits)
	}
	seen := map[string]bool{}
	shape := regexp.MustCompile(`^[2-9A-HJ-NP-Z]{6}(-[2-9A-HJ-NP-Z]{6}){3}$`)
	for range 20 {
		for _, c := range newRecoveryCodes() {
			if !shape.MatchString(c) {
				t.Fatalf("recovery code %q is not XXXXXX-XXXXXX-XXXXXX-XXXXXX", c)
			}
			norm, ok := normalizeRecovery(c)
			if !ok || len(norm) != recoveryLen {
				t.Fatalf("recovery code %q does not normalize", c)
			}
			if seen[norm] {
				t.Fatalf("recovery code %q repeated", c)
			}
			seen[norm] = true
			for _, typed := range []string{norm, " " + c + " ", string(bytes.ToLower([]byte(c))), strings.ReplaceAll(c, "-", " ")} {
				if n, ok := normalizeRecovery(typed); !ok || n != norm {
					t.Errorf("%q typed as %q normalizes to %q, %v", c, typed, n, ok)
				}
			}
		}
	}
	for _, bad := range []string{"abcde-fghjk", "ABCDEFGHJK", "", "ABCDE-FGHI", "ABCDE-FGHJKL", "ABCDE-FGHI0", "ABCDE-FGHIO", "ABCDE-FGH1K",
		"ABCDEF-GHJKLM-NPQRST-UVWXY", "ABCDEF-GHJKLM-NPQRST-UVWXYZ2", "ABCDEF-GHJKLM-NPQRST-UVWXY1"} {
		if _, ok := normalizeRecovery(bad); ok {
			t.Errorf("%q accepted as a recovery code", bad)
		}
	}
	if recoveryHash("a", "ABCDEFGHJK") == recoveryHash("b", "ABCDEFGHJK") {
		t.Error("a recovery code hashes alike for two accounts")
	}
}

// Authenticator apps speak HMAC-SHA-1, which Go's FIPS 140-3 module refuses
// when enforced: codes are still computed, and match RFC 6238's vector,
// with the module enforced (CRY-11), in a child process started with
// GODEBUG=fips140=only.
func TestCRY11_TOTPWorksUnderEnforcedFIPSModule(t *testing.T) {
	if os.Getenv("CUSTODIA_TOTP_FIPS_CHILD") == "1" {
		if !fips140.Enforced() {
			t.Fatal("the FIPS 140-3 module is not enforced in the child")
		}
		if got := Code([]byte("12345678901234567890"), Step(time.Unix(59, 0))); got != "287082" {
			t.Fatalf("code = %s, want 287082", got)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCRY11_TOTPWorksUnderEnforcedFIPSModule$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CUSTODIA_TOTP_FIPS_CHILD=1", "GODEBUG=fips140=only")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child under fips140=only: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("child did not run the test:\n%s", out)
	}
}

package keys

import (
	"bytes"
	"context"
	"crypto/fips140"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// withFIPS puts this process in or out of FIPS mode for one test, as if Go's
// FIPS 140-3 module were on or off. Only the choice of algorithms follows;
// the module's enforcement is tested in a child process, see
// TestCRY11_EnforcedModuleOpensOldValuesAndSealsOnlyApproved.
func withFIPS(t testing.TB, on bool) {
	t.Helper()
	old := fipsEnabled
	fipsEnabled = func() bool { return on }
	t.Cleanup(func() { fipsEnabled = old })
}

var algNames = map[byte]string{AlgXChaCha20Poly1305: "XChaCha20-Poly1305", AlgAES256GCM: "AES-256-GCM"}

func TestCRY11_HeaderRoundTripsForBothAlgorithms(t *testing.T) {
	dk := testKey(t, StudyScope("org1", "study1"), 0x01020304)
	ring := staticRing{}.add(dk)
	for alg, name := range algNames {
		t.Run(name, func(t *testing.T) {
			overhead := map[byte]int{AlgXChaCha20Poly1305: Overhead, AlgAES256GCM: GCMOverhead}[alg]
			nonceAt, nonceEnd := offNonce, offNonce+map[byte]int{AlgXChaCha20Poly1305: NonceSize, AlgAES256GCM: GCMNonceSize}[alg]
			for _, pt := range [][]byte{nil, []byte("x"), []byte(secretText), bytes.Repeat([]byte{0xa5}, 64<<10)} {
				s, err := sealAs(alg, dk, pt, testContext)
				if err != nil {
					t.Fatal(err)
				}
				if len(s) != len(pt)+overhead {
					t.Fatalf("sealed %d bytes into %d, want %d", len(pt), len(s), len(pt)+overhead)
				}
				if s[0] != FormatV1 || s[1] != alg || !bytes.Equal(s[2:18], dk.ID[:]) || !bytes.Equal(s[18:22], []byte{1, 2, 3, 4}) {
					t.Fatalf("header % x: want format 1, algorithm %d, key id, version 01020304", s[:22], alg)
				}
				if len(pt) > 8 && bytes.Contains(s, pt[:8]) {
					t.Fatal("sealed value contains plaintext")
				}
				got, err := Open(context.Background(), ring, s, testContext)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("Open = %q, %v; want %q", got, err, pt)
				}
				if id, v, err := KeyIDOf(s); err != nil || id != dk.ID || v != 0x01020304 {
					t.Fatalf("KeyIDOf = %v, %d, %v", id, v, err)
				}
			}
			a, _ := sealAs(alg, dk, []byte(secretText), testContext)
			b, _ := sealAs(alg, dk, []byte(secretText), testContext)
			if bytes.Equal(a, b) || bytes.Equal(a[nonceAt:nonceEnd], b[nonceAt:nonceEnd]) {
				t.Fatal("two seals of one value are equal: nonce reused")
			}
		})
	}
	if GCMHeaderSize != 22 || GCMOverhead != 50 {
		t.Fatalf("GCMHeaderSize = %d, GCMOverhead = %d; the documented layout is 22 and 50", GCMHeaderSize, GCMOverhead)
	}
}

func TestCRY11_SealUsesAES256GCMInFIPSModeOnly(t *testing.T) {
	dk := testKey(t, OrgScope("org1"), 1)
	kek, err := OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		on   bool
		want byte
	}{{false, AlgXChaCha20Poly1305}, {true, AlgAES256GCM}} {
		withFIPS(t, c.on)
		if FIPS().On != c.on {
			t.Fatalf("FIPS().On = %v, want %v", FIPS().On, c.on)
		}
		if s := mustSeal(t, dk, []byte(secretText), testContext); s[offAlg] != c.want {
			t.Errorf("FIPS mode %v: sealed with algorithm %d, want %d", c.on, s[offAlg], c.want)
		}
		w, err := kek.Wrap(context.Background(), bytes.Repeat([]byte{7}, 32), []byte("row"))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]byte{false: localKEKFormat, true: localKEKFormatGCM}[c.on]; w[0] != want {
			t.Errorf("FIPS mode %v: local key-encryption key wrapped with format %d, want %d", c.on, w[0], want)
		}
	}
}

func TestCRY11_TamperedFIPSValueFailsToOpen(t *testing.T) {
	withFIPS(t, true)
	dk := testKey(t, StudyScope("org1", "study1"), 3)
	ring := staticRing{}.add(dk)
	lenient := anyIDRing{dk: dk}
	s := mustSeal(t, dk, []byte(secretText), testContext)
	if s[offAlg] != AlgAES256GCM {
		t.Fatalf("sealed with algorithm %d in FIPS mode", s[offAlg])
	}
	mustOpen(t, ring, s, testContext, secretText)

	for i := range s {
		for bit := range 8 {
			c := bytes.Clone(s)
			c[i] ^= 1 << bit
			mustNotOpen(t, ring, c, testContext, "bit flipped")
			mustNotOpen(t, lenient, c, testContext, "bit flipped (lenient ring)")
		}
	}

	s2 := mustSeal(t, dk, []byte(secretText), testContext)
	nonce := func(v []byte) []byte { return v[GCMHeaderSize : GCMHeaderSize+GCMNonceSize] }
	c := bytes.Clone(s)
	copy(nonce(c), nonce(s2))
	mustNotOpen(t, ring, c, testContext, "swapped nonce")
	c = bytes.Clone(s)
	copy(c[GCMHeaderSize:], s2[GCMHeaderSize:])
	other := testKey(t, dk.Scope, 4)
	copy(c[:GCMHeaderSize], mustSeal(t, other, []byte(secretText), testContext)[:GCMHeaderSize])
	mustNotOpen(t, staticRing{}.add(dk).add(other), c, testContext, "header of another key")

	for name, ad := range map[string]Context{
		"other organization": {OrgID: "org2", StudyID: "study1", RecordID: "record1", Field: "date_of_birth"},
		"other study":        {OrgID: "org1", StudyID: "study2", RecordID: "record1", Field: "date_of_birth"},
		"other record":       {OrgID: "org1", StudyID: "study1", RecordID: "record2", Field: "date_of_birth"},
		"other field":        {OrgID: "org1", StudyID: "study1", RecordID: "record1", Field: "name"},
	} {
		mustNotOpen(t, ring, s, ad, name)
		mustNotOpen(t, anyIDRing{dk: func() DataKey { d := dk; d.Scope.OrgID = ad.OrgID; return d }()}, s, ad, name+" (lenient ring)")
	}

	for n := range len(s) {
		mustNotOpen(t, lenient, s[:n], testContext, "truncated")
	}
	mustNotOpen(t, ring, append(bytes.Clone(s), 0), testContext, "extended by a byte")

	// The algorithm byte is authenticated and decides the layout: no other
	// value, the XChaCha20-Poly1305 one included, opens the value.
	for _, b := range []byte{0, AlgXChaCha20Poly1305, 3, 0x80, 0xff} {
		c := bytes.Clone(s)
		c[offAlg] = b
		mustNotOpen(t, lenient, c, testContext, "algorithm byte changed")
		// Even padded to the other layout's length.
		mustNotOpen(t, lenient, append(c, make([]byte, NonceSize)...), testContext, "algorithm byte changed, padded")
	}
	// A XChaCha20-Poly1305 value relabelled as AES-256-GCM does not open
	// either.
	x, err := sealAs(AlgXChaCha20Poly1305, dk, []byte(secretText), testContext)
	if err != nil {
		t.Fatal(err)
	}
	x[offAlg] = AlgAES256GCM
	mustNotOpen(t, lenient, x, testContext, "XChaCha20-Poly1305 value relabelled")
}

func TestCRY11_LocalKEKWrapInFIPSModeIsBoundAndTamperProof(t *testing.T) {
	ctx := context.Background()
	kek, err := OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{0x5c}, 32)
	ad := []byte("row a")
	withFIPS(t, false)
	legacy, err := kek.Wrap(ctx, secret, ad)
	if err != nil || legacy[0] != localKEKFormat {
		t.Fatalf("Wrap outside FIPS mode = % x, %v", legacy, err)
	}
	withFIPS(t, true)
	w, err := kek.Wrap(ctx, secret, ad)
	if err != nil {
		t.Fatal(err)
	}
	if w[0] != localKEKFormatGCM || len(w) != 1+GCMNonceSize+len(secret)+TagSize {
		t.Fatalf("Wrap in FIPS mode = % x: want format 2, nonce, ciphertext and tag", w)
	}
	if bytes.Contains(w, secret[:8]) {
		t.Fatal("wrapped key contains the key")
	}
	for name, v := range map[string][]byte{"AES-256-GCM": w, "XChaCha20-Poly1305, wrapped before the switch": legacy} {
		if got, err := kek.Unwrap(ctx, v, ad); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("%s: Unwrap = %x, %v", name, got, err)
		}
	}
	for i := range w {
		c := bytes.Clone(w)
		c[i] ^= 0x01
		if _, err := kek.Unwrap(ctx, c, ad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("unwrap with byte %d altered: %v", i, err)
		}
	}
	for n := range len(w) {
		if _, err := kek.Unwrap(ctx, w[:n], ad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("unwrap of %d-byte prefix: %v", n, err)
		}
	}
	if _, err := kek.Unwrap(ctx, w, []byte("row b")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap with other associated data: %v", err)
	}
	if _, err := other.Unwrap(ctx, w, ad); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap with other key: %v", err)
	}
	// The wrapped key is not a sealed value.
	if _, err := Open(ctx, anyIDRing{dk: testKey(t, OrgScope("org1"), 1)}, w, testContext); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrapped key opened as a sealed value: %v", err)
	}
}

// TestCRY11_ValuesOfBothKindsOpenInEitherMode switches a keyring on a real
// database into FIPS mode and back: values and wrapped keys made in one
// mode stay readable in the other.
func TestCRY11_ValuesOfBothKindsOpenInEitherMode(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		withFIPS(t, false)
		k := newKeyring(t, d)
		before := current(t, k, StudyScope("org1", "study1"))
		legacy := mustSeal(t, before, []byte(secretText), testContext)

		withFIPS(t, true)
		fresh := otherNode(k) // an empty cache: every key is unwrapped again
		mustOpen(t, fresh, legacy, testContext, secretText)
		same := current(t, fresh, StudyScope("org1", "study1"))
		underOldKey := mustSeal(t, same, []byte(secretText), testContext)
		newKey := current(t, fresh, StudyScope("org1", "study2"))
		study2 := Context{OrgID: "org1", StudyID: "study2", RecordID: "record1", Field: "date_of_birth"}
		underNewKey := mustSeal(t, newKey, []byte(secretText), study2)
		if underOldKey[offAlg] != AlgAES256GCM || underNewKey[offAlg] != AlgAES256GCM {
			t.Fatal("FIPS mode sealed with XChaCha20-Poly1305")
		}
		if got := wrappedFormat(t, k.DB, newKey.ID); got != localKEKFormatGCM {
			t.Fatalf("a key made in FIPS mode is wrapped with format %d, want %d", got, localKEKFormatGCM)
		}
		if got := wrappedFormat(t, k.DB, before.ID); got != localKEKFormat {
			t.Fatalf("the key made before the switch is wrapped with format %d now", got)
		}

		withFIPS(t, false)
		back := otherNode(k)
		mustOpen(t, back, legacy, testContext, secretText)
		mustOpen(t, back, underOldKey, testContext, secretText)
		mustOpen(t, back, underNewKey, study2, secretText)
		if s := mustSeal(t, current(t, back, StudyScope("org1", "study2")), []byte("x"), study2); s[offAlg] != AlgXChaCha20Poly1305 {
			t.Fatal("outside FIPS mode a key made in FIPS mode seals with AES-256-GCM")
		}
	})
}

func wrappedFormat(t testing.TB, db *sqldb.DB, id KeyID) byte {
	t.Helper()
	var w []byte
	if err := db.QueryRowContext(context.Background(), `SELECT wrapped FROM data_keys WHERE id = $1 ORDER BY version DESC LIMIT 1`, id.String()).Scan(&w); err != nil || len(w) == 0 {
		t.Fatalf("read wrapped key: %v", err)
	}
	return w[0]
}

// Environment of the child process of
// TestCRY11_EnforcedModuleOpensOldValuesAndSealsOnlyApproved.
const (
	envFIPSChild  = "CUSTODIA_TEST_FIPS_CHILD"
	envFIPSDB     = "CUSTODIA_TEST_FIPS_DB"
	envFIPSData   = "CUSTODIA_TEST_FIPS_DATA"
	envFIPSLegacy = "CUSTODIA_TEST_FIPS_LEGACY"
	envFIPSOut    = "CUSTODIA_TEST_FIPS_OUT"
)

// TestCRY11_EnforcedModuleOpensOldValuesAndSealsOnlyApproved seals a value
// the ordinary way, then runs this test binary again with
// GODEBUG=fips140=only on the same database and key file: there the value
// still opens, new values and new data keys use AES-256-GCM, and the module
// refuses XChaCha20-Poly1305 for sealing. Back in this process, without the
// module, what the child sealed opens.
func TestCRY11_EnforcedModuleOpensOldValuesAndSealsOnlyApproved(t *testing.T) {
	if os.Getenv(envFIPSChild) == "1" {
		enforcedChild(t)
		return
	}
	if fips140.Enforced() {
		t.Skip("this test seals with XChaCha20-Poly1305 before it switches to fips140=only in a child process")
	}
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		withFIPS(t, false)
		ctx := context.Background()
		url := sqldbtest.URL(t, d)
		db, err := sqldb.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Migrate(ctx, sqldb.Clinical); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO organizations (id, slug, name, created_at) VALUES ('org1', 'org1', 'org1', $1)`, sqldb.Now()); err != nil {
			t.Fatal(err)
		}
		data := t.TempDir()
		kek, err := OpenLocalKEK(data)
		if err != nil {
			t.Fatal(err)
		}
		k := &Keyring{DB: db, KEK: kek}
		legacy := mustSeal(t, current(t, k, StudyScope("org1", "study1")), []byte(secretText), testContext)
		if legacy[offAlg] != AlgXChaCha20Poly1305 {
			t.Fatalf("sealed with algorithm %d outside FIPS mode", legacy[offAlg])
		}

		out := filepath.Join(t.TempDir(), "sealed")
		godebug := "fips140=only"
		if g := os.Getenv("GODEBUG"); g != "" {
			godebug = g + "," + godebug
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCRY11_EnforcedModuleOpensOldValuesAndSealsOnlyApproved$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "GODEBUG="+godebug, envFIPSChild+"=1", envFIPSDB+"="+url,
			envFIPSData+"="+data, envFIPSLegacy+"="+hex.EncodeToString(legacy), envFIPSOut+"="+out)
		output, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(output, []byte("--- PASS: TestCRY11_EnforcedModule")) {
			t.Fatalf("child under GODEBUG=fips140=only: %v\n%s", err, output)
		}

		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(string(b))
		if len(lines) != 2 {
			t.Fatalf("child wrote %q", b)
		}
		back := &Keyring{DB: db, KEK: kek}
		for i, ad := range []Context{testContext, study2Context} {
			v, err := hex.DecodeString(lines[i])
			if err != nil || len(v) < GCMOverhead || v[offAlg] != AlgAES256GCM {
				t.Fatalf("child sealed % x", v)
			}
			mustOpen(t, back, v, ad, secretText)
		}
	})
}

var study2Context = Context{OrgID: "org1", StudyID: "study2", RecordID: "record1", Field: "date_of_birth"}

// enforcedChild is the part of
// TestCRY11_EnforcedModuleOpensOldValuesAndSealsOnlyApproved that runs
// under GODEBUG=fips140=only.
func enforcedChild(t *testing.T) {
	ctx := context.Background()
	if m := FIPS(); !fips140.Enforced() || !m.On || !m.Enforced {
		t.Fatalf("child runs without the enforced module: %v", m)
	}
	// The module is enforced: XChaCha20-Poly1305 cannot even be made.
	if _, err := newXChaCha(make([]byte, 32)); err == nil {
		t.Fatal("XChaCha20-Poly1305 made under fips140=only")
	}

	db, err := sqldb.Open(ctx, os.Getenv(envFIPSDB))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kek, err := OpenLocalKEK(os.Getenv(envFIPSData))
	if err != nil {
		t.Fatalf("open the key-encryption key under fips140=only: %v", err)
	}
	k := &Keyring{DB: db, KEK: kek}
	legacy, err := hex.DecodeString(os.Getenv(envFIPSLegacy))
	if err != nil {
		t.Fatal(err)
	}
	// A value sealed before the switch, under a key wrapped before it.
	mustOpen(t, k, legacy, testContext, secretText)

	dk := current(t, k, StudyScope("org1", "study1"))
	s := mustSeal(t, dk, []byte(secretText), testContext)
	if s[offAlg] != AlgAES256GCM {
		t.Fatalf("sealed with algorithm %d under fips140=only", s[offAlg])
	}
	mustOpen(t, k, s, testContext, secretText)
	c := bytes.Clone(s)
	c[len(c)-1] ^= 1
	mustNotOpen(t, k, c, testContext, "bit flipped under fips140=only")

	// Sealing with XChaCha20-Poly1305 is refused by the module, not by a
	// choice of this package.
	if x, err := sealAs(AlgXChaCha20Poly1305, dk, []byte(secretText), testContext); err == nil || !strings.Contains(err.Error(), "FIPS 140-only") {
		t.Fatalf("XChaCha20-Poly1305 seal under fips140=only = % x, %v", x, err)
	}

	// A data key made now is wrapped with AES-256-GCM.
	var dk2 DataKey
	if err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		dk2, err = k.Current(ctx, tx, StudyScope("org1", "study2"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := wrappedFormat(t, db, dk2.ID); got != localKEKFormatGCM {
		t.Fatalf("key made under fips140=only wrapped with format %d", got)
	}
	s2 := mustSeal(t, dk2, []byte(secretText), study2Context)
	mustOpen(t, otherNode(k), s2, study2Context, secretText)

	if err := os.WriteFile(os.Getenv(envFIPSOut), []byte(hex.EncodeToString(s)+"\n"+hex.EncodeToString(s2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

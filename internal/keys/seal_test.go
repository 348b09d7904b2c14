package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
)

// staticRing holds data keys in memory, for tests that need no database.
type staticRing map[cacheKey]DataKey

func (r staticRing) ByID(_ context.Context, id KeyID, version uint32) (DataKey, error) {
	dk, ok := r[cacheKey{id, version}]
	if !ok {
		return DataKey{}, ErrUnknownKey
	}
	return dk, nil
}

func (r staticRing) add(dk DataKey) staticRing {
	r[cacheKey{dk.ID, dk.Version}] = dk
	return r
}

// anyIDRing answers every id and version with its one key, relabelled, so
// that only the AEAD stands between a forged header and the plaintext.
type anyIDRing struct{ dk DataKey }

func (r anyIDRing) ByID(_ context.Context, id KeyID, version uint32) (DataKey, error) {
	dk := r.dk
	dk.ID, dk.Version = id, version
	return dk, nil
}

func testKey(t testing.TB, scope Scope, version uint32) DataKey {
	t.Helper()
	var id KeyID
	rand.Read(id[:])
	raw := make([]byte, 32)
	rand.Read(raw)
	dk, err := newDataKey(id, version, scope, raw)
	if err != nil {
		t.Fatal(err)
	}
	return dk
}

var testContext = Context{OrgID: "org1", StudyID: "study1", RecordID: "record1", Field: "date_of_birth"}

const secretText = "1961-04-12 (a clear-text secret)"

func mustSeal(t testing.TB, dk DataKey, pt []byte, ad Context) []byte {
	t.Helper()
	s, err := Seal(dk, pt, ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return s
}

// mustNotOpen asserts that sealed fails to open as ErrCorrupt, without a
// panic and without any trace of the plaintext in the error.
func mustNotOpen(t *testing.T, ring Ring, sealed []byte, ad Context, what string) {
	t.Helper()
	var (
		pt  []byte
		err error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("%s: Open panicked: %v", what, p)
			}
		}()
		pt, err = Open(context.Background(), ring, sealed, ad)
	}()
	if err == nil {
		t.Fatalf("%s: opened, got %q", what, pt)
	}
	if !errors.Is(err, ErrCorrupt) || errs.KindOf(err) != errs.Invalid {
		t.Fatalf("%s: err = %v, want ErrCorrupt", what, err)
	}
	if pt != nil || strings.Contains(err.Error(), "1961") {
		t.Fatalf("%s: failure leaks plaintext: %v / %q", what, err, pt)
	}
}

func TestCRY03_SealOpenRoundTrip(t *testing.T) {
	dk := testKey(t, StudyScope("org1", "study1"), 7)
	ring := staticRing{}.add(dk)
	for _, pt := range [][]byte{nil, {}, []byte("x"), []byte(secretText), bytes.Repeat([]byte{0xa5}, 64<<10)} {
		s := mustSeal(t, dk, pt, testContext)
		if len(s) != len(pt)+Overhead {
			t.Fatalf("sealed %d bytes into %d, want %d", len(pt), len(s), len(pt)+Overhead)
		}
		if len(pt) > 8 && bytes.Contains(s, pt[:8]) {
			t.Fatal("sealed value contains plaintext")
		}
		got, err := Open(context.Background(), ring, s, testContext)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, want %q", got, pt)
		}
		id, v, err := KeyIDOf(s)
		if err != nil || id != dk.ID || v != 7 {
			t.Fatalf("KeyIDOf = %v, %d, %v; want %v, 7", id, v, err, dk.ID)
		}
	}
	a := mustSeal(t, dk, []byte(secretText), testContext)
	b := mustSeal(t, dk, []byte(secretText), testContext)
	if bytes.Equal(a, b) || bytes.Equal(a[offNonce:HeaderSize], b[offNonce:HeaderSize]) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
}

func TestCRY03_HeaderLayout(t *testing.T) {
	dk := testKey(t, OrgScope("org1"), 0x01020304)
	s := mustSeal(t, dk, []byte("v"), testContext)
	if HeaderSize != 46 || Overhead != 62 {
		t.Fatalf("HeaderSize = %d, Overhead = %d; the documented layout is 46 and 62", HeaderSize, Overhead)
	}
	if s[0] != 1 || s[1] != 1 {
		t.Fatalf("format, algorithm = %d, %d; want 1, 1", s[0], s[1])
	}
	if !bytes.Equal(s[2:18], dk.ID[:]) {
		t.Fatal("key id not at offset 2")
	}
	if !bytes.Equal(s[18:22], []byte{1, 2, 3, 4}) {
		t.Fatalf("key version bytes = % x, want big-endian 01 02 03 04", s[18:22])
	}
}

func TestCRY05_ValueMovedElsewhereFailsToOpen(t *testing.T) {
	dk := testKey(t, StudyScope("org1", "study1"), 1)
	other := testKey(t, StudyScope("org2", "study1"), 1)
	ring := staticRing{}.add(dk).add(other)
	s := mustSeal(t, dk, []byte(secretText), testContext)
	moved := map[string]Context{
		"other field":        {OrgID: "org1", StudyID: "study1", RecordID: "record1", Field: "name"},
		"other record":       {OrgID: "org1", StudyID: "study1", RecordID: "record2", Field: "date_of_birth"},
		"other study":        {OrgID: "org1", StudyID: "study2", RecordID: "record1", Field: "date_of_birth"},
		"no study":           {OrgID: "org1", RecordID: "record1", Field: "date_of_birth"},
		"other organization": {OrgID: "org2", StudyID: "study1", RecordID: "record1", Field: "date_of_birth"},
		// The length prefixes keep field boundaries: moving a character
		// from one field to the next is another place.
		"shifted boundary": {OrgID: "org1", StudyID: "study1r", RecordID: "ecord1", Field: "date_of_birth"},
		"empty context":    {},
	}
	for name, ad := range moved {
		mustNotOpen(t, ring, s, ad, name)
		// Even a ring that hands out the right key for any organization
		// cannot open it: the context is authenticated, not just checked.
		mustNotOpen(t, anyIDRing{dk: func() DataKey { d := dk; d.Scope.OrgID = ad.OrgID; return d }()}, s, ad, name+" (lenient ring)")
	}
	if _, err := Open(context.Background(), ring, s, testContext); err != nil {
		t.Fatalf("value does not open in its own place: %v", err)
	}
}

func TestCRY05_TamperedValueFailsToOpen(t *testing.T) {
	dk := testKey(t, StudyScope("org1", "study1"), 3)
	ring := staticRing{}.add(dk)
	lenient := anyIDRing{dk: dk}
	s := mustSeal(t, dk, []byte(secretText), testContext)

	regions := []struct {
		name     string
		from, to int
	}{
		{"format", 0, 1}, {"algorithm", 1, 2}, {"key id", offKeyID, offVersion},
		{"key version", offVersion, offNonce}, {"nonce", offNonce, HeaderSize},
		{"ciphertext", HeaderSize, len(s) - TagSize}, {"tag", len(s) - TagSize, len(s)},
	}
	flips := 0
	for _, r := range regions {
		for i := r.from; i < r.to; i++ {
			for bit := range 8 {
				c := bytes.Clone(s)
				c[i] ^= 1 << bit
				mustNotOpen(t, ring, c, testContext, r.name+" bit flipped")
				mustNotOpen(t, lenient, c, testContext, r.name+" bit flipped (lenient ring)")
				flips++
			}
		}
	}
	if flips != 8*len(s) {
		t.Fatalf("flipped %d bits of %d", flips, 8*len(s))
	}

	// A nonce, or a whole header, taken from another value of the same key.
	s2 := mustSeal(t, dk, []byte(secretText), testContext)
	c := bytes.Clone(s)
	copy(c[offNonce:HeaderSize], s2[offNonce:HeaderSize])
	mustNotOpen(t, ring, c, testContext, "swapped nonce")
	c = bytes.Clone(s)
	copy(c[:HeaderSize], s2[:HeaderSize])
	mustNotOpen(t, ring, c, testContext, "swapped header")

	// Bodies of other lengths.
	mustNotOpen(t, ring, append(bytes.Clone(s), 0), testContext, "extended by a byte")
	mustNotOpen(t, ring, append(bytes.Clone(s), s...), testContext, "doubled")
	for n := range len(s) {
		mustNotOpen(t, ring, s[:n], testContext, "truncated")
		mustNotOpen(t, lenient, s[:n], testContext, "truncated (lenient ring)")
	}

	// Unknown formats and algorithms; a XChaCha20-Poly1305 value relabelled
	// AES-256-GCM (FIPS mode, CRY-11) does not open either.
	for _, b := range []byte{0, 2, 3, 0x80, 0xff} {
		c := bytes.Clone(s)
		c[0] = b
		mustNotOpen(t, lenient, c, testContext, "unknown format")
	}
	for _, b := range []byte{0, AlgAES256GCM, 3, 0xff} {
		c := bytes.Clone(s)
		c[offAlg] = b
		mustNotOpen(t, lenient, c, testContext, "unknown algorithm")
	}
	// Version 0 is never issued.
	c = bytes.Clone(s)
	copy(c[offVersion:offNonce], []byte{0, 0, 0, 0})
	mustNotOpen(t, lenient, c, testContext, "key version 0")

	// A value sealed under a key this ring lacks.
	stranger := testKey(t, dk.Scope, 3)
	mustNotOpen(t, ring, mustSeal(t, stranger, []byte(secretText), testContext), testContext, "unknown key")
	// The same key id and version, but other key material.
	impostor := stranger
	impostor.ID = dk.ID
	mustNotOpen(t, staticRing{}.add(impostor), s, testContext, "other key under the same id")
}

func TestCRY05_SealRefusesMisuse(t *testing.T) {
	dk := testKey(t, StudyScope("org1", "study1"), 1)
	cases := map[string]struct {
		dk DataKey
		ad Context
	}{
		"zero key":                  {DataKey{}, testContext},
		"blind-index key":           {testKey(t, indexScope("org1"), 1), testContext},
		"key of other organization": {testKey(t, OrgScope("org2"), 1), testContext},
		"no organization":           {dk, Context{StudyID: "study1", RecordID: "r", Field: "f"}},
		"no record":                 {dk, Context{OrgID: "org1", StudyID: "study1", Field: "f"}},
		"no field":                  {dk, Context{OrgID: "org1", StudyID: "study1", RecordID: "r"}},
	}
	for name, c := range cases {
		if s, err := Seal(c.dk, []byte(secretText), c.ad); err == nil {
			t.Errorf("%s: Seal = % x, want an error", name, s)
		}
	}
}

func FuzzOpen(f *testing.F) {
	dk := testKey(f, StudyScope("org1", "study1"), 1)
	ring := staticRing{}.add(dk)
	valid := mustSeal(f, dk, []byte(secretText), testContext)
	validGCM, err := sealAs(AlgAES256GCM, dk, []byte(secretText), testContext)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(validGCM)
	f.Add(validGCM[:GCMOverhead])
	f.Add(valid[:HeaderSize])
	f.Add(valid[:HeaderSize+TagSize])
	f.Add([]byte{})
	f.Add([]byte{FormatV1, AlgXChaCha20Poly1305})
	f.Add(append([]byte{FormatV1, AlgAES256GCM}, valid[2:]...))
	f.Fuzz(func(t *testing.T, sealed []byte) {
		pt, err := Open(context.Background(), ring, sealed, testContext)
		if err == nil && !bytes.Equal(sealed, valid) && !bytes.Equal(sealed, validGCM) {
			t.Fatalf("a value that was never sealed opened: % x -> %q", sealed, pt)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
		KeyIDOf(sealed)
	})
}

package keys

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// A sealed value is a header followed by the AEAD output (ciphertext and
// 16-byte tag). The header, all of which is authenticated:
//
//	offset  size  field
//	     0     1  format version, 1
//	     1     1  algorithm: 1 = XChaCha20-Poly1305; 2 = AES-256-GCM (FIPS mode, CRY-11)
//	     2    16  key id: the data key's id (newKeyID), shared by all versions of one scope
//	    18     4  key version, uint32 big-endian, from 1
//	    22    24  nonce, random (XChaCha20-Poly1305); 12 bytes for AES-256-GCM
//	 46/34     …  ciphertext || tag
//
// The AEAD's associated data is the header followed by the encoded Context,
// so neither the header nor the value's place can be changed without the
// value failing to open. For XChaCha20-Poly1305 the header includes the
// nonce; AES-256-GCM draws its nonce inside the FIPS module when it seals,
// so its header ends at the key version and GCM authenticates the nonce as
// its IV. Both kinds open in either mode (see fips.go).
//
// HeaderSize, NonceSize and Overhead describe XChaCha20-Poly1305 values;
// GCMHeaderSize, GCMNonceSize and GCMOverhead AES-256-GCM ones.
const (
	FormatV1 = 1

	AlgXChaCha20Poly1305 = 1
	AlgAES256GCM         = 2

	KeyIDSize  = 16
	NonceSize  = chacha20poly1305.NonceSizeX
	TagSize    = chacha20poly1305.Overhead
	HeaderSize = 1 + 1 + KeyIDSize + 4 + NonceSize

	// Overhead is how much longer a sealed value is than its plaintext.
	Overhead = HeaderSize + TagSize
)

const (
	offAlg     = 1
	offKeyID   = 2
	offVersion = offKeyID + KeyIDSize
	offNonce   = offVersion + 4
)

// ErrCorrupt is the answer for every sealed value that does not open: a
// damaged or truncated one, one of an unknown format or algorithm, one
// sealed under a key this instance does not have, and one copied to another
// organization, study, record or field (CRY-05). It never says which, and
// never carries any part of the value.
var ErrCorrupt = errs.E(errs.Invalid, "sealed value is corrupt or does not belong here")

// Context is where a sealed value belongs. It is the associated data of the
// seal: a value opens only with the Context it was sealed with (CRY-05).
// OrgID, RecordID and Field are required; StudyID may be empty for values
// that belong to no study.
type Context struct {
	OrgID    string
	StudyID  string
	RecordID string
	Field    string
}

func (c Context) valid() bool {
	return c.OrgID != "" && c.RecordID != "" && c.Field != ""
}

// adLabel separates the associated data of sealed values from every other
// use of a key.
const adLabel = "custodia.sealed-value.v1"

// associatedData is header || label || each Context field as a 4-byte
// big-endian length and its bytes. The lengths make the encoding
// unambiguous: ("a", "bc") and ("ab", "c") differ.
func associatedData(header []byte, c Context) []byte {
	return appendFields(append(make([]byte, 0, len(header)+64+len(c.OrgID)+len(c.StudyID)+len(c.RecordID)+len(c.Field)), header...),
		adLabel, c.OrgID, c.StudyID, c.RecordID, c.Field)
}

// appendFields appends each string as a 4-byte big-endian length and its
// bytes.
func appendFields(b []byte, fields ...string) []byte {
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// Ring finds the data key a sealed value names. *Keyring is one; Keyring.In
// gives one that reads within a transaction.
type Ring interface {
	ByID(ctx context.Context, id KeyID, version uint32) (DataKey, error)
}

// Seal encrypts plaintext under dk for the place ad names: with
// XChaCha20-Poly1305, or with AES-256-GCM in FIPS mode (CRY-11). Every call
// uses a fresh random nonce; with 24-byte nonces a key may seal any number
// of values a clinical database will ever hold, with 12-byte ones fewer
// than 2^32.
func Seal(dk DataKey, plaintext []byte, ad Context) ([]byte, error) {
	alg := byte(AlgXChaCha20Poly1305)
	if FIPS().On {
		alg = AlgAES256GCM
	}
	return sealAs(alg, dk, plaintext, ad)
}

func sealAs(alg byte, dk DataKey, plaintext []byte, ad Context) ([]byte, error) {
	if dk.aead == nil || dk.Scope.Kind == KindIndex {
		return nil, errs.E(errs.Internal, "seal: no data key")
	}
	if !ad.valid() {
		return nil, errs.E(errs.Internal, "seal: the value's context needs an organization, a record and a field")
	}
	if ad.OrgID != dk.Scope.OrgID {
		return nil, errs.E(errs.Internal, "seal: data key of organization %s used for organization %s", dk.Scope.OrgID, ad.OrgID)
	}
	switch alg {
	case AlgXChaCha20Poly1305:
		a, err := dk.aead.xchacha()
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "seal with XChaCha20-Poly1305")
		}
		out := make([]byte, HeaderSize, HeaderSize+len(plaintext)+TagSize)
		putHeader(out, alg, dk)
		if _, err := rand.Read(out[offNonce:HeaderSize]); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "seal: read random nonce")
		}
		return sealAEAD(a, out, out[offNonce:HeaderSize], plaintext, associatedData(out, ad))
	case AlgAES256GCM:
		out := make([]byte, GCMHeaderSize, len(plaintext)+GCMOverhead)
		putHeader(out, alg, dk)
		return dk.aead.gcm.Seal(out, nil, plaintext, associatedData(out, ad)), nil
	}
	return nil, errs.E(errs.Internal, "seal: unknown algorithm %d", alg)
}

func putHeader(out []byte, alg byte, dk DataKey) {
	out[0] = FormatV1
	out[offAlg] = alg
	copy(out[offKeyID:], dk.ID[:])
	binary.BigEndian.PutUint32(out[offVersion:], dk.Version)
}

// Open decrypts a value sealed by Seal in either mode, finding its key in
// ring. A value that does not open is ErrCorrupt; one whose key was
// destroyed is ErrKeyDestroyed (LIFE-03).
func Open(ctx context.Context, ring Ring, sealed []byte, ad Context) ([]byte, error) {
	h, ok := parseHeader(sealed)
	if !ok || !ad.valid() {
		return nil, ErrCorrupt
	}
	dk, err := ring.ByID(ctx, h.keyID, h.version)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return nil, ErrCorrupt
	case err != nil:
		return nil, err
	}
	if dk.aead == nil || dk.ID != h.keyID || dk.Version != h.version || dk.Scope.OrgID != ad.OrgID {
		return nil, ErrCorrupt
	}
	var pt []byte
	switch h.alg {
	case AlgXChaCha20Poly1305:
		a, aerr := dk.aead.legacy()
		if aerr != nil {
			return nil, errs.Wrap(errs.Internal, aerr, "open a XChaCha20-Poly1305 value")
		}
		pt, err = openAEAD(a, sealed[offNonce:HeaderSize], sealed[HeaderSize:], associatedData(sealed[:HeaderSize], ad))
	case AlgAES256GCM:
		pt, err = dk.aead.openGCM(sealed[GCMHeaderSize:], associatedData(sealed[:GCMHeaderSize], ad))
	default:
		err = ErrCorrupt
	}
	if err != nil {
		return nil, ErrCorrupt
	}
	return pt, nil
}

type header struct {
	alg     byte
	keyID   KeyID
	version uint32
}

// parseHeader reads the header of a sealed value of a known format and
// algorithm that is long enough to hold a nonce and a tag.
func parseHeader(sealed []byte) (header, bool) {
	if len(sealed) < GCMHeaderSize || sealed[0] != FormatV1 {
		return header{}, false
	}
	h := header{alg: sealed[offAlg]}
	switch {
	case h.alg == AlgXChaCha20Poly1305 && len(sealed) >= Overhead:
	case h.alg == AlgAES256GCM && len(sealed) >= GCMOverhead:
	default:
		return header{}, false
	}
	copy(h.keyID[:], sealed[offKeyID:offVersion])
	h.version = binary.BigEndian.Uint32(sealed[offVersion:offNonce])
	if h.version == 0 {
		return header{}, false
	}
	return h, true
}

// KeyIDOf reports which data key a sealed value names, without opening it,
// for re-encryption jobs that look for values under old key versions.
func KeyIDOf(sealed []byte) (KeyID, uint32, error) {
	h, ok := parseHeader(sealed)
	if !ok {
		return KeyID{}, 0, ErrCorrupt
	}
	return h.keyID, h.version, nil
}

// newXChaCha is the one place a 256-bit key becomes an XChaCha20-Poly1305
// AEAD, for data keys and for the local key-encryption key alike.
func newXChaCha(key []byte) (cipher.AEAD, error) {
	if len(key) != chacha20poly1305.KeySize {
		return nil, errors.New("XChaCha20-Poly1305 key must be 32 bytes")
	}
	return chacha20poly1305.NewX(key)
}

// sealAEAD appends the encryption of plaintext to dst. The nonce length is
// checked here, because the AEAD panics on a wrong one.
func sealAEAD(a cipher.AEAD, dst, nonce, plaintext, ad []byte) ([]byte, error) {
	if len(nonce) != a.NonceSize() {
		return nil, errs.E(errs.Internal, "seal: nonce of %d bytes, want %d", len(nonce), a.NonceSize())
	}
	return a.Seal(dst, nonce, plaintext, ad), nil
}

// openAEAD decrypts ciphertext||tag. A wrong nonce length or a body shorter
// than a tag is an error, never a panic.
func openAEAD(a cipher.AEAD, nonce, body, ad []byte) ([]byte, error) {
	if len(nonce) != a.NonceSize() || len(body) < a.Overhead() {
		return nil, ErrCorrupt
	}
	return a.Open(nil, nonce, body, ad)
}

// Reseal re-encrypts a value sealed for the place ad names, under scope's
// current data key and the current algorithm (FIPS mode or not), when it
// is under another: the re-encryption that makes a rotation of data keys,
// or a change of algorithm, reach the values stored before (ASVS V11.2.2).
// A value under them already is returned as it is, changed false. A value
// that does not open is ErrCorrupt, and its key destroyed ErrKeyDestroyed.
func (k *Keyring) Reseal(ctx context.Context, q sqldb.Querier, scope Scope, sealed []byte, ad Context) (out []byte, changed bool, err error) {
	h, ok := parseHeader(sealed)
	if !ok {
		return nil, false, ErrCorrupt
	}
	cur, err := k.Current(ctx, q, scope)
	if err != nil {
		return nil, false, err
	}
	alg := byte(AlgXChaCha20Poly1305)
	if FIPS().On {
		alg = AlgAES256GCM
	}
	if h.keyID == cur.ID && h.version == cur.Version && h.alg == alg {
		return sealed, false, nil
	}
	pt, err := Open(ctx, k.In(q), sealed, ad)
	if err != nil {
		return nil, false, err
	}
	defer clear(pt)
	if out, err = sealAs(alg, cur, pt, ad); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

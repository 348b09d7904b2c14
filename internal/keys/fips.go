package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/fips140"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/custodia/custodia/internal/errs"
)

// FIPS mode (CRY-11).
//
// Custodia is in FIPS mode exactly when Go's FIPS 140-3 module is on, which
// only the start of the process can decide: GODEBUG=fips140=on, or
// fips140=only to have the module itself refuse every algorithm it has not
// approved (a binary built with GOFIPS140=v1.0.0 runs the frozen, validated
// module and is on by default). `custodia serve --fips` refuses to start
// without it.
//
// In FIPS mode every new sealed value, and every data key the local
// key-encryption key wraps, uses AES-256-GCM with a 96-bit nonce the module
// draws itself (cipher.NewGCMWithRandomNonce), under a key derived with
// HKDF-SHA-256 from the 256-bit key, so that one key never serves two
// algorithms. Passwords are hashed with PBKDF2-HMAC-SHA-256 (package
// accounts). Go 1.27 has no public XAES-256-GCM; its building blocks (CMAC,
// GCM with a caller's nonce) are refused under fips140=only, so the 96-bit
// random nonce it is: one key version must seal fewer than 2^32 values,
// far more than a study holds, and rotation (CRY-07) starts a new count.
//
// Values sealed with XChaCha20-Poly1305 before the switch still open: their
// AEAD is made inside fips140.WithoutEnforcement, which lifts the module's
// refusal for that construction and nothing else. Nothing new is ever sealed
// with it in FIPS mode: Seal picks AES-256-GCM, and a seal with
// XChaCha20-Poly1305 builds its AEAD with enforcement on, so under
// fips140=only the module refuses it. Outside FIPS mode both kinds open, so
// switching back loses nothing. Data keys wrapped before the switch unwrap
// the same way; rotating them (CRY-07) after the switch wraps every new
// version with AES-256-GCM.

// fipsEnabled is fips140.Enabled; tests of FIPS mode in a process without
// the module replace it.
var fipsEnabled = fips140.Enabled

// FIPSMode is the state of FIPS mode, for the start banner and /readyz.
type FIPSMode struct {
	// On: Go's FIPS 140-3 module is on, and new values, wrapped keys and
	// password hashes use approved algorithms only.
	On bool
	// Enforced: GODEBUG=fips140=only; the module refuses every algorithm
	// it has not approved.
	Enforced bool
	// Module is the version of the Go Cryptographic Module: "latest" for
	// the one in the Go release, a version such as "v1.0.0" for a frozen
	// module selected with GOFIPS140.
	Module string
}

// FIPS reports whether this process is in FIPS mode.
func FIPS() FIPSMode {
	if !fipsEnabled() {
		return FIPSMode{}
	}
	return FIPSMode{On: true, Enforced: fips140.Enforced(), Module: fips140.Version()}
}

func (m FIPSMode) String() string {
	switch {
	case !m.On:
		return "off"
	case m.Enforced:
		return fmt.Sprintf("on, enforced (fips140=only, Go Cryptographic Module %s)", m.Module)
	}
	return fmt.Sprintf("on (fips140=on, Go Cryptographic Module %s)", m.Module)
}

// Algorithms names what is used for new values in this mode.
func (m FIPSMode) Algorithms() string {
	if m.On {
		return "AES-256-GCM sealing, PBKDF2-HMAC-SHA-256 passwords"
	}
	return "XChaCha20-Poly1305 sealing, argon2id passwords"
}

// Labels of the HKDF derivation of AES-256-GCM keys: a data key's and the
// local key-encryption key's derived keys never coincide.
const (
	sealGCMLabel     = "custodia.sealed-value.aes-256-gcm.v1"
	localKEKGCMLabel = "custodia.local-kek.aes-256-gcm.v1"
)

const (
	// GCMNonceSize is the nonce of an AES-256-GCM value.
	GCMNonceSize = 12
	// GCMHeaderSize is how much of an AES-256-GCM value precedes the nonce
	// (see Seal): the header is the associated data, and GCM authenticates
	// the nonce itself.
	GCMHeaderSize = offNonce
	// GCMOverhead is how much longer an AES-256-GCM sealed value is than
	// its plaintext.
	GCMOverhead = GCMHeaderSize + GCMNonceSize + TagSize

	// localKEKFormatGCM marks a data key wrapped with AES-256-GCM by the
	// local key-encryption key: format byte (2) || 12-byte nonce ||
	// ciphertext || tag.
	localKEKFormatGCM = 2
)

// sealKey is one 256-bit key as the AEADs that use it.
type sealKey struct {
	key []byte      // the XChaCha20-Poly1305 key, and the HKDF input of gcm's
	gcm cipher.AEAD // AES-256-GCM with random nonces drawn by the module
}

func newSealKey(key []byte, label string) (*sealKey, error) {
	if len(key) != 32 {
		return nil, errors.New("a data key must be 32 bytes")
	}
	derived, err := hkdf.Key(sha256.New, key, nil, label, 32)
	if err != nil {
		return nil, err
	}
	defer clear(derived)
	b, err := aes.NewCipher(derived)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		return nil, err
	}
	return &sealKey{key: bytes.Clone(key), gcm: g}, nil
}

// xchacha makes the XChaCha20-Poly1305 AEAD for a new seal. Under
// fips140=only the module refuses it.
func (k *sealKey) xchacha() (cipher.AEAD, error) { return newXChaCha(k.key) }

// legacy makes the XChaCha20-Poly1305 AEAD for opening a value sealed
// before FIPS mode.
func (k *sealKey) legacy() (cipher.AEAD, error) { return legacyXChaCha(k.key) }

// legacyXChaCha is the one place where the module's enforcement is lifted:
// the AEAD it makes opens what was sealed before the switch to FIPS mode.
// Callers never seal with it in FIPS mode.
func legacyXChaCha(key []byte) (a cipher.AEAD, err error) {
	fips140.WithoutEnforcement(func() { a, err = newXChaCha(key) })
	return a, err
}

// openGCM decrypts nonce || ciphertext || tag.
func (k *sealKey) openGCM(body, ad []byte) ([]byte, error) {
	if len(body) < GCMNonceSize+TagSize {
		return nil, ErrCorrupt
	}
	return k.gcm.Open(nil, nil, body, ad)
}

// wrapGCM is LocalKEK.Wrap in FIPS mode.
func (k *sealKey) wrapGCM(plaintext, ad []byte) ([]byte, error) {
	if k == nil {
		return nil, errs.E(errs.Internal, "wrap data key: no AES-256-GCM key")
	}
	out := make([]byte, 1, 1+GCMNonceSize+len(plaintext)+TagSize)
	out[0] = localKEKFormatGCM
	return k.gcm.Seal(out, nil, plaintext, localKEKGCMAD(ad)), nil
}

// unwrapGCM is LocalKEK.Unwrap of what wrapGCM made.
func (k *sealKey) unwrapGCM(wrapped, ad []byte) ([]byte, error) {
	if k == nil || len(wrapped) < 1+GCMNonceSize+TagSize || wrapped[0] != localKEKFormatGCM {
		return nil, ErrUnwrap
	}
	pt, err := k.openGCM(wrapped[1:], localKEKGCMAD(ad))
	if err != nil {
		return nil, ErrUnwrap
	}
	return pt, nil
}

func localKEKGCMAD(ad []byte) []byte {
	return append([]byte{localKEKFormatGCM}, localKEKAD(ad)...)
}

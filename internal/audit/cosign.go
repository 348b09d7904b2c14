package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/errs"
)

// Witness keys. A C2SP tlog-witness cosigns with a timestamped Ed25519
// signature (c2sp.org/tlog-cosignature, algorithm byte 0x04) over
//
//	cosignature/v1
//	time <Unix seconds>
//	<checkpoint body>
//
// which golang.org/x/mod/sumdb/note does not know, so it is checked here;
// a witness key of the plain Ed25519 note algorithm (0x01) is accepted too.
const (
	algEd25519       = 0x01
	algCosignatureV1 = 0x04
)

// ParseWitnessKey reads a witness's verifier key ("name+hash+base64").
func ParseWitnessKey(vkey string) (note.Verifier, error) {
	name, rest, ok := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	raw, err := base64.StdEncoding.DecodeString(key64)
	if !ok || !ok2 || len(hash16) != 8 || err != nil || len(raw) < 1 || !validKeyName(name) {
		return nil, errs.E(errs.Invalid, "witness key %q is not a verifier key (want name+hash+base64)", vkey)
	}
	switch raw[0] {
	case algEd25519:
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, errs.E(errs.Invalid, "witness key %q is malformed", vkey)
		}
		return v, nil
	case algCosignatureV1:
		if len(raw) != 1+ed25519.PublicKeySize {
			return nil, errs.E(errs.Invalid, "witness key %q is malformed", vkey)
		}
		v := &cosigVerifier{name: name, key: ed25519.PublicKey(raw[1:]), hash: keyHash(name, raw)}
		if fmt.Sprintf("%08x", v.hash) != hash16 {
			return nil, errs.E(errs.Invalid, "witness key %q does not match its own hash", vkey)
		}
		return v, nil
	}
	return nil, errs.E(errs.Invalid, "witness key %q uses an algorithm other than Ed25519", vkey)
}

type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }

// Verify checks a cosignature: 8 bytes of timestamp, then the signature
// over the cosigned message.
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	m := fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", t, msg)
	return ed25519.Verify(v.key, m, sig[8:])
}

func keyHash(name string, key []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func validKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// CheckCosignature checks that cosig, the signature lines a witness
// answered for the checkpoint note cp, hold a valid signature by w.
func CheckCosignature(cp, cosig []byte, w note.Verifier) error {
	text, _, ok := strings.Cut(string(cp), "\n\n")
	if !ok || len(cosig) == 0 {
		return errs.E(errs.Invalid, "witness %s answered no cosignature", w.Name())
	}
	if _, err := note.Open([]byte(text+"\n\n"+string(cosig)), note.VerifierList(w)); err != nil {
		return errs.E(errs.Invalid, "the cosignature of witness %s does not verify", w.Name())
	}
	return nil
}

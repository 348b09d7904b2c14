// Package passkeytest is a software WebAuthn authenticator for tests: it
// answers the options a Custodia server hands out (the JSON of
// navigator.credentials.create and .get) with real P-256 keys and real
// ECDSA signatures, "none" attestation, the way a browser would post them.
// Its fields let a test make it misbehave: answer for another origin, skip
// user verification, move its counter backwards.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// AAGUID is the model id the authenticator reports.
var AAGUID = []byte{0xc0, 0x57, 0x0d, 0x1a, 0xc0, 0x57, 0x0d, 0x1a, 0xc0, 0x57, 0x0d, 0x1a, 0x00, 0x00, 0x00, 0x01}

// Authenticator holds one credential after Create.
type Authenticator struct {
	// Origin is the origin the answers claim, as a browser fills it in.
	Origin string
	// NoUserVerification answers without the UV flag (a security key
	// touched without its PIN).
	NoUserVerification bool
	// Counter is the signature counter: each Get adds one before signing,
	// unless ZeroCounter (an authenticator that keeps none, as synced
	// passkeys do) holds it at zero.
	Counter     uint32
	ZeroCounter bool

	Key          *ecdsa.PrivateKey
	CredentialID []byte
	UserHandle   []byte
	RPID         string
}

// New returns an authenticator answering for origin.
func New(origin string) *Authenticator {
	return &Authenticator{Origin: origin}
}

var b64 = base64.RawURLEncoding

type b64bytes []byte

func (b b64bytes) MarshalJSON() ([]byte, error) { return json.Marshal(b64.EncodeToString(b)) }

func (b *b64bytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := b64.DecodeString(s)
	*b = v
	return err
}

type creationOptions struct {
	PublicKey struct {
		Challenge b64bytes `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID b64bytes `json:"id"`
		} `json:"user"`
		Exclude []struct {
			ID b64bytes `json:"id"`
		} `json:"excludeCredentials"`
	} `json:"publicKey"`
}

type requestOptions struct {
	PublicKey struct {
		Challenge b64bytes `json:"challenge"`
		RPID      string   `json:"rpId"`
		Allow     []struct {
			ID b64bytes `json:"id"`
		} `json:"allowCredentials"`
	} `json:"publicKey"`
}

func (a *Authenticator) clientData(typ string, challenge []byte) []byte {
	b, _ := json.Marshal(map[string]any{
		"type": typ, "challenge": b64.EncodeToString(challenge), "origin": a.Origin, "crossOrigin": false,
	})
	return b
}

func (a *Authenticator) flags(attested bool) byte {
	f := byte(0x01) // user present
	if !a.NoUserVerification {
		f |= 0x04
	}
	if attested {
		f |= 0x40
	}
	return f
}

// Create makes a new credential for the creation options (JSON) and
// returns the PublicKeyCredential a browser would post, as JSON.
func (a *Authenticator) Create(options []byte) ([]byte, error) {
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("read creation options: %w", err)
	}
	if len(o.PublicKey.Challenge) == 0 || o.PublicKey.RP.ID == "" {
		return nil, errors.New("creation options without challenge or rp.id")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	credID := make([]byte, 32)
	rand.Read(credID)
	a.Key, a.CredentialID, a.UserHandle, a.RPID = key, credID, o.PublicKey.User.ID, o.PublicKey.RP.ID

	pub, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, err
	}
	cose, err := webauthncbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: pub[1:33], -3: pub[33:65]})
	if err != nil {
		return nil, err
	}
	rpHash := sha256.Sum256([]byte(a.RPID))
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, a.flags(true))
	auth = binary.BigEndian.AppendUint32(auth, a.Counter)
	auth = append(auth, AAGUID...)
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(credID)))
	auth = append(auth, credID...)
	auth = append(auth, cose...)
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": auth})
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(credID), "rawId": b64bytes(credID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64bytes(a.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64bytes(att),
			"transports":        []string{"internal"},
		},
		"clientExtensionResults": map[string]any{},
	})
}

// Get signs an assertion for the request options (JSON) with the
// credential made by Create, its counter one up, and returns the
// PublicKeyCredential a browser would post, as JSON.
func (a *Authenticator) Get(options []byte) ([]byte, error) {
	if a.Key == nil {
		return nil, errors.New("no credential: call Create first")
	}
	var o requestOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("read request options: %w", err)
	}
	if len(o.PublicKey.Challenge) == 0 {
		return nil, errors.New("request options without challenge")
	}
	if !a.ZeroCounter {
		a.Counter++
	}
	return a.Sign(o.PublicKey.Challenge)
}

// Sign signs an assertion for challenge at the current counter.
func (a *Authenticator) Sign(challenge []byte) ([]byte, error) {
	rpHash := sha256.Sum256([]byte(a.RPID))
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, a.flags(false))
	auth = binary.BigEndian.AppendUint32(auth, a.Counter)
	cd := a.clientData("webauthn.get", challenge)
	cdHash := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, auth...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.Key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.CredentialID), "rawId": b64bytes(a.CredentialID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64bytes(cd),
			"authenticatorData": b64bytes(auth),
			"signature":         b64bytes(sig),
			"userHandle":        b64bytes(a.UserHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
}

// Clone is a copy of the authenticator holding the same key and counter,
// as an attacker who extracted the key would have.
func (a *Authenticator) Clone() *Authenticator {
	c := *a
	return &c
}

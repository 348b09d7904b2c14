// Package ids makes the identifiers that appear in URLs and API answers. They
// are 128 random bits from the operating system's generator, so an identifier
// reveals nothing about order or count and cannot be guessed (ACL-08).
package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
)

// Len is the length of an identifier in characters.
const Len = 26

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// New returns a fresh random identifier: 26 lower-case base32 characters.
func New() string {
	var b [16]byte
	rand.Read(b[:]) // never fails on supported platforms (crypto/rand docs)
	return enc.EncodeToString(b[:])
}

// Valid reports whether s has the shape of an identifier. Callers use it to
// answer a malformed identifier exactly like an unknown one.
func Valid(s string) bool {
	if len(s) != Len {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	// The last character carries 3 bits of padding that must be zero.
	b, err := enc.DecodeString(s)
	return err == nil && len(b) == 16 && enc.EncodeToString(b) == s
}

// SecretLen is the length of a secret token in characters.
const SecretLen = 43

// NewSecret returns a bearer secret for a link or a cookie, 256 random bits
// in URL-safe base64, and its digest, which is all the database keeps: a
// copy of the database opens no session and follows no link.
func NewSecret() (secret, digest string) {
	var b [32]byte
	rand.Read(b[:])
	secret = base64.RawURLEncoding.EncodeToString(b[:])
	return secret, Digest(secret)
}

// Digest is the stored form of a secret: its SHA-256, in hex.
func Digest(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

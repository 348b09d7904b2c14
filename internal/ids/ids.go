// Package ids makes the identifiers that appear in URLs and API answers. They
// are 128 random bits from the operating system's generator, so an identifier
// reveals nothing about order or count and cannot be guessed (ACL-08).
// Records that show their time anyway and are written in time order, such
// as audit events, take identifiers that begin with their time (Timed).
package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"time"
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

// timedDigits is how many characters of a Timed identifier hold its time:
// 26^10 milliseconds are about 4,500 years.
const timedDigits = 10

// Timed returns an identifier of New's shape for a record made at t, for
// records written in time order such as audit events: its first 10
// characters are t in milliseconds since 1970 in base 26, written with the
// letters a to z, so that identifiers sort as their times do; the other 16
// are random (78 bits). A table keyed by such identifiers grows at its end:
// a random key costs the database a page of the key's index for every
// record, where records made together share one. The identifier tells when
// its record was made, so it is only for records that show their time, never
// for an object a URL names.
func Timed(t time.Time) string {
	b := []byte(New())
	ms := max(t.UnixMilli(), 0) // a time before 1970 counts as 1970
	for i := timedDigits - 1; i >= 0; i-- {
		b[i] = 'a' + byte(ms%26)
		ms /= 26
	}
	return string(b)
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

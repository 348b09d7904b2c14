package mfa

import (
	"crypto/fips140"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"net/url"
	"time"

	"rsc.io/qr"
)

// TOTP parameters (RFC 6238): HMAC-SHA-1, a 30-second time step from the
// Unix epoch and 6 digits, the values every authenticator app assumes when
// an otpauth URI names none. Skew is how many steps a code may be off, in
// either direction, for the drift between the server's clock and the phone's.
const (
	Period     = 30 * time.Second
	Digits     = 6
	Skew       = 1
	SecretSize = 20 // bytes, the HMAC-SHA-1 output size (RFC 4226 section 4)
	Issuer     = "Custodia"
)

// secretEncoding is how a secret is shown and put in the otpauth URI:
// RFC 4648 base32 without padding, as authenticator apps expect.
var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// hotp is RFC 4226's HOTP value of key and counter with the given number of
// digits (section 5.3: HMAC-SHA-1, dynamic truncation, modulo 10^digits).
//
// Authenticator apps compute HMAC-SHA-1, so that is what a code is checked
// with, also when Go's FIPS 140-3 module is enforced (CRY-11), which would
// refuse SHA-1: the code is a one-time proof of possession compared in
// constant time, not a protection of stored data, and no approved
// algorithm is accepted by the apps people use.
func hotp(key []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	var sum []byte
	fips140.WithoutEnforcement(func() {
		mac := hmac.New(sha1.New, key)
		mac.Write(msg[:])
		sum = mac.Sum(nil)
	})
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	v := bin % mod
	out := make([]byte, digits)
	for i := digits - 1; i >= 0; i-- {
		out[i] = byte('0' + v%10)
		v /= 10
	}
	return string(out)
}

// Step is the RFC 6238 time step of t: whole periods since the Unix epoch.
func Step(t time.Time) int64 {
	return t.Unix() / int64(Period/time.Second)
}

// Code is the TOTP code of key for time step step.
func Code(key []byte, step int64) string {
	return hotp(key, uint64(step), Digits)
}

// isTOTPShape reports whether s looks like a TOTP code: exactly Digits
// decimal digits.
func isTOTPShape(s string) bool {
	if len(s) != Digits {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// matchStep returns the time step, within Skew of now, whose code is code,
// trying the latest step first, so that of two steps with the same code the
// later one is spent.
func matchStep(key []byte, code string, now time.Time) (int64, bool) {
	if !isTOTPShape(code) {
		return 0, false
	}
	cur := Step(now)
	found, ok := int64(0), false
	for s := cur + Skew; s >= cur-Skew; s-- {
		if subtle.ConstantTimeCompare([]byte(Code(key, s)), []byte(code)) == 1 && !ok {
			found, ok = s, true
		}
	}
	return found, ok
}

// URI is the otpauth:// URI (Google Authenticator's Key Uri Format) that
// authenticator apps read from a QR code: issuer Custodia, the account's
// e-mail address as label, and the secret in base32.
func URI(email string, secret []byte) string {
	q := url.Values{}
	q.Set("secret", secretEncoding.EncodeToString(secret))
	q.Set("issuer", Issuer)
	q.Set("algorithm", "SHA1")
	q.Set("digits", "6")
	q.Set("period", "30")
	u := url.URL{
		Scheme: "otpauth",
		Host:   "totp",
		Path:   "/" + Issuer + ":" + email,
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// QRCode renders uri as a PNG QR code (error correction level M, with the
// standard quiet zone) for the enrolment page.
func QRCode(uri string) ([]byte, error) {
	c, err := qr.Encode(uri, qr.M)
	if err != nil {
		return nil, err
	}
	c.Scale = 6
	return c.PNG(), nil
}

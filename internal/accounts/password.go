package accounts

import (
	"context"
	"crypto/fips140"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/authz"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"golang.org/x/crypto/argon2"
)

// Argon2Params are the cost settings of an argon2id hash (AUTH-03). They are
// stored with each hash, so raising them later upgrades hashes one login at
// a time.
type Argon2Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultArgon2 follows OWASP's argon2id minimum (19 MiB, 2 passes), which
// keeps one hash in the tens of milliseconds on a small server.
var DefaultArgon2 = Argon2Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// hashSlots bounds how many hashes run at once, and so the memory a flood of
// logins can take: each slot holds at most one hash's memory.
var hashSlots = make(chan struct{}, max(2, runtime.NumCPU()))

func acquire(ctx context.Context) error {
	select {
	case hashSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return errs.Wrap(errs.Unavailable, ctx.Err(), "server busy")
	}
}

func release() { <-hashSlots }

// PBKDF2Params are the cost settings of a PBKDF2-HMAC-SHA-256 hash, the
// kind FIPS mode uses (CRY-11): argon2id is not a FIPS 140 approved
// algorithm. Like argon2id's, they are stored with each hash.
type PBKDF2Params struct {
	Iterations int
}

// DefaultPBKDF2 follows OWASP's 2023 recommendation for PBKDF2-HMAC-SHA-256.
var DefaultPBKDF2 = PBKDF2Params{Iterations: 600_000}

// fipsMode reports whether passwords are hashed with PBKDF2 (keys.FIPS);
// tests of FIPS mode in a process without the FIPS module replace it.
var fipsMode = func() bool { return keys.FIPS().On }

// Hash returns the PHC-format hash of password with a fresh salt: argon2id,
// or PBKDF2-HMAC-SHA-256 in FIPS mode (CRY-11).
func Hash(ctx context.Context, password string) (string, error) {
	if fipsMode() {
		return hashPBKDF2(ctx, password, DefaultPBKDF2)
	}
	return hashWith(ctx, password, DefaultArgon2)
}

const pbkdf2Prefix = "$pbkdf2-sha256$"

// hashPBKDF2 returns $pbkdf2-sha256$i=<iterations>$<salt>$<key>, salt and
// key in unpadded base64. The 16-byte salt and 32-byte key are what FIPS
// 140-only mode requires at the least.
func hashPBKDF2(ctx context.Context, password string, p PBKDF2Params) (string, error) {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	if err := acquire(ctx); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, p.Iterations, keyLen)
	release()
	if err != nil {
		return "", errs.Wrap(errs.Internal, err, "hash password")
	}
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("%si=%d$%s$%s", pbkdf2Prefix, p.Iterations, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func hashWith(ctx context.Context, password string, p Argon2Params) (string, error) {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	if err := acquire(ctx); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	release()
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches the encoded hash, of either
// kind in either mode, and whether the hash should be replaced: because its
// parameters are below the defaults, or because it is not of the kind the
// mode uses (argon2id normally, PBKDF2 in FIPS mode). Sign-in replaces it,
// so a switch to FIPS mode, or back, moves each hash over at its owner's
// next sign-in.
func Verify(ctx context.Context, encoded, password string) (ok, stale bool, err error) {
	if strings.HasPrefix(encoded, pbkdf2Prefix) {
		return verifyPBKDF2(ctx, encoded, password)
	}
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, false, err
	}
	if err := acquire(ctx); err != nil {
		return false, false, err
	}
	// In FIPS mode argon2id only checks a hash made before the switch,
	// which sign-in then replaces; it is exempt from the module's
	// enforcement for that (see keys.FIPS).
	var got []byte
	fips140.WithoutEnforcement(func() {
		got = argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(key)))
	})
	release()
	ok = subtle.ConstantTimeCompare(got, key) == 1
	stale = fipsMode() || p.MemoryKiB < DefaultArgon2.MemoryKiB || p.Time < DefaultArgon2.Time
	return ok, stale, nil
}

func verifyPBKDF2(ctx context.Context, encoded, password string) (ok, stale bool, err error) {
	p, salt, key, err := decodePBKDF2(encoded)
	if err != nil {
		return false, false, err
	}
	if err := acquire(ctx); err != nil {
		return false, false, err
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, p.Iterations, len(key))
	release()
	if err != nil {
		return false, false, errs.Wrap(errs.Internal, err, "verify password")
	}
	ok = subtle.ConstantTimeCompare(got, key) == 1
	stale = !fipsMode() || p.Iterations < DefaultPBKDF2.Iterations
	return ok, stale, nil
}

func decodePBKDF2(encoded string) (PBKDF2Params, []byte, []byte, error) {
	var p PBKDF2Params
	parts := strings.Split(encoded, "$")
	if len(parts) != 5 || !strings.HasPrefix(parts[2], "i=") {
		return p, nil, nil, fmt.Errorf("malformed pbkdf2 hash")
	}
	n, err := strconv.Atoi(parts[2][len("i="):])
	if err != nil || n < 1000 || n > 10_000_000 {
		return p, nil, nil, fmt.Errorf("pbkdf2 parameters out of range")
	}
	p.Iterations = n
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[3])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[4])
	if err1 != nil || err2 != nil || len(salt) < 16 || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, fmt.Errorf("malformed pbkdf2 hash")
	}
	return p, salt, key, nil
}

func decodeHash(encoded string) (Argon2Params, []byte, []byte, error) {
	var p Argon2Params
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("unsupported password hash format")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("unsupported argon2 version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("malformed argon2 parameters")
	}
	if p.MemoryKiB < 8*1024 || p.MemoryKiB > 1024*1024 || p.Time < 1 || p.Time > 20 || p.Threads < 1 {
		return p, nil, nil, fmt.Errorf("argon2 parameters out of range")
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 {
		return p, nil, nil, fmt.Errorf("malformed argon2 hash")
	}
	return p, salt, key, nil
}

// Policy is an organization's password rules (AUTH-02).
type Policy struct {
	MinLength    int  // never below 8
	RequireMixed bool // at least one digit and one capital letter
	MaxLength    int
	// Words may not appear in the password, whatever their case, besides
	// contextWords and the person's own name and address: the names and
	// slugs of the organizations the person belongs to or is invited to
	// (PasswordRules).
	Words []string
}

// contextWords are words of the product that no password may contain
// (ASVS V6.1.2, V6.2.11): its name and the names of its roles, which
// whoever guesses a password tries first.
var contextWords = func() []string {
	out := []string{"custodia"}
	for _, r := range authz.BuiltinRoles() {
		out = append(out, string(r))
		if joined := strings.ReplaceAll(string(r), "-", ""); joined != string(r) {
			out = append(out, joined)
		}
	}
	return out
}()

// DefaultPolicy applies where an organization has set nothing else.
var DefaultPolicy = Policy{MinLength: 12, MaxLength: 256}

// Check reports why password breaks the policy, if it does. The message
// never repeats the password.
func (p Policy) Check(password, email, name string) error {
	minLen := max(p.MinLength, 8)
	maxLen := p.MaxLength
	if maxLen == 0 {
		maxLen = 256
	}
	n := utf8.RuneCountInString(password)
	if !utf8.ValidString(password) {
		return errs.E(errs.Invalid, "the password is not valid text")
	}
	if n < minLen {
		return errs.E(errs.Invalid, "the password must have at least %d characters", minLen)
	}
	if n > maxLen {
		return errs.E(errs.Invalid, "the password may have at most %d characters", maxLen)
	}
	if p.RequireMixed {
		var digit, upper bool
		for _, r := range password {
			digit = digit || unicode.IsDigit(r)
			upper = upper || unicode.IsUpper(r)
		}
		if !digit || !upper {
			return errs.E(errs.Invalid, "the password must contain at least one digit and one capital letter")
		}
	}
	lower := strings.ToLower(password)
	for _, part := range personalParts(email, name) {
		if strings.Contains(lower, part) {
			return errs.E(errs.Invalid, "the password may not contain your e-mail address or name")
		}
	}
	for _, w := range append(contextWords[:len(contextWords):len(contextWords)], p.Words...) {
		if w = strings.ToLower(w); utf8.RuneCountInString(w) >= 4 && strings.Contains(lower, w) {
			return errs.E(errs.Invalid, "the password may not contain %q: the name of this product, of an organization or of a role is the first thing a guess tries", w)
		}
	}
	if IsCommonPassword(password) {
		return errs.E(errs.Invalid, "this password is too common: it appears in lists of breached passwords")
	}
	return nil
}

// personalParts lists the pieces of a person's e-mail and name that a
// password may not contain: the whole address, and its local part and every
// word of the name or local part that has at least four characters.
func personalParts(email, name string) []string {
	var out []string
	email = strings.ToLower(email)
	if email != "" {
		out = append(out, email)
		if i := strings.IndexByte(email, '@'); i > 0 {
			email = email[:i]
			if utf8.RuneCountInString(email) >= 4 {
				out = append(out, email)
			}
		}
	}
	split := func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }
	for _, w := range append(strings.FieldsFunc(email, split), strings.FieldsFunc(strings.ToLower(name), split)...) {
		if utf8.RuneCountInString(w) >= 4 {
			out = append(out, w)
		}
	}
	return out
}

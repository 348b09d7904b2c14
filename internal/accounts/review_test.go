package accounts

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// withPassword makes an account with no name (so that no word of it
// limits the password) and sets password under the default policy.
func withPassword(t *testing.T, db *sqldb.DB, email, password string) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		acc, err := Create(ctx, tx, email, "")
		if err != nil {
			return err
		}
		return SetPassword(ctx, tx, acc, password, DefaultPolicy)
	})
	if err != nil {
		t.Fatalf("set a password of %d characters: %v", utf8.RuneCountInString(password), err)
	}
}

// TestAUTH03_PasswordIsCheckedExactlyAsTyped proves ASVS V6.2.8 (password
// checked exactly as received): a password with spaces at both ends, a
// double space and accented letters signs in as typed, and only as
// typed: without its outer spaces, with one space fewer, in another case,
// in another Unicode normalization (é as e and a combining accent), cut by
// a character or longer by one, it is a wrong password.
func TestAUTH03_PasswordIsCheckedExactlyAsTyped(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		const typed = "  Crème  brûlée été 2026  " // é, è, û precomposed (NFC)
		withPassword(t, db, "p@x.example", typed)
		if _, err := Authenticate(ctx, db, "p@x.example", typed); err != nil {
			t.Fatalf("the password as typed: %v", err)
		}
		for name, other := range map[string]string{
			"without the outer spaces":   strings.TrimSpace(typed),
			"without the leading spaces": strings.TrimLeft(typed, " "),
			"without the trailing ones":  strings.TrimRight(typed, " "),
			"with one space between":     strings.Replace(typed, "  brûlée", " brûlée", 1),
			"in capitals":                strings.ToUpper(typed),
			"in small letters":           strings.ToLower(typed),
			"decomposed (NFD)":           "  Cre\u0300me  bru\u0302le\u0301e e\u0301te\u0301 2026  ",
			"without accents":            "  Creme  brulee ete 2026  ",
			"cut by a character":         typed[:len(typed)-1],
			"longer by a character":      typed + " ",
		} {
			if other == typed {
				t.Fatalf("%s: the variant is the password itself", name)
			}
			if _, err := Authenticate(ctx, db, "p@x.example", other); err != ErrBadCredentials {
				t.Errorf("the password %s signed in (%v); a password is checked exactly as typed (ASVS V6.2.8)", name, err)
			}
		}
	})
}

// TestAUTH02_LongPasswordsAreAcceptedWhole proves ASVS V6.2.9 (passwords
// of 64 characters and more): passwords of 64 and of 256 characters (the
// policy's most), and of 256 characters of four bytes each (1024 bytes,
// the most sign-in reads), are set and sign in; each is checked whole,
// so the same password with only its last character changed does not
// sign in, and a password longer than sign-in reads is refused, never cut
// to the part that would match.
func TestAUTH02_LongPasswordsAreAcceptedWhole(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		words := strings.Repeat("quiet amber lantern over the frozen harbour ", 8)
		for i, pw := range []string{
			words[:64],
			words[:256],
			strings.Repeat("\U0001D11E", 256), // 𝄞: 4 bytes each
		} {
			email := "long" + string(rune('a'+i)) + "@x.example"
			withPassword(t, db, email, pw)
			n := utf8.RuneCountInString(pw)
			if _, err := Authenticate(ctx, db, email, pw); err != nil {
				t.Errorf("a password of %d characters (%d bytes) does not sign in: %v", n, len(pw), err)
			}
			r := []rune(pw)
			for name, other := range map[string]string{
				"its last character changed": string(r[:len(r)-1]) + "X",
				"its last character cut":     string(r[:len(r)-1]),
			} {
				if _, err := Authenticate(ctx, db, email, other); err != ErrBadCredentials {
					t.Errorf("the password of %d characters with %s signed in (%v): it is not checked whole", n, name, err)
				}
			}
		}
		// Past what sign-in reads: refused whole, even though its first
		// 1024 bytes are a right password.
		if _, err := Authenticate(ctx, db, "longc@x.example", strings.Repeat("\U0001D11E", 256)+"x"); err != ErrBadCredentials {
			t.Errorf("1025 bytes whose first 1024 are the password: %v, want ErrBadCredentials", err)
		}
		if err := DefaultPolicy.Check(words[:257], "", ""); err == nil {
			t.Error("the policy accepts 257 characters; its documented most is 256")
		}
	})
}

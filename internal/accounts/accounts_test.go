package accounts

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestAUTH03_PasswordHashIsSaltedArgon2id(t *testing.T) {
	ctx := context.Background()
	h1, err := Hash(ctx, "same password twice")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := Hash(ctx, "same password twice")
	if h1 == h2 {
		t.Error("two hashes of one password are equal: no per-password salt")
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not argon2id with the default parameters", h1)
	}
	if strings.Contains(h1, "same password") {
		t.Error("hash contains the password")
	}
	ok, stale, err := Verify(ctx, h1, "same password twice")
	if !ok || stale || err != nil {
		t.Errorf("Verify(right) = %v, %v, %v", ok, stale, err)
	}
	if ok, _, _ := Verify(ctx, h1, "same password twicE"); ok {
		t.Error("Verify accepted a wrong password")
	}
}

func TestAUTH03_WeakParametersAreUpgradedAtLogin(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		weak, err := hashWith(ctx, "a good long password", Argon2Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		var acc Account
		db.InTx(ctx, func(tx *sql.Tx) error {
			acc, err = Create(ctx, tx, "p@x.example", "P")
			return err
		})
		db.ExecContext(ctx, `UPDATE accounts SET password_hash = $1 WHERE id = $2`, weak, acc.ID)
		if _, err := Authenticate(ctx, db, "p@x.example", "a good long password"); err != nil {
			t.Fatal(err)
		}
		var now string
		db.QueryRowContext(ctx, `SELECT password_hash FROM accounts WHERE id = $1`, acc.ID).Scan(&now)
		if now == weak || !strings.Contains(now, "m=19456,t=2") {
			t.Errorf("hash not upgraded: %s", now)
		}
		if _, err := Authenticate(ctx, db, "p@x.example", "a good long password"); err != nil {
			t.Errorf("login after upgrade: %v", err)
		}
	})
}

func TestVerifyRefusesMalformedHashes(t *testing.T) {
	for _, h := range []string{"", "plain", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"} {
		if ok, _, err := Verify(context.Background(), h, "x"); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v", h, ok, err)
		}
	}
}

func TestAUTH02_PasswordPolicy(t *testing.T) {
	mixed := Policy{MinLength: 12, RequireMixed: true}
	for _, tc := range []struct {
		p        Policy
		password string
		ok       bool
	}{
		{DefaultPolicy, "short", false},
		{DefaultPolicy, "elevenchars", false},
		{DefaultPolicy, "twelve chars", true},
		{Policy{MinLength: 4}, "sevenchr", true}, // the floor is 8, not 4
		{Policy{MinLength: 4}, "seven77", false},
		{mixed, "all lower case words", false},
		{mixed, "Has Capital and 1 digit", true},
		{DefaultPolicy, "my name is JOSEPHINE really", false}, // contains the name
		{DefaultPolicy, "josephine.doe@x.example!!", false},   // contains the address
		{DefaultPolicy, "xx josephine.doe yy", false},         // contains the local part
		{DefaultPolicy, strings.Repeat("x", 257), false},
	} {
		err := tc.p.Check(tc.password, "josephine.doe@x.example", "Josephine Doe")
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) with %+v = %v, want ok=%v", tc.password, tc.p, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), tc.password) {
			t.Errorf("error repeats the password: %v", err)
		}
	}
}

func TestAUTH01_OneAccountPerEmail(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		err := db.InTx(ctx, func(tx *sql.Tx) error { _, err := Create(ctx, tx, "Dup@X.example", ""); return err })
		if err != nil {
			t.Fatal(err)
		}
		err = db.InTx(ctx, func(tx *sql.Tx) error { _, err := Create(ctx, tx, "dup@x.EXAMPLE", ""); return err })
		if !errs.Is(err, errs.Conflict) {
			t.Errorf("second account for the same address (other case): %v, want Conflict", err)
		}
	})
}

func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{"A@B.example": "a@b.example", " a.b+c@d.example ": "a.b+c@d.example"} {
		if got, err := NormalizeEmail(in); err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "a", "a@b", "Name <a@b.example>", "a@b.example\r\nBcc: c@d.example", strings.Repeat("a", 250) + "@b.example"} {
		if _, err := NormalizeEmail(in); !errs.Is(err, errs.Invalid) {
			t.Errorf("NormalizeEmail(%q) accepted", in)
		}
	}
}

func TestOneTimeLinkIsSingleUseHashedAndExpires(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		var acc Account
		var token, expired string
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if acc, err = Create(ctx, tx, "new@x.example", "New Person"); err != nil {
				return err
			}
			if token, err = IssueLink(ctx, tx, acc.ID, PurposeSetup, time.Hour); err != nil {
				return err
			}
			expired, err = IssueLink(ctx, tx, acc.ID, PurposeSetup, -time.Second)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var stored int
		db.QueryRowContext(ctx, `SELECT count(*) FROM account_tokens WHERE token_hash = $1`, token).Scan(&stored)
		if stored != 0 {
			t.Error("token stored in clear")
		}
		g := gate.New(gate.Config{Clinical: db})
		if _, err := CompleteSetup(ctx, g, token, "short"); !errs.Is(err, errs.Invalid) {
			t.Fatalf("weak password: %v", err)
		}
		// A refused password leaves the link usable.
		if _, err := CompleteSetup(ctx, g, token, "a sound passphrase"); err != nil {
			t.Fatalf("setup: %v", err)
		}
		if _, err := CompleteSetup(ctx, g, token, "another passphrase"); !errs.Is(err, errs.NotFound) {
			t.Errorf("reused link: %v, want NotFound", err)
		}
		if _, err := CompleteSetup(ctx, g, expired, "another passphrase"); !errs.Is(err, errs.NotFound) {
			t.Errorf("expired link: %v, want NotFound", err)
		}
		if _, err := Authenticate(ctx, db, "new@x.example", "a sound passphrase"); err != nil {
			t.Errorf("sign in with the chosen password: %v", err)
		}
		if _, err := Authenticate(ctx, db, "new@x.example", "another passphrase"); err == nil {
			t.Error("reused link changed the password")
		}
	})
}

func TestAUTH06_UnknownAndPasswordlessAccountsFailLikeWrongPassword(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	db.InTx(ctx, func(tx *sql.Tx) error {
		a, _ := Create(ctx, tx, "has@x.example", "")
		Create(ctx, tx, "nopass@x.example", "")
		return SetPassword(ctx, tx, a, "the right password", DefaultPolicy)
	})
	for _, email := range []string{"has@x.example", "nopass@x.example", "unknown@x.example", "garbage"} {
		_, err := Authenticate(ctx, db, email, "a wrong password")
		if err != ErrBadCredentials {
			t.Errorf("%s: %v, want ErrBadCredentials", email, err)
		}
	}
}

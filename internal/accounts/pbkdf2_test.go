package accounts

import (
	"bytes"
	"context"
	"crypto/fips140"
	"crypto/pbkdf2"
	"crypto/sha256"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// withFIPS puts password hashing in or out of FIPS mode for one test, as if
// Go's FIPS 140-3 module were on or off; the module itself is tested in a
// child process (TestCRY11_PasswordsUnderEnforcedModule).
func withFIPS(t testing.TB, on bool) {
	t.Helper()
	old := fipsMode
	fipsMode = func() bool { return on }
	t.Cleanup(func() { fipsMode = old })
}

const fipsPassword = "a good long password"

func TestCRY11_FIPSModeHashesWithSaltedPBKDF2(t *testing.T) {
	ctx := context.Background()
	withFIPS(t, true)
	h1, err := Hash(ctx, fipsPassword)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := Hash(ctx, fipsPassword)
	if h1 == h2 {
		t.Error("two hashes of one password are equal: no per-password salt")
	}
	if !strings.HasPrefix(h1, "$pbkdf2-sha256$i=600000$") || len(strings.Split(h1, "$")) != 5 {
		t.Fatalf("hash %q is not PBKDF2-HMAC-SHA-256 with 600,000 iterations", h1)
	}
	if strings.Contains(h1, "good long") {
		t.Error("hash contains the password")
	}
	// The hash is PBKDF2 as anyone computes it: the stored salt and
	// iterations give the stored key.
	_, salt, key, err := decodePBKDF2(h1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pbkdf2.Key(sha256.New, fipsPassword, salt, 600_000, 32)
	if len(salt) != 16 || !bytes.Equal(key, want) {
		t.Fatalf("stored key is not PBKDF2-HMAC-SHA-256(password, %d-byte salt, 600000)", len(salt))
	}
	if ok, stale, err := Verify(ctx, h1, fipsPassword); !ok || stale || err != nil {
		t.Errorf("Verify(right) = %v, %v, %v", ok, stale, err)
	}
	if ok, _, err := Verify(ctx, h1, fipsPassword+"!"); ok || err != nil {
		t.Errorf("Verify(wrong) = %v, %v", ok, err)
	}
	// Either kind verifies in either mode; the other mode's kind is stale.
	withFIPS(t, false)
	if ok, stale, err := Verify(ctx, h1, fipsPassword); !ok || !stale || err != nil {
		t.Errorf("PBKDF2 hash outside FIPS mode: Verify = %v, %v, %v; want true, stale", ok, stale, err)
	}
	a, _ := Hash(ctx, fipsPassword)
	withFIPS(t, true)
	if ok, stale, err := Verify(ctx, a, fipsPassword); !ok || !stale || err != nil {
		t.Errorf("argon2id hash in FIPS mode: Verify = %v, %v, %v; want true, stale", ok, stale, err)
	}
}

func TestCRY11_MalformedPBKDF2HashesAreRefused(t *testing.T) {
	withFIPS(t, true)
	salt16, key32 := "c2FsdHNhbHRzYWx0c2FsdA", "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	for _, h := range []string{
		"$pbkdf2-sha256$",
		"$pbkdf2-sha256$i=600000$" + salt16,
		"$pbkdf2-sha256$i=600000$" + salt16 + "$" + key32 + "$x",
		"$pbkdf2-sha256$n=600000$" + salt16 + "$" + key32,
		"$pbkdf2-sha256$i=999$" + salt16 + "$" + key32,      // too few iterations to trust
		"$pbkdf2-sha256$i=99999999$" + salt16 + "$" + key32, // a denial of service
		"$pbkdf2-sha256$i=-1$" + salt16 + "$" + key32,
		"$pbkdf2-sha256$i=600000$c2FsdHNhbHQ$" + key32,  // 8-byte salt
		"$pbkdf2-sha256$i=600000$" + salt16 + "$aGFzaA", // 4-byte key
		"$pbkdf2-sha256$i=600000$" + salt16 + "$not*base64",
		"$pbkdf2-sha1$i=600000$" + salt16 + "$" + key32,
	} {
		if ok, _, err := Verify(context.Background(), h, "x"); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v", h, ok, err)
		}
	}
}

func setHash(t *testing.T, db *sqldb.DB, email, hash string) string {
	t.Helper()
	ctx := context.Background()
	var acc Account
	if err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		acc, err = Create(ctx, tx, email, "P")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE accounts SET password_hash = $1 WHERE id = $2`, hash, acc.ID); err != nil {
		t.Fatal(err)
	}
	return acc.ID
}

func storedHash(t *testing.T, db *sqldb.DB, id string) string {
	t.Helper()
	var h string
	if err := db.QueryRowContext(context.Background(), `SELECT password_hash FROM accounts WHERE id = $1`, id).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestCRY11_PasswordHashFollowsTheModeAtSignIn: an argon2id hash becomes
// PBKDF2 at the first sign-in in FIPS mode, a PBKDF2 hash below the
// iteration count is raised, and after leaving FIPS mode the hash becomes
// argon2id again. A wrong password changes nothing.
func TestCRY11_PasswordHashFollowsTheModeAtSignIn(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		withFIPS(t, false)
		old, err := Hash(ctx, fipsPassword)
		if err != nil {
			t.Fatal(err)
		}
		id := setHash(t, db, "p@x.example", old)

		withFIPS(t, true)
		if _, err := Authenticate(ctx, db, "p@x.example", fipsPassword+"!"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
		if storedHash(t, db, id) != old {
			t.Fatal("a wrong password replaced the hash")
		}
		if _, err := Authenticate(ctx, db, "p@x.example", fipsPassword); err != nil {
			t.Fatalf("sign-in with an argon2id hash in FIPS mode: %v", err)
		}
		now := storedHash(t, db, id)
		if !strings.HasPrefix(now, "$pbkdf2-sha256$i=600000$") {
			t.Fatalf("hash not moved to PBKDF2 in FIPS mode: %s", now)
		}
		if _, err := Authenticate(ctx, db, "p@x.example", fipsPassword); err != nil || storedHash(t, db, id) != now {
			t.Fatalf("second sign-in in FIPS mode: %v; hash changed: %v", err, storedHash(t, db, id) != now)
		}

		weak, err := hashPBKDF2(ctx, fipsPassword, PBKDF2Params{Iterations: 1000})
		if err != nil {
			t.Fatal(err)
		}
		weakID := setHash(t, db, "w@x.example", weak)
		if _, err := Authenticate(ctx, db, "w@x.example", fipsPassword); err != nil {
			t.Fatal(err)
		}
		if h := storedHash(t, db, weakID); !strings.HasPrefix(h, "$pbkdf2-sha256$i=600000$") {
			t.Fatalf("weak PBKDF2 hash not upgraded: %s", h)
		}

		withFIPS(t, false)
		if _, err := Authenticate(ctx, db, "p@x.example", fipsPassword); err != nil {
			t.Fatalf("sign-in with a PBKDF2 hash outside FIPS mode: %v", err)
		}
		if h := storedHash(t, db, id); !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
			t.Fatalf("hash not moved back to argon2id outside FIPS mode: %s", h)
		}
	})
}

// Environment of the child process of
// TestCRY11_PasswordsUnderEnforcedModule.
const (
	envFIPSChild = "CUSTODIA_TEST_FIPS_CHILD"
	envFIPSDB    = "CUSTODIA_TEST_FIPS_DB"
)

// TestCRY11_PasswordsUnderEnforcedModule stores an argon2id hash the
// ordinary way, then runs this test binary again with GODEBUG=fips140=only
// on the same database: there the account signs in, its hash becomes
// PBKDF2 and new hashes verify, while the module refuses what it does not
// approve. Back in this process the account still signs in.
func TestCRY11_PasswordsUnderEnforcedModule(t *testing.T) {
	if os.Getenv(envFIPSChild) == "1" {
		passwordsEnforcedChild(t)
		return
	}
	if fips140.Enforced() {
		t.Skip("this test hashes with argon2id before it switches to fips140=only in a child process")
	}
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		withFIPS(t, false)
		ctx := context.Background()
		url := sqldbtest.URL(t, d)
		db, err := sqldb.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Migrate(ctx, sqldb.Clinical); err != nil {
			t.Fatal(err)
		}
		old, err := Hash(ctx, fipsPassword)
		if err != nil || !strings.HasPrefix(old, "$argon2id$") {
			t.Fatalf("Hash outside FIPS mode = %q, %v", old, err)
		}
		id := setHash(t, db, "p@x.example", old)

		godebug := "fips140=only"
		if g := os.Getenv("GODEBUG"); g != "" {
			godebug = g + "," + godebug
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCRY11_PasswordsUnderEnforcedModule$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "GODEBUG="+godebug, envFIPSChild+"=1", envFIPSDB+"="+url)
		output, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(output, []byte("--- PASS: TestCRY11_PasswordsUnderEnforcedModule")) {
			t.Fatalf("child under GODEBUG=fips140=only: %v\n%s", err, output)
		}
		if h := storedHash(t, db, id); !strings.HasPrefix(h, "$pbkdf2-sha256$i=600000$") {
			t.Fatalf("after sign-in under fips140=only the hash is %s", h)
		}
		if _, err := Authenticate(ctx, db, "p@x.example", fipsPassword); err != nil {
			t.Fatalf("sign-in after leaving FIPS mode: %v", err)
		}
	})
}

func passwordsEnforcedChild(t *testing.T) {
	ctx := context.Background()
	if !fips140.Enforced() || !fipsMode() {
		t.Fatal("child runs without the enforced module")
	}
	// The module is enforced: it refuses a salt shorter than 128 bits.
	if _, err := pbkdf2.Key(sha256.New, fipsPassword, make([]byte, 8), 1000, 32); err == nil {
		t.Fatal("PBKDF2 with an 8-byte salt accepted under fips140=only")
	}
	h, err := Hash(ctx, fipsPassword)
	if err != nil || !strings.HasPrefix(h, "$pbkdf2-sha256$i=600000$") {
		t.Fatalf("Hash under fips140=only = %q, %v", h, err)
	}
	if ok, stale, err := Verify(ctx, h, fipsPassword); !ok || stale || err != nil {
		t.Fatalf("Verify(right) under fips140=only = %v, %v, %v", ok, stale, err)
	}
	if ok, _, err := Verify(ctx, h, "another password"); ok || err != nil {
		t.Fatalf("Verify(wrong) under fips140=only = %v, %v", ok, err)
	}

	db, err := sqldb.Open(ctx, os.Getenv(envFIPSDB))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Authenticate(ctx, db, "p@x.example", "another password"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password under fips140=only: %v", err)
	}
	if _, err := Authenticate(ctx, db, "nobody@x.example", fipsPassword); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("unknown account under fips140=only: %v", err)
	}
	if _, err := Authenticate(ctx, db, "p@x.example", fipsPassword); err != nil {
		t.Fatalf("sign-in with an argon2id hash under fips140=only: %v", err)
	}
}

package gate_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// Account work about an account found on the way commits what it did with
// its event, naming the account; a refusal that must stand (a failure
// counted towards a lockout) commits with its failure event; work that
// fails commits neither.
func TestAUD01_AccountWorkCommitsWithItsEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		from := gate.Actor{RemoteAddr: "192.0.2.9", UserAgent: "test"}
		failures := func() int {
			return count(t, f.db, `SELECT failed_logins FROM accounts WHERE id = '`+f.admin.AccountID+`'`)
		}
		count := func(action string, out audit.Outcome) int {
			var n int
			if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = $1 AND outcome = $2
				AND actor_account = $3`, action, string(out), f.admin.AccountID).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		countFailure := func(o *gate.OpTx) error {
			o.As(f.admin.AccountID, "")
			_, err := o.ExecContext(ctx, `UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = $1`, f.admin.AccountID)
			return err
		}
		// A refused attempt: counted and recorded.
		if err := f.g.Account(ctx, from, "auth.login", func(o *gate.OpTx) error {
			o.Outcome(audit.Failure)
			return countFailure(o)
		}); err != nil {
			t.Fatal(err)
		}
		if failures() != 1 || count("auth.login", audit.Failure) != 1 {
			t.Errorf("refused attempt: %d failures, %d failure events; want 1, 1", failures(), count("auth.login", audit.Failure))
		}
		// Work that fails: neither its change nor an event.
		err := f.g.Account(ctx, from, "auth.login", func(o *gate.OpTx) error {
			if err := countFailure(o); err != nil {
				return err
			}
			return errs.E(errs.Unavailable, "broke half way")
		})
		if !errs.Is(err, errs.Unavailable) || failures() != 1 || count("auth.login", audit.Failure) != 1 {
			t.Errorf("failed work: %v, %d failures; want its error and nothing kept", err, failures())
		}
		// Work that ends as another action is recorded as that one.
		if err := f.g.Account(ctx, from, "auth.login", func(o *gate.OpTx) error {
			o.Action("auth.challenge")
			o.As(f.admin.AccountID, "")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if count("auth.challenge", audit.Success) != 1 || count("auth.login", audit.Success) != 0 {
			t.Error("the work's own action was not the one recorded")
		}
	})
}

// Secrets open only for the associated data they were sealed for.
func TestCRY03_AccountSecretsAreBoundToTheirPlace(t *testing.T) {
	f := withKeys(t, setup(t, sqldb.SQLite), sqldb.SQLite, localKEK(t))
	ctx := context.Background()
	err := f.g.Account(ctx, f.admin, "mfa.totp.begin", func(o *gate.OpTx) error {
		s, err := o.Secrets()
		if err != nil {
			return err
		}
		sealed, kekID, err := s.Seal(ctx, []byte("totp secret"), []byte("account a, factor 1"))
		if err != nil || kekID == "" || bytes.Contains(sealed, []byte("totp secret")) {
			t.Fatalf("seal: %q %q %v", sealed, kekID, err)
		}
		if got, err := s.Open(ctx, sealed, []byte("account a, factor 1")); err != nil || string(got) != "totp secret" {
			t.Errorf("open: %q %v", got, err)
		}
		if _, err := s.Open(ctx, sealed, []byte("account b, factor 1")); err == nil {
			t.Error("a secret opened for another account")
		}
		o.Nothing()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Identify reads and cannot write.
func TestACL01_IdentifyOnlyReads(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		var email string
		err := f.g.Identify(ctx, func(q sqldb.Querier) error {
			if err := q.QueryRowContext(ctx, `SELECT email FROM accounts WHERE id = $1`, f.admin.AccountID).Scan(&email); err != nil {
				return err
			}
			_, err := q.ExecContext(ctx, `UPDATE accounts SET failed_logins = 7 WHERE id = $1`, f.admin.AccountID)
			return err
		})
		if email != "admin@clinic.example" {
			t.Errorf("read %q", email)
		}
		if err == nil {
			t.Error("a write through Identify succeeded")
		}
		// Nor does a write that returns rows, run as a query.
		err = f.g.Identify(ctx, func(q sqldb.Querier) error {
			var id string
			return q.QueryRowContext(ctx, `UPDATE accounts SET failed_logins = 7 WHERE id = $1 RETURNING id`, f.admin.AccountID).Scan(&id)
		})
		if err == nil {
			t.Error("a write through Identify, run as a query, succeeded")
		}
		if n := count(t, f.db, `SELECT failed_logins FROM accounts WHERE id = '`+f.admin.AccountID+`'`); n != 0 {
			t.Errorf("failed_logins = %d after Identify", n)
		}
	})
}

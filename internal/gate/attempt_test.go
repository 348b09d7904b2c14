package gate_test

import (
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A second event of account work commits with the work and its own event,
// and not at all when the work fails or finds nothing to do.
func TestAUD01_AlsoRecordedEventCommitsWithTheWork(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		from := gate.Actor{RemoteAddr: "192.0.2.9", UserAgent: "test"}
		lock := audit.Event{Action: "account.lock", OrgID: f.org.ID, RemoteAddr: from.RemoteAddr, Outcome: audit.Success,
			Security: true, ObjectType: "account", ObjectID: f.admin.AccountID}
		locks := func() int {
			return count(t, f.db, `SELECT count(*) FROM audit_events WHERE action = 'account.lock'`)
		}
		err := f.g.Account(ctx, from, "auth.login", func(o *gate.OpTx) error {
			o.As(f.admin.AccountID, "")
			o.Outcome(audit.Failure)
			return o.Also(ctx, lock)
		})
		if err != nil {
			t.Fatal(err)
		}
		if locks() != 1 || count(t, f.db, `SELECT count(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'failure'`) != 1 {
			t.Fatalf("after committed work: %d account.lock events, want 1 beside its auth.login", locks())
		}
		err = f.g.Account(ctx, from, "auth.login", func(o *gate.OpTx) error {
			if err := o.Also(ctx, lock); err != nil {
				return err
			}
			return errs.E(errs.Unavailable, "broke half way")
		})
		if !errs.Is(err, errs.Unavailable) || locks() != 1 {
			t.Errorf("failed work: %v, %d account.lock events; want its error and none more", err, locks())
		}
		if err := f.g.Account(ctx, from, "auth.login", func(o *gate.OpTx) error {
			o.Nothing()
			return o.Also(ctx, lock)
		}); err != nil || locks() != 1 {
			t.Errorf("work that found nothing: %v, %d account.lock events; want none more", err, locks())
		}
	})
}

// Attempts that change the same shared rows in opposite orders, as the
// rate-limit buckets and failure counts of concurrent sign-ins do, all
// commit with their events, where batches of several lanes would deadlock.
func TestAVL04_ConcurrentAttemptsOnSharedRowsDoNotDeadlock(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		for _, b := range []string{"a", "b"} {
			if _, err := f.db.ExecContext(ctx, `INSERT INTO rate_limits (bucket, tat) VALUES ($1, 0)`, b); err != nil {
				t.Fatal(err)
			}
		}
		const n = 64
		errc := make(chan error, n)
		for i := range n {
			go func() {
				order := []string{"a", "b"}
				if i%2 == 1 {
					order = []string{"b", "a"}
				}
				errc <- f.g.Attempt(ctx, gate.Actor{RemoteAddr: "192.0.2.7"}, "auth.login", func(o *gate.OpTx) error {
					for _, b := range order {
						if _, err := o.ExecContext(ctx, `UPDATE rate_limits SET tat = tat + 1 WHERE bucket = $1`, b); err != nil {
							return err
						}
						time.Sleep(2 * time.Millisecond) // others' batches run meanwhile
					}
					return nil
				})
			}()
		}
		for range n {
			if err := <-errc; err != nil {
				t.Error(err)
			}
		}
		if got := count(t, f.db, `SELECT min(tat) FROM rate_limits`); got != n {
			t.Errorf("each bucket counted %d attempts, want %d", got, n)
		}
		if got := count(t, f.db, `SELECT count(*) FROM audit_events WHERE action = 'auth.login'`); got != n {
			t.Errorf("%d attempts recorded, want %d", got, n)
		}
	})
}

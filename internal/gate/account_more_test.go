package gate_test

import (
	"context"
	"testing"

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

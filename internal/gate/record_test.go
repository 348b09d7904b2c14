package gate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// An operation records events of its own beside its event, each with its
// organization and details and the operation's actor (not one the work
// names); they commit with the work, and vanish with work that fails or
// has nothing to do.
func TestAUD01_OperationRecordsEventsOfItsOwnWithTheWork(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		record := func(o *gate.OpTx, name string) error {
			if _, err := orgs.CreateStudy(ctx, o, f.org.ID, orgs.KindStudy, name); err != nil {
				return err
			}
			return o.Record(ctx, audit.Event{Action: "test.consequence", OrgID: f.org.ID, ObjectType: "study", ObjectID: name,
				ActorAccount: f.admin.AccountID, ActorRole: "forged", Security: true, Details: map[string]string{"name": name}})
		}
		err := f.g.Operate(ctx, "test.operate", func(o *gate.OpTx) error {
			o.Org(f.org.ID)
			return record(o, "Kept")
		})
		if err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		if err := f.g.Operate(ctx, "test.operate", func(o *gate.OpTx) error {
			if err := record(o, "Failed"); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("failing work: %v", err)
		}
		if err := f.g.Operate(ctx, "test.operate", func(o *gate.OpTx) error {
			o.Nothing()
			return record(o, "Nothing")
		}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"Failed", "Nothing"} {
			if studyNamed(t, f, name) {
				t.Errorf("work %s committed", name)
			}
		}
		if !studyNamed(t, f, "Kept") {
			t.Fatal("the work did not commit")
		}
		got := map[string]audit.Event{}
		for _, ev := range events(t, f) {
			got[ev.Action] = ev
			if ev.Action == "test.consequence" && ev.ObjectID != "Kept" {
				t.Errorf("an event of work that did not commit: %+v", ev)
			}
		}
		op, own := got["test.operate"], got["test.consequence"]
		if op.Outcome != audit.Success || op.ActorRole != "operator" {
			t.Errorf("operation's event = %+v", op)
		}
		if own.Outcome != audit.Success || !own.Security || own.Details["name"] != "Kept" ||
			own.ActorAccount != "" || own.ActorRole != "operator" || own.RemoteAddr != "local" {
			t.Errorf("recorded event = %+v, want the operator's with its own details", own)
		}
	})
}

// A second event of one work commits with the work and its own event, as
// the work's actor, in each organization it names; work that fails keeps
// neither, and work that finds nothing to do records neither.
func TestAUD01_SecondEventCommitsWithTheWork(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		count := func(action string) int {
			var n int
			if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = $1 AND actor_account = $2
				AND outcome = 'success' AND body LIKE $3`,
				action, f.admin.AccountID, "%"+f.admin.RemoteAddr+"%").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		use := audit.Event{Action: "mfa.recovery.use", Security: true, ObjectType: "account", ObjectID: f.admin.AccountID}
		if err := f.g.Own(ctx, f.admin, "auth.confirm", func(o *gate.OpTx) error {
			return o.Record(ctx, use, f.org.ID, f.org.ID)
		}); err != nil {
			t.Fatal(err)
		}
		if count("mfa.recovery.use") != 2 || count("auth.confirm") != 1 {
			t.Errorf("recorded %d second events and %d own, want 2 and 1", count("mfa.recovery.use"), count("auth.confirm"))
		}
		err := f.g.Own(ctx, f.admin, "auth.confirm", func(o *gate.OpTx) error {
			if err := o.Record(ctx, use); err != nil {
				return err
			}
			return errs.E(errs.Invalid, "refused after recording")
		})
		if !errs.Is(err, errs.Invalid) {
			t.Fatalf("failed work: %v", err)
		}
		if err := f.g.Own(ctx, f.admin, "auth.confirm", func(o *gate.OpTx) error {
			o.Nothing()
			return o.Record(ctx, use)
		}); err != nil {
			t.Fatal(err)
		}
		if count("mfa.recovery.use") != 2 || count("auth.confirm") != 1 {
			t.Errorf("failed or empty work left %d second events and %d own, want 2 and 1", count("mfa.recovery.use"), count("auth.confirm"))
		}
	})
}

// A gate without a key-encryption key says so before any work asks.
func TestCRY03_SecretsAvailableOnlyWithAKey(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	if f.g.SecretsAvailable() {
		t.Error("a gate without keys offers secrets")
	}
	if !withKeys(t, f, sqldb.SQLite, localKEK(t)).g.SecretsAvailable() {
		t.Error("a gate with a key-encryption key offers no secrets")
	}
}

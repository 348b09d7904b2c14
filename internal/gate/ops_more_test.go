package gate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/custodia/custodia/internal/audit"
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

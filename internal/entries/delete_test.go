package entries_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestLIFE01_ADeletedEntryIsHiddenRestorableThenPurged deletes an entry:
// it needs a reason; it is then hidden from reads, history and exports,
// shown as deleted in the grid, locked against saves; a monitor may not
// delete and a data manager may not restore; an organization admin
// restores it within the retention period with every value and its
// history. Deleted again, and once the period has passed, it can no
// longer be restored, and the purge erases it and its history, each step
// on the trail; a second purge finds nothing.
func TestLIFE01_ADeletedEntryIsHiddenRestorableThenPurged(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		now := time.Now()
		f.svc.Now = func() time.Time { return now }
		baseline := f.at("baseline", 1, "vitals")
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, good()); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Delete(ctx, f.investigator, "clinic", baseline, " "); errs.KindOf(err) != errs.Invalid {
			t.Fatalf("a deletion without a reason: %v", err)
		}
		if err := f.svc.Delete(ctx, f.monitor, "clinic", baseline, "wrong participant"); errs.KindOf(err) != errs.Forbidden {
			t.Fatalf("a monitor deletes: %v", err)
		}
		if err := f.svc.Delete(ctx, f.investigator, "clinic", baseline, "entered for the wrong participant"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Get(ctx, f.dataManager, "clinic", baseline); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("reading a deleted entry: %v", err)
		}
		if h, err := f.svc.History(ctx, f.dataManager, "clinic", baseline); err != nil || len(h) != 0 {
			t.Errorf("the history of a deleted entry: %+v, %v", h, err)
		}
		again := good()
		again.Revision, again.Reason = 1, "retry"
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, again); errs.KindOf(err) != errs.Conflict {
			t.Errorf("a save over a deleted entry: %v", err)
		}
		grid, err := f.svc.Grid(ctx, f.investigator, "clinic", f.study.ID, f.north.ID, f.p)
		if err != nil || grid[0].Forms[0].Status != entries.Deleted {
			t.Errorf("the grid: %+v, %v", grid, err)
		}
		if b, err := export(t, f, f.admin, entries.FormatCSV); err != nil || bytes.Contains(b, []byte("71.3")) {
			t.Errorf("an export holds the deleted entry: %v\n%s", err, b)
		}
		if _, err := f.svc.Restore(ctx, f.dataManager, "clinic", baseline); errs.KindOf(err) != errs.Forbidden {
			t.Errorf("a data manager restores: %v", err)
		}
		e, err := f.svc.Restore(ctx, f.admin, "clinic", baseline)
		if err != nil || e.Values["weight"] != "71.3" || e.Revision != 1 {
			t.Fatalf("restored: %+v, %v", e, err)
		}
		if h, err := f.svc.History(ctx, f.dataManager, "clinic", baseline); err != nil || len(h) != 1 {
			t.Errorf("the history of a restored entry: %+v, %v", h, err)
		}

		// Deleted again; 30 days and a second later it is past restoring.
		if err := f.svc.Delete(ctx, f.dataManager, "clinic", baseline, "duplicate of the paper record"); err != nil {
			t.Fatal(err)
		}
		if n, err := f.svc.Purge(ctx); err != nil || n != 0 {
			t.Fatalf("a purge within the period: %d, %v", n, err)
		}
		now = now.Add(entries.DefaultRetention + time.Second)
		if _, err := f.svc.Restore(ctx, f.admin, "clinic", baseline); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("a restore past the period: %v", err)
		}
		if n, err := f.svc.Purge(ctx); err != nil || n != 1 {
			t.Fatalf("the purge: %d, %v", n, err)
		}
		for _, table := range []string{"entries", "entry_values", "entry_revisions", "entry_changes"} {
			if n := count(t, f.db, `SELECT count(*) FROM `+table); n != 0 {
				t.Errorf("%d rows left in %s", n, table)
			}
		}
		if n := count(t, f.db, `SELECT count(*) FROM audit_events WHERE action IN ('entry.delete', 'entry.restore', 'entry.purge') AND outcome = 'success'`); n != 4 {
			t.Errorf("%d deletion, restore and purge events, want 4", n)
		}
		if n, err := f.svc.Purge(ctx); err != nil || n != 0 {
			t.Errorf("a second purge: %d, %v", n, err)
		}
		// The place is free again.
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, good()); err != nil {
			t.Errorf("a new entry where the purged one was: %v", err)
		}
	})
}

package entries_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestLIFE01_ADeletedFormVersionTakesItsEntriesUntilRestoredThenPurged
// deletes a form version with data: a study admin (who sees no entries)
// and a data manager may not, nor another organization's admin, nor anyone
// without a reason; an organization admin does, and the entries saved
// under it are hidden from reads and exports and locked, and cannot be
// restored one by one; the version is retired. Only an organization admin
// restores it, with its entries. Deleted again and past the retention
// period, it can no longer be restored; the purges erase its entries and
// its deletion, down to the rows, and leave the other form's entry. A
// version without data is simply retired.
func TestLIFE01_ADeletedFormVersionTakesItsEntriesUntilRestoredThenPurged(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		now := time.Now()
		f.svc.Now = func() time.Time { return now }
		baseline := f.at("baseline", 1, "vitals")
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, good()); err != nil {
			t.Fatal(err)
		}
		note := f.at("unscheduled", 1, "other")
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", note, entries.Save{Values: map[string]string{"note": "kept apart"}}); err != nil {
			t.Fatal(err)
		}
		del := func(a gate.Actor, slug, reason string) (entries.VersionDeletion, error) {
			return f.svc.DeleteVersion(ctx, a, slug, f.study.ID, "vitals", 1, reason)
		}
		restore := func(a gate.Actor, slug string) (entries.VersionDeletion, error) {
			return f.svc.RestoreVersion(ctx, a, slug, f.study.ID, "vitals", 1)
		}

		if _, err := del(f.studyAdmin, "clinic", "wrong units"); errs.KindOf(err) != errs.Forbidden {
			t.Errorf("a study admin deletes a version with entries: %v", err)
		}
		if _, err := del(f.dataManager, "clinic", "wrong units"); !denied(err) {
			t.Errorf("a data manager deletes a version: %v", err)
		}
		for _, slug := range []string{"clinic", "other"} {
			if _, err := del(f.otherAdmin, slug, "wrong units"); !denied(err) {
				t.Errorf("another organization's admin deletes a version (as %s): %v", slug, err)
			}
		}
		if _, err := del(f.admin, "clinic", ""); errs.KindOf(err) != errs.Invalid {
			t.Errorf("a deletion without a reason: %v", err)
		}
		if out, err := del(f.admin, "clinic", "the weight was asked in pounds"); err != nil || out.Entries != 1 {
			t.Fatalf("delete: %+v, %v", out, err)
		}

		// Hidden, locked, retired.
		if _, err := f.svc.Get(ctx, f.dataManager, "clinic", baseline); !denied(err) {
			t.Errorf("an entry of the deleted version: %v", err)
		}
		again := good()
		again.Revision, again.Reason = 1, "retry"
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, again); err == nil {
			t.Errorf("a save over an entry of the deleted version: %v", err)
		}
		if _, err := f.svc.Restore(ctx, f.admin, "clinic", baseline); !denied(err) {
			t.Errorf("an entry of the deleted version restored alone: %v", err)
		}
		if b, err := export(t, f, f.admin, entries.FormatCSV); err != nil || bytes.Contains(b, []byte("71.3")) || !bytes.Contains(b, []byte("kept apart")) {
			t.Errorf("the export (%v):\n%s", err, b)
		}
		if v, err := f.design.Version(ctx, f.studyAdmin, "clinic", f.study.ID, "vitals", 1); err != nil || v.State != forms.Retired {
			t.Errorf("the deleted version: %+v, %v", v, err)
		}
		if _, err := del(f.admin, "clinic", "twice"); !denied(err) {
			t.Errorf("a second deletion: %v", err)
		}

		// Restored by an organization admin only.
		for _, a := range []gate.Actor{f.dataManager, f.studyAdmin, f.investigator} {
			if _, err := restore(a, "clinic"); errs.KindOf(err) != errs.Forbidden {
				t.Errorf("restored by %s: %v", a.AccountID, err)
			}
		}
		if _, err := restore(f.otherAdmin, "other"); !denied(err) {
			t.Errorf("another organization's admin restores: %v", err)
		}
		if out, err := restore(f.admin, "clinic"); err != nil || out.Entries != 1 {
			t.Fatalf("restore: %+v, %v", out, err)
		}
		if e, err := f.svc.Get(ctx, f.dataManager, "clinic", baseline); err != nil || e.Values["weight"] != "71.3" {
			t.Errorf("the restored entry: %+v, %v", e, err)
		}

		// Deleted again; past the period it is purged.
		if _, err := del(f.admin, "clinic", "the weight was asked in pounds"); err != nil {
			t.Fatal(err)
		}
		if n, err := f.svc.PurgeVersions(ctx); err != nil || n != 0 {
			t.Fatalf("a purge within the period: %d, %v", n, err)
		}
		now = now.Add(entries.DefaultRetention + time.Second)
		if _, err := restore(f.admin, "clinic"); !denied(err) {
			t.Errorf("a restore past the period: %v", err)
		}
		if n, err := f.svc.Purge(ctx); err != nil || n != 1 {
			t.Fatalf("the entries' purge: %d, %v", n, err)
		}
		if n, err := f.svc.PurgeVersions(ctx); err != nil || n != 1 {
			t.Fatalf("the versions' purge: %d, %v", n, err)
		}
		for q, want := range map[string]int{
			`SELECT count(*) FROM form_version_deletions`:                                       0,
			`SELECT count(*) FROM entries WHERE form_version = 1 AND deleted_at IS NOT NULL`:    0,
			`SELECT count(*) FROM entry_values WHERE entry_id NOT IN (SELECT id FROM entries)`:  0,
			`SELECT count(*) FROM entry_changes WHERE entry_id NOT IN (SELECT id FROM entries)`: 0,
			`SELECT count(*) FROM entries`:                                                      1,
		} {
			if n := count(t, f.db, q); n != want {
				t.Errorf("%s: %d, want %d", q, n, want)
			}
		}
		if n := count(t, f.db, `SELECT count(*) FROM audit_events WHERE action IN ('form.version.delete', 'form.version.restore', 'form.version.purge') AND outcome = 'success'`); n != 4 {
			t.Errorf("%d deletion, restore and purge events of the version, want 4", n)
		}
		if n, err := f.svc.PurgeVersions(ctx); err != nil || n != 0 {
			t.Errorf("a second purge: %d, %v", n, err)
		}

		// A version without data is simply retired, by its designers.
		f.publish(t, &forms.Form{Key: "unused", Title: "Unused", Fields: []forms.Field{{Name: "x", Label: "X", Type: forms.Text}}})
		if out, err := f.svc.DeleteVersion(ctx, f.studyAdmin, "clinic", f.study.ID, "unused", 1, "never used"); err != nil || out.Entries != 0 {
			t.Errorf("delete a version without data: %+v, %v", out, err)
		}
		if v, err := f.design.Version(ctx, f.studyAdmin, "clinic", f.study.ID, "unused", 1); err != nil || v.State != forms.Retired {
			t.Errorf("the version without data: %+v, %v", v, err)
		}
		if _, err := f.svc.RestoreVersion(ctx, f.admin, "clinic", f.study.ID, "unused", 1); !denied(err) {
			t.Errorf("restore a version that was only retired: %v", err)
		}
	})
}

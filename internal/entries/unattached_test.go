package entries_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A file that no save names is not kept (LIFE-01): a day after its
// upload the sweep erases it, on the trail; a file a save named stays,
// with the entry's history, however old.
func TestLIFE01_AFileNoSaveNamedIsPurgedAfterADay(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		f.publish(t, &forms.Form{Key: "scan", Title: "Scan", Fields: []forms.Field{
			{Name: "report", Label: "Report", Type: forms.File}}})
		day0 := 0
		if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
			{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"scan"}}}); err != nil {
			t.Fatal(err)
		}
		at := f.at("baseline", 1, "scan")
		upload := func(body string) string {
			t.Helper()
			up, err := f.svc.Upload(ctx, f.investigator, "clinic", at, "report.pdf", bytes.NewReader([]byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			return up.ID
		}
		kept, dropped := upload("%PDF-1.7 kept"), upload("%PDF-1.7 never named")
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", at, entries.Save{Values: map[string]string{"report": kept}}); err != nil {
			t.Fatal(err)
		}
		// A save refused after its file was sent attaches nothing.
		refused := upload("%PDF-1.7 refused")
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", at, entries.Save{Revision: 1, Values: map[string]string{"report": refused}}); errs.KindOf(err) != errs.Invalid {
			t.Fatalf("a change without a reason: %v", err)
		}

		if n, err := f.svc.PurgeUnattachedFiles(ctx); err != nil || n != 0 {
			t.Fatalf("a purge within the day: %d %v", n, err)
		}
		f.svc.Now = func() time.Time { return time.Now().Add(entries.UnattachedFor + time.Hour) }
		if n, err := f.svc.PurgeUnattachedFiles(ctx); err != nil || n != 2 {
			t.Fatalf("a purge after the day: %d %v, want 2", n, err)
		}
		f.svc.Now = nil
		for id, want := range map[string]bool{kept: true, dropped: false, refused: false} {
			_, _, err := f.svc.Download(ctx, f.investigator, "clinic", at, id)
			if got := err == nil; got != want {
				t.Errorf("file %s: kept %v, want %v (%v)", id, got, want, err)
			}
		}
		if n := count(t, f.db, `SELECT count(*) FROM audit_events WHERE action = 'file.purge'`); n != 1 {
			t.Errorf("%d file.purge events, want 1", n)
		}
		if n, err := f.svc.PurgeUnattachedFiles(ctx); err != nil || n != 0 {
			t.Errorf("a second purge: %d %v", n, err)
		}
	})
}

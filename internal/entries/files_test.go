package entries_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestWEB05_AFileFieldTakesAnUploadedFileCheckedByItsContent uploads files
// for a participant: judged by their content, not their name; sealed with
// the study key; a file field takes only a file of that participant, of a
// type and size the field accepts; reading it back is allowed where the
// entry may be read, and refused elsewhere.
func TestWEB05_AFileFieldTakesAnUploadedFileCheckedByItsContent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		scan := &forms.Form{Key: "scan", Title: "Scan", Fields: []forms.Field{
			{Name: "report", Label: "Report (PDF)", Type: forms.File, Accept: []string{"application/pdf"}, MaxBytes: 64, Required: true},
		}}
		f.publish(t, scan)
		day0 := 0
		if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
			{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals", "scan"}}}); err != nil {
			t.Fatal(err)
		}
		at := f.at("baseline", 1, "scan")
		pdf := []byte("%PDF-1.7 a small report")
		up, err := f.svc.Upload(ctx, f.investigator, "clinic", at, "report.pdf", bytes.NewReader(pdf))
		if err != nil || up.MediaType != "application/pdf" || up.Size != int64(len(pdf)) {
			t.Fatalf("upload: %+v, %v", up, err)
		}
		if n := count(t, f.db, `SELECT count(*) FROM files WHERE sealed IS NOT NULL`); n != 1 {
			t.Errorf("%d sealed files", n)
		}
		var sealed []byte
		if err := f.db.QueryRowContext(ctx, `SELECT sealed FROM files`).Scan(&sealed); err != nil || bytes.Contains(sealed, []byte("small report")) {
			t.Errorf("the file is stored in clear (%v)", err)
		}
		// An executable named .pdf is refused by its content.
		if _, err := f.svc.Upload(ctx, f.investigator, "clinic", at, "report.pdf", bytes.NewReader([]byte("MZ\x90\x00\x03\x00binary"))); errs.KindOf(err) != errs.Invalid {
			t.Errorf("an executable named .pdf: %v", err)
		}
		png, err := f.svc.Upload(ctx, f.investigator, "clinic", at, "photo.png", bytes.NewReader([]byte("\x89PNG\r\n\x1a\nrest")))
		if err != nil {
			t.Fatal(err)
		}
		big, err := f.svc.Upload(ctx, f.investigator, "clinic", at, "big.pdf", bytes.NewReader(append([]byte("%PDF-"), bytes.Repeat([]byte("x"), 100)...)))
		if err != nil {
			t.Fatal(err)
		}
		for name, id := range map[string]string{"a PNG in a PDF field": png.ID, "a PDF above max_bytes": big.ID, "a file that is not there": "aaaaaaaaaaaaaaaaaaaaaaaaaa"} {
			_, err := f.svc.Save(ctx, f.investigator, "clinic", at, entries.Save{Values: map[string]string{"report": id}, Complete: true})
			if _, ok := problemFields(t, err)["report"]; !ok {
				t.Errorf("%s: %v", name, err)
			}
		}
		e, err := f.svc.Save(ctx, f.investigator, "clinic", at, entries.Save{Values: map[string]string{"report": up.ID}, Complete: true})
		if err != nil || e.Values["report"] != up.ID {
			t.Fatalf("the report saved: %+v, %v", e, err)
		}
		got, data, err := f.svc.Download(ctx, f.monitor, "clinic", at, up.ID)
		if err != nil || !bytes.Equal(data, pdf) || got.Name != "report.pdf" {
			t.Fatalf("the monitor reads the report: %+v, %v", got, err)
		}
		if _, _, err := f.svc.Download(ctx, f.southInvestigator, "clinic", at, up.ID); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("another site's investigator reads the report: %v", err)
		}
		if _, err := f.svc.Upload(ctx, f.monitor, "clinic", at, "x.pdf", bytes.NewReader(pdf)); errs.KindOf(err) != errs.Forbidden {
			t.Errorf("a monitor uploads: %v", err)
		}
		if _, err := f.svc.Upload(ctx, f.investigator, "clinic", at, "../../etc/passwd", bytes.NewReader(pdf)); errs.KindOf(err) != errs.Invalid || strings.Contains(err.Error(), "passwd") {
			t.Errorf("a name with slashes: %v", err)
		}
	})
}

package entries_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// importFile is a CSV in the export's layout: for each participant (at
// their site), vitals at baseline with two medications, and the form other
// at the second unscheduled visit.
func importFile(people map[string]string) string {
	var b strings.Builder
	b.WriteString(strings.Join(entries.ExportColumns, ",") + "\n")
	for p, site := range people {
		for _, v := range [][2]string{{"weight", "70.5"}, {"smoker", "1"}, {"packs", "2"}, {"status", secret}} {
			fmt.Fprintf(&b, "%s,%s,baseline,1,vitals,1,%s,0,%s\n", p, site, v[0], v[1])
		}
		fmt.Fprintf(&b, "%s,%s,baseline,1,vitals,1,drug,1,metformin\n", p, site)
		fmt.Fprintf(&b, "%s,%s,baseline,1,vitals,1,dose,1,500\n", p, site)
		fmt.Fprintf(&b, "%s,%s,baseline,1,vitals,1,drug,2,\"aspirin, low dose\"\n", p, site)
		fmt.Fprintf(&b, "%s,%s,unscheduled,2,other,1,note,0,seen\n", p, site)
	}
	return b.String()
}

// TestWEB05_ABulkImportIsAllOrNothing imports new entries from a file in
// the export's layout: all stored, sealed where the form says so, in one
// audited event naming the file's SHA-256; then files with one bad line
// among good ones (a value out of its rules, an unknown participant, a
// participant under another site, an entry's lines apart, an entry that
// exists) are refused naming each bad line, with nothing stored.
func TestWEB05_ABulkImportIsAllOrNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		var south string
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.south.ID)
			south = p.Pseudonym
			return err
		}); err != nil {
			t.Fatal(err)
		}
		file := importFile(map[string]string{f.p: f.north.ID, south: f.south.ID})
		got, err := f.svc.Import(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatCSV, strings.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(file))
		if got.Entries != 4 || got.Values != 16 || got.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("imported %+v", got)
		}
		e, err := f.svc.Get(ctx, f.dataManager, "clinic", f.at("baseline", 1, "vitals"))
		if err != nil || e.Values["weight"] != "70.5" || e.Values["double"] != "141" || len(e.Rows["meds"]) != 2 ||
			e.Rows["meds"][1]["drug"] != "aspirin, low dose" || e.Status != entries.Complete || len(e.Sealed) != 1 {
			t.Fatalf("an imported entry reads %+v, %v", e, err)
		}
		if n := count(t, f.db, `SELECT count(*) FROM entry_values WHERE field = 'status' AND value IS NULL AND sealed IS NOT NULL`); n != 2 {
			t.Errorf("%d sealed values of the sensitive field, want 2", n)
		}
		var body string
		if err := f.db.QueryRowContext(ctx, `SELECT body FROM audit_events WHERE action = 'entry.import'`).Scan(&body); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, hex.EncodeToString(sum[:])) || !strings.Contains(body, `"values":"16"`) {
			t.Errorf("the import's event: %s", body)
		}

		// Each of these files has one bad line among good ones.
		var fresh []string
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			for range 3 {
				p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
				if err != nil {
					return err
				}
				fresh = append(fresh, p.Pseudonym)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		header := strings.Join(entries.ExportColumns, ",") + "\n"
		good := func(p string) string { return strings.TrimPrefix(importFile(map[string]string{p: f.north.ID}), header) }
		for name, c := range map[string]struct {
			file  string
			line  int
			field string
		}{
			"a value out of its rules": {header + good(fresh[0]) + strings.Replace(good(fresh[1]), ",weight,0,70.5", ",weight,0,heavy", 1) + good(fresh[2]), 10, "weight"},
			"an unknown participant":   {header + good(fresh[0]) + strings.ReplaceAll(good(fresh[1]), fresh[1], "aaaaaaaaaaaaaaaaaaaaaaaaaa"), 10, ""},
			"another site":             {header + good(fresh[0]) + strings.ReplaceAll(good(fresh[1]), f.north.ID, f.south.ID), 10, ""},
			"an entry's lines apart":   {header + good(fresh[0]) + good(fresh[1]) + fresh[0] + "," + f.north.ID + ",baseline,1,vitals,1,pulse,0,60\n", 18, "pulse"},
			"an entry that exists":     {header + good(fresh[0]) + good(f.p), 10, ""},
		} {
			t.Run(name, func(t *testing.T) {
				before := count(t, f.db, `SELECT count(*) FROM entries`)
				_, err := f.svc.Import(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatCSV, strings.NewReader(c.file))
				var p *forms.Problems
				if errs.KindOf(err) != errs.Invalid || !errors.As(err, &p) {
					t.Fatalf("got %v", err)
				}
				found := false
				for _, fe := range p.Fields {
					found = found || fe.Row == c.line && fe.Field == c.field
				}
				if !found {
					t.Errorf("no problem at line %d (%s): %+v", c.line, c.field, p.Fields)
				}
				if after := count(t, f.db, `SELECT count(*) FROM entries`); after != before {
					t.Errorf("%d entries stored by a refused import", after-before)
				}
			})
		}
		// JSON lines are read too; a header that is not the export's is
		// refused; a monitor imports nothing.
		jl := fmt.Sprintf(`{"participant":%q,"site":%q,"visit":"unscheduled","repeat":3,"form":"other","field":"note","value":"by json"}`+"\n", fresh[0], f.north.ID)
		if got, err := f.svc.Import(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatJSONL, strings.NewReader(jl)); err != nil || got.Entries != 1 {
			t.Errorf("JSON lines: %+v, %v", got, err)
		}
		if _, err := f.svc.Import(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatCSV, strings.NewReader("a,b\n")); errs.KindOf(err) != errs.Invalid {
			t.Errorf("a file without the export's header: %v", err)
		}
		if _, err := f.svc.Import(ctx, f.monitor, "clinic", f.study.ID, entries.FormatCSV, strings.NewReader(file)); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("a monitor's import: %v", err)
		}
	})
}

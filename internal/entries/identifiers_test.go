package entries_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// holds reports whether any column of any row of any table of db holds
// needle, as text or bytes: a value kept in clear anywhere.
func holds(t *testing.T, db *sqldb.DB, d sqldb.Dialect, needle string) []string {
	t.Helper()
	ctx := context.Background()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if d == sqldb.Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	var found []string
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+table) // names from the catalogue
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				var b []byte
				switch x := v.(type) {
				case []byte:
					b = x
				case string:
					b = []byte(x)
				default:
					b = []byte(fmt.Sprint(x))
				}
				if bytes.Contains(b, []byte(needle)) {
					found = append(found, table+"."+cols[i])
				}
			}
		}
		rows.Close()
	}
	return found
}

// Identifier fields (REDCap's "Identifier?") are kept with the
// participant's identity, not among the entries (CRY-05, LIFE-03): a
// value saved through a form is in neither database in clear, absent from
// the entry and from every export, shown on re-identification (a
// sensitive one only under a decrypt grant naming it), kept when a save
// does not send it, and unreadable once the participant is erased.
func TestCRY05_IdentifierFieldsAreKeptWithTheIdentity(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		identity := sqldbtest.Open(t, d, sqldb.Identity)
		g := gate.New(gate.Config{Clinical: f.db, Keys: &keys.Keyring{DB: f.db, KEK: f.kek},
			Identity: identity, IdentityKeys: &keys.Keyring{DB: identity, KEK: f.kek}})
		svc := &entries.Service{Gate: g}
		people := &participants.Service{Gate: g}
		f.publish(t, &forms.Form{Key: "contact", Title: "Contact", Fields: []forms.Field{
			{Name: "mrn", Label: "Hospital number", Type: forms.Text, Identifier: true, Required: true},
			{Name: "address", Label: "Address", Type: forms.LongText, Identifier: true, Sensitive: true},
			{Name: "note", Label: "Note", Type: forms.Text},
		}})
		day0 := 0
		if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
			{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals", "contact"}},
		}); err != nil {
			t.Fatal(err)
		}
		at := f.at("baseline", 1, "contact")
		const mrn, address = "MRN-4711-0815", "1 Quiet Lane, Springfield"

		// A value that breaks the field's rules is refused as any is.
		if _, err := svc.Save(ctx, f.investigator, "clinic", at, entries.Save{Values: map[string]string{"mrn": "two\nlines"}}); errs.KindOf(err) != errs.Invalid {
			t.Fatalf("an identifier of two lines: %v", err)
		}
		e, err := svc.Save(ctx, f.investigator, "clinic", at, entries.Save{Complete: true,
			Values: map[string]string{"mrn": mrn, "address": address, "note": "seen"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := e.Values["mrn"]; ok || e.Values["note"] != "seen" {
			t.Errorf("the entry holds %v: the identifiers belong to the identity", e.Values)
		}
		for _, db := range []*sqldb.DB{f.db, identity} {
			for _, v := range []string{mrn, address} {
				if where := holds(t, db, d, v); len(where) > 0 {
					t.Errorf("%q in clear in %v", v, where)
				}
			}
		}
		admin := f.admin
		admin.ConfirmedAt = time.Now()
		for _, format := range []string{entries.FormatCSV, entries.FormatJSONL, entries.FormatODM, entries.FormatREDCap} {
			var out bytes.Buffer
			if err := svc.Export(ctx, admin, "clinic", f.study.ID, format, func() (io.Writer, error) { return &out, nil }); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(out.Bytes(), []byte("MRN-")) || !bytes.Contains(out.Bytes(), []byte("seen")) {
				t.Errorf("the %s export:\n%s", format, out.Bytes())
			}
		}

		// Re-identification shows them; the sensitive one needs a grant.
		investigator := f.investigator
		investigator.ConfirmedAt = time.Now()
		rv, err := people.Reveal(ctx, investigator, "clinic", f.study.ID, f.north.ID, f.p)
		if err != nil {
			t.Fatal(err)
		}
		if rv.Identifiers["contact.mrn"] != mrn || len(rv.IdentifiersWithheld) != 1 || rv.IdentifiersWithheld[0] != "contact.address" {
			t.Fatalf("revealed %+v", rv)
		}
		if _, err := people.Grant(ctx, admin, "clinic", f.study.ID, participants.GrantRequest{
			AccountID: f.investigatorID, Fields: []string{"contact.address"}, Reason: "home visit"}); err != nil {
			t.Fatal(err)
		}
		if rv, err = people.Reveal(ctx, investigator, "clinic", f.study.ID, f.north.ID, f.p); err != nil || rv.Identifiers["contact.address"] != address {
			t.Fatalf("under a grant: %+v %v", rv, err)
		}

		// A save that does not send them keeps them, required or not.
		if _, err := svc.Save(ctx, f.investigator, "clinic", at, entries.Save{Revision: 1, Complete: true, Reason: "typo",
			Values: map[string]string{"note": "seen twice"}}); err != nil {
			t.Fatalf("a save without the identifiers: %v", err)
		}
		if rv, err = people.Reveal(ctx, investigator, "clinic", f.study.ID, f.north.ID, f.p); err != nil || rv.Identifiers["contact.mrn"] != mrn {
			t.Fatalf("after a save without them: %+v %v", rv, err)
		}

		// Erased, the participant's identifiers are gone with their key,
		// and none is recorded again.
		if _, err := people.Erase(ctx, admin, "clinic", f.study.ID, f.north.ID, f.p); err != nil {
			t.Fatal(err)
		}
		var left int
		if err := identity.QueryRowContext(ctx, `SELECT count(*) FROM identities WHERE participant_id = $1`, f.p).Scan(&left); err != nil || left != 0 {
			t.Errorf("identity rows after erasure: %d %v", left, err)
		}
		_, err = svc.Save(ctx, f.investigator, "clinic", at, entries.Save{Revision: 2, Reason: "again", Values: map[string]string{"mrn": mrn}})
		if errs.KindOf(err) != errs.Conflict && !errors.Is(err, keys.ErrKeyDestroyed) {
			t.Errorf("an identifier for an erased participant: %v, want refused", err)
		}
	})
}

package entries_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type fixture struct {
	db                                     *sqldb.DB
	kek                                    keys.KEK // of the clinical keyring
	svc                                    *entries.Service
	design                                 *formadmin.Service
	org                                    orgs.Organization
	study                                  orgs.Study
	north, south                           orgs.Site
	admin, investigator, southInvestigator gate.Actor
	dataManager, monitor, studyAdmin       gate.Actor
	otherAdmin                             gate.Actor
	investigatorID                         string
	p                                      string // a participant at north
}

const secret = "HIV-1 positive since 2019"

func vitals() *forms.Form {
	min, max := 20.0, 300.0
	return &forms.Form{Key: "vitals", Title: "Vital signs",
		Groups: []forms.Group{{Name: "meds", Label: "Medications", Max: 3}},
		Fields: []forms.Field{
			{Name: "weight", Label: "Weight", Type: forms.Decimal, Unit: "kg", Decimals: 1, Min: &min, Max: &max, Required: true},
			{Name: "smoker", Label: "Smoker", Type: forms.YesNo},
			{Name: "packs", Label: "Packs a day", Type: forms.Integer, ShowIf: "[smoker] = '1'"},
			{Name: "double", Label: "Twice the weight", Type: forms.Calculated, Calc: "[weight] * 2", Decimals: 1},
			{Name: "status", Label: "Status", Type: forms.Text, Sensitive: true},
			{Name: "drug", Label: "Drug", Type: forms.Text, Group: "meds", Required: true},
			{Name: "dose", Label: "Dose", Type: forms.Integer, Group: "meds"},
		}}
}

func setup(t testing.TB, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	kek, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := gate.New(gate.Config{Clinical: db, Keys: &keys.Keyring{DB: db, KEK: kek}})
	f := &fixture{db: db, kek: kek, svc: &entries.Service{Gate: g}, design: &formadmin.Service{Gate: g}}
	n := 0
	enrol := func(tx *sql.Tx, org orgs.Organization, role authz.Role, studyID, siteID string) gate.Actor {
		n++
		acc, _, err := accounts.Enrol(ctx, tx, string(role)+"-"+string(rune('a'+n))+"@clinic.example", "",
			authz.Assignment{OrgID: org.ID, Role: role, StudyID: studyID, SiteID: siteID})
		if err != nil {
			t.Fatal(err)
		}
		return gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID, RemoteAddr: "192.0.2.1"}
	}
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if f.org, err = orgs.CreateOrganization(ctx, tx, "Clinic", "clinic"); err != nil {
			return err
		}
		if f.study, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindStudy, "Trial"); err != nil {
			return err
		}
		if f.north, err = orgs.CreateSite(ctx, tx, f.org.ID, f.study.ID, "North"); err != nil {
			return err
		}
		if f.south, err = orgs.CreateSite(ctx, tx, f.org.ID, f.study.ID, "South"); err != nil {
			return err
		}
		other, err := orgs.CreateOrganization(ctx, tx, "Other", "other")
		if err != nil {
			return err
		}
		f.admin = enrol(tx, f.org, authz.OrgAdmin, "", "")
		f.studyAdmin = enrol(tx, f.org, authz.StudyAdmin, f.study.ID, "")
		f.investigator = enrol(tx, f.org, authz.SiteInvestigator, "", f.north.ID)
		f.southInvestigator = enrol(tx, f.org, authz.SiteInvestigator, "", f.south.ID)
		f.dataManager = enrol(tx, f.org, authz.DataManager, f.study.ID, "")
		f.monitor = enrol(tx, f.org, authz.Monitor, f.study.ID, "")
		f.otherAdmin = enrol(tx, other, authz.OrgAdmin, "", "")
		f.investigatorID = f.investigator.AccountID
		p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
		f.p = p.Pseudonym
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.publish(t, vitals())
	other := &forms.Form{Key: "other", Title: "Other", Fields: []forms.Field{{Name: "note", Label: "Note", Type: forms.Text}}}
	f.publish(t, other)
	day0 := 0
	if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
		{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals"}},
		{Key: "unscheduled", Label: "Unscheduled", Repeating: true, Forms: []string{"vitals", "other"}},
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// publish creates form in the study and publishes its version 1.
func (f *fixture) publish(t testing.TB, form *forms.Form) {
	t.Helper()
	ctx := context.Background()
	v, err := f.design.Create(ctx, f.studyAdmin, "clinic", f.study.ID, form)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.design.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, form.Key, v.Digest); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) at(visit string, repeat int, form string) entries.Place {
	return entries.Place{StudyID: f.study.ID, SiteID: f.north.ID, Participant: f.p, Visit: visit, Repeat: repeat, Form: form}
}

func good() entries.Save {
	return entries.Save{Values: map[string]string{"weight": "71.3", "smoker": "1", "packs": "2", "status": secret},
		Rows: map[string][]map[string]string{"meds": {{"drug": "metformin", "dose": "500"}, {"drug": "aspirin"}}}, Complete: true}
}

func problemFields(t *testing.T, err error) map[string]int {
	t.Helper()
	var p *forms.Problems
	if errs.KindOf(err) != errs.Invalid || !errors.As(err, &p) {
		t.Fatalf("want the problems of an entry, got %v", err)
	}
	out := map[string]int{}
	for _, fe := range p.Fields {
		out[fe.Field] = fe.Row
	}
	return out
}

func count(t *testing.T, db *sqldb.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWEB05_AnEntryIsValidatedWholeVersionedAndNeverOverwritten records a
// form about a participant: a save with problems is refused whole, naming
// each field and row, with nothing stored; a good one is revision 1, its
// calculated field computed and its sensitive value sealed; a change needs
// a reason and keeps what it changed; a save from an older revision is a
// conflict; the history shows every save.
func TestWEB05_AnEntryIsValidatedWholeVersionedAndNeverOverwritten(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		baseline := f.at("baseline", 1, "vitals")

		bad := entries.Save{Values: map[string]string{"weight": "heavy", "smoker": "0", "packs": "3", "double": "1", "colour": "red"},
			Rows: map[string][]map[string]string{"meds": {{"dose": "5"}}}, Complete: true}
		named := problemFields(t, mustFail(f.svc.Save(ctx, f.investigator, "clinic", baseline, bad)))
		for _, want := range []string{"double", "colour"} {
			if _, ok := named[want]; !ok {
				t.Errorf("the refusal does not name %s: %v", want, named)
			}
		}
		if n := count(t, f.db, `SELECT count(*) FROM entries`); n != 0 {
			t.Fatalf("%d entries after a refused save", n)
		}
		// Unknown and computed fields are refused before values are
		// checked; then each value's problem is named, rows included.
		bad.Values = map[string]string{"weight": "heavy", "smoker": "0", "packs": "3"}
		named = problemFields(t, mustFail(f.svc.Save(ctx, f.investigator, "clinic", baseline, bad)))
		if _, ok := named["weight"]; !ok {
			t.Errorf("the refusal does not name weight: %v", named)
		}
		if _, ok := named["packs"]; !ok {
			t.Errorf("the refusal does not name packs (asked only of smokers): %v", named)
		}
		if row, ok := named["drug"]; !ok || row != 1 {
			t.Errorf("the refusal does not name drug in row 1: %v", named)
		}

		e, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, good())
		if err != nil {
			t.Fatal(err)
		}
		if e.Revision != 1 || e.Status != entries.Complete || e.FormVersion != 1 || e.Values["weight"] != "71.3" ||
			e.Values["double"] != "142.6" || len(e.Rows["meds"]) != 2 || e.Rows["meds"][0]["drug"] != "metformin" {
			t.Fatalf("saved %+v", e)
		}
		// The sensitive value is sealed: not in the answer without a
		// decrypt grant, and not in the database in clear.
		if _, ok := e.Values["status"]; ok || len(e.Sealed) != 1 || e.Sealed[0] != "status" {
			t.Errorf("the sensitive field came back as %+v", e)
		}
		for _, table := range []string{"entry_values", "entry_changes"} {
			rows, err := f.db.QueryContext(ctx, `SELECT coalesce(value, ''), sealed FROM `+table+` WHERE field = 'status'`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var v string
				var sealed []byte
				if err := rows.Scan(&v, &sealed); err != nil {
					t.Fatal(err)
				}
				if v != "" || len(sealed) == 0 || bytes.Contains(sealed, []byte("HIV")) {
					t.Errorf("%s keeps the sensitive value as %q / %x", table, v, sealed)
				}
			}
			rows.Close()
		}

		// A change needs a reason.
		change := good()
		change.Revision = 1
		change.Values["weight"] = "72.0"
		change.Rows["meds"] = change.Rows["meds"][:1]
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, change); errs.KindOf(err) != errs.Invalid {
			t.Fatalf("a change without a reason: %v", err)
		}
		change.Reason = "transcription error: the scale read 72.0"
		e2, err := f.svc.Save(ctx, f.dataManager, "clinic", baseline, change)
		if err != nil {
			t.Fatal(err)
		}
		if e2.Revision != 2 || e2.Values["weight"] != "72" || len(e2.Rows["meds"]) != 1 {
			t.Fatalf("changed: %+v", e2)
		}
		// Someone who started from revision 1 is told, and overwrites
		// nothing.
		stale := good()
		stale.Revision = 1
		stale.Values["weight"] = "90"
		stale.Reason = "correction"
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, stale); errs.KindOf(err) != errs.Conflict {
			t.Fatalf("a save from an older revision: %v, want a conflict", err)
		}
		if got, err := f.svc.Get(ctx, f.monitor, "clinic", baseline); err != nil || got.Values["weight"] != "72" || got.Revision != 2 {
			t.Fatalf("the monitor reads %+v, %v", got, err)
		}
		hist, err := f.svc.History(ctx, f.monitor, "clinic", baseline)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 2 || hist[0].Reason != "" || hist[1].Reason != change.Reason || hist[1].SavedBy != f.dataManager.AccountID {
			t.Fatalf("history %+v", hist)
		}
		changed := map[string]entries.Change{}
		for _, c := range hist[1].Changes {
			changed[c.Field+"#"+string(rune('0'+c.Row))] = c
		}
		if len(hist[1].Changes) != 3 || changed["weight#0"].Value != "72" || changed["double#0"].Value != "144" ||
			!changed["drug#2"].Removed {
			t.Errorf("revision 2 changed %+v", hist[1].Changes)
		}
		for _, c := range hist[0].Changes {
			if c.Field == "status" && (!c.Sealed || c.Value != "") {
				t.Errorf("the history shows the sensitive value without a grant: %+v", c)
			}
		}
		// Nothing changed: no new revision.
		same := change
		same.Revision = 2
		if e3, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, same); err != nil || e3.Revision != 2 {
			t.Errorf("a save that changes nothing: %+v, %v", e3, err)
		}
		// The history cannot be rewritten below the application.
		for _, q := range []string{`UPDATE entry_changes SET value = 'x'`, `DELETE FROM entry_revisions`, `UPDATE entry_revisions SET reason = 'x'`} {
			if _, err := f.db.ExecContext(ctx, q); err == nil {
				t.Errorf("%s: the database let it through", q)
			}
		}
		// The grid shows the visits and each form's status.
		grid, err := f.svc.Grid(ctx, f.investigator, "clinic", f.study.ID, f.north.ID, f.p)
		if err != nil {
			t.Fatal(err)
		}
		if len(grid) != 2 || grid[0].Forms[0].Status != entries.Complete || grid[0].Forms[0].Revision != 2 ||
			grid[1].Visit != "unscheduled" || len(grid[1].Forms) != 2 || grid[1].Forms[1].Status != entries.NotStarted {
			t.Fatalf("grid %+v", grid)
		}
	})
}

func mustFail[T any](_ T, err error) error { return err }

// TestCRY06_SensitiveEntryValuesOpenOnlyUnderADecryptGrant: a reader with
// a live grant naming the form's field opens it, in the entry and its
// history; a grant that names another field, has expired or covers
// another site does not.
func TestCRY06_SensitiveEntryValuesOpenOnlyUnderADecryptGrant(t *testing.T) {
	ctx := context.Background()
	f := setup(t, sqldb.SQLite)
	baseline := f.at("baseline", 1, "vitals")
	if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, good()); err != nil {
		t.Fatal(err)
	}
	grant := func(fields, site string, expires any) {
		t.Helper()
		var s any
		if site != "" {
			s = site
		}
		if _, err := f.db.ExecContext(ctx, `INSERT INTO decrypt_grants (id, org_id, study_id, site_id, account_id, fields, reason, granted_by, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'review', $7, $8, $9)`, ids.New(), f.org.ID, f.study.ID, s, f.investigatorID,
			fields, f.admin.AccountID, sqldb.Now(), expires); err != nil {
			t.Fatal(err)
		}
	}
	sealed := func() bool {
		t.Helper()
		e, err := f.svc.Get(ctx, f.investigator, "clinic", baseline)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := e.Values["status"]; ok && v != secret {
			t.Fatalf("status opened as %q", v)
		}
		return len(e.Sealed) == 1
	}
	grant("vitals.weight,national_id", "", nil)
	grant("vitals.status", f.south.ID, nil)
	grant("vitals.status", "", sqldb.Now()-1)
	if !sealed() {
		t.Fatal("the value opened under a grant of another field, site or time")
	}
	grant("vitals.status", f.north.ID, nil)
	if sealed() {
		t.Fatal("the value stays sealed under a live grant naming it")
	}
	hist, err := f.svc.History(ctx, f.investigator, "clinic", baseline)
	if err != nil {
		t.Fatal(err)
	}
	opened := false
	for _, c := range hist[0].Changes {
		opened = opened || c.Field == "status" && c.Value == secret && !c.Sealed
	}
	if !opened {
		t.Errorf("the history does not open the value under the grant: %+v", hist[0].Changes)
	}
}

// TestACL01_EntriesRefuseWhoMayNot attacks the entries: a monitor saving
// (forbidden: they see the entry), an investigator of another site, a
// study admin and another organization's admin (not found), a participant
// named under another site, a visit that does not collect the form, a
// second time of a visit that does not repeat: nothing is written.
func TestACL01_EntriesRefuseWhoMayNot(t *testing.T) {
	ctx := context.Background()
	f := setup(t, sqldb.SQLite)
	baseline := f.at("baseline", 1, "vitals")
	if _, err := f.svc.Save(ctx, f.monitor, "clinic", baseline, good()); errs.KindOf(err) != errs.Forbidden {
		t.Errorf("a monitor saves: %v, want forbidden", err)
	}
	for name, a := range map[string]gate.Actor{"another site's investigator": f.southInvestigator, "a study admin": f.studyAdmin} {
		if _, err := f.svc.Save(ctx, a, "clinic", baseline, good()); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("%s saves: %v, want denied", name, err)
		}
		if _, err := f.svc.Get(ctx, a, "clinic", baseline); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("%s reads: %v, want denied", name, err)
		}
	}
	if _, err := f.svc.Get(ctx, f.otherAdmin, "other", baseline); !errors.Is(err, gate.ErrDenied) {
		t.Errorf("another organization's admin reads: %v", err)
	}
	elsewhere := baseline
	elsewhere.SiteID = f.south.ID
	if _, err := f.svc.Save(ctx, f.admin, "clinic", elsewhere, good()); !errors.Is(err, gate.ErrDenied) {
		t.Errorf("the participant under another site: %v, want not found", err)
	}
	if _, err := f.svc.Save(ctx, f.admin, "clinic", f.at("baseline", 1, "other"), entries.Save{Values: map[string]string{"note": "x"}}); errs.KindOf(err) != errs.Invalid {
		t.Errorf("a form the visit does not collect: %v, want invalid", err)
	}
	if _, err := f.svc.Save(ctx, f.admin, "clinic", f.at("baseline", 2, "vitals"), good()); !errors.Is(err, gate.ErrDenied) {
		t.Errorf("a second baseline: %v, want not found", err)
	}
	if n := count(t, f.db, `SELECT count(*) FROM entries`); n != 0 {
		t.Fatalf("%d entries after the refusals", n)
	}
	// A repeating visit is held again; the schedule keeps a visit that
	// holds entries.
	if _, err := f.svc.Save(ctx, f.admin, "clinic", f.at("unscheduled", 2, "other"), entries.Save{Values: map[string]string{"note": "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, nil); errs.KindOf(err) != errs.Conflict {
		t.Errorf("removing a visit that holds entries: %v, want a conflict", err)
	}
}

// TestACL04_HiddenFieldsAreAbsentAndKeptWhenSaving hides a field from
// site investigators: what they read lacks it, naming it in a save is
// refused as an unknown field, and their save keeps its stored value.
func TestACL04_HiddenFieldsAreAbsentAndKeptWhenSaving(t *testing.T) {
	ctx := context.Background()
	f := setup(t, sqldb.SQLite)
	baseline := f.at("baseline", 1, "vitals")
	if _, err := f.svc.Save(ctx, f.dataManager, "clinic", baseline, good()); err != nil {
		t.Fatal(err)
	}
	if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		return authz.SetFieldRules(ctx, tx, f.org.ID, f.study.ID, authz.FieldRules{"vitals.smoker": {authz.SiteInvestigator}})
	}); err != nil {
		t.Fatal(err)
	}
	e, err := f.svc.Get(ctx, f.investigator, "clinic", baseline)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Values["smoker"]; ok || e.Values["packs"] != "2" {
		t.Fatalf("the investigator reads %+v", e.Values)
	}
	change := good()
	change.Revision, change.Reason = 1, "recount"
	if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, change); errs.KindOf(err) != errs.Invalid {
		t.Fatalf("a save naming the hidden field: %v", err)
	}
	delete(change.Values, "smoker")
	change.Values["packs"] = "1"
	if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, change); err != nil {
		t.Fatal(err)
	}
	got, err := f.svc.Get(ctx, f.dataManager, "clinic", baseline)
	if err != nil || got.Values["smoker"] != "1" || got.Values["packs"] != "1" {
		t.Fatalf("after the investigator's save: %+v, %v", got.Values, err)
	}
}

// TestWEB05_ABranchReadsAnotherFormOfTheVisit: a form's condition on a
// field of another form of the same visit ([vitals.smoker]) is judged on
// what that form holds there.
func TestWEB05_ABranchReadsAnotherFormOfTheVisit(t *testing.T) {
	ctx := context.Background()
	f := setup(t, sqldb.SQLite)
	cond := &forms.Form{Key: "habits", Title: "Habits", Fields: []forms.Field{
		{Name: "since", Label: "Smoking since (year)", Type: forms.Integer, Required: true, ShowIf: "[vitals.smoker] = '1'"},
		{Name: "note", Label: "Note", Type: forms.Text},
	}}
	f.publish(t, cond)
	day0 := 0
	if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
		{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals", "habits"}},
		{Key: "unscheduled", Label: "Unscheduled", Repeating: true, Forms: []string{"vitals", "other"}},
	}); err != nil {
		t.Fatal(err)
	}
	habits := f.at("baseline", 1, "habits")
	// No vitals yet: the condition does not hold, so since takes no value.
	if _, err := f.svc.Save(ctx, f.investigator, "clinic", habits, entries.Save{Values: map[string]string{"since": "1990"}, Complete: true}); errs.KindOf(err) != errs.Invalid {
		t.Fatalf("since without the vitals saying smoker: %v", err)
	}
	if _, err := f.svc.Save(ctx, f.investigator, "clinic", f.at("baseline", 1, "vitals"), good()); err != nil {
		t.Fatal(err)
	}
	named := problemFields(t, mustFail(f.svc.Save(ctx, f.investigator, "clinic", habits, entries.Save{Values: map[string]string{"note": "x"}, Complete: true})))
	if _, ok := named["since"]; !ok {
		t.Errorf("a smoker's habits without since: %v", named)
	}
	if _, err := f.svc.Save(ctx, f.investigator, "clinic", habits, entries.Save{Values: map[string]string{"since": "1990"}, Complete: true}); err != nil {
		t.Errorf("a smoker's habits with since: %v", err)
	}
}

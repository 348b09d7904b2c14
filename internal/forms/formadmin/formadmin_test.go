package formadmin_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type fixture struct {
	db                                       *sqldb.DB
	svc                                      *formadmin.Service
	org, other                               orgs.Organization
	study, study2, otherStudy                orgs.Study
	admin, studyAdmin, investigator, manager gate.Actor
	otherAdmin                               gate.Actor
}

func setup(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	kek, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db}
	f.svc = &formadmin.Service{Gate: gate.New(gate.Config{Clinical: db, Keys: &keys.Keyring{DB: db, KEK: kek}})}
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
		if f.study2, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindStudy, "Second"); err != nil {
			return err
		}
		north, err := orgs.CreateSite(ctx, tx, f.org.ID, f.study.ID, "North")
		if err != nil {
			return err
		}
		if f.other, err = orgs.CreateOrganization(ctx, tx, "Other", "other"); err != nil {
			return err
		}
		if f.otherStudy, err = orgs.CreateStudy(ctx, tx, f.other.ID, orgs.KindStudy, "Trial"); err != nil {
			return err
		}
		f.admin = enrol(tx, f.org, authz.OrgAdmin, "", "")
		f.studyAdmin = enrol(tx, f.org, authz.StudyAdmin, f.study.ID, "")
		f.investigator = enrol(tx, f.org, authz.SiteInvestigator, "", north.ID)
		f.manager = enrol(tx, f.org, authz.OrgManager, "", "")
		f.otherAdmin = enrol(tx, f.other, authz.OrgAdmin, "", "")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func baseline() *forms.Form {
	min, max := 20.0, 300.0
	return &forms.Form{Key: "baseline", Title: "Baseline", Fields: []forms.Field{
		{Name: "weight", Label: "Weight", Type: forms.Decimal, Unit: "kg", Decimals: 1, Min: &min, Max: &max, Required: true},
		{Name: "smoker", Label: "Do you smoke?", Type: forms.YesNo},
		{Name: "packs", Label: "Packs a day", Type: forms.Integer, ShowIf: "[smoker] = '1'"},
	}}
}

// TestWEB05_FormsAreDesignedVersionedAndPublished walks a form's life
// through the gate: a study admin creates it (draft of version 1), saves
// the draft again, publishes it, starts version 2 while version 1 stays as
// it was, and retires version 1. A site investigator reads the published
// form; every step is one audited event.
func TestWEB05_FormsAreDesignedVersionedAndPublished(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v1, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, baseline())
		if err != nil {
			t.Fatal(err)
		}
		if v1.Version != 1 || v1.State != forms.Draft || len(v1.Digest) != 64 {
			t.Fatalf("created %+v", v1)
		}
		edited := baseline()
		edited.Title = "Baseline visit"
		v1b, err := f.svc.SaveDraft(ctx, f.studyAdmin, "clinic", f.study.ID, "baseline", v1.Digest, edited)
		if err != nil {
			t.Fatal(err)
		}
		if v1b.Version != 1 || v1b.Digest == v1.Digest {
			t.Fatalf("the draft saved again: %+v", v1b)
		}
		if _, err := f.svc.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "baseline", v1b.Digest); err != nil {
			t.Fatal(err)
		}
		// The investigator, at a site of the study, reads it.
		got, err := f.svc.Version(ctx, f.investigator, "clinic", f.study.ID, "baseline", 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 1 || got.State != forms.Published || got.Form.Title != "Baseline visit" || len(got.Form.Fields) != 3 {
			t.Fatalf("the investigator read %+v", got)
		}
		// Version 2: a field added, one removed. Version 1 is unchanged.
		next := baseline()
		next.Fields = append(next.Fields[:1], forms.Field{Name: "height", Label: "Height", Type: forms.Integer, Unit: "cm"})
		v2, err := f.svc.SaveDraft(ctx, f.studyAdmin, "clinic", f.study.ID, "baseline", "", next)
		if err != nil {
			t.Fatal(err)
		}
		if v2.Version != 2 || v2.State != forms.Draft {
			t.Fatalf("version 2: %+v", v2)
		}
		old, err := f.svc.Version(ctx, f.admin, "clinic", f.study.ID, "baseline", 1)
		if err != nil || old.Digest != v1b.Digest || len(old.Form.Fields) != 3 {
			t.Fatalf("version 1 after version 2 was begun: %+v, %v", old, err)
		}
		// Until version 2 is published, the form read is version 1.
		if cur, err := f.svc.Version(ctx, f.investigator, "clinic", f.study.ID, "baseline", 0); err != nil || cur.Version != 1 {
			t.Fatalf("the current version while 2 is a draft: %+v, %v", cur, err)
		}
		if _, err := f.svc.Publish(ctx, f.admin, "clinic", f.study.ID, "baseline", v2.Digest); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Retire(ctx, f.studyAdmin, "clinic", f.study.ID, "baseline", 1); err != nil {
			t.Fatal(err)
		}
		form, err := f.svc.Form(ctx, f.investigator, "clinic", f.study.ID, "baseline")
		if err != nil {
			t.Fatal(err)
		}
		if form.Summary.Published != 2 || form.Summary.Draft != 0 || len(form.Versions) != 2 ||
			form.Versions[0].State != forms.Published || form.Versions[1].State != forms.Retired {
			t.Fatalf("the form at the end: %+v", form)
		}
		list, err := f.svc.List(ctx, f.investigator, "clinic", f.study.ID)
		if err != nil || len(list) != 1 || list[0].Key != "baseline" || list[0].Published != 2 {
			t.Fatalf("the list: %+v, %v", list, err)
		}
		// Every step is on the trail, with the form and its version.
		var n int
		if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events
			WHERE action IN ('form.create', 'form.draft', 'form.publish', 'form.retire') AND outcome = 'success'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 6 {
			t.Errorf("%d form design events, want 6", n)
		}
	})
}

// TestWEB05_AFormVersionIsFoundInItsOwnStudyOnly reads versions of forms
// with the same key in two studies, each its own, and a version and a form
// that do not exist, both not found.
func TestWEB05_AFormVersionIsFoundInItsOwnStudyOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		second := baseline()
		second.Title = "Baseline of the second study"
		for _, c := range []struct {
			studyID string
			form    *forms.Form
		}{{f.study.ID, baseline()}, {f.study2.ID, second}} {
			v, err := f.svc.Create(ctx, f.admin, "clinic", c.studyID, c.form)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Publish(ctx, f.admin, "clinic", c.studyID, "baseline", v.Digest); err != nil {
				t.Fatal(err)
			}
		}
		for studyID, title := range map[string]string{f.study.ID: baseline().Title, f.study2.ID: second.Title} {
			for _, version := range []int{0, 1} {
				got, err := f.svc.Version(ctx, f.admin, "clinic", studyID, "baseline", version)
				if err != nil || got.Form.Title != title {
					t.Errorf("version %d in study %s: %q, %v; want %q", version, studyID, got.Form.Title, err, title)
				}
			}
		}
		for _, c := range []struct {
			key     string
			version int
		}{{"baseline", 2}, {"nosuch", 0}, {"nosuch", 1}} {
			if _, err := f.svc.Version(ctx, f.admin, "clinic", f.study.ID, c.key, c.version); !errs.Is(err, errs.NotFound) {
				t.Errorf("version %d of %s: %v, want not found", c.version, c.key, err)
			}
		}
	})
}

// TestACL01_FormsRefuseWhoMayNotDesignOrRead attacks the forms: an
// investigator designing, an organization manager reading, another
// organization's admin reading and designing, a study admin reaching
// another study, all refused as not found, and nothing written.
func TestACL01_FormsRefuseWhoMayNotDesignOrRead(t *testing.T) {
	ctx := context.Background()
	f := setup(t, sqldb.SQLite)
	if _, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, baseline()); err != nil {
		t.Fatal(err)
	}
	denied := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, gate.ErrDenied) {
			t.Errorf("%s: %v, want denied", what, err)
		}
	}
	_, err := f.svc.Create(ctx, f.investigator, "clinic", f.study.ID, &forms.Form{Key: "x", Title: "X", Fields: baseline().Fields})
	denied("an investigator creates a form", err)
	_, err = f.svc.List(ctx, f.manager, "clinic", f.study.ID)
	denied("an organization manager lists forms", err)
	_, err = f.svc.Form(ctx, f.otherAdmin, "clinic", f.study.ID, "baseline")
	denied("another organization's admin reads a form", err)
	_, err = f.svc.List(ctx, f.otherAdmin, "other", f.study.ID)
	denied("another organization's admin names this study under their own", err)
	_, err = f.svc.Create(ctx, f.studyAdmin, "clinic", f.study2.ID, baseline())
	denied("a study admin creates a form in another study", err)
	_, err = f.svc.Version(ctx, f.investigator, "clinic", f.study2.ID, "baseline", 0)
	denied("an investigator reads another study's form", err)
	var n int
	if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM forms`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d forms after the refusals (%v), want 1", n, err)
	}
}

// TestWEB05_AFormDraftIsNeverOverwrittenSilently: two designers start
// from the same draft; the second save is a conflict, as is publishing a
// draft by an older digest, and a definition with problems is refused
// whole, naming each field, with nothing stored.
func TestWEB05_AFormDraftIsNeverOverwrittenSilently(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, baseline())
		if err != nil {
			t.Fatal(err)
		}
		first, second := baseline(), baseline()
		first.Title, second.Title = "First designer", "Second designer"
		saved, err := f.svc.SaveDraft(ctx, f.studyAdmin, "clinic", f.study.ID, "baseline", v.Digest, first)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SaveDraft(ctx, f.admin, "clinic", f.study.ID, "baseline", v.Digest, second); errs.KindOf(err) != errs.Conflict {
			t.Fatalf("the second designer's save: %v, want a conflict", err)
		}
		if _, err := f.svc.Publish(ctx, f.admin, "clinic", f.study.ID, "baseline", v.Digest); errs.KindOf(err) != errs.Conflict {
			t.Fatalf("publishing by an older digest: %v, want a conflict", err)
		}
		got, err := f.svc.Version(ctx, f.admin, "clinic", f.study.ID, "baseline", 1)
		if err != nil || got.Form.Title != "First designer" || got.Digest != saved.Digest || got.State != forms.Draft {
			t.Fatalf("the draft after the conflicts: %+v, %v", got, err)
		}
		// A definition with three problems: each is named.
		bad := baseline()
		bad.Fields[0].Type = "colour"
		bad.Fields[2].ShowIf = "[nowhere] = 1"
		bad.Fields = append(bad.Fields, forms.Field{Name: "smoker", Label: "Again", Type: forms.Text})
		_, err = f.svc.SaveDraft(ctx, f.admin, "clinic", f.study.ID, "baseline", saved.Digest, bad)
		var p *forms.Problems
		if errs.KindOf(err) != errs.Invalid || !errors.As(err, &p) || len(p.Fields) != 3 {
			t.Fatalf("a definition with three problems: %v", err)
		}
		named := map[string]bool{}
		for _, fe := range p.Fields {
			named[fe.Field] = true
		}
		if !named["weight"] || !named["packs"] || !named["smoker"] {
			t.Errorf("problems named %v, want weight, packs and smoker", p.Fields)
		}
		// A form's key does not change with its draft.
		renamed := baseline()
		renamed.Key = "renamed"
		if _, err := f.svc.SaveDraft(ctx, f.admin, "clinic", f.study.ID, "baseline", saved.Digest, renamed); errs.KindOf(err) != errs.Invalid {
			t.Errorf("a draft under another key: %v, want invalid", err)
		}
		if again, err := f.svc.Version(ctx, f.admin, "clinic", f.study.ID, "baseline", 1); err != nil || again.Digest != saved.Digest {
			t.Errorf("the draft after the refusals: %+v, %v", again, err)
		}
		// A second form under a key the study has already.
		if _, err := f.svc.Create(ctx, f.admin, "clinic", f.study.ID, baseline()); errs.KindOf(err) != errs.Conflict {
			t.Errorf("a second form baseline: %v, want a conflict", err)
		}
	})
}

// TestWEB05_APublishedFormVersionNeverChanges attacks a published version
// from below the application: SQL that rewrites its definition, turns it
// back into a draft or deletes it is refused by the database, and a
// draft whose definition was altered behind the digest does not read.
func TestWEB05_APublishedFormVersionNeverChanges(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, baseline())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "baseline", v.Digest); err != nil {
			t.Fatal(err)
		}
		def := `{"key":"baseline","title":"Rewritten","fields":[{"name":"weight","label":"W","type":"text"}]}`
		for _, q := range []string{
			`UPDATE form_versions SET definition = '` + def + `'`,
			`UPDATE form_versions SET title = 'Rewritten'`,
			`UPDATE form_versions SET state = 'draft', published_at = NULL, published_by = NULL`,
			`UPDATE form_versions SET state = 'published', retired_at = NULL WHERE state = 'retired'`,
			`DELETE FROM form_versions`,
		} {
			if _, err := f.db.ExecContext(ctx, q); err == nil && !strings.Contains(q, "WHERE state = 'retired'") {
				t.Errorf("%s: the database let it through", q)
			}
		}
		if err := f.svc.Retire(ctx, f.admin, "clinic", f.study.ID, "baseline", 1); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.ExecContext(ctx, `UPDATE form_versions SET state = 'published', retired_at = NULL`); err == nil {
			t.Error("a retired version was published again by SQL")
		}
		got, err := f.svc.Version(ctx, f.admin, "clinic", f.study.ID, "baseline", 1)
		if err != nil || got.Form.Title != "Baseline" || got.State != forms.Retired {
			t.Fatalf("version 1 after the attacks: %+v, %v", got, err)
		}
		// A draft altered behind its digest does not read.
		next := baseline()
		next.Title = "Next"
		if _, err := f.svc.SaveDraft(ctx, f.admin, "clinic", f.study.ID, "baseline", "", next); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"key": "baseline", "title": "Altered", "fields": []map[string]string{{"name": "a", "label": "A", "type": "text"}}})
		if _, err := f.db.ExecContext(ctx, `UPDATE form_versions SET definition = $1 WHERE state = 'draft'`, string(b)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Version(ctx, f.admin, "clinic", f.study.ID, "baseline", 2); errs.KindOf(err) != errs.Internal {
			t.Errorf("a draft altered behind its digest: %v, want it refused", err)
		}
	})
}

// TestWEB05_AStudysScheduleOfVisits sets a schedule of visits that collect
// the study's forms, reads it back as set, replaces it (a visit keeps its
// identity by its key, one left out goes), and refuses, naming each visit
// and changing nothing, a schedule with problems: a visit twice, a window
// without a day, a form the study does not have (another study's
// included).
func TestWEB05_AStudysScheduleOfVisits(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		for _, key := range []string{"baseline", "followup"} {
			fm := baseline()
			fm.Key = key
			if _, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, fm); err != nil {
				t.Fatal(err)
			}
		}
		other := baseline()
		other.Key = "elsewhere"
		if _, err := f.svc.Create(ctx, f.admin, "clinic", f.study2.ID, other); err != nil {
			t.Fatal(err)
		}
		day0, day28 := 0, 28
		want := []forms.Visit{
			{Key: "screening", Label: "Screening", Day: &day0, Forms: []string{"baseline"}},
			{Key: "week4", Label: "Week 4", Day: &day28, WindowBefore: 3, WindowAfter: 3, Forms: []string{"followup", "baseline"}},
			{Key: "unscheduled", Label: "Unscheduled", Repeating: true, Forms: []string{"followup"}},
		}
		got, err := f.svc.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, want)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
			t.Fatalf("the schedule set:\n%s\nwant\n%s", g, w)
		}
		read, err := f.svc.Schedule(ctx, f.investigator, "clinic", f.study.ID)
		if err != nil || mustJSON(t, read) != mustJSON(t, want) {
			t.Fatalf("the investigator reads %s, %v", mustJSON(t, read), err)
		}
		visitID := func(key string) string {
			var id string
			if err := f.db.QueryRowContext(ctx, `SELECT id FROM visits WHERE visit_key = $1`, key).Scan(&id); err != nil {
				t.Fatal(err)
			}
			return id
		}
		week4 := visitID("week4")
		// Replaced: week 4 first, screening gone.
		next := []forms.Visit{want[1], want[2]}
		next[0].Label = "Week 4 (±3 days)"
		if _, err := f.svc.SetSchedule(ctx, f.admin, "clinic", f.study.ID, next); err != nil {
			t.Fatal(err)
		}
		if id := visitID("week4"); id != week4 {
			t.Errorf("week4 is a new visit (%s, was %s)", id, week4)
		}
		read, err = f.svc.Schedule(ctx, f.admin, "clinic", f.study.ID)
		if err != nil || len(read) != 2 || read[0].Key != "week4" || read[0].Label != "Week 4 (±3 days)" {
			t.Fatalf("the schedule replaced: %s, %v", mustJSON(t, read), err)
		}
		before := mustJSON(t, read)
		bad := []forms.Visit{
			{Key: "week4", Label: "Week 4", Forms: []string{"baseline"}},
			{Key: "week4", Label: "Again", Forms: []string{}},
			{Key: "late", Label: "Late", WindowAfter: 5, Forms: []string{}},
		}
		_, err = f.svc.SetSchedule(ctx, f.admin, "clinic", f.study.ID, bad)
		var p *forms.Problems
		if errs.KindOf(err) != errs.Invalid || !errors.As(err, &p) || len(p.Fields) != 2 {
			t.Fatalf("a schedule with two problems: %v", err)
		}
		_, err = f.svc.SetSchedule(ctx, f.admin, "clinic", f.study.ID, []forms.Visit{
			{Key: "v1", Label: "V1", Forms: []string{"elsewhere", "nowhere"}}})
		if !errors.As(err, &p) || len(p.Fields) != 2 || p.Fields[0].Field != "v1" {
			t.Fatalf("forms the study does not have: %v", err)
		}
		if read, err := f.svc.Schedule(ctx, f.admin, "clinic", f.study.ID); err != nil || mustJSON(t, read) != before {
			t.Errorf("the schedule after the refusals: %s, %v", mustJSON(t, read), err)
		}
		// Those who may not design it may not set it.
		if _, err := f.svc.SetSchedule(ctx, f.investigator, "clinic", f.study.ID, nil); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("an investigator sets the schedule: %v", err)
		}
		if _, err := f.svc.Schedule(ctx, f.otherAdmin, "clinic", f.study.ID); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("another organization's admin reads the schedule: %v", err)
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

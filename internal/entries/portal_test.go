package entries_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestACL05_AParticipantFillsTheirOwnSurveyFormsOnly: a participant with
// an account finds their record, reads and fills the survey forms of
// their own visits, with the same validation; the study team's forms,
// another participant's record, deleting and exporting are not theirs.
func TestACL05_AParticipantFillsTheirOwnSurveyFormsOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		diary := &forms.Form{Key: "diary", Title: "Symptom diary", Survey: true, Fields: []forms.Field{
			{Name: "pain", Label: "Pain today (0 to 10)", Type: forms.Integer, Required: true, Min: ptr(0), Max: ptr(10)},
		}}
		f.publish(t, diary)
		day0 := 0
		if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
			{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals", "diary"}},
			{Key: "unscheduled", Label: "Unscheduled", Repeating: true, Forms: []string{"vitals", "other"}},
		}); err != nil {
			t.Fatal(err)
		}
		var me gate.Actor
		var other string
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			acc, _, err := accounts.Enrol(ctx, tx, "patient@example.org", "", authz.Assignment{OrgID: f.org.ID, Role: authz.Participant, SiteID: f.north.ID})
			if err != nil {
				return err
			}
			if _, err := authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: f.p, AccountID: acc.ID, Kind: authz.RelationSelf, CreatedBy: f.admin.AccountID}); err != nil {
				return err
			}
			me = gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID, RemoteAddr: "192.0.2.9"}
			p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
			other = p.Pseudonym
			return err
		}); err != nil {
			t.Fatal(err)
		}
		recs, err := f.svc.Records(ctx, me)
		if err != nil || len(recs) != 1 || recs[0].Participant != f.p || recs[0].Org != "clinic" || recs[0].SiteID != f.north.ID {
			t.Fatalf("records: %+v, %v", recs, err)
		}
		mine := f.at("baseline", 1, "diary")
		if _, err := f.svc.Save(ctx, me, "clinic", mine, entries.Save{Values: map[string]string{"pain": "11"}, Complete: true}); errs.KindOf(err) != errs.Invalid {
			t.Errorf("a pain of 11: %v", err)
		}
		e, err := f.svc.Save(ctx, me, "clinic", mine, entries.Save{Values: map[string]string{"pain": "4"}, Complete: true})
		if err != nil || e.Values["pain"] != "4" {
			t.Fatalf("the participant's diary: %+v, %v", e, err)
		}
		if got, err := f.svc.Get(ctx, f.investigator, "clinic", mine); err != nil || got.Values["pain"] != "4" {
			t.Errorf("the investigator reads the diary: %+v, %v", got, err)
		}
		grid, err := f.svc.Grid(ctx, me, "clinic", f.study.ID, f.north.ID, f.p)
		if err != nil || len(grid) != 2 || len(grid[0].Forms) != 1 || grid[0].Forms[0].Form != "diary" || len(grid[1].Forms) != 0 {
			t.Errorf("the participant's grid: %+v, %v", grid, err)
		}
		denied := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, gate.ErrDenied) {
				t.Errorf("%s: %v, want not found", what, err)
			}
		}
		_, err = f.svc.Save(ctx, me, "clinic", f.at("baseline", 1, "vitals"), good())
		denied("the participant fills the study team's form", err)
		_, err = f.svc.Get(ctx, me, "clinic", f.at("baseline", 1, "vitals"))
		denied("the participant reads the study team's form", err)
		_, err = f.svc.History(ctx, me, "clinic", f.at("baseline", 1, "vitals"))
		denied("the participant reads the study team's form's history", err)
		theirs := mine
		theirs.Participant = other
		_, err = f.svc.Save(ctx, me, "clinic", theirs, entries.Save{Values: map[string]string{"pain": "1"}, Complete: true})
		denied("the participant fills another participant's diary", err)
		_, err = f.svc.Grid(ctx, me, "clinic", f.study.ID, f.north.ID, other)
		denied("the participant reads another participant's grid", err)
		if err := f.svc.Delete(ctx, me, "clinic", mine, "changed my mind"); errs.KindOf(err) != errs.Forbidden {
			t.Errorf("the participant deletes their diary: %v", err)
		}
		if _, err := export(t, f, me, entries.FormatCSV); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("the participant exports the study: %v", err)
		}
	})
}

func ptr(x float64) *float64 { return &x }

package entries_test

import (
	"context"
	"errors"
	"testing"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// Visits per arm (WEB-05): a visit held in some arms only is not on the
// grid of a participant in another arm, or in none, and takes no entry
// there; a participant is assigned to an arm the schedule names, by
// whoever may enrol at their site, and an arm change that would strand
// their entries is refused, naming the visit.
func TestWEB05_VisitsAreHeldPerArm(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		day0, day28 := 0, 28
		if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
			{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals"}},
			{Key: "drug_a", Label: "Drug A, week 4", Day: &day28, Forms: []string{"other"}, Arms: []string{"a"}},
			{Key: "drug_b", Label: "Drug B, week 4", Day: &day28, Forms: []string{"other"}, Arms: []string{"b"}},
		}); err != nil {
			t.Fatal(err)
		}
		visits := func() []string {
			t.Helper()
			grid, err := f.svc.Grid(ctx, f.investigator, "clinic", f.study.ID, f.north.ID, f.p)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, v := range grid {
				out = append(out, v.Visit)
			}
			return out
		}
		note := entries.Save{Values: map[string]string{"note": "seen"}}
		if got := visits(); len(got) != 1 || got[0] != "baseline" {
			t.Errorf("a participant without an arm has the visits %v, want baseline only", got)
		}
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", f.at("drug_a", 1, "other"), note); errs.KindOf(err) != errs.Invalid {
			t.Errorf("an entry at another arm's visit: %v, want refused", err)
		}

		// Assigning: an arm the schedule names, by who may enrol there.
		if _, err := f.svc.AssignArm(ctx, f.investigator, "clinic", f.study.ID, f.north.ID, f.p, "c"); errs.KindOf(err) != errs.Invalid {
			t.Errorf("an arm the schedule does not name: %v", err)
		}
		if _, err := f.svc.AssignArm(ctx, f.monitor, "clinic", f.study.ID, f.north.ID, f.p, "a"); errs.KindOf(err) != errs.Forbidden {
			t.Errorf("a monitor assigning an arm: %v, want forbidden", err)
		}
		for _, who := range []struct {
			name string
			err  error
		}{
			{"another site's investigator", mustFail(f.svc.AssignArm(ctx, f.southInvestigator, "clinic", f.study.ID, f.north.ID, f.p, "a"))},
			{"another organization's admin", mustFail(f.svc.AssignArm(ctx, f.otherAdmin, "clinic", f.study.ID, f.north.ID, f.p, "a"))},
			{"a study admin", mustFail(f.svc.AssignArm(ctx, f.studyAdmin, "clinic", f.study.ID, f.north.ID, f.p, "a"))},
		} {
			if errs.KindOf(who.err) != errs.NotFound {
				t.Errorf("%s assigning an arm: %v, want not found", who.name, who.err)
			}
		}
		p, err := f.svc.AssignArm(ctx, f.investigator, "clinic", f.study.ID, f.north.ID, f.p, "a")
		if err != nil || p.Arm != "a" {
			t.Fatalf("assign arm a: %+v %v", p, err)
		}
		if got := visits(); len(got) != 2 || got[1] != "drug_a" {
			t.Errorf("a participant in arm a has the visits %v, want baseline and drug_a", got)
		}
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", f.at("drug_b", 1, "other"), note); errs.KindOf(err) != errs.Invalid {
			t.Errorf("an entry at arm b's visit for a participant in arm a: %v", err)
		}
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", f.at("drug_a", 1, "other"), note); err != nil {
			t.Fatalf("an entry at the arm's visit: %v", err)
		}

		// The entry holds the participant to their arm.
		for _, arm := range []string{"b", ""} {
			_, err := f.svc.AssignArm(ctx, f.dataManager, "clinic", f.study.ID, f.north.ID, f.p, arm)
			var pr *forms.Problems
			if errs.KindOf(err) != errs.Conflict || !errors.As(err, &pr) || len(pr.Fields) != 1 || pr.Fields[0].Field != "drug_a" {
				t.Errorf("moving to arm %q with an entry at drug_a: %v, want a conflict naming drug_a", arm, err)
			}
		}
		if got := visits(); len(got) != 2 || got[1] != "drug_a" {
			t.Errorf("after the refused changes the visits are %v", got)
		}
	})
}

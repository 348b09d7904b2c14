package entries_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A participant with an account is told when a survey form of theirs is
// due (WEB-07): at a visit whose day has come, not started, once; not for
// the study team's forms, not for a visit still ahead, not for a form
// begun.
func TestWEB07_ASurveyFormDueIsNoticedOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		f.publish(t, &forms.Form{Key: "diary", Title: "Sleep diary", Survey: true, Fields: []forms.Field{
			{Name: "hours", Label: "Hours slept", Type: forms.Integer}}})
		day0, day28, day56 := 0, 28, 56
		if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
			{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals", "diary"}},
			{Key: "week4", Label: "Week 4", Day: &day28, Forms: []string{"diary"}},
			{Key: "week8", Label: "Week 8", Day: &day56, Forms: []string{"diary"}},
			{Key: "unscheduled", Label: "Unscheduled", Forms: []string{"diary"}},
		}); err != nil {
			t.Fatal(err)
		}
		var account string
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			acc, err := accounts.Create(ctx, tx, "self@clinic.example", "Self")
			if err != nil {
				return err
			}
			account = acc.ID
			_, err = authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: f.p, AccountID: acc.ID, Kind: authz.RelationSelf})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		queued := func() int {
			return count(t, f.db, `SELECT count(*) FROM notifications WHERE account_id = $1 AND kind = 'form'`, account)
		}
		if n, err := f.svc.QueueDueForms(ctx); err != nil || n != 1 || queued() != 1 {
			t.Fatalf("on the day of enrolment: %d %v, %d queued; want the baseline diary", n, err, queued())
		}
		if n, err := f.svc.QueueDueForms(ctx); err != nil || queued() != 1 {
			t.Fatalf("again: %d %v, %d queued; want it once", n, err, queued())
		}
		// Eight weeks on: week 4's diary was begun, week 8's was not.
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", f.at("week4", 1, "diary"), entries.Save{Values: map[string]string{"hours": "7"}}); err != nil {
			t.Fatal(err)
		}
		f.svc.Now = func() time.Time { return time.Now().AddDate(0, 0, 57) }
		if _, err := f.svc.QueueDueForms(ctx); err != nil || queued() != 2 {
			t.Errorf("at week 8: %v, %d queued; want week 8's diary only, once", err, queued())
		}
	})
}

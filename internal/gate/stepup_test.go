package gate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// createStudyWithStepUp is work that changes data and asks for a fresh
// confirmation, as role changes, exports and key operations do.
func createStudyWithStepUp(ctx context.Context, f fixture, a gate.Actor, name string, swallow bool) error {
	return f.g.Do(ctx, a, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error {
		if err := t.Authorize(authz.StudyCreate, authz.Resource{OrgID: f.org.ID}); err != nil {
			return err
		}
		// Writes before the check must be rolled back too.
		if _, err := orgs.CreateStudy(ctx, t, f.org.ID, orgs.KindStudy, name); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil && !swallow {
			return err
		}
		return nil
	})
}

func studyNamed(t *testing.T, f fixture, name string) bool {
	t.Helper()
	studies, err := orgs.Studies(context.Background(), f.db, f.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range studies {
		if s.Name == name {
			return true
		}
	}
	return false
}

func TestACL09_RecentConfirmationLetsTheWorkThrough(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		a := f.admin
		a.ConfirmedAt = time.Now().Add(-gate.StepUpWindow + 30*time.Second)
		if err := createStudyWithStepUp(context.Background(), f, a, "Confirmed", false); err != nil {
			t.Fatal(err)
		}
		if !studyNamed(t, f, "Confirmed") {
			t.Error("the confirmed work was not stored")
		}
		evs := events(t, f)
		if len(evs) != 1 || evs[0].Outcome != audit.Success || evs[0].Details["step_up_age_s"] == "" {
			t.Errorf("events = %+v, want one success naming the confirmation's age", evs)
		}
	})
}

func TestACL09_StaleOrMissingConfirmationIsRefusedAndNothingChanges(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		cases := map[string]time.Time{
			"never confirmed (access token)": {},
			"confirmed six minutes ago":      time.Now().Add(-gate.StepUpWindow - time.Minute),
			"confirmation in the future":     time.Now().Add(time.Hour),
		}
		for name, at := range cases {
			a := f.admin
			a.ConfirmedAt = at
			for _, swallow := range []bool{false, true} {
				err := createStudyWithStepUp(ctx, f, a, "Unconfirmed", swallow)
				if !errors.Is(err, gate.ErrStepUpRequired) || !errs.Is(err, errs.StepUpRequired) {
					t.Errorf("%s (work swallows the refusal: %v): err = %v, want ErrStepUpRequired", name, swallow, err)
				}
			}
		}
		if studyNamed(t, f, "Unconfirmed") {
			t.Error("work refused for want of a confirmation was stored")
		}
		var denied int
		for _, ev := range events(t, f) {
			if ev.Outcome != audit.Denied || ev.Details["reason"] != "step-up required" || ev.ActorAccount != f.admin.AccountID {
				t.Errorf("event = %+v, want a denied step-up", ev)
			}
			denied++
		}
		if denied != 2*len(cases) {
			t.Errorf("denied events = %d, want %d", denied, 2*len(cases))
		}
	})
}

func TestACL09_StepUpIsAskedOnlyAfterAuthorization(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	inv := f.investigator
	inv.ConfirmedAt = time.Time{}
	// The investigator may not create studies: the answer is the plain
	// not found, not a request to confirm, which would tell that the
	// organization and the action exist for them.
	err := createStudyWithStepUp(ctx, f, inv, "Sneaky", false)
	if !errs.Is(err, errs.NotFound) || errors.Is(err, gate.ErrStepUpRequired) {
		t.Errorf("err = %v, want not found", err)
	}
	// Work that asks before authorizing is a programming error and fails
	// closed.
	a := f.admin
	a.ConfirmedAt = time.Now()
	err = f.g.Do(ctx, a, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error { return t.RequireStepUp() })
	if err == nil || errs.KindOf(err) != errs.Internal {
		t.Errorf("RequireStepUp before Authorize: %v, want an internal error", err)
	}
}

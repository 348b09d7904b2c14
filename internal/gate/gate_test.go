package gate_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/orgs/orgadmin"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type fixture struct {
	db                  *sqldb.DB
	identity            *sqldb.DB
	g                   *gate.Gate
	org                 orgs.Organization
	admin, investigator gate.Actor
	study               orgs.Study
	north, south        orgs.Site
}

func setup(t testing.TB, d sqldb.Dialect) fixture {
	t.Helper()
	ctx := context.Background()
	f := fixture{db: sqldbtest.Open(t, d, sqldb.Clinical)}
	f.g = gate.New(gate.Config{Clinical: f.db})
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if f.org, err = orgs.CreateOrganization(ctx, tx, "Clinic", ""); err != nil {
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
		a, _, err := accounts.Enrol(ctx, tx, "admin@clinic.example", "", authz.Assignment{OrgID: f.org.ID, Role: authz.OrgAdmin})
		if err != nil {
			return err
		}
		i, _, err := accounts.Enrol(ctx, tx, "inv@clinic.example", "", authz.Assignment{OrgID: f.org.ID, Role: authz.SiteInvestigator, SiteID: f.north.ID})
		f.admin = gate.Actor{AccountID: a.ID, SessionID: "s1", RemoteAddr: "192.0.2.1"}
		f.investigator = gate.Actor{AccountID: i.ID, SessionID: "s2", RemoteAddr: "192.0.2.2"}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func events(t *testing.T, f fixture) []audit.Event {
	t.Helper()
	evs, _, err := audit.Search(context.Background(), f.db, audit.Filter{OrgID: f.org.ID, Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestAUD01_ChangeAndItsEventCommitTogether(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		svc := &orgadmin.Service{Gate: f.g}
		st, err := svc.CreateStudy(context.Background(), f.admin, f.org.Slug, orgs.KindRegistry, "Registry")
		if err != nil {
			t.Fatal(err)
		}
		evs := events(t, f)
		if len(evs) != 1 {
			t.Fatalf("events = %+v, want one", evs)
		}
		ev := evs[0]
		if ev.Action != "study.create" || ev.Outcome != audit.Success || ev.ObjectID != st.ID ||
			ev.ActorAccount != f.admin.AccountID || ev.ActorSession != "s1" || ev.RemoteAddr != "192.0.2.1" || ev.ActorRole != "org-admin" {
			t.Errorf("event = %+v", ev)
		}
	})
}

func TestAUD01_ReadsAreAudited(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	svc := &orgadmin.Service{Gate: f.g}
	if _, err := svc.Site(context.Background(), f.investigator, f.org.Slug, f.study.ID, f.north.ID); err != nil {
		t.Fatal(err)
	}
	evs := events(t, f)
	if len(evs) != 1 || evs[0].Action != "site.read" || evs[0].SiteID != f.north.ID || evs[0].ObjectID != f.north.ID {
		t.Errorf("events = %+v", evs)
	}
}

func TestAUD01_DeniedAttemptIsRecordedAndLooksLikeMissing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		svc := &orgadmin.Service{Gate: f.g}
		_, errOther := svc.Site(ctx, f.investigator, f.org.Slug, f.study.ID, f.south.ID)
		_, errMissing := svc.Site(ctx, f.investigator, f.org.Slug, f.study.ID, "aaaaaaaaaaaaaaaaaaaaaaaaaa")
		if !errs.Is(errOther, errs.NotFound) || errOther.Error() != errMissing.Error() {
			t.Errorf("other site: %v; missing site: %v; want the same not found", errOther, errMissing)
		}
		_, err := svc.CreateSite(ctx, f.investigator, f.org.Slug, f.study.ID, "Sneaky")
		if err == nil {
			t.Fatal("investigator created a site")
		}
		// Authorization comes before the lookup: the investigator's missing
		// site is refused like the other site, while an administrator, who
		// may read every site, fails to find it.
		if _, err := svc.Site(ctx, f.admin, f.org.Slug, f.study.ID, "aaaaaaaaaaaaaaaaaaaaaaaaaa"); !errs.Is(err, errs.NotFound) || err.Error() != errMissing.Error() {
			t.Errorf("admin, missing site: %v; want the same not found", err)
		}
		var denied, failed int
		for _, ev := range events(t, f) {
			switch ev.Outcome {
			case audit.Denied:
				denied++
				if ev.Details["reason"] == "" {
					t.Errorf("denied event without reason: %+v", ev)
				}
			case audit.Failure:
				failed++
			}
		}
		if denied != 3 || failed != 1 {
			t.Errorf("denied %d, failed %d; want 3 and 1", denied, failed)
		}
		sites, _ := orgs.Sites(ctx, f.db, f.org.ID, f.study.ID)
		if len(sites) != 2 {
			t.Errorf("sites = %d, want 2", len(sites))
		}
	})
}

func TestAUD01_FailedAuditInsertChangesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		// Inject a failure: the event table refuses the next insert.
		var inject []string
		switch d {
		case sqldb.SQLite:
			inject = []string{`CREATE TRIGGER inject_failure BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected'); END`}
		case sqldb.Postgres:
			inject = []string{
				`CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$`,
				`CREATE TRIGGER inject_failure BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION inject_failure()`,
			}
		}
		for _, s := range inject {
			if _, err := f.db.ExecContext(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		svc := &orgadmin.Service{Gate: f.g}
		_, err := svc.CreateStudy(ctx, f.admin, f.org.Slug, orgs.KindStudy, "Unaudited")
		if !errs.Is(err, errs.Unavailable) {
			t.Errorf("write whose audit failed: %v, want Unavailable", err)
		}
		if _, err := svc.Site(ctx, f.admin, f.org.Slug, f.study.ID, f.north.ID); err == nil {
			t.Error("a read that could not be audited was served")
		}
		studies, _ := orgs.Studies(ctx, f.db, f.org.ID)
		for _, s := range studies {
			if s.Name == "Unaudited" {
				t.Error("the study was stored although its event was not")
			}
		}
	})
}

func TestWorkThatNeverAuthorizesIsRefused(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error {
		_, err := orgs.CreateStudy(ctx, t, f.org.ID, orgs.KindStudy, "Forgot to ask")
		return err
	})
	if err == nil {
		t.Fatal("work without Authorize committed")
	}
	studies, _ := orgs.Studies(ctx, f.db, f.org.ID)
	if len(studies) != 1 {
		t.Errorf("studies = %d, want 1 (nothing written)", len(studies))
	}
}

func TestMemberOfAnotherOrganizationIsDeniedAndRecorded(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	var other orgs.Organization
	f.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		other, err = orgs.CreateOrganization(ctx, tx, "Other", "")
		return err
	})
	svc := &orgadmin.Service{Gate: f.g}
	if _, err := svc.ListStudies(ctx, f.admin, other.Slug); !errs.Is(err, errs.NotFound) {
		t.Errorf("listing another organization's studies: %v, want NotFound", err)
	}
	evs, _, _ := audit.Search(ctx, f.db, audit.Filter{OrgID: other.ID})
	if len(evs) != 1 || evs[0].Outcome != audit.Denied || evs[0].ActorAccount != f.admin.AccountID {
		t.Errorf("other organization's trail = %+v, want the denied attempt", evs)
	}
}

// A probe with an oversized or made-up id answers like any missing object
// and is on the trail, its id recorded as invalid rather than copied.
func TestACL08_MalformedIDIsNotFoundAndRecorded(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		svc := &orgadmin.Service{Gate: f.g}
		long := strings.Repeat("a", 600)
		_, errLong := svc.Study(ctx, f.admin, f.org.Slug, long)
		_, errMissing := svc.Study(ctx, f.admin, f.org.Slug, "aaaaaaaaaaaaaaaaaaaaaaaaaa")
		if !errs.Is(errLong, errs.NotFound) || errLong.Error() != errMissing.Error() {
			t.Fatalf("oversized id: %v; missing id: %v; want the same not found", errLong, errMissing)
		}
		evs := events(t, f)
		if len(evs) != 2 {
			t.Fatalf("events = %+v, want two", evs)
		}
		var invalid int
		for _, ev := range evs {
			if ev.ObjectID == "invalid" {
				invalid++
			}
			if strings.Contains(ev.ObjectID, long[:100]) {
				t.Error("the oversized id was copied into the event")
			}
		}
		if invalid != 1 {
			t.Errorf("events recording an invalid id = %d, want 1", invalid)
		}
	})
}

// The gate keeps the organizations it found, which are never changed nor
// removed, but not one it did not find: an organization made after a
// request named it in vain (on another node, say) is found at the next.
func TestOrganizationMadeAfterAMissIsFound(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		svc := &orgadmin.Service{Gate: f.g}
		if _, err := svc.ListStudies(ctx, f.admin, "later"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("listing the studies of an organization not made yet: %v, want NotFound", err)
		}
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			later, err := orgs.CreateOrganization(ctx, tx, "Later", "later")
			if err != nil {
				return err
			}
			_, err = authz.Assign(ctx, tx, authz.Assignment{OrgID: later.ID, AccountID: f.admin.AccountID, Role: authz.OrgAdmin})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := svc.ListStudies(ctx, f.admin, "later"); err != nil {
				t.Fatalf("listing the studies of the organization made since: %v", err)
			}
		}
		if _, err := svc.ListStudies(ctx, f.admin, f.org.Slug); err != nil {
			t.Fatalf("listing the studies of the first organization: %v", err)
		}
	})
}

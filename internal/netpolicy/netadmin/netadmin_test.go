package netadmin_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/netpolicy/netadmin"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type fixture struct {
	db                              *sqldb.DB
	g                               *gate.Gate
	svc                             *netadmin.Service
	org                             orgs.Organization
	study, otherStudy               orgs.Study
	site                            orgs.Site
	admin, studyAdmin, investigator gate.Actor
}

func setup(t *testing.T, d sqldb.Dialect) fixture {
	t.Helper()
	ctx := context.Background()
	f := fixture{db: sqldbtest.Open(t, d, sqldb.Clinical)}
	f.g = gate.New(gate.Config{Clinical: f.db})
	f.svc = &netadmin.Service{Gate: f.g}
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if f.org, err = orgs.CreateOrganization(ctx, tx, "Clinic", ""); err != nil {
			return err
		}
		if f.study, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindStudy, "Trial"); err != nil {
			return err
		}
		if f.otherStudy, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindRegistry, "Registry"); err != nil {
			return err
		}
		if f.site, err = orgs.CreateSite(ctx, tx, f.org.ID, f.study.ID, "North"); err != nil {
			return err
		}
		for _, p := range []struct {
			actor *gate.Actor
			email string
			as    authz.Assignment
		}{
			{&f.admin, "admin@clinic.example", authz.Assignment{Role: authz.OrgAdmin}},
			{&f.studyAdmin, "study@clinic.example", authz.Assignment{Role: authz.StudyAdmin, StudyID: f.study.ID}},
			{&f.investigator, "inv@clinic.example", authz.Assignment{Role: authz.SiteInvestigator, SiteID: f.site.ID}},
		} {
			p.as.OrgID = f.org.ID
			acc, _, err := accounts.Enrol(ctx, tx, p.email, "", p.as)
			if err != nil {
				return err
			}
			*p.actor = gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID, RemoteAddr: "10.1.2.3", ConfirmedAt: time.Now()}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f fixture) events(t *testing.T) []audit.Event {
	t.Helper()
	evs, _, err := audit.Search(context.Background(), f.db, audit.Filter{OrgID: f.org.ID, Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (f fixture) policy(t *testing.T) netpolicy.Policy {
	t.Helper()
	p, err := netpolicy.Load(context.Background(), f.db, f.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func from(a gate.Actor, addr string) gate.Actor {
	a.RemoteAddr = addr
	return a
}

func TestACL07_OnlyAdministratorsSetRangesAndTheChangeIsASecurityEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		ranges := []string{"10.0.0.0/8", "2001:db8::/32"}

		for name, a := range map[string]gate.Actor{"study admin": f.studyAdmin, "investigator": f.investigator} {
			if _, err := f.svc.SetOrganization(ctx, a, f.org.Slug, ranges); !gate.IsDenied(err) {
				t.Errorf("%s set the organization's ranges: %v", name, err)
			}
		}
		if _, err := f.svc.SetStudy(ctx, f.investigator, f.org.Slug, f.study.ID, ranges); !gate.IsDenied(err) {
			t.Errorf("investigator set the study's ranges: %v", err)
		}
		if _, err := f.svc.SetStudy(ctx, f.studyAdmin, f.org.Slug, f.otherStudy.ID, ranges); !gate.IsDenied(err) {
			t.Errorf("study admin set another study's ranges: %v", err)
		}
		if _, err := f.svc.SetOrganization(ctx, f.admin, "no-such-org", ranges); !gate.IsDenied(err) {
			t.Errorf("unknown organization: %v", err)
		}
		if p := f.policy(t); len(p.Organization()) != 0 || len(p.Study(f.study.ID)) != 0 || len(p.Study(f.otherStudy.ID)) != 0 {
			t.Fatalf("refused requests stored ranges: %+v", p)
		}

		got, err := f.svc.SetOrganization(ctx, f.admin, f.org.Slug, ranges)
		if err != nil || len(got) != 2 {
			t.Fatalf("admin sets organization ranges: %v, %v", got, err)
		}
		if _, err := f.svc.SetStudy(ctx, f.studyAdmin, f.org.Slug, f.study.ID, []string{"10.1.0.0/16"}); err != nil {
			t.Fatalf("study admin sets own study's ranges: %v", err)
		}
		p := f.policy(t)
		if len(p.Organization()) != 2 || len(p.Study(f.study.ID)) != 1 {
			t.Errorf("stored policy: org %v, study %v", p.Organization(), p.Study(f.study.ID))
		}

		var sets []audit.Event
		for _, ev := range f.events(t) {
			if ev.Action == "network.set" && ev.Outcome == audit.Success {
				sets = append(sets, ev)
			}
		}
		if len(sets) != 2 {
			t.Fatalf("network.set successes = %+v, want 2", sets)
		}
		for _, ev := range sets {
			if !ev.Security || ev.Details["before"] != "unrestricted" || ev.Details["after"] == "" {
				t.Errorf("event = %+v, want a security event with before and after", ev)
			}
		}
		if sets[0].Details["after"] != "10.1.0.0/16" || sets[0].StudyID != f.study.ID {
			t.Errorf("study event = %+v", sets[0])
		}
	})
}

func TestACL07_InvalidCIDRIsRefusedAndNothingChanges(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	if _, err := f.svc.SetOrganization(ctx, f.admin, f.org.Slug, []string{"10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"10.0.0.0/8", "10.0.0.0/33"}, {"2001:db8::/32", "not-a-range"}, {"10.1.2.3/8"}} {
		_, err := f.svc.SetOrganization(ctx, f.admin, f.org.Slug, bad)
		if !errs.Is(err, errs.Invalid) || !strings.Contains(errs.SafeMessage(err), "range") {
			t.Errorf("SetOrganization(%q) = %v; want a clear invalid", bad, err)
		}
		_, err = f.svc.SetStudy(ctx, f.admin, f.org.Slug, f.study.ID, bad)
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("SetStudy(%q) = %v; want invalid", bad, err)
		}
	}
	p := f.policy(t)
	if got := p.Organization(); len(got) != 1 || got[0].String() != "10.0.0.0/8" || len(p.Study(f.study.ID)) != 0 {
		t.Errorf("policy after refused changes: org %v, study %v", got, p.Study(f.study.ID))
	}
}

func TestACL07_AdministratorCannotShutThemselvesOut(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	_, err := f.svc.SetOrganization(ctx, f.admin, f.org.Slug, []string{"192.168.0.0/16"})
	if !errs.Is(err, errs.Invalid) || !strings.Contains(errs.SafeMessage(err), "10.1.2.3") {
		t.Errorf("lock-out change = %v; want invalid naming the address", err)
	}
	_, err = f.svc.SetStudy(ctx, f.studyAdmin, f.org.Slug, f.study.ID, []string{"2001:db8::/32"})
	if !errs.Is(err, errs.Invalid) {
		t.Errorf("lock-out change of a study = %v; want invalid", err)
	}
	if p := f.policy(t); len(p.Organization()) != 0 || len(p.Study(f.study.ID)) != 0 {
		t.Errorf("lock-out change stored: %+v", p)
	}
}

// TestACL07_RequestFromOutsideOrganizationRangeNeverRunsTheWork shows at the
// gate that a request from outside the organization's ranges is refused
// before the work, and so any read, runs; the refusal is on the trail.
func TestACL07_RequestFromOutsideOrganizationRangeNeverRunsTheWork(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		if _, err := f.svc.SetOrganization(ctx, f.admin, f.org.Slug, []string{"10.0.0.0/8", "2001:db8::/32"}); err != nil {
			t.Fatal(err)
		}
		before := len(f.events(t))
		for _, addr := range []string{"192.0.2.1", "2001:db9::1", "", "local"} {
			ran := false
			err := f.g.Do(ctx, from(f.admin, addr), gate.OrgID(f.org.ID), "study.list", func(t *gate.Tx) error {
				ran = true
				return nil
			})
			if !gate.IsDenied(err) || ran {
				t.Errorf("from %q: err %v, work ran %v; want denied before the work", addr, err, ran)
			}
		}
		for _, addr := range []string{"10.200.0.1", "2001:db8:5::1", "::ffff:10.9.9.9"} {
			ran := false
			err := f.g.Do(ctx, from(f.admin, addr), gate.OrgID(f.org.ID), "study.list", func(t *gate.Tx) error {
				ran = true
				t.Allowed(authz.StudyRead, authz.Resource{OrgID: f.org.ID})
				return nil
			})
			if err != nil || !ran {
				t.Errorf("from %q: err %v, work ran %v; want allowed", addr, err, ran)
			}
		}
		evs := f.events(t)
		var denied []audit.Event
		for _, ev := range evs[:len(evs)-before] {
			if ev.Outcome == audit.Denied {
				denied = append(denied, ev)
			}
		}
		if len(denied) != 4 {
			t.Fatalf("denied events = %d, want 4", len(denied))
		}
		for _, ev := range denied {
			if ev.Details["reason"] != netpolicy.Refusal || ev.ActorAccount != f.admin.AccountID || ev.ActorRole != "org-admin" {
				t.Errorf("denied event = %+v, want reason network", ev)
			}
		}
	})
}

// TestACL07_StudyRangeEndsTheTransactionAtAuthorize shows that once work
// names a study whose ranges exclude the requester, the transaction is over:
// work that ignored the refusal and read on would get nothing.
func TestACL07_StudyRangeEndsTheTransactionAtAuthorize(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		if _, err := f.svc.SetStudy(ctx, f.admin, f.org.Slug, f.study.ID, []string{"10.0.0.0/8"}); err != nil {
			t.Fatal(err)
		}
		var authErr, readErr error
		read := 0
		err := f.g.Do(ctx, from(f.admin, "192.0.2.1"), gate.OrgID(f.org.ID), "site.list", func(t *gate.Tx) error {
			authErr = t.Authorize(authz.StudyRead, authz.Resource{OrgID: f.org.ID, StudyID: f.study.ID})
			var sites []orgs.Site
			sites, readErr = orgs.Sites(ctx, t, f.org.ID, f.study.ID) // misbehaving work reads on
			read = len(sites)
			return nil
		})
		if !gate.IsDenied(err) || !gate.IsDenied(authErr) {
			t.Errorf("Do = %v, Authorize = %v; want both denied", err, authErr)
		}
		if !errors.Is(readErr, sql.ErrTxDone) || read != 0 {
			t.Errorf("read after the refusal: %d sites, err %v; want sql.ErrTxDone", read, readErr)
		}
		// Another study of the same organization is not restricted, and a
		// listing hides the restricted study.
		var visible []string
		err = f.g.Do(ctx, from(f.admin, "192.0.2.1"), gate.OrgID(f.org.ID), "study.list", func(t *gate.Tx) error {
			for _, st := range []orgs.Study{f.study, f.otherStudy} {
				if t.Allowed(authz.StudyRead, authz.Resource{OrgID: f.org.ID, StudyID: st.ID}) {
					visible = append(visible, st.ID)
				}
			}
			return nil
		})
		if err != nil || !slices.Equal(visible, []string{f.otherStudy.ID}) {
			t.Errorf("listing from outside the study's range: %v, %v; want only the other study", visible, err)
		}
		var denied *audit.Event
		for _, ev := range f.events(t) {
			if ev.Outcome == audit.Denied {
				denied = &ev
			}
		}
		if denied == nil || denied.Details["reason"] != netpolicy.Refusal || denied.StudyID != f.study.ID || denied.Action != "site.list" {
			t.Errorf("denied event = %+v, want site.list refused for network", denied)
		}
	})
}

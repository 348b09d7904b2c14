package authzadmin_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/authz/authzadmin"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// fixture is one organization with a study of two sites and a registry,
// its people, and a second organization, over a clinical and an identity
// database of one dialect.
type fixture struct {
	clinical *sqldb.DB
	g        *gate.Gate
	svc      *authzadmin.Service
	parts    *participants.Service

	org, other             orgs.Organization
	study, registry, trial orgs.Site // sites: study's north, registry's centre, other org's far
	south                  orgs.Site
	studyID, registryID    string

	admin, manager, studyAdmin, dataManager, investigator, carer, member, otherAdmin person
}

// person is an account with its request actor, confirmed just now
// (ACL-09) unless made stale.
type person struct {
	id string
	gate.Actor
}

func (p person) stale() gate.Actor {
	a := p.Actor
	a.ConfirmedAt = time.Now().Add(-10 * time.Minute)
	return a
}

func setup(t testing.TB, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{clinical: sqldbtest.Open(t, d, sqldb.Clinical)}
	identity := sqldbtest.Open(t, d, sqldb.Identity)
	kek, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.g = gate.New(gate.Config{
		Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: kek},
		Identity: identity, IdentityKeys: &keys.Keyring{DB: identity, KEK: kek},
	})
	f.svc = &authzadmin.Service{Gate: f.g}
	f.parts = &participants.Service{Gate: f.g}
	n := 0
	err = f.clinical.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		must := func(e error) {
			if e != nil && err == nil {
				err = e
			}
		}
		var st orgs.Study
		f.org, err = orgs.CreateOrganization(ctx, tx, "Clinic", "clinic")
		must(err)
		st, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindStudy, "Trial")
		must(err)
		f.studyID = st.ID
		f.study, err = orgs.CreateSite(ctx, tx, f.org.ID, st.ID, "North")
		must(err)
		f.south, err = orgs.CreateSite(ctx, tx, f.org.ID, st.ID, "South")
		must(err)
		st, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindRegistry, "Registry")
		must(err)
		f.registryID = st.ID
		f.registry, err = orgs.CreateSite(ctx, tx, f.org.ID, st.ID, "Centre")
		must(err)
		f.other, err = orgs.CreateOrganization(ctx, tx, "Other", "other")
		must(err)
		st, err = orgs.CreateStudy(ctx, tx, f.other.ID, orgs.KindStudy, "Trial")
		must(err)
		f.trial, err = orgs.CreateSite(ctx, tx, f.other.ID, st.ID, "Far")
		must(err)
		if err != nil {
			return err
		}
		enrol := func(org orgs.Organization, role authz.Role, studyID, siteID string) person {
			n++
			acc, _, e := accounts.Enrol(ctx, tx, string(role)+"-"+string(rune('a'+n))+"@clinic.example", "",
				authz.Assignment{OrgID: org.ID, Role: role, StudyID: studyID, SiteID: siteID})
			must(e)
			return person{id: acc.ID, Actor: gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID,
				RemoteAddr: "192.0.2.1", ConfirmedAt: time.Now()}}
		}
		f.admin = enrol(f.org, authz.OrgAdmin, "", "")
		f.manager = enrol(f.org, authz.OrgManager, "", "")
		f.studyAdmin = enrol(f.org, authz.StudyAdmin, f.studyID, "")
		f.dataManager = enrol(f.org, authz.DataManager, f.studyID, "")
		f.investigator = enrol(f.org, authz.SiteInvestigator, "", f.study.ID)
		f.carer = enrol(f.org, authz.CareProvider, f.studyID, "")
		f.member = enrol(f.org, authz.CareProvider, "", f.registry.ID) // a member with a harmless role
		f.otherAdmin = enrol(f.other, authz.OrgAdmin, "", "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func count(t testing.TB, db *sqldb.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (f *fixture) assignments(t testing.TB) int {
	return count(t, f.clinical, `SELECT count(*) FROM role_assignments`)
}

// participant stores a pseudonymous participant at a site.
func (f *fixture) participant(t testing.TB, site orgs.Site) participants.Participant {
	t.Helper()
	var p participants.Participant
	err := f.clinical.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		p, err = participants.Create(context.Background(), tx, site.OrgID, site.StudyID, site.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) read(a gate.Actor, p participants.Participant) error {
	_, err := f.parts.Get(context.Background(), a, f.org.Slug, p.StudyID, p.SiteID, p.Pseudonym)
	return err
}

func (f *fixture) list(a gate.Actor, site orgs.Site) error {
	_, err := f.parts.List(context.Background(), a, f.org.Slug, site.StudyID, site.ID, "", 0)
	return err
}

func (f *fixture) events(t testing.TB, action string) []audit.Event {
	t.Helper()
	evs, _, err := audit.Search(context.Background(), f.clinical, audit.Filter{OrgID: f.org.ID, Action: action, Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func wantKind(t testing.TB, what string, err error, k errs.Kind) {
	t.Helper()
	if got := errs.KindOf(err); err == nil || got != k {
		t.Errorf("%s: %v (kind %v), want %v", what, err, got, k)
	}
}

// A role given by an administrator works from the requester's very next
// request on, and stops on the next request after it is taken away: the
// gate loads the roles for every request (ACL-02).
func TestACL02_AssignedRoleWorksAtOnceAndRevokedRoleStopsAtTheNextRequest(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		if err := f.list(f.member.Actor, f.study); !gate.IsDenied(err) {
			t.Fatalf("before the role: %v, want not found", err)
		}
		as, err := f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.member.id, authzadmin.Grant{Role: authz.DataManager, SiteID: f.study.ID})
		if err != nil {
			t.Fatal(err)
		}
		if as.StudyID != f.studyID || as.SiteID != f.study.ID || as.Level() != authz.LevelSite {
			t.Errorf("assignment %+v: want site level at North of the study", as)
		}
		if err := f.list(f.member.Actor, f.study); err != nil {
			t.Fatalf("with the role: %v", err)
		}
		if err := f.list(f.member.Actor, f.south); !gate.IsDenied(err) {
			t.Errorf("the neighbouring site: %v, want not found (a site role reaches its site only)", err)
		}
		if _, err := f.svc.Unassign(ctx, f.admin.Actor, f.org.Slug, f.member.id, as.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.list(f.member.Actor, f.study); !gate.IsDenied(err) {
			t.Errorf("after the revocation: %v, want not found", err)
		}
		ms, _, err := f.svc.Members(ctx, f.manager.Actor, f.org.Slug)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 7 {
			t.Errorf("%d members, want 7", len(ms))
		}
		for _, m := range ms {
			if m.Account.ID == f.otherAdmin.id {
				t.Error("members lists a person of another organization")
			}
			if m.Account.ID == f.member.id && len(m.Assignments) != 1 {
				t.Errorf("member holds %+v, want the one role left", m.Assignments)
			}
		}
	})
}

// The scope named must be the organization's; a bad role or level is a
// clear 400; nothing changes either way (ACL-02, ACL-08).
func TestACL02_BadScopeOrRoleIsRefusedAndNothingChanges(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		before := f.assignments(t)
		for _, tc := range []struct {
			name    string
			account string
			g       authzadmin.Grant
			kind    errs.Kind
		}{
			{"site of another organization", f.member.id, authzadmin.Grant{Role: authz.Monitor, SiteID: f.trial.ID}, errs.NotFound},
			{"study of another organization", f.member.id, authzadmin.Grant{Role: authz.Monitor, StudyID: f.trial.StudyID}, errs.NotFound},
			{"made-up site", f.member.id, authzadmin.Grant{Role: authz.Monitor, SiteID: "not-an-id"}, errs.NotFound},
			{"site of another study", f.member.id, authzadmin.Grant{Role: authz.Monitor, StudyID: f.registryID, SiteID: f.study.ID}, errs.Invalid},
			{"unknown role", f.member.id, authzadmin.Grant{Role: "root", StudyID: f.studyID}, errs.Invalid},
			{"role at a level it is not held at", f.member.id, authzadmin.Grant{Role: authz.OrgAdmin, SiteID: f.study.ID}, errs.Invalid},
			{"participant at organization level", f.member.id, authzadmin.Grant{Role: authz.Participant}, errs.Invalid},
			{"person of another organization", f.otherAdmin.id, authzadmin.Grant{Role: authz.Monitor, StudyID: f.studyID}, errs.NotFound},
			{"made-up account", "aaaaaaaaaaaaaaaaaaaaaaaaaa", authzadmin.Grant{Role: authz.Monitor, StudyID: f.studyID}, errs.NotFound},
			{"role held already", f.dataManager.id, authzadmin.Grant{Role: authz.DataManager, StudyID: f.studyID}, errs.Conflict},
		} {
			_, err := f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, tc.account, tc.g)
			wantKind(t, tc.name, err, tc.kind)
		}
		if got := f.assignments(t); got != before {
			t.Errorf("%d assignments after refused requests, want %d", got, before)
		}
	})
}

// No one gives or takes away a role whose permissions they do not hold
// at its scope (ACL-02, ACL-06): an organization manager assigns roles,
// but neither audit reading nor clinical access, and cannot demote an
// administrator; roles without member.invite assign nothing.
func TestACL02_GranterMustHoldEveryPermissionOfTheRole(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		reader, err := f.svc.CreateRole(ctx, f.admin.Actor, f.org.Slug, authzadmin.Spec{Name: "people-reader",
			Levels: []string{"organization"}, Permissions: []string{"member.read", "study.read"}})
		if err != nil {
			t.Fatal(err)
		}
		clinical, err := f.svc.CreateRole(ctx, f.admin.Actor, f.org.Slug, authzadmin.Spec{Name: "chart-reader",
			Levels: []string{"study", "site"}, Permissions: []string{"participant.read"}})
		if err != nil {
			t.Fatal(err)
		}
		before := f.assignments(t)
		for _, tc := range []struct {
			who  person
			g    authzadmin.Grant
			kind errs.Kind
		}{
			{f.manager, authzadmin.Grant{Role: authz.Monitor, StudyID: f.studyID}, errs.Forbidden},     // audit.read
			{f.manager, authzadmin.Grant{Role: authz.DataManager, StudyID: f.studyID}, errs.Forbidden}, // participants
			{f.manager, authzadmin.Grant{Role: authz.CareProvider, StudyID: f.studyID}, errs.Forbidden},
			{f.manager, authzadmin.Grant{Role: authz.OrgAdmin}, errs.Forbidden},
			{f.manager, authzadmin.Grant{Role: clinical.Name, SiteID: f.study.ID}, errs.Forbidden},
			{f.studyAdmin, authzadmin.Grant{Role: authz.CareProvider, StudyID: f.studyID}, errs.NotFound},
			{f.investigator, authzadmin.Grant{Role: authz.Participant, SiteID: f.study.ID}, errs.NotFound},
			{f.carer, authzadmin.Grant{Role: authz.Participant, SiteID: f.study.ID}, errs.NotFound},
		} {
			_, err := f.svc.Assign(ctx, tc.who.Actor, f.org.Slug, f.member.id, tc.g)
			wantKind(t, string(tc.g.Role)+" by "+tc.who.AccountID, err, tc.kind)
		}
		// The manager may demote no administrator.
		admins, err := authz.AssignmentsOf(ctx, f.clinical, f.org.ID, f.admin.id)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.svc.Unassign(ctx, f.manager.Actor, f.org.Slug, f.admin.id, admins[0].ID)
		wantKind(t, "manager removes the admin", err, errs.Forbidden)
		if got := f.assignments(t); got != before {
			t.Fatalf("%d assignments after refused requests, want %d", got, before)
		}
		// What the manager holds, it may give and take back.
		for _, g := range []authzadmin.Grant{{Role: authz.OrgManager}, {Role: reader.Name}} {
			as, err := f.svc.Assign(ctx, f.manager.Actor, f.org.Slug, f.member.id, g)
			if err != nil {
				t.Fatalf("manager gives %s: %v", g.Role, err)
			}
			if _, err := f.svc.Unassign(ctx, f.manager.Actor, f.org.Slug, f.member.id, as.ID); err != nil {
				t.Fatalf("manager takes back %s: %v", g.Role, err)
			}
		}
		// The administrator holds everything.
		if _, err := f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.member.id, authzadmin.Grant{Role: clinical.Name, SiteID: f.study.ID}); err != nil {
			t.Fatal(err)
		}
	})
}

// The organization keeps an administrator: the last one can neither be
// removed nor remove themselves (ACL-02).
func TestACL02_LastOrganizationAdminCannotBeRemoved(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		adminRole := func(p person) authz.Assignment {
			t.Helper()
			as, err := authz.AssignmentsOf(ctx, f.clinical, f.org.ID, p.id)
			if err != nil || len(as) != 1 || as[0].Role != authz.OrgAdmin {
				t.Fatalf("%v, %v: want one org-admin assignment", as, err)
			}
			return as[0]
		}
		own := adminRole(f.admin)
		_, err := f.svc.Unassign(ctx, f.admin.Actor, f.org.Slug, f.admin.id, own.ID)
		wantKind(t, "the last admin removes themselves", err, errs.Conflict)
		if f.events(t, "role.unassign")[0].Outcome != audit.Failure {
			t.Error("the refusal is not on the trail as a failure")
		}

		// With a second administrator, one may go, and then the other is
		// the last.
		second, err := f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.manager.id, authzadmin.Grant{Role: authz.OrgAdmin})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Unassign(ctx, f.admin.Actor, f.org.Slug, f.admin.id, own.ID); err != nil {
			t.Fatalf("removing oneself with another admin left: %v", err)
		}
		f.manager.ConfirmedAt = time.Now()
		_, err = f.svc.Unassign(ctx, f.manager.Actor, f.org.Slug, f.manager.id, second.ID)
		wantKind(t, "the new last admin removes themselves", err, errs.Conflict)
		if n := count(t, f.clinical, `SELECT count(*) FROM role_assignments WHERE org_id = $1 AND role = 'org-admin'`, f.org.ID); n != 1 {
			t.Errorf("%d admins, want 1", n)
		}
	})
}

// Two administrators removing each other at the same moment cannot leave
// the organization without one: exactly one removal succeeds.
func TestACL02_TwoAdminsRemovingEachOtherAtOnceLeaveOne(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		for round := range 3 {
			f := setup(t, d)
			ctx := context.Background()
			second, err := f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.manager.id, authzadmin.Grant{Role: authz.OrgAdmin})
			if err != nil {
				t.Fatal(err)
			}
			first, err := authz.AssignmentsOf(ctx, f.clinical, f.org.ID, f.admin.id)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errsOut := make([]error, 2)
			wg.Go(func() { _, errsOut[0] = f.svc.Unassign(ctx, f.admin.Actor, f.org.Slug, f.manager.id, second.ID) })
			wg.Go(func() { _, errsOut[1] = f.svc.Unassign(ctx, f.manager.Actor, f.org.Slug, f.admin.id, first[0].ID) })
			wg.Wait()
			ok := 0
			for _, err := range errsOut {
				switch {
				case err == nil:
					ok++
				case errs.Is(err, errs.Conflict), errs.Is(err, errs.Forbidden), gate.IsDenied(err):
					// the last admin stays; or the requester had just lost
					// the role, and with it the right to remove an admin
				default:
					t.Errorf("round %d: %v", round, err)
				}
			}
			if n := count(t, f.clinical, `SELECT count(*) FROM role_assignments WHERE org_id = $1 AND role = 'org-admin'`, f.org.ID); n != 1 || ok != 1 {
				t.Fatalf("round %d: %d admins left and %d removals succeeded, want 1 and 1 (%v)", round, n, ok, errsOut)
			}
		}
	})
}

// Role changes need a confirmation of identity within the last minutes
// (ACL-09); without it nothing changes and the attempt is on the trail.
func TestACL09_RoleChangesNeedAFreshConfirmation(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		custom, err := f.svc.CreateRole(ctx, f.admin.Actor, f.org.Slug, authzadmin.Spec{Name: "reader",
			Levels: []string{"study"}, Permissions: []string{"study.read"}})
		if err != nil {
			t.Fatal(err)
		}
		before := f.assignments(t)
		stale := f.admin.stale()
		_, err = f.svc.Assign(ctx, stale, f.org.Slug, f.member.id, authzadmin.Grant{Role: authz.Monitor, StudyID: f.studyID})
		wantKind(t, "assign", err, errs.StepUpRequired)
		as, _ := authz.AssignmentsOf(ctx, f.clinical, f.org.ID, f.member.id)
		_, err = f.svc.Unassign(ctx, stale, f.org.Slug, f.member.id, as[0].ID)
		wantKind(t, "unassign", err, errs.StepUpRequired)
		_, err = f.svc.CreateRole(ctx, stale, f.org.Slug, authzadmin.Spec{Name: "other", Levels: []string{"study"}, Permissions: []string{"study.read"}})
		wantKind(t, "create role", err, errs.StepUpRequired)
		wantKind(t, "delete role", f.svc.DeleteRole(ctx, stale, f.org.Slug, custom.ID), errs.StepUpRequired)
		if got := f.assignments(t); got != before {
			t.Errorf("%d assignments, want %d", got, before)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM custom_roles`); n != 1 {
			t.Errorf("%d custom roles, want 1", n)
		}
		for _, action := range []string{"role.assign", "role.unassign", "role.create", "role.delete"} {
			evs := f.events(t, action)
			if len(evs) == 0 || evs[0].Outcome != audit.Denied || evs[0].Details["reason"] != "step-up required" {
				t.Errorf("%s: %+v, want a denied attempt for want of step-up", action, evs)
			}
		}
	})
}

// Every role change is a security event naming the person, the old or new
// role and its scope (AUD-05).
func TestAUD05_RoleChangesAreSecurityEventsWithOldAndNewRole(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		as, err := f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.member.id, authzadmin.Grant{Role: authz.Monitor, SiteID: f.south.ID})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Unassign(ctx, f.admin.Actor, f.org.Slug, f.member.id, as.ID); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ action, key string }{{"role.assign", "new_role"}, {"role.unassign", "old_role"}} {
			evs := f.events(t, tc.action)
			if len(evs) != 1 {
				t.Fatalf("%s: %d events", tc.action, len(evs))
			}
			ev := evs[0]
			want := map[string]string{tc.key: "monitor", "level": "site", "study": f.studyID, "site": f.south.ID, "assignment": as.ID}
			for k, v := range want {
				if ev.Details[k] != v {
					t.Errorf("%s: detail %s = %q, want %q", tc.action, k, ev.Details[k], v)
				}
			}
			if !ev.Security || ev.Outcome != audit.Success || ev.ObjectID != f.member.id || ev.ActorAccount != f.admin.id {
				t.Errorf("%s: %+v, want a successful security event about the member by the admin", tc.action, ev)
			}
		}
	})
}

// A role change refused after authorization (the granter lacks a
// permission of the role) is on the trail as a failed security event that
// names the member, the role asked for and its scope, not only the error.
func TestAUD05_RefusedRoleChangeNamesTheRoleAskedFor(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		_, err := f.svc.Assign(ctx, f.manager.Actor, f.org.Slug, f.member.id, authzadmin.Grant{Role: authz.Monitor, SiteID: f.south.ID})
		wantKind(t, "manager gives monitor", err, errs.Forbidden)
		evs := f.events(t, "role.assign")
		if len(evs) != 1 {
			t.Fatalf("%d role.assign events, want 1", len(evs))
		}
		ev := evs[0]
		want := map[string]string{"new_role": "monitor", "level": "site", "study": f.studyID, "site": f.south.ID, "error": "forbidden"}
		for k, v := range want {
			if ev.Details[k] != v {
				t.Errorf("detail %s = %q, want %q (all: %v)", k, ev.Details[k], v, ev.Details)
			}
		}
		if !ev.Security || ev.Outcome != audit.Failure || ev.ObjectID != f.member.id || ev.ActorAccount != f.manager.id {
			t.Errorf("%+v, want a failed security event about the member by the manager", ev)
		}
	})
}

// A custom role is a permission set that Decide honours at the scope it
// is assigned at; a role in use cannot be deleted (ACL-03).
func TestACL03_CustomRoleGrantsExactlyItsPermissions(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		def, err := f.svc.CreateRole(ctx, f.admin.Actor, f.org.Slug, authzadmin.Spec{Name: "site-reader",
			Levels: []string{"site"}, Permissions: []string{"site.read", "participant.read"}})
		if err != nil {
			t.Fatal(err)
		}
		if def.ID == "" || def.Builtin || len(def.Permissions) != 2 {
			t.Errorf("definition %+v", def)
		}
		as, err := f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.member.id, authzadmin.Grant{Role: "site-reader", SiteID: f.study.ID})
		if err != nil {
			t.Fatal(err)
		}
		if as.CustomRoleID != def.ID {
			t.Errorf("assignment %+v does not name the custom role", as)
		}
		p := f.participant(t, f.study)
		if err := f.read(f.member.Actor, p); err != nil {
			t.Errorf("reading a participant of the site: %v", err)
		}
		if err := f.list(f.member.Actor, f.south); !gate.IsDenied(err) {
			t.Errorf("another site: %v, want not found", err)
		}
		_, err = f.parts.Enrol(ctx, f.member.Actor, f.org.Slug, f.studyID, f.study.ID, nil)
		if !gate.IsDenied(err) {
			t.Errorf("enrolling, which the role does not grant: %v, want not found", err)
		}
		_, err = f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.member.id, authzadmin.Grant{Role: "site-reader", StudyID: f.studyID})
		wantKind(t, "custom role at a level it is not held at", err, errs.Invalid)
		wantKind(t, "deleting a role in use", f.svc.DeleteRole(ctx, f.admin.Actor, f.org.Slug, def.ID), errs.Conflict)
		if _, err := f.svc.Unassign(ctx, f.admin.Actor, f.org.Slug, f.member.id, as.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.DeleteRole(ctx, f.admin.Actor, f.org.Slug, def.ID); err != nil {
			t.Fatalf("deleting a role no one holds: %v", err)
		}
		_, err = f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.member.id, authzadmin.Grant{Role: "site-reader", SiteID: f.study.ID})
		wantKind(t, "assigning a deleted role", err, errs.Invalid)

		// The organization's roles: the built-in ones, then its own.
		list, err := f.svc.Roles(ctx, f.manager.Actor, f.org.Slug)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != len(authz.BuiltinRoles()) {
			t.Errorf("%d roles after the deletion, want the %d built-in ones", len(list), len(authz.BuiltinRoles()))
		}
	})
}

// A custom role must be well defined and is the organization's own: a
// built-in name, an unknown permission or level, or a taken name is
// refused; only organization admins define roles; another organization's
// role is not found (ACL-03, ACL-08).
func TestACL03_CustomRolesAreValidatedAndScopedToTheOrganization(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		good := authzadmin.Spec{Name: "coordinator", Levels: []string{"study", "site"}, Permissions: []string{"study.read", "participant.enrol"}}
		if _, err := f.svc.CreateRole(ctx, f.admin.Actor, f.org.Slug, good); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			spec authzadmin.Spec
			kind errs.Kind
		}{
			{"built-in name", authzadmin.Spec{Name: "monitor", Levels: []string{"study"}, Permissions: []string{"study.read"}}, errs.Invalid},
			{"unknown permission", authzadmin.Spec{Name: "x-role", Levels: []string{"study"}, Permissions: []string{"everything"}}, errs.Invalid},
			{"no permission", authzadmin.Spec{Name: "x-role", Levels: []string{"study"}}, errs.Invalid},
			{"unknown level", authzadmin.Spec{Name: "x-role", Levels: []string{"planet"}, Permissions: []string{"study.read"}}, errs.Invalid},
			{"no level", authzadmin.Spec{Name: "x-role", Permissions: []string{"study.read"}}, errs.Invalid},
			{"permission twice", authzadmin.Spec{Name: "x-role", Levels: []string{"study"}, Permissions: []string{"study.read", "study.read"}}, errs.Invalid},
			{"bad name", authzadmin.Spec{Name: "X Role!", Levels: []string{"study"}, Permissions: []string{"study.read"}}, errs.Invalid},
			{"taken name", good, errs.Conflict},
		} {
			_, err := f.svc.CreateRole(ctx, f.admin.Actor, f.org.Slug, tc.spec)
			wantKind(t, tc.name, err, tc.kind)
		}
		for _, who := range []person{f.manager, f.studyAdmin, f.dataManager} {
			_, err := f.svc.CreateRole(ctx, who.Actor, f.org.Slug, authzadmin.Spec{Name: "mine", Levels: []string{"site"}, Permissions: []string{"site.read"}})
			if !gate.IsDenied(err) {
				t.Errorf("role created by %s: %v, want not found", who.AccountID, err)
			}
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM custom_roles`); n != 1 {
			t.Errorf("%d custom roles, want 1", n)
		}
		// The other organization's role does not exist here, nor may its
		// name be assigned here.
		theirs, err := f.svc.CreateRole(ctx, f.otherAdmin.Actor, f.other.Slug, authzadmin.Spec{Name: "theirs", Levels: []string{"organization"}, Permissions: []string{"study.read"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.svc.DeleteRole(ctx, f.admin.Actor, f.org.Slug, theirs.ID); !gate.IsDenied(err) {
			t.Errorf("deleting another organization's role: %v, want not found", err)
		}
		_, err = f.svc.Assign(ctx, f.admin.Actor, f.org.Slug, f.member.id, authzadmin.Grant{Role: "theirs"})
		wantKind(t, "assigning another organization's role", err, errs.Invalid)
	})
}

// A care provider reaches exactly the participants assigned to them, from
// the next request on and until the assignment ends (ACL-05).
func TestACL05_CareProviderReachesOnlyAssignedParticipants(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		mine, theirs := f.participant(t, f.study), f.participant(t, f.south)
		for _, p := range []participants.Participant{mine, theirs} {
			if err := f.read(f.carer.Actor, p); !gate.IsDenied(err) {
				t.Fatalf("before any assignment: %v, want not found", err)
			}
		}
		rel, err := f.svc.AssignCare(ctx, f.studyAdmin.Actor, f.org.Slug, f.studyID, mine.Pseudonym, f.carer.id)
		if err != nil {
			t.Fatal(err)
		}
		if rel.ParticipantID != mine.Pseudonym || rel.AccountID != f.carer.id || rel.Kind != authz.RelationCare {
			t.Errorf("relation %+v", rel)
		}
		if err := f.read(f.carer.Actor, mine); err != nil {
			t.Errorf("the assigned participant: %v", err)
		}
		if err := f.read(f.carer.Actor, theirs); !gate.IsDenied(err) {
			t.Errorf("a participant not assigned: %v, want not found", err)
		}
		if err := f.list(f.carer.Actor, f.study); !gate.IsDenied(err) {
			t.Errorf("listing the whole site: %v, want not found", err)
		}
		_, err = f.svc.AssignCare(ctx, f.admin.Actor, f.org.Slug, f.studyID, mine.Pseudonym, f.carer.id)
		wantKind(t, "assigned twice", err, errs.Conflict)
		if err := f.svc.UnassignCare(ctx, f.admin.Actor, f.org.Slug, f.studyID, mine.Pseudonym, f.carer.id); err != nil {
			t.Fatal(err)
		}
		if err := f.read(f.carer.Actor, mine); !gate.IsDenied(err) {
			t.Errorf("after the assignment ended: %v, want not found", err)
		}
		evs := f.events(t, "care.assign")
		if len(evs) == 0 || !evs[len(evs)-1].Security || evs[len(evs)-1].ParticipantID != mine.Pseudonym ||
			evs[len(evs)-1].Details["care_provider"] != f.carer.id {
			t.Errorf("care.assign events %+v, want a security event naming participant and care provider", evs)
		}
	})
}

// Only study and organization admins assign care providers, only people
// holding a care-provider role at the participant's site can be assigned,
// and participants of another study or organization are not found
// (ACL-05, ACL-06, ACL-08).
func TestACL05_CareAssignmentIsRefusedOutsideItsRules(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.participant(t, f.study)
		far := f.participant(t, f.trial)
		for _, who := range []person{f.manager, f.dataManager, f.investigator, f.carer} {
			_, err := f.svc.AssignCare(ctx, who.Actor, f.org.Slug, f.studyID, p.Pseudonym, f.carer.id)
			if !gate.IsDenied(err) {
				t.Errorf("assigned by %s: %v, want not found", who.AccountID, err)
			}
		}
		_, err := f.svc.AssignCare(ctx, f.admin.Actor, f.org.Slug, f.studyID, p.Pseudonym, f.member.id)
		wantKind(t, "care provider at another study's site", err, errs.Invalid)
		_, err = f.svc.AssignCare(ctx, f.admin.Actor, f.org.Slug, f.studyID, p.Pseudonym, f.dataManager.id)
		wantKind(t, "someone without a care-provider role", err, errs.Invalid)
		_, err = f.svc.AssignCare(ctx, f.admin.Actor, f.org.Slug, f.registryID, p.Pseudonym, f.carer.id)
		wantKind(t, "participant under another study", err, errs.NotFound)
		_, err = f.svc.AssignCare(ctx, f.admin.Actor, f.org.Slug, f.trial.StudyID, far.Pseudonym, f.carer.id)
		wantKind(t, "participant of another organization", err, errs.NotFound)
		_, err = f.svc.AssignCare(ctx, f.admin.Actor, f.org.Slug, f.studyID, p.Pseudonym, f.otherAdmin.id)
		wantKind(t, "account of another organization", err, errs.NotFound)
		wantKind(t, "ending an assignment that does not exist",
			f.svc.UnassignCare(ctx, f.admin.Actor, f.org.Slug, f.studyID, p.Pseudonym, f.carer.id), errs.NotFound)
		if n := count(t, f.clinical, `SELECT count(*) FROM participant_relations`); n != 0 {
			t.Errorf("%d relations after refused requests, want 0", n)
		}
	})
}

// A participant's own account reads their own record and no other
// (ACL-05).
func TestACL05_ParticipantReadsOnlyTheirOwnRecord(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		own, neighbour := f.participant(t, f.study), f.participant(t, f.study)
		var self person
		err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
			acc, _, err := accounts.Enrol(ctx, tx, "patient@clinic.example", "", authz.Assignment{OrgID: f.org.ID, Role: authz.Participant, SiteID: f.study.ID})
			if err != nil {
				return err
			}
			self = person{id: acc.ID, Actor: gate.Actor{AccountID: acc.ID, SessionID: "s", RemoteAddr: "192.0.2.9"}}
			_, err = authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: own.Pseudonym, AccountID: acc.ID, Kind: authz.RelationSelf})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// A second own account of the same participant is refused.
		err = f.clinical.InTx(ctx, func(tx *sql.Tx) error {
			_, err := authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: own.Pseudonym, AccountID: f.member.id, Kind: authz.RelationSelf})
			return err
		})
		if !errs.Is(err, errs.Conflict) {
			t.Errorf("second own account: %v, want conflict", err)
		}
		if err := f.read(self.Actor, own); err != nil {
			t.Errorf("own record: %v", err)
		}
		if err := f.read(self.Actor, neighbour); !gate.IsDenied(err) {
			t.Errorf("another participant's record: %v, want not found", err)
		}
		if err := f.list(self.Actor, f.study); !gate.IsDenied(err) {
			t.Errorf("the site's list: %v, want not found", err)
		}
	})
}

// A field hidden from a role is absent, not blanked, from the identity
// answer that role receives (ACL-04); the rules are the study's, set by
// its admins only, and checked.
func TestACL04_HiddenFieldIsAbsentFromTheIdentityAnswer(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p, err := f.parts.Enrol(ctx, f.admin.Actor, f.org.Slug, f.studyID, f.study.ID, participants.Identity{
			participants.Name: "Oriel Vantongeren", participants.Email: "oriel@example.org", participants.Phone: "+31 20 555 0101",
		})
		if err != nil {
			t.Fatal(err)
		}
		reveal := func(a gate.Actor) participants.Revealed {
			t.Helper()
			rv, err := f.parts.Reveal(ctx, a, f.org.Slug, p.StudyID, p.SiteID, p.Pseudonym)
			if err != nil {
				t.Fatal(err)
			}
			return rv
		}
		if rv := reveal(f.investigator.Actor); rv.Values[participants.Name] == "" {
			t.Fatalf("before any rule the name is shown: %+v", rv)
		}
		set, err := f.svc.SetFieldVisibility(ctx, f.studyAdmin.Actor, f.org.Slug, f.studyID, authz.FieldRules{
			"identity.name":  {authz.SiteInvestigator, authz.Monitor},
			"identity.phone": {authz.Monitor},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(set) != 2 {
			t.Errorf("rules %v", set)
		}
		rv := reveal(f.investigator.Actor)
		if _, ok := rv.Values[participants.Name]; ok || contains(rv.Shown, participants.Name) || contains(rv.Withheld, participants.Name) {
			t.Errorf("the name hidden from site investigators is in their answer: %+v", rv)
		}
		if rv.Values[participants.Phone] == "" || rv.Values[participants.Email] == "" {
			t.Errorf("fields not hidden are missing: %+v", rv)
		}
		if rv := reveal(f.admin.Actor); rv.Values[participants.Name] == "" {
			t.Errorf("the name is hidden from the org admin too: %+v", rv)
		}

		// Only the study's admins set rules, and bad rules change nothing.
		for _, who := range []person{f.manager, f.investigator, f.dataManager} {
			_, err := f.svc.SetFieldVisibility(ctx, who.Actor, f.org.Slug, f.studyID, authz.FieldRules{})
			if !gate.IsDenied(err) {
				t.Errorf("set by %s: %v, want not found", who.AccountID, err)
			}
		}
		for _, bad := range []authz.FieldRules{
			{"name": {authz.Monitor}},
			{"identity.name": {"nobody-here"}},
			{"identity.name": {authz.Monitor, authz.Monitor}},
			{"Identity.Name": {authz.Monitor}},
		} {
			_, err := f.svc.SetFieldVisibility(ctx, f.admin.Actor, f.org.Slug, f.studyID, bad)
			wantKind(t, "bad rules", err, errs.Invalid)
		}
		_, err = f.svc.SetFieldVisibility(ctx, f.admin.Actor, f.org.Slug, f.trial.StudyID, authz.FieldRules{})
		wantKind(t, "another organization's study", err, errs.NotFound)
		if n := count(t, f.clinical, `SELECT count(*) FROM field_visibility`); n != 3 {
			t.Errorf("%d rules stored, want the 3 set", n)
		}
	})
}

func contains(fs []participants.Field, f participants.Field) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// Objects of another organization answer exactly like missing ones
// (ACL-08): its people, assignments, roles and participants.
func TestACL08_OtherOrganizationsRoleObjectsAreNotFound(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		theirs, err := authz.AssignmentsOf(ctx, f.clinical, f.other.ID, f.otherAdmin.id)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.svc.Unassign(ctx, f.admin.Actor, f.org.Slug, f.otherAdmin.id, theirs[0].ID)
		wantKind(t, "their assignment", err, errs.NotFound)
		ours, _ := authz.AssignmentsOf(ctx, f.clinical, f.org.ID, f.member.id)
		_, err = f.svc.Unassign(ctx, f.admin.Actor, f.org.Slug, f.otherAdmin.id, ours[0].ID)
		wantKind(t, "our assignment under their account", err, errs.NotFound)
		_, err = f.svc.Unassign(ctx, f.otherAdmin.Actor, f.org.Slug, f.member.id, ours[0].ID)
		wantKind(t, "their admin in our organization", err, errs.NotFound)
		_, _, err = f.svc.Members(ctx, f.otherAdmin.Actor, f.org.Slug)
		wantKind(t, "their admin lists our members", err, errs.NotFound)
		_, err = f.svc.Assign(ctx, f.admin.Actor, "no-such-org", f.member.id, authzadmin.Grant{Role: authz.Monitor})
		wantKind(t, "unknown organization", err, errs.NotFound)
		if !errors.Is(err, gate.ErrDenied) && !errs.Is(err, errs.NotFound) {
			t.Errorf("unknown organization: %v", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM role_assignments WHERE account_id = $1`, f.otherAdmin.id); n != 1 {
			t.Errorf("their admin holds %d roles, want 1", n)
		}
	})
}

// Being in a study is clinical information: a participant's role shows in
// the member list only to a requester who may list that site's
// participants. The org-manager, who manages people and never reaches
// participants (ACL-06), sees staff only: neither the participant nor the
// study and site they are enrolled at; the org-admin, who may list them,
// does (ACL-02, ACL-03).
func TestACL03_MemberListShowsParticipantsOnlyToWhoMayListThem(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		var patient, both accounts.Account
		err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if patient, _, err = accounts.Enrol(ctx, tx, "patient@clinic.example", "",
				authz.Assignment{OrgID: f.org.ID, Role: authz.Participant, StudyID: f.studyID, SiteID: f.study.ID}); err != nil {
				return err
			}
			// A member of staff who is also a participant elsewhere in the
			// organization.
			_, err = authz.Assign(ctx, tx, authz.Assignment{OrgID: f.org.ID, AccountID: f.member.id,
				Role: authz.Participant, StudyID: f.studyID, SiteID: f.south.ID})
			both.ID = f.member.id
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		roles := func(a gate.Actor) map[string][]authz.Role {
			t.Helper()
			ms, _, err := f.svc.Members(ctx, a, f.org.Slug)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string][]authz.Role{}
			for _, m := range ms {
				for _, as := range m.Assignments {
					out[m.Account.ID] = append(out[m.Account.ID], as.Role)
				}
			}
			return out
		}
		byManager := roles(f.manager.Actor)
		if _, ok := byManager[patient.ID]; ok {
			t.Errorf("the org-manager's member list names a participant: %v", byManager[patient.ID])
		}
		if got := byManager[both.ID]; len(got) != 1 || got[0] != authz.CareProvider {
			t.Errorf("the org-manager sees %v for a carer who is also a participant, want [care-provider] only", got)
		}
		byAdmin := roles(f.admin.Actor)
		if got := byAdmin[patient.ID]; len(got) != 1 || got[0] != authz.Participant {
			t.Errorf("the org-admin sees %v for the participant, want [participant]", got)
		}
		if got := byAdmin[both.ID]; len(got) != 2 {
			t.Errorf("the org-admin sees %v for the carer who is also a participant, want both roles", got)
		}
		people, err := f.svc.People(ctx, f.manager.Actor, f.org.Slug)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range people.Members {
			if m.Account.ID == patient.ID {
				t.Error("the org-manager's people page names a participant")
			}
		}
	})
}

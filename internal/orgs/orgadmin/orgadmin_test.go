package orgadmin_test

import (
	"context"
	"database/sql"
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

// A person's memberships are the organizations where they hold a role,
// each with all their roles there, and none of any other organization;
// reading their own is recorded nowhere.
func TestMembershipsAreTheOrganizationsWhereOneHoldsARole(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		var (
			mine, theirs orgs.Organization
			site         orgs.Site
			acc          accounts.Account
		)
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if mine, err = orgs.CreateOrganization(ctx, tx, "Mine", ""); err != nil {
				return err
			}
			if theirs, err = orgs.CreateOrganization(ctx, tx, "Theirs", ""); err != nil {
				return err
			}
			st, err := orgs.CreateStudy(ctx, tx, mine.ID, orgs.KindStudy, "Trial")
			if err != nil {
				return err
			}
			if site, err = orgs.CreateSite(ctx, tx, mine.ID, st.ID, "North"); err != nil {
				return err
			}
			if acc, _, err = accounts.Enrol(ctx, tx, "ada@clinic.example", "", authz.Assignment{OrgID: mine.ID, Role: authz.OrgManager}); err != nil {
				return err
			}
			if _, _, err = accounts.Enrol(ctx, tx, "ada@clinic.example", "", authz.Assignment{OrgID: mine.ID, Role: authz.SiteInvestigator, StudyID: st.ID, SiteID: site.ID}); err != nil {
				return err
			}
			_, _, err = accounts.Enrol(ctx, tx, "bob@clinic.example", "", authz.Assignment{OrgID: theirs.ID, Role: authz.OrgAdmin})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		svc := &orgadmin.Service{Gate: gate.New(gate.Config{Clinical: db})}
		got, err := svc.Memberships(ctx, gate.Actor{AccountID: acc.ID, SessionID: "s1", RemoteAddr: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Org.ID != mine.ID || got[0].Org.Name != "Mine" || len(got[0].Assignments) != 2 {
			t.Fatalf("memberships = %+v, want Mine with two roles", got)
		}
		roles := map[authz.Role]bool{}
		for _, a := range got[0].Assignments {
			roles[a.Role] = a.AccountID == acc.ID && a.OrgID == mine.ID
		}
		if !roles[authz.OrgManager] || !roles[authz.SiteInvestigator] {
			t.Errorf("roles in Mine = %+v", got[0].Assignments)
		}
		if _, err := svc.Memberships(ctx, gate.Actor{}); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("memberships without a sign-in: %v, want Unauthenticated", err)
		}
		for _, org := range []string{mine.ID, theirs.ID} {
			if evs, _, err := audit.Search(ctx, db, audit.Filter{OrgID: org, Limit: audit.MaxPage}); err != nil || len(evs) != 0 {
				t.Errorf("trail of %s after reading one's memberships: %+v, %v", org, evs, err)
			}
		}
	})
}

// A person leaves an organization (ACL-02): every staff role they hold there
// ends at once, recorded in its trail and the account's; the last admin
// cannot leave; an organization one is not in is not found; a
// participant's own role stays (leaving a study is a withdrawal).
func TestACL02_PersonLeavesAnOrganization(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		var (
			mine, theirs       orgs.Organization
			ada, boss, patient accounts.Account
		)
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if mine, err = orgs.CreateOrganization(ctx, tx, "Mine", ""); err != nil {
				return err
			}
			if theirs, err = orgs.CreateOrganization(ctx, tx, "Theirs", ""); err != nil {
				return err
			}
			st, err := orgs.CreateStudy(ctx, tx, mine.ID, orgs.KindStudy, "Trial")
			if err != nil {
				return err
			}
			site, err := orgs.CreateSite(ctx, tx, mine.ID, st.ID, "North")
			if err != nil {
				return err
			}
			if boss, _, err = accounts.Enrol(ctx, tx, "boss@clinic.example", "", authz.Assignment{OrgID: mine.ID, Role: authz.OrgAdmin}); err != nil {
				return err
			}
			if ada, _, err = accounts.Enrol(ctx, tx, "ada@clinic.example", "", authz.Assignment{OrgID: mine.ID, Role: authz.OrgManager}); err != nil {
				return err
			}
			if _, _, err = accounts.Enrol(ctx, tx, "ada@clinic.example", "", authz.Assignment{OrgID: mine.ID, Role: authz.SiteInvestigator, StudyID: st.ID, SiteID: site.ID}); err != nil {
				return err
			}
			if _, _, err = accounts.Enrol(ctx, tx, "ada@clinic.example", "", authz.Assignment{OrgID: theirs.ID, Role: authz.OrgAdmin}); err != nil {
				return err
			}
			patient, _, err = accounts.Enrol(ctx, tx, "pat@clinic.example", "", authz.Assignment{OrgID: mine.ID, Role: authz.Participant, StudyID: st.ID, SiteID: site.ID})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		svc := &orgadmin.Service{Gate: gate.New(gate.Config{Clinical: db})}
		as := func(acc accounts.Account) gate.Actor {
			return gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID, RemoteAddr: "192.0.2.1"}
		}
		held := func(acc accounts.Account, org orgs.Organization) int {
			t.Helper()
			list, err := authz.AssignmentsOf(ctx, db, org.ID, acc.ID)
			if err != nil {
				t.Fatal(err)
			}
			return len(list)
		}
		if err := svc.Leave(ctx, as(boss), mine.Slug); !errs.Is(err, errs.Conflict) {
			t.Errorf("the last admin leaves: %v, want Conflict", err)
		}
		if held(boss, mine) != 1 {
			t.Error("the refused leave took the last admin's role")
		}
		if err := svc.Leave(ctx, as(boss), theirs.Slug); !errs.Is(err, errs.NotFound) {
			t.Errorf("leaving an organization one is not in: %v, want NotFound", err)
		}
		if err := svc.Leave(ctx, as(patient), mine.Slug); !errs.Is(err, errs.NotFound) {
			t.Errorf("a participant leaves: %v, want NotFound (a withdrawal is the study team's)", err)
		}
		if held(patient, mine) != 1 {
			t.Error("a participant's role ended")
		}
		if err := svc.Leave(ctx, as(ada), mine.Slug); err != nil {
			t.Fatal(err)
		}
		if held(ada, mine) != 0 || held(ada, theirs) != 1 {
			t.Errorf("after leaving Mine: %d roles there, %d in Theirs; want 0 and 1", held(ada, mine), held(ada, theirs))
		}
		got, err := svc.Memberships(ctx, as(ada))
		if err != nil || len(got) != 1 || got[0].Org.ID != theirs.ID {
			t.Errorf("memberships after leaving: %+v, %v", got, err)
		}
		var inOrg, inAccount, elsewhere int
		db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'member.leave' AND org_id = $1 AND actor_account = $2 AND security = $3`, mine.ID, ada.ID, true).Scan(&inOrg)
		db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'member.leave' AND org_id IS NULL AND actor_account = $1`, ada.ID).Scan(&inAccount)
		db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'member.leave' AND org_id = $1`, theirs.ID).Scan(&elsewhere)
		if inOrg != 1 || inAccount != 1 || elsewhere != 0 {
			t.Errorf("member.leave recorded %d in the organization, %d in the account's trail, %d elsewhere; want 1, 1, 0", inOrg, inAccount, elsewhere)
		}
	})
}

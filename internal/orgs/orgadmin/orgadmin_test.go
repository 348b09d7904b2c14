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

// Package demo seeds the demonstration organization that `custodia serve
// --demo` offers a newcomer: a study with two sites, a registry, a care
// program and one account per built-in role, each with a random password.
// Seeding is operator work: it runs through the gate (Gate.Operate), and
// the organization, its accounts and the demo.seed event commit together.
package demo

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
)

// Slug is the demo organization's slug.
const Slug = "demo"

// Login is one seeded account.
type Login struct {
	Role     authz.Role
	Email    string
	Password string
}

// Seed creates the demo organization unless it exists. It returns the
// seeded logins, or nil if the organization was there already.
func Seed(ctx context.Context, g *gate.Gate) ([]Login, error) {
	var logins []Login
	err := g.Operate(ctx, "demo.seed", func(tx *gate.OpTx) error {
		logins = nil
		if _, err := orgs.OrganizationBySlug(ctx, tx, Slug); err == nil {
			tx.Nothing()
			return nil
		} else if !errs.Is(err, errs.NotFound) {
			return err
		}
		org, err := orgs.CreateOrganization(ctx, tx, "Demo Organization", Slug)
		if err != nil {
			return err
		}
		study, err := orgs.CreateStudy(ctx, tx, org.ID, orgs.KindStudy, "Demo Study")
		if err != nil {
			return err
		}
		north, err := orgs.CreateSite(ctx, tx, org.ID, study.ID, "North Clinic")
		if err != nil {
			return err
		}
		if _, err := orgs.CreateSite(ctx, tx, org.ID, study.ID, "South Clinic"); err != nil {
			return err
		}
		registry, err := orgs.CreateStudy(ctx, tx, org.ID, orgs.KindRegistry, "Demo Registry")
		if err != nil {
			return err
		}
		if _, err := orgs.CreateSite(ctx, tx, org.ID, registry.ID, "Registry Centre"); err != nil {
			return err
		}
		care, err := orgs.CreateStudy(ctx, tx, org.ID, orgs.KindCareProgram, "Demo Care Program")
		if err != nil {
			return err
		}
		careSite, err := orgs.CreateSite(ctx, tx, org.ID, care.ID, "Community Team")
		if err != nil {
			return err
		}
		scope := map[authz.Role]authz.Assignment{
			authz.OrgAdmin:         {},
			authz.OrgManager:       {},
			authz.StudyAdmin:       {StudyID: study.ID},
			authz.DataManager:      {StudyID: study.ID},
			authz.SiteInvestigator: {SiteID: north.ID},
			authz.Monitor:          {StudyID: study.ID},
			authz.CareProvider:     {SiteID: careSite.ID},
			authz.Participant:      {SiteID: north.ID},
		}
		for _, role := range authz.BuiltinRoles() {
			a := scope[role]
			a.OrgID, a.Role = org.ID, role
			email := string(role) + "@demo.example"
			acc, _, err := accounts.Enrol(ctx, tx, email, "Demo "+string(role), a)
			if err != nil {
				return fmt.Errorf("seed %s: %w", role, err)
			}
			rules, err := accounts.PasswordRules(ctx, tx, acc.ID, accounts.DefaultPolicy)
			if err != nil {
				return fmt.Errorf("seed %s: %w", role, err)
			}
			pw := rand.Text() // 26 characters, 130 random bits
			for rules.Check(pw, acc.Email, acc.DisplayName) != nil {
				pw = rand.Text() // it contained a word of the name, however unlikely
			}
			if err := accounts.SetPassword(ctx, tx, acc, pw, accounts.DefaultPolicy); err != nil {
				return fmt.Errorf("seed %s: %w", role, err)
			}
			logins = append(logins, Login{Role: role, Email: email, Password: pw})
		}
		tx.Org(org.ID)
		tx.Object("organization", org.ID)
		tx.Detail("studies", "3")
		tx.Detail("accounts", fmt.Sprint(len(logins)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("seed demo organization: %w", err)
	}
	return logins, nil
}

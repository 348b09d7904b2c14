package authzadmin

import (
	"context"
	"fmt"
	"slices"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
)

// People is an organization's people as the administration pages show
// them: its members with their roles, and what the requester could change
// under authz.CanGrant, so a page offers only what the service would
// accept. The service stays the judge: Assign and Unassign check again.
type People struct {
	Org     orgs.Organization
	Members []Member
	// Invited are the invitations that wait for an answer: the address
	// the inviter typed and the role offered, never the account behind it.
	Invited []accounts.Invitation
	// Revocable holds the ids of the assignments the requester may take
	// away.
	Revocable map[string]bool
	// Grantable lists the roles the requester may give somewhere in the
	// organization: at its level, in one of its studies or at one of its
	// sites.
	Grantable []Definition
	// Studies are the organization's studies, each with its sites, by name:
	// the scopes a role can be given at.
	Studies []StudySites
}

// StudySites is a study and its sites.
type StudySites struct {
	Study orgs.Study
	Sites []orgs.Site
}

// People lists the organization's members and what the requester may
// grant and revoke among them (ACL-02): organization admins and managers
// only, audited as a member listing.
func (s *Service) People(ctx context.Context, a gate.Actor, slug string) (People, error) {
	out := People{Revocable: map[string]bool{}}
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "member.list", func(t *gate.Tx) error {
		org := t.Org()
		out.Org = org
		if err := t.Authorize(authz.MemberRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		if out.Members, err = members(ctx, t, org.ID); err != nil {
			return err
		}
		if out.Invited, err = accounts.PendingInvitations(ctx, t, org.ID); err != nil {
			return err
		}
		for _, m := range out.Members {
			for _, as := range m.Assignments {
				if authz.CanGrant(t.Subject, as) {
					out.Revocable[as.ID] = true
				}
			}
		}

		studies, err := orgs.Studies(ctx, t, org.ID)
		if err != nil {
			return err
		}
		scopes := []authz.Resource{{OrgID: org.ID}}
		for _, st := range studies {
			sites, err := orgs.Sites(ctx, t, org.ID, st.ID)
			if err != nil {
				return err
			}
			out.Studies = append(out.Studies, StudySites{Study: st, Sites: sites})
			scopes = append(scopes, authz.Resource{OrgID: org.ID, StudyID: st.ID})
			for _, site := range sites {
				scopes = append(scopes, authz.Resource{OrgID: org.ID, StudyID: st.ID, SiteID: site.ID})
			}
		}

		defs, err := definitions(ctx, t, org.ID)
		if err != nil {
			return err
		}
		for _, d := range defs {
			as := authz.Assignment{OrgID: org.ID, Role: d.Name, CustomRoleID: d.ID, Permissions: d.Permissions}
			if slices.ContainsFunc(scopes, func(r authz.Resource) bool {
				as.StudyID, as.SiteID = r.StudyID, r.SiteID
				return slices.Contains(d.Levels, as.Level()) && authz.CanGrant(t.Subject, as)
			}) {
				out.Grantable = append(out.Grantable, d)
			}
		}
		t.Detail("count", fmt.Sprint(len(out.Members)))
		return nil
	})
	if err != nil {
		return People{}, err
	}
	return out, nil
}

// definitions lists the built-in roles, then the organization's custom
// roles by name.
func definitions(ctx context.Context, t *gate.Tx, orgID string) ([]Definition, error) {
	var out []Definition
	for _, r := range authz.BuiltinRoles() {
		out = append(out, Definition{Name: r, Builtin: true, About: r.About(), Levels: r.Levels(),
			Permissions: authz.PermissionsOf(authz.Assignment{Role: r})})
	}
	custom, err := authz.CustomRoles(ctx, t, orgID)
	if err != nil {
		return nil, err
	}
	for _, c := range custom {
		out = append(out, definitionOf(c))
	}
	return out, nil
}

// Catalogue is the organization's roles as the roles page shows them.
type Catalogue struct {
	Org   orgs.Organization
	Roles []Definition
	// Manage says whether the requester may define and delete custom
	// roles (authz.RoleManage).
	Manage bool
	// Actions are the permissions a custom role can be given.
	Actions []authz.Action
}

// Catalogue lists the roles the organization can assign, as Roles does,
// and whether the requester may define new ones (ACL-03).
func (s *Service) Catalogue(ctx context.Context, a gate.Actor, slug string) (Catalogue, error) {
	out := Catalogue{Actions: authz.Actions()}
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "role.list", func(t *gate.Tx) error {
		org := t.Org()
		out.Org = org
		if err := t.Authorize(authz.MemberRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		out.Manage = t.Allowed(authz.RoleManage, authz.Resource{OrgID: org.ID})
		var err error
		out.Roles, err = definitions(ctx, t, org.ID)
		return err
	})
	if err != nil {
		return Catalogue{}, err
	}
	return out, nil
}

// Package authzadmin administers who may do what in an organization: its
// members and their role assignments (ACL-02), its custom roles (ACL-03),
// the care providers assigned to participants (ACL-05) and which fields of
// a study each role sees (ACL-04). The rules themselves live in authz; this
// package runs every change through the gate: authorized, in one
// transaction, audited as a security event (AUD-05).
//
// Role changes follow one rule, authz.CanGrant: no one gives or takes away
// a role whose permissions they do not hold themselves at its scope, so an
// organization manager, who holds no clinical, identity or audit
// permission, can neither grant nor take one (ACL-06). Every role change
// needs a fresh confirmation of the requester (ACL-09) and takes effect at
// the next request, since the gate loads the roles for every request. The
// organization keeps at least one organization admin.
package authzadmin

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// Service administers roles for requests.
type Service struct {
	Gate *gate.Gate
}

// Member is a person with at least one role in the organization.
type Member struct {
	Account     accounts.Account
	Assignments []authz.Assignment
}

// Members lists the organization's people and their roles, by e-mail
// address, and the invitations that wait for an answer: organization admins
// and managers only.
func (s *Service) Members(ctx context.Context, a gate.Actor, slug string) ([]Member, []accounts.Invitation, error) {
	out := []Member{}
	var invited []accounts.Invitation
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "member.list", func(t *gate.Tx) error {
		org := t.Org()
		if err := t.Authorize(authz.MemberRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		if out, err = members(ctx, t, org.ID); err != nil {
			return err
		}
		if invited, err = accounts.PendingInvitations(ctx, t, org.ID); err != nil {
			return err
		}
		t.Detail("count", fmt.Sprint(len(out)))
		return nil
	})
	return out, invited, err
}

// members lists, in t, the organization's members by e-mail address, each
// with the roles they hold there. A participant's role says that they are
// in a study, at a site: clinical information, shown only to a requester
// who may list that site's participants (authz.ParticipantRead); a person
// who is only a participant is not listed to anyone else.
func members(ctx context.Context, t *gate.Tx, orgID string) ([]Member, error) {
	all, err := authz.OrgAssignments(ctx, t, orgID)
	if err != nil {
		return nil, err
	}
	out := []Member{}
	byAccount := map[string]int{}
	for _, as := range all {
		if as.Role == authz.Participant &&
			!t.Allowed(authz.ParticipantRead, authz.Resource{OrgID: orgID, StudyID: as.StudyID, SiteID: as.SiteID}) {
			continue
		}
		i, ok := byAccount[as.AccountID]
		if !ok {
			acc, err := accounts.ByID(ctx, t, as.AccountID)
			if err != nil {
				return nil, fmt.Errorf("list members: %w", err)
			}
			i = len(out)
			byAccount[as.AccountID] = i
			out = append(out, Member{Account: acc})
		}
		out[i].Assignments = append(out[i].Assignments, as)
	}
	slices.SortFunc(out, func(x, y Member) int { return strings.Compare(x.Account.Email, y.Account.Email) })
	return out, nil
}

// Grant asks for a role at a scope: the organization (no study, no site), a
// study, or a site (its study may be left out).
type Grant struct {
	Role    authz.Role
	StudyID string
	SiteID  string
}

// scope resolves the scope a request names within the organization. A
// study or site that is not the organization's is not found (ACL-08); a
// site of another study than the one named is Invalid.
func scope(ctx context.Context, q sqldb.Querier, orgID, studyID, siteID string) (authz.Resource, error) {
	r := authz.Resource{OrgID: orgID}
	switch {
	case siteID != "":
		site, err := orgs.SiteByID(ctx, q, orgID, siteID)
		if err != nil {
			return authz.Resource{}, err
		}
		if studyID != "" && studyID != site.StudyID {
			return authz.Resource{}, errs.E(errs.Invalid, "the site does not belong to the study named")
		}
		r.StudyID, r.SiteID = site.StudyID, site.ID
	case studyID != "":
		st, err := orgs.StudyByID(ctx, q, orgID, studyID)
		if err != nil {
			return authz.Resource{}, err
		}
		r.StudyID = st.ID
	}
	return r, nil
}

func scopeOf(as authz.Assignment) authz.Resource {
	return authz.Resource{OrgID: as.OrgID, StudyID: as.StudyID, SiteID: as.SiteID}
}

// member checks that an account holds a role in the organization: roles
// are given to members; people join by invitation.
func member(ctx context.Context, q sqldb.Querier, orgID, accountID string) ([]authz.Assignment, error) {
	if !ids.Valid(accountID) {
		return nil, errs.E(errs.NotFound, "member not found")
	}
	as, err := authz.AssignmentsOf(ctx, q, orgID, accountID)
	if err != nil {
		return nil, err
	}
	if len(as) == 0 {
		return nil, errs.E(errs.NotFound, "member not found")
	}
	return as, nil
}

// recordScope names an assignment's scope in the audit event.
func recordScope(t *gate.Tx, as authz.Assignment) {
	t.Detail("level", as.Level().String())
	if as.StudyID != "" {
		t.Detail("study", as.StudyID)
	}
	if as.SiteID != "" {
		t.Detail("site", as.SiteID)
	}
}

// Assign gives a member of the organization a role (ACL-02). The requester
// needs member.invite at the scope and every permission of the role there
// (authz.CanGrant), and a fresh confirmation (ACL-09). A security event
// names the member, the new role and its scope.
func (s *Service) Assign(ctx context.Context, a gate.Actor, slug, accountID string, g Grant) (authz.Assignment, error) {
	var out authz.Assignment
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "role.assign", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("account", accountID)
		if err := t.Authorize(authz.MemberInvite, authz.Resource{OrgID: org.ID, StudyID: g.StudyID, SiteID: g.SiteID}); err != nil {
			return err
		}
		r, err := scope(ctx, t, org.ID, g.StudyID, g.SiteID)
		if err != nil {
			return err
		}
		if err := t.Authorize(authz.MemberInvite, r); err != nil {
			return err
		}
		if _, err := member(ctx, t, org.ID, accountID); err != nil {
			return err
		}
		as, err := authz.ResolveRole(ctx, t, authz.Assignment{
			OrgID: org.ID, AccountID: accountID, Role: g.Role, StudyID: r.StudyID, SiteID: r.SiteID,
		})
		if err != nil {
			return err
		}
		t.Security()
		t.Detail("new_role", string(as.Role))
		recordScope(t, as)
		if !authz.CanGrant(t.Subject, as) {
			return errs.E(errs.Forbidden, "you cannot grant the role %s here: it holds permissions you do not have", as.Role)
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		if out, err = authz.Assign(ctx, t, as); err != nil {
			return err
		}
		t.Detail("assignment", out.ID)
		return nil
	})
	if err != nil {
		return authz.Assignment{}, err
	}
	return out, nil
}

// Unassign takes a role assignment away from a member (ACL-02), under the
// same rule as Assign: only someone who could grant it. The last
// organization admin stays (Conflict). A security event names the member,
// the old role and its scope.
func (s *Service) Unassign(ctx context.Context, a gate.Actor, slug, accountID, assignmentID string) (authz.Assignment, error) {
	var as authz.Assignment
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "role.unassign", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("account", accountID)
		// Who may give roles somewhere here may look the assignment up;
		// taking it away needs the right at its scope.
		if err := t.AuthorizeList(authz.MemberInvite, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		if as, err = authz.AssignmentByID(ctx, t, org.ID, accountID, assignmentID); err != nil {
			return err
		}
		if err := t.Authorize(authz.MemberInvite, scopeOf(as)); err != nil {
			return err
		}
		t.Security()
		t.Detail("assignment", as.ID)
		t.Detail("old_role", string(as.Role))
		recordScope(t, as)
		if !authz.CanGrant(t.Subject, as) {
			return errs.E(errs.Forbidden, "you cannot remove the role %s here: it holds permissions you do not have", as.Role)
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		return authz.Unassign(ctx, t, t.Dialect(), as)
	})
	if err != nil {
		return authz.Assignment{}, err
	}
	return as, nil
}

// Definition describes a role the organization can assign: a built-in one
// (no ID) or one of its custom roles.
type Definition struct {
	ID          string
	Name        authz.Role
	Builtin     bool
	About       string
	Levels      []authz.Level
	Permissions []authz.Action
	CreatedAt   time.Time
}

// Roles lists the roles the organization can assign: the built-in ones,
// then its custom roles by name. Organization admins and managers only.
func (s *Service) Roles(ctx context.Context, a gate.Actor, slug string) ([]Definition, error) {
	var out []Definition
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "role.list", func(t *gate.Tx) error {
		org := t.Org()
		if err := t.Authorize(authz.MemberRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		for _, r := range authz.BuiltinRoles() {
			out = append(out, Definition{Name: r, Builtin: true, About: r.About(), Levels: r.Levels(),
				Permissions: authz.PermissionsOf(authz.Assignment{Role: r})})
		}
		custom, err := authz.CustomRoles(ctx, t, org.ID)
		if err != nil {
			return err
		}
		for _, c := range custom {
			out = append(out, definitionOf(c))
		}
		return nil
	})
	return out, err
}

func definitionOf(c authz.CustomRole) Definition {
	return Definition{ID: c.ID, Name: authz.Role(c.Name), Levels: c.Levels, Permissions: c.Permissions,
		CreatedAt: time.UnixMicro(c.CreatedAt)}
}

// Spec is a custom role as a request asks for it.
type Spec struct {
	Name        string
	Levels      []string
	Permissions []string
}

// CreateRole defines a custom role (ACL-03): organization admins only,
// with a fresh confirmation (ACL-09); a security event naming the role and
// its permissions. Defining a role grants nothing: assigning it follows
// authz.CanGrant like any role.
func (s *Service) CreateRole(ctx context.Context, a gate.Actor, slug string, spec Spec) (Definition, error) {
	var out authz.CustomRole
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "role.create", func(t *gate.Tx) error {
		org := t.Org()
		if err := t.Authorize(authz.RoleManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		t.Security()
		c := authz.CustomRole{OrgID: org.ID, Name: spec.Name, CreatedBy: t.Subject.AccountID}
		for _, l := range spec.Levels {
			lv, err := authz.ParseLevel(l)
			if err != nil {
				return err
			}
			c.Levels = append(c.Levels, lv)
		}
		for _, p := range spec.Permissions {
			c.Permissions = append(c.Permissions, authz.Action(p))
		}
		var err error
		if c, err = authz.CheckCustomRole(c); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		if out, err = authz.CreateCustomRole(ctx, t, c); err != nil {
			return err
		}
		t.Object("role", out.ID)
		t.Detail("name", out.Name)
		t.Detail("levels", joinLevels(out.Levels))
		t.Detail("permissions", joinActions(out.Permissions))
		return nil
	})
	if err != nil {
		return Definition{}, err
	}
	return definitionOf(out), nil
}

// DeleteRole deletes a custom role that no one holds (a role in use is a
// Conflict): organization admins only, with a fresh confirmation.
func (s *Service) DeleteRole(ctx context.Context, a gate.Actor, slug, roleID string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "role.delete", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("role", roleID)
		if err := t.Authorize(authz.RoleManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		t.Security()
		c, err := authz.CustomRoleByID(ctx, t, org.ID, roleID)
		if err != nil {
			return err
		}
		t.Detail("name", c.Name)
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		_, err = authz.DeleteCustomRole(ctx, t, org.ID, c.ID)
		return err
	})
}

// participantOf finds a participant of a study of the organization; the
// same pseudonym in another study is not found.
func participantOf(ctx context.Context, q sqldb.Querier, orgID, studyID, pseudonym string) (authz.Resource, error) {
	p, err := participants.ByPseudonym(ctx, q, orgID, pseudonym)
	if err != nil {
		return authz.Resource{}, err
	}
	if p.StudyID != studyID {
		return authz.Resource{}, errs.E(errs.NotFound, "participant not found")
	}
	return authz.Resource{OrgID: p.OrgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Pseudonym}, nil
}

// AssignCare makes a member the care provider of a participant (ACL-05):
// study and organization admins (care.assign). The member must hold a
// care-provider role that reaches the participant's site; from the next
// request on they reach this participant. A security event.
func (s *Service) AssignCare(ctx context.Context, a gate.Actor, slug, studyID, pseudonym, accountID string) (authz.Relation, error) {
	var rel authz.Relation
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "care.assign", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("participant", pseudonym)
		if err := t.Authorize(authz.CareAssign, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		r, err := participantOf(ctx, t, org.ID, studyID, pseudonym)
		if err != nil {
			return err
		}
		t.Participant(r.ParticipantID)
		if err := t.Authorize(authz.CareAssign, r); err != nil {
			return err
		}
		t.Security()
		as, err := member(ctx, t, org.ID, accountID)
		if err != nil {
			return err
		}
		t.Detail("care_provider", accountID)
		// Would the relation let them read the participant as a care
		// provider? Only then is it worth recording.
		carer := authz.Subject{AccountID: accountID, OrgID: org.ID, Relations: []authz.Relation{{
			OrgID: org.ID, ParticipantID: r.ParticipantID, AccountID: accountID, Kind: authz.RelationCare}}}
		for _, x := range as {
			if x.Role == authz.CareProvider {
				carer.Assignments = append(carer.Assignments, x)
			}
		}
		if !authz.Decide(carer, authz.ParticipantRead, r).Allow {
			return errs.E(errs.Invalid, "this person holds no care-provider role at this participant's site")
		}
		rel, err = authz.Relate(ctx, t, authz.Relation{OrgID: org.ID, ParticipantID: r.ParticipantID,
			AccountID: accountID, Kind: authz.RelationCare, CreatedBy: t.Subject.AccountID})
		if err != nil {
			return err
		}
		t.Detail("relation", rel.ID)
		return nil
	})
	if err != nil {
		return authz.Relation{}, err
	}
	return rel, nil
}

// UnassignCare ends a care provider's assignment to a participant; from
// the next request on they no longer reach the participant. A security
// event.
func (s *Service) UnassignCare(ctx context.Context, a gate.Actor, slug, studyID, pseudonym, accountID string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "care.unassign", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("participant", pseudonym)
		if err := t.Authorize(authz.CareAssign, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		r, err := participantOf(ctx, t, org.ID, studyID, pseudonym)
		if err != nil {
			return err
		}
		t.Participant(r.ParticipantID)
		if err := t.Authorize(authz.CareAssign, r); err != nil {
			return err
		}
		t.Security()
		if !ids.Valid(accountID) {
			return errs.E(errs.NotFound, "no such assignment to this participant")
		}
		t.Detail("care_provider", accountID)
		rel, err := authz.Unrelate(ctx, t, org.ID, r.ParticipantID, accountID, authz.RelationCare)
		if err != nil {
			return err
		}
		t.Detail("relation", rel.ID)
		return nil
	})
}

// SetFieldVisibility replaces the field-visibility rules of a study
// (ACL-04): study and organization admins. Roles are named as assigned:
// built-in, or custom roles of the organization. A security event with the
// number of rules; the rules themselves are the study's settings.
func (s *Service) SetFieldVisibility(ctx context.Context, a gate.Actor, slug, studyID string, rules authz.FieldRules) (authz.FieldRules, error) {
	var out authz.FieldRules
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "visibility.set", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		if err := t.Authorize(authz.VisibilityManage, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		t.Security()
		custom, err := authz.CustomRoles(ctx, t, org.ID)
		if err != nil {
			return err
		}
		known := func(r authz.Role) bool {
			return r.IsBuiltin() || slices.ContainsFunc(custom, func(c authz.CustomRole) bool { return c.Name == string(r) })
		}
		if out, err = authz.CheckFieldRules(rules, known); err != nil {
			return err
		}
		if err := authz.SetFieldRules(ctx, t, org.ID, st.ID, out); err != nil {
			return err
		}
		n := 0
		for _, rs := range out {
			n += len(rs)
		}
		t.Detail("hidden_fields", fmt.Sprint(len(out)))
		t.Detail("rules", fmt.Sprint(n))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func joinLevels(ls []authz.Level) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.String()
	}
	return strings.Join(s, ",")
}

func joinActions(as []authz.Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ",")
}

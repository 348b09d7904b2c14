// Package orgadmin offers the tenancy tree (package orgs) to requests:
// listing, reading and creating studies and sites, and the organizations a
// person belongs to. Every method runs its
// work through the gate: authorized before anything is read, in one
// transaction, audited. An object the requester may not see is reported as
// not found (ACL-08).
package orgadmin

import (
	"context"
	"fmt"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
)

// Service offers studies and sites to requests.
type Service struct {
	Gate *gate.Gate
}

func studyResource(orgID, studyID string) authz.Resource {
	return authz.Resource{OrgID: orgID, StudyID: studyID}
}

func siteResource(site orgs.Site) authz.Resource {
	return authz.Resource{OrgID: site.OrgID, StudyID: site.StudyID, SiteID: site.ID}
}

// ListStudies lists the studies of the organization that the requester may
// read. Every member may ask (study.list), also of an organization without
// studies.
func (s *Service) ListStudies(ctx context.Context, a gate.Actor, slug string) ([]orgs.Study, error) {
	out := []orgs.Study{}
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "study.list", func(t *gate.Tx) error {
		org := t.Org()
		if err := t.Authorize(authz.StudyList, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		all, err := orgs.Studies(ctx, t, org.ID)
		if err != nil {
			return err
		}
		for _, st := range all {
			if t.Allowed(authz.StudyRead, studyResource(org.ID, st.ID)) {
				out = append(out, st)
			}
		}
		return nil
	})
	return out, err
}

// CreateStudy adds a study to the organization.
func (s *Service) CreateStudy(ctx context.Context, a gate.Actor, slug string, kind orgs.StudyKind, name string) (orgs.Study, error) {
	var st orgs.Study
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "study.create", func(t *gate.Tx) error {
		if err := t.Authorize(authz.StudyCreate, authz.Resource{OrgID: t.Org().ID}); err != nil {
			return err
		}
		var err error
		if st, err = orgs.CreateStudy(ctx, t, t.Org().ID, kind, name); err != nil {
			return err
		}
		t.Object("study", st.ID)
		t.Detail("kind", string(st.Kind))
		return nil
	})
	return st, err
}

// Study returns one study the requester may read.
func (s *Service) Study(ctx context.Context, a gate.Actor, slug, studyID string) (orgs.Study, error) {
	var st orgs.Study
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "study.read", func(t *gate.Tx) error {
		t.Object("study", studyID)
		if err := t.Authorize(authz.StudyRead, studyResource(t.Org().ID, studyID)); err != nil {
			return err
		}
		var err error
		st, err = orgs.StudyByID(ctx, t, t.Org().ID, studyID)
		return err
	})
	return st, err
}

// CreateSite adds a site to a study.
func (s *Service) CreateSite(ctx context.Context, a gate.Actor, slug, studyID, name string) (orgs.Site, error) {
	var site orgs.Site
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "site.create", func(t *gate.Tx) error {
		org := t.Org()
		if err := t.Authorize(authz.SiteCreate, studyResource(org.ID, studyID)); err != nil {
			return err
		}
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		if site, err = orgs.CreateSite(ctx, t, org.ID, st.ID, name); err != nil {
			return err
		}
		t.Object("site", site.ID)
		return nil
	})
	return site, err
}

// Site returns one site of a study that the requester may read.
func (s *Service) Site(ctx context.Context, a gate.Actor, slug, studyID, siteID string) (orgs.Site, error) {
	var site orgs.Site
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "site.read", func(t *gate.Tx) error {
		t.Object("site", siteID)
		org := t.Org()
		if err := t.Authorize(authz.SiteRead, authz.Resource{OrgID: org.ID, StudyID: studyID, SiteID: siteID}); err != nil {
			return err
		}
		var err error
		if site, err = orgs.SiteByID(ctx, t, org.ID, siteID); err != nil {
			return err
		}
		if site.StudyID != studyID {
			return errs.E(errs.NotFound, "site not found")
		}
		return nil
	})
	return site, err
}

// ListSites lists the sites of a study that the requester may read.
func (s *Service) ListSites(ctx context.Context, a gate.Actor, slug, studyID string) ([]orgs.Site, error) {
	out := []orgs.Site{}
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "site.list", func(t *gate.Tx) error {
		t.Object("study", studyID)
		org := t.Org()
		if err := t.Authorize(authz.StudyRead, studyResource(org.ID, studyID)); err != nil {
			return err
		}
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		all, err := orgs.Sites(ctx, t, org.ID, st.ID)
		if err != nil {
			return err
		}
		for _, site := range all {
			if t.Allowed(authz.SiteRead, siteResource(site)) {
				out = append(out, site)
			}
		}
		return nil
	})
	return out, err
}

// Membership is an organization the requester belongs to, with the roles
// they hold in it.
type Membership struct {
	Org         orgs.Organization
	Assignments []authz.Assignment
}

// Memberships lists the organizations in which the requester holds a
// role, with their roles there, for their start page. It is the account's
// own work (Gate.Own): a person may always read where they belong, so the
// read is recorded nowhere.
func (s *Service) Memberships(ctx context.Context, a gate.Actor) ([]Membership, error) {
	var out []Membership
	err := s.Gate.Own(ctx, a, "organization.list", func(o *gate.OpTx) error {
		o.Nothing()
		orgIDs, err := accounts.Organizations(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		for _, id := range orgIDs {
			org, err := orgs.OrganizationByID(ctx, o, id)
			if errs.Is(err, errs.NotFound) {
				continue
			}
			if err != nil {
				return err
			}
			as, err := authz.AssignmentsOf(ctx, o, id, a.AccountID)
			if err != nil {
				return err
			}
			out = append(out, Membership{Org: org, Assignments: as})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Leave ends the requester's membership of the organization: every role
// they hold there as staff, recorded as member.leave, a security event, in
// the organization's trail and the account's. The last organization admin
// cannot leave (Conflict) until someone else is made one. A participant's
// own role stays: leaving a study is a withdrawal, which the study team
// records. An organization the requester holds no staff role in is
// NotFound, like one that does not exist.
func (s *Service) Leave(ctx context.Context, a gate.Actor, slug string) error {
	return s.Gate.Own(ctx, a, "member.leave", func(o *gate.OpTx) error {
		org, err := orgs.OrganizationBySlug(ctx, o, slug)
		if err != nil {
			return err
		}
		held, err := authz.AssignmentsOf(ctx, o, org.ID, a.AccountID)
		if err != nil {
			return err
		}
		var staff []authz.Assignment
		for _, as := range held {
			if as.Role != authz.Participant {
				staff = append(staff, as)
			}
		}
		if len(staff) == 0 {
			return errs.E(errs.NotFound, "organization not found")
		}
		o.InEach([]string{org.ID, ""})
		o.Object("account", a.AccountID)
		o.Security()
		o.Detail("roles", fmt.Sprint(len(staff)))
		for _, as := range staff {
			if err := authz.Unassign(ctx, o, o.Dialect(), as); err != nil {
				return err
			}
		}
		return nil
	})
}

package orgs

import (
	"context"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
)

// Service offers the tenancy tree to requests. Every method runs its work
// through the gate: authorized, in one transaction, audited. An object the
// requester may not see is reported as not found (ACL-08).
type Service struct {
	Gate *gate.Gate
}

// Resolve finds the organization of a request's slug. A malformed or
// unknown slug is gate.ErrDenied, the one answer for what does not exist
// and what the requester may not see (ACL-08); whether the requester
// belongs to the organization is the gate's question.
func Resolve(ctx context.Context, q sqldb.Querier, slug string) (Organization, error) {
	if CheckSlug(slug) != nil {
		return Organization{}, gate.ErrDenied
	}
	o, err := OrganizationBySlug(ctx, q, slug)
	if errs.Is(err, errs.NotFound) {
		return Organization{}, gate.ErrDenied
	}
	return o, err
}

func (s *Service) org(ctx context.Context, slug string) (Organization, error) {
	return Resolve(ctx, s.Gate.DB, slug)
}

func studyResource(st Study) authz.Resource {
	return authz.Resource{OrgID: st.OrgID, StudyID: st.ID}
}

func siteResource(site Site) authz.Resource {
	return authz.Resource{OrgID: site.OrgID, StudyID: site.StudyID, SiteID: site.ID}
}

// ListStudies lists the studies of the organization that the requester may
// read.
func (s *Service) ListStudies(ctx context.Context, a gate.Actor, slug string) ([]Study, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return nil, err
	}
	out := []Study{}
	err = s.Gate.Do(ctx, a, org.ID, "study.list", func(t *gate.Tx) error {
		all, err := Studies(ctx, t, org.ID)
		if err != nil {
			return err
		}
		for _, st := range all {
			if t.Allowed(authz.StudyRead, studyResource(st)) {
				out = append(out, st)
			}
		}
		return nil
	})
	return out, err
}

// CreateStudy adds a study to the organization.
func (s *Service) CreateStudy(ctx context.Context, a gate.Actor, slug string, kind StudyKind, name string) (Study, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return Study{}, err
	}
	var st Study
	err = s.Gate.Do(ctx, a, org.ID, "study.create", func(t *gate.Tx) error {
		if err := t.Authorize(authz.StudyCreate, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		st, err = CreateStudy(ctx, t.Tx, org.ID, kind, name)
		if err != nil {
			return err
		}
		t.Object("study", st.ID)
		t.Detail("kind", string(st.Kind))
		return nil
	})
	return st, err
}

// Study returns one study the requester may read.
func (s *Service) Study(ctx context.Context, a gate.Actor, slug, studyID string) (Study, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return Study{}, err
	}
	var st Study
	err = s.Gate.Do(ctx, a, org.ID, "study.read", func(t *gate.Tx) error {
		t.Object("study", studyID)
		if st, err = StudyByID(ctx, t, org.ID, studyID); err != nil {
			return err
		}
		return t.Authorize(authz.StudyRead, studyResource(st))
	})
	return st, err
}

// CreateSite adds a site to a study.
func (s *Service) CreateSite(ctx context.Context, a gate.Actor, slug, studyID, name string) (Site, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return Site{}, err
	}
	var site Site
	err = s.Gate.Do(ctx, a, org.ID, "site.create", func(t *gate.Tx) error {
		st, err := StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		if err := t.Authorize(authz.SiteCreate, studyResource(st)); err != nil {
			return err
		}
		if site, err = CreateSite(ctx, t.Tx, org.ID, st.ID, name); err != nil {
			return err
		}
		t.Object("site", site.ID)
		return nil
	})
	return site, err
}

// Site returns one site of a study that the requester may read.
func (s *Service) Site(ctx context.Context, a gate.Actor, slug, studyID, siteID string) (Site, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return Site{}, err
	}
	var site Site
	err = s.Gate.Do(ctx, a, org.ID, "site.read", func(t *gate.Tx) error {
		t.Object("site", siteID)
		if site, err = SiteByID(ctx, t, org.ID, siteID); err != nil {
			return err
		}
		if site.StudyID != studyID {
			return errs.E(errs.NotFound, "site not found")
		}
		return t.Authorize(authz.SiteRead, siteResource(site))
	})
	return site, err
}

// ListSites lists the sites of a study that the requester may read.
func (s *Service) ListSites(ctx context.Context, a gate.Actor, slug, studyID string) ([]Site, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return nil, err
	}
	out := []Site{}
	err = s.Gate.Do(ctx, a, org.ID, "site.list", func(t *gate.Tx) error {
		t.Object("study", studyID)
		st, err := StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		if err := t.Authorize(authz.StudyRead, studyResource(st)); err != nil {
			return err
		}
		all, err := Sites(ctx, t, org.ID, st.ID)
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

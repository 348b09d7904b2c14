package orgs

import (
	"context"
	"database/sql"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Service offers the tenancy tree to requests. Every method takes the
// requesting Subject and asks authz before it reads or writes; an object the
// subject may not see is reported as not found (ACL-08).
type Service struct {
	DB *sqldb.DB
}

var errOrgNotFound = errs.E(errs.NotFound, "organization not found")

// Subject loads who the account is within the organization named by slug.
// An organization in which the account holds no role is not found.
func (s *Service) Subject(ctx context.Context, accountID, slug string) (authz.Subject, error) {
	if CheckSlug(slug) != nil {
		return authz.Subject{}, errOrgNotFound
	}
	org, err := OrganizationBySlug(ctx, s.DB, slug)
	if errs.Is(err, errs.NotFound) {
		return authz.Subject{}, errOrgNotFound
	}
	if err != nil {
		return authz.Subject{}, err
	}
	as, err := authz.AssignmentsOf(ctx, s.DB, org.ID, accountID)
	if err != nil {
		return authz.Subject{}, err
	}
	if len(as) == 0 {
		return authz.Subject{}, errOrgNotFound
	}
	return authz.Subject{AccountID: accountID, OrgID: org.ID, Assignments: as}, nil
}

func allowed(subj authz.Subject, a authz.Action, r authz.Resource) bool {
	return authz.Decide(subj, a, r).Allow
}

// ListStudies lists the studies of the subject's organization that the
// subject may read.
func (s *Service) ListStudies(ctx context.Context, subj authz.Subject) ([]Study, error) {
	all, err := Studies(ctx, s.DB, subj.OrgID)
	if err != nil {
		return nil, err
	}
	out := []Study{}
	for _, st := range all {
		if allowed(subj, authz.StudyRead, authz.Resource{OrgID: st.OrgID, StudyID: st.ID}) {
			out = append(out, st)
		}
	}
	return out, nil
}

// CreateStudy adds a study to the subject's organization.
func (s *Service) CreateStudy(ctx context.Context, subj authz.Subject, kind StudyKind, name string) (Study, error) {
	if !allowed(subj, authz.StudyCreate, authz.Resource{OrgID: subj.OrgID}) {
		return Study{}, errs.E(errs.Forbidden, "your roles do not allow creating studies")
	}
	var st Study
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		st, err = CreateStudy(ctx, tx, subj.OrgID, kind, name)
		return err
	})
	return st, err
}

// Study returns one study the subject may read.
func (s *Service) Study(ctx context.Context, subj authz.Subject, studyID string) (Study, error) {
	st, err := StudyByID(ctx, s.DB, subj.OrgID, studyID)
	if err != nil {
		return Study{}, err
	}
	if !allowed(subj, authz.StudyRead, authz.Resource{OrgID: st.OrgID, StudyID: st.ID}) {
		return Study{}, errs.E(errs.NotFound, "study not found")
	}
	return st, nil
}

// CreateSite adds a site to a study.
func (s *Service) CreateSite(ctx context.Context, subj authz.Subject, studyID, name string) (Site, error) {
	st, err := s.Study(ctx, subj, studyID)
	if err != nil {
		return Site{}, err
	}
	if !allowed(subj, authz.SiteCreate, authz.Resource{OrgID: st.OrgID, StudyID: st.ID}) {
		return Site{}, errs.E(errs.Forbidden, "your roles do not allow creating sites in this study")
	}
	var site Site
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		site, err = CreateSite(ctx, tx, subj.OrgID, st.ID, name)
		return err
	})
	return site, err
}

// Site returns one site of a study that the subject may read.
func (s *Service) Site(ctx context.Context, subj authz.Subject, studyID, siteID string) (Site, error) {
	site, err := SiteByID(ctx, s.DB, subj.OrgID, siteID)
	if err != nil {
		return Site{}, err
	}
	if site.StudyID != studyID ||
		!allowed(subj, authz.SiteRead, authz.Resource{OrgID: site.OrgID, StudyID: site.StudyID, SiteID: site.ID}) {
		return Site{}, errs.E(errs.NotFound, "site not found")
	}
	return site, nil
}

// ListSites lists the sites of a study that the subject may read.
func (s *Service) ListSites(ctx context.Context, subj authz.Subject, studyID string) ([]Site, error) {
	st, err := s.Study(ctx, subj, studyID)
	if err != nil {
		return nil, err
	}
	all, err := Sites(ctx, s.DB, subj.OrgID, st.ID)
	if err != nil {
		return nil, err
	}
	out := []Site{}
	for _, site := range all {
		if allowed(subj, authz.SiteRead, authz.Resource{OrgID: site.OrgID, StudyID: site.StudyID, SiteID: site.ID}) {
			out = append(out, site)
		}
	}
	return out, nil
}

// Package orgs owns the tenancy tree: organizations, their studies (kind
// study, registry or care program) and the studies' sites. Every function
// that reads or writes below the organization takes the organization id and
// scopes its query by it, so an identifier from another organization is not
// found (LIFE-05, ACL-08).
package orgs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Organization is a tenant: a customer with its own policies, people and data.
type Organization struct {
	ID        string
	Slug      string
	Name      string
	CreatedAt int64
}

// StudyKind says what a study is for.
type StudyKind string

const (
	KindStudy       StudyKind = "study"
	KindRegistry    StudyKind = "registry"
	KindCareProgram StudyKind = "care-program"
)

// ParseStudyKind checks a kind named by a person or a request.
func ParseStudyKind(s string) (StudyKind, error) {
	switch k := StudyKind(s); k {
	case KindStudy, KindRegistry, KindCareProgram:
		return k, nil
	}
	return "", errs.E(errs.Invalid, "unknown study kind %q (want study, registry or care-program)", s)
}

// Study is a clinical study, a registry or a care program of an organization.
type Study struct {
	ID        string
	OrgID     string
	Kind      StudyKind
	Name      string
	CreatedAt int64
}

// Site is an institute taking part in a study.
type Site struct {
	ID        string
	OrgID     string
	StudyID   string
	Name      string
	CreatedAt int64
}

var slugPattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$`)

// CheckSlug validates an organization's short name as used in URLs and
// commands: lower-case letters, digits and inner hyphens, at most 40.
func CheckSlug(s string) error {
	if !slugPattern.MatchString(s) {
		return errs.E(errs.Invalid, "organization slug %q must be 1-40 lower-case letters, digits or inner hyphens", s)
	}
	return nil
}

// SlugFrom derives a slug from an organization's name.
func SlugFrom(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 40 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

// CheckName validates a display name of an organization, study or site.
func CheckName(what, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errs.E(errs.Invalid, "%s name is empty", what)
	}
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 200 {
		return "", errs.E(errs.Invalid, "%s name must be valid text of at most 200 characters", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", errs.E(errs.Invalid, "%s name contains a control character", what)
		}
	}
	return s, nil
}

// CreateOrganization adds a tenant. An empty slug is derived from the name.
func CreateOrganization(ctx context.Context, tx sqldb.Tx, name, slug string) (Organization, error) {
	name, err := CheckName("organization", name)
	if err != nil {
		return Organization{}, err
	}
	if slug == "" {
		slug = SlugFrom(name)
	}
	if err := CheckSlug(slug); err != nil {
		return Organization{}, err
	}
	o := Organization{ID: ids.New(), Slug: slug, Name: name, CreatedAt: sqldb.Now()}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)`,
		o.ID, o.Slug, o.Name, o.CreatedAt)
	if sqldb.IsUniqueViolation(err) {
		return Organization{}, errs.E(errs.Conflict, "an organization with slug %q exists already", slug)
	}
	if err != nil {
		return Organization{}, fmt.Errorf("create organization: %w", err)
	}
	return o, nil
}

// OrganizationBySlug finds a tenant by its slug.
func OrganizationBySlug(ctx context.Context, q sqldb.Querier, slug string) (Organization, error) {
	var o Organization
	err := q.QueryRowContext(ctx,
		`SELECT id, slug, name, created_at FROM organizations WHERE slug = $1`, slug,
	).Scan(&o.ID, &o.Slug, &o.Name, &o.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Organization{}, errs.E(errs.NotFound, "no organization %q", slug)
	}
	if err != nil {
		return Organization{}, fmt.Errorf("find organization: %w", err)
	}
	return o, nil
}

// OrganizationByID finds a tenant by id.
func OrganizationByID(ctx context.Context, q sqldb.Querier, id string) (Organization, error) {
	if !ids.Valid(id) {
		return Organization{}, errs.E(errs.NotFound, "organization not found")
	}
	var o Organization
	err := q.QueryRowContext(ctx,
		`SELECT id, slug, name, created_at FROM organizations WHERE id = $1`, id,
	).Scan(&o.ID, &o.Slug, &o.Name, &o.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Organization{}, errs.E(errs.NotFound, "organization not found")
	}
	if err != nil {
		return Organization{}, fmt.Errorf("find organization: %w", err)
	}
	return o, nil
}

// CreateStudy adds a study, registry or care program to an organization.
func CreateStudy(ctx context.Context, tx sqldb.Tx, orgID string, kind StudyKind, name string) (Study, error) {
	if _, err := ParseStudyKind(string(kind)); err != nil {
		return Study{}, err
	}
	name, err := CheckName("study", name)
	if err != nil {
		return Study{}, err
	}
	s := Study{ID: ids.New(), OrgID: orgID, Kind: kind, Name: name, CreatedAt: sqldb.Now()}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO studies (id, org_id, kind, name, created_at) VALUES ($1, $2, $3, $4, $5)`,
		s.ID, s.OrgID, s.Kind, s.Name, s.CreatedAt)
	if sqldb.IsUniqueViolation(err) {
		return Study{}, errs.E(errs.Conflict, "a study named %q exists already", name)
	}
	if err != nil {
		return Study{}, fmt.Errorf("create study: %w", err)
	}
	return s, nil
}

// StudyByID finds a study of the organization. A study of another
// organization is reported exactly like one that does not exist.
func StudyByID(ctx context.Context, q sqldb.Querier, orgID, studyID string) (Study, error) {
	if !ids.Valid(studyID) {
		return Study{}, errs.E(errs.NotFound, "study not found")
	}
	var s Study
	err := q.QueryRowContext(ctx,
		`SELECT id, org_id, kind, name, created_at FROM studies WHERE org_id = $1 AND id = $2`,
		orgID, studyID,
	).Scan(&s.ID, &s.OrgID, &s.Kind, &s.Name, &s.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Study{}, errs.E(errs.NotFound, "study not found")
	}
	if err != nil {
		return Study{}, fmt.Errorf("find study: %w", err)
	}
	return s, nil
}

// Studies lists an organization's studies by name.
func Studies(ctx context.Context, q sqldb.Querier, orgID string) ([]Study, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT id, org_id, kind, name, created_at FROM studies WHERE org_id = $1 ORDER BY name, id`, orgID)
	if err != nil {
		return nil, fmt.Errorf("list studies: %w", err)
	}
	defer rows.Close()
	var out []Study
	for rows.Next() {
		var s Study
		if err := rows.Scan(&s.ID, &s.OrgID, &s.Kind, &s.Name, &s.CreatedAt); err != nil {
			return nil, fmt.Errorf("list studies: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// CreateSite adds a site to a study of the organization.
func CreateSite(ctx context.Context, tx sqldb.Tx, orgID, studyID, name string) (Site, error) {
	if _, err := StudyByID(ctx, tx, orgID, studyID); err != nil {
		return Site{}, err
	}
	name, err := CheckName("site", name)
	if err != nil {
		return Site{}, err
	}
	s := Site{ID: ids.New(), OrgID: orgID, StudyID: studyID, Name: name, CreatedAt: sqldb.Now()}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO sites (id, org_id, study_id, name, created_at) VALUES ($1, $2, $3, $4, $5)`,
		s.ID, s.OrgID, s.StudyID, s.Name, s.CreatedAt)
	if sqldb.IsUniqueViolation(err) {
		return Site{}, errs.E(errs.Conflict, "a site named %q exists already in this study", name)
	}
	if err != nil {
		return Site{}, fmt.Errorf("create site: %w", err)
	}
	return s, nil
}

// SiteByID finds a site of the organization.
func SiteByID(ctx context.Context, q sqldb.Querier, orgID, siteID string) (Site, error) {
	if !ids.Valid(siteID) {
		return Site{}, errs.E(errs.NotFound, "site not found")
	}
	var s Site
	err := q.QueryRowContext(ctx,
		`SELECT id, org_id, study_id, name, created_at FROM sites WHERE org_id = $1 AND id = $2`,
		orgID, siteID,
	).Scan(&s.ID, &s.OrgID, &s.StudyID, &s.Name, &s.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Site{}, errs.E(errs.NotFound, "site not found")
	}
	if err != nil {
		return Site{}, fmt.Errorf("find site: %w", err)
	}
	return s, nil
}

// Sites lists a study's sites by name.
func Sites(ctx context.Context, q sqldb.Querier, orgID, studyID string) ([]Site, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT id, org_id, study_id, name, created_at FROM sites WHERE org_id = $1 AND study_id = $2 ORDER BY name, id`,
		orgID, studyID)
	if err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	defer rows.Close()
	var out []Site
	for rows.Next() {
		var s Site
		if err := rows.Scan(&s.ID, &s.OrgID, &s.StudyID, &s.Name, &s.CreatedAt); err != nil {
			return nil, fmt.Errorf("list sites: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

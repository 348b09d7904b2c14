// Package authz owns who may do what: roles, their assignments to people at
// organization, study or site scope, and (with the authorization work) the
// one decision function every access passes through.
package authz

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Role names a built-in role.
type Role string

const (
	OrgAdmin         Role = "org-admin"
	OrgManager       Role = "org-manager"
	StudyAdmin       Role = "study-admin"
	DataManager      Role = "data-manager"
	SiteInvestigator Role = "site-investigator"
	Monitor          Role = "monitor"
	CareProvider     Role = "care-provider"
	Participant      Role = "participant"
)

// Level is the scope at which a role is held.
type Level int

const (
	LevelOrg Level = iota
	LevelStudy
	LevelSite
)

// builtin lists the built-in roles with the scopes at which each may be held.
var builtin = []struct {
	role   Role
	levels []Level
	about  string
}{
	{OrgAdmin, []Level{LevelOrg}, "sets policies, invites people, assigns roles, requests and approves key operations"},
	{OrgManager, []Level{LevelOrg}, "manages people's profiles and roles; no clinical data"},
	{StudyAdmin, []Level{LevelStudy}, "designs forms, creates sites, assigns people to sites"},
	{DataManager, []Level{LevelStudy, LevelSite}, "enters, reviews and exports participant data"},
	{SiteInvestigator, []Level{LevelSite}, "enters and reviews the data of one site's participants"},
	{Monitor, []Level{LevelStudy, LevelSite}, "reviews data and the audit trail, read only"},
	{CareProvider, []Level{LevelStudy, LevelSite}, "works with and messages the participants assigned to them"},
	{Participant, []Level{LevelSite}, "sees and fills in their own data"},
}

// BuiltinRoles lists the built-in roles in a stable order.
func BuiltinRoles() []Role {
	out := make([]Role, len(builtin))
	for i, b := range builtin {
		out[i] = b.role
	}
	return out
}

// ParseRole checks a role named by a person or a request.
func ParseRole(s string) (Role, error) {
	for _, b := range builtin {
		if string(b.role) == s {
			return b.role, nil
		}
	}
	names := make([]string, len(builtin))
	for i, b := range builtin {
		names[i] = string(b.role)
	}
	return "", errs.E(errs.Invalid, "unknown role %q (want one of %s)", s, strings.Join(names, ", "))
}

// Levels reports the scopes at which r may be held.
func (r Role) Levels() []Level {
	for _, b := range builtin {
		if b.role == r {
			return b.levels
		}
	}
	return nil
}

func (l Level) String() string {
	return [...]string{"organization", "study", "site"}[l]
}

// Assignment gives a person a role in an organization, optionally narrowed
// to one study or one site of it.
type Assignment struct {
	ID        string
	OrgID     string
	AccountID string
	Role      Role
	StudyID   string // "" at organization level
	SiteID    string // "" unless site level
	CreatedAt int64
	// CustomRoleID names the custom role (ACL-03) when Role is not a
	// built-in one, and Permissions is that role's permission set, loaded
	// with the assignment; both are empty for a built-in role.
	CustomRoleID string
	Permissions  []Action
}

// Level reports the scope of the assignment.
func (a Assignment) Level() Level {
	switch {
	case a.SiteID != "":
		return LevelSite
	case a.StudyID != "":
		return LevelStudy
	}
	return LevelOrg
}

// Assign records an assignment after checking that the role (built-in, or
// a custom role of the organization) may be held at the given scope and
// that the study and site belong to the organization. A site given without
// its study takes the site's study.
func Assign(ctx context.Context, tx sqldb.Tx, a Assignment) (Assignment, error) {
	if err := CheckScope(ctx, tx, &a); err != nil {
		return Assignment{}, err
	}
	a.ID = ids.New()
	a.CreatedAt = sqldb.Now()
	_, err := tx.ExecContext(ctx,
		`INSERT INTO role_assignments (id, org_id, account_id, role, study_id, site_id, created_at, custom_role_id)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		a.ID, a.OrgID, a.AccountID, a.Role, nullable(a.StudyID), nullable(a.SiteID), a.CreatedAt, nullable(a.CustomRoleID))
	if sqldb.IsUniqueViolation(err) {
		return Assignment{}, errs.E(errs.Conflict, "that person holds this role at this scope already")
	}
	if err != nil {
		return Assignment{}, fmt.Errorf("assign role: %w", err)
	}
	return a, nil
}

// CheckScope checks, in q, that the role of a exists in its organization
// and may be held at a's scope, whose study and site must be the
// organization's, and completes a: the study of a site, and a custom
// role's id and permissions.
func CheckScope(ctx context.Context, q sqldb.Querier, a *Assignment) error {
	levels, perms, customID, err := roleDefinition(ctx, q, a.OrgID, a.Role)
	if err != nil {
		return err
	}
	a.CustomRoleID, a.Permissions = customID, nil
	if customID != "" {
		a.Permissions = perms
	}
	if a.SiteID != "" {
		studyID, err := siteStudy(ctx, q, a.OrgID, a.SiteID)
		if err != nil {
			return err
		}
		if a.StudyID != "" && a.StudyID != studyID {
			return errs.E(errs.Invalid, "site %s does not belong to study %s", a.SiteID, a.StudyID)
		}
		a.StudyID = studyID
	} else if a.StudyID != "" {
		var n int
		err := q.QueryRowContext(ctx, `SELECT count(*) FROM studies WHERE org_id = $1 AND id = $2`, a.OrgID, a.StudyID).Scan(&n)
		if err != nil {
			return fmt.Errorf("assign role: %w", err)
		}
		if n == 0 {
			return errs.E(errs.NotFound, "study not found")
		}
	}
	ok := false
	for _, l := range levels {
		ok = ok || l == a.Level()
	}
	if !ok {
		var want []string
		for _, l := range levels {
			want = append(want, l.String())
		}
		return errs.E(errs.Invalid, "role %s is held at %s level, not at %s level",
			a.Role, strings.Join(want, " or "), a.Level())
	}
	return nil
}

// AssignmentsOf lists the roles a person holds in one organization, each
// with its custom role's permission set (ACL-03).
func AssignmentsOf(ctx context.Context, q sqldb.Querier, orgID, accountID string) ([]Assignment, error) {
	return queryAssignments(ctx, q, accountWhere, orgID, accountID)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// siteStudy returns the study of a site of the organization.
func siteStudy(ctx context.Context, q sqldb.Querier, orgID, siteID string) (string, error) {
	var studyID string
	err := q.QueryRowContext(ctx, `SELECT study_id FROM sites WHERE org_id = $1 AND id = $2`, orgID, siteID).Scan(&studyID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errs.E(errs.NotFound, "site not found")
	}
	if err != nil {
		return "", fmt.Errorf("find site: %w", err)
	}
	return studyID, nil
}

package authz

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// CustomRole is a named permission set of one organization (ACL-03). It is
// assigned like a built-in role, at the levels it names, and grants exactly
// its permissions: Decide reads them from the assignments, which carry them
// when loaded. A custom role is never relationship-scoped (ACL-05): its
// participant permissions reach every participant within the assignment's
// scope, as a data manager's do.
type CustomRole struct {
	ID          string
	OrgID       string
	Name        string
	Levels      []Level
	Permissions []Action
	CreatedBy   string
	CreatedAt   int64
}

// MaxCustomRoleName bounds the name of a custom role.
const MaxCustomRoleName = 40

// Actions lists every action a role can grant, in a stable order: those of
// the built-in roles, which between them hold every action there is.
func Actions() []Action {
	var out []Action
	for _, acts := range permissions {
		for _, a := range acts {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out
}

// ParseAction checks an action named by a request.
func ParseAction(s string) (Action, error) {
	if slices.Contains(Actions(), Action(s)) {
		return Action(s), nil
	}
	return "", errs.E(errs.Invalid, "unknown permission %q", errs.Clip(s, 64))
}

// ParseLevel checks a level named by a request: organization, study or site.
func ParseLevel(s string) (Level, error) {
	for _, l := range []Level{LevelOrg, LevelStudy, LevelSite} {
		if l.String() == s {
			return l, nil
		}
	}
	return 0, errs.E(errs.Invalid, "unknown level %q (want organization, study or site)", errs.Clip(s, 32))
}

// CheckCustomRole validates a custom role's definition and returns it with
// levels and permissions in a stable order: a name of lower-case letters,
// digits and hyphens that is not a built-in role's, at least one level, and
// at least one known permission, none given twice.
func CheckCustomRole(r CustomRole) (CustomRole, error) {
	if !validRoleName(r.Name) {
		return CustomRole{}, errs.E(errs.Invalid,
			"a role name is 2 to %d lower-case letters, digits and hyphens, starting with a letter", MaxCustomRoleName)
	}
	if _, err := ParseRole(r.Name); err == nil {
		return CustomRole{}, errs.E(errs.Invalid, "%s is the name of a built-in role", r.Name)
	}
	if len(r.Levels) == 0 {
		return CustomRole{}, errs.E(errs.Invalid, "a role needs at least one level (organization, study or site)")
	}
	levels := slices.Clone(r.Levels)
	slices.Sort(levels)
	for i, l := range levels {
		if l < LevelOrg || l > LevelSite {
			return CustomRole{}, errs.E(errs.Invalid, "unknown level")
		}
		if i > 0 && levels[i-1] == l {
			return CustomRole{}, errs.E(errs.Invalid, "level %s is given twice", l)
		}
	}
	if len(r.Permissions) == 0 {
		return CustomRole{}, errs.E(errs.Invalid, "a role needs at least one permission")
	}
	perms := slices.Clone(r.Permissions)
	slices.Sort(perms)
	for i, a := range perms {
		if _, err := ParseAction(string(a)); err != nil {
			return CustomRole{}, err
		}
		if i > 0 && perms[i-1] == a {
			return CustomRole{}, errs.E(errs.Invalid, "permission %s is given twice", a)
		}
	}
	r.Levels, r.Permissions = levels, perms
	return r, nil
}

func validRoleName(s string) bool {
	if len(s) < 2 || len(s) > MaxCustomRoleName || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// PermissionsOf is what an assignment grants: a built-in role's table, or
// the permission set its custom role carried when it was loaded. A built-in
// role's name always means the built-in role, whatever the assignment
// carries, and an assignment of a role that is neither grants nothing.
func PermissionsOf(a Assignment) []Action {
	if p, ok := permissions[a.Role]; ok {
		return p
	}
	if a.CustomRoleID == "" {
		return nil
	}
	return a.Permissions
}

// About describes a built-in role; "" for any other.
func (r Role) About() string {
	for _, b := range builtin {
		if b.role == r {
			return b.about
		}
	}
	return ""
}

// IsBuiltin reports whether r names a built-in role.
func (r Role) IsBuiltin() bool {
	_, ok := permissions[r]
	return ok
}

func joinLevels(ls []Level) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.String()
	}
	return strings.Join(s, ",")
}

func joinActions(as []Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ",")
}

func splitLevels(s string) []Level {
	var out []Level
	for _, f := range strings.Split(s, ",") {
		if l, err := ParseLevel(f); err == nil {
			out = append(out, l)
		}
	}
	return out
}

// splitActions reads a stored permission set. An action no longer known
// (a permission since withdrawn) is dropped: it grants nothing.
func splitActions(s string) []Action {
	var out []Action
	known := Actions()
	for _, f := range strings.Split(s, ",") {
		if slices.Contains(known, Action(f)) {
			out = append(out, Action(f))
		}
	}
	return out
}

// CreateCustomRole validates and stores a custom role of r.OrgID.
func CreateCustomRole(ctx context.Context, tx sqldb.Tx, r CustomRole) (CustomRole, error) {
	r, err := CheckCustomRole(r)
	if err != nil {
		return CustomRole{}, err
	}
	r.ID, r.CreatedAt = ids.New(), sqldb.Now()
	_, err = tx.ExecContext(ctx,
		`INSERT INTO custom_roles (id, org_id, name, levels, permissions, created_by, created_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.ID, r.OrgID, r.Name, joinLevels(r.Levels), joinActions(r.Permissions), r.CreatedBy, r.CreatedAt)
	if sqldb.IsUniqueViolation(err) {
		return CustomRole{}, errs.E(errs.Conflict, "a role named %s exists already", r.Name)
	}
	if err != nil {
		return CustomRole{}, fmt.Errorf("create role: %w", err)
	}
	return r, nil
}

const selectCustomRole = `SELECT id, org_id, name, levels, permissions, created_by, created_at FROM custom_roles `

func scanCustomRole(sc interface{ Scan(...any) error }) (CustomRole, error) {
	var r CustomRole
	var levels, perms string
	if err := sc.Scan(&r.ID, &r.OrgID, &r.Name, &levels, &perms, &r.CreatedBy, &r.CreatedAt); err != nil {
		return CustomRole{}, err
	}
	r.Levels, r.Permissions = splitLevels(levels), splitActions(perms)
	return r, nil
}

// CustomRoles lists the custom roles of an organization by name.
func CustomRoles(ctx context.Context, q sqldb.Querier, orgID string) ([]CustomRole, error) {
	rows, err := q.QueryContext(ctx, selectCustomRole+`WHERE org_id = $1 ORDER BY name`, orgID)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	defer rows.Close()
	out := []CustomRole{}
	for rows.Next() {
		r, err := scanCustomRole(rows)
		if err != nil {
			return nil, fmt.Errorf("list roles: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// CustomRoleByID finds a custom role of the organization; one of another
// organization is reported like one that does not exist (ACL-08).
func CustomRoleByID(ctx context.Context, q sqldb.Querier, orgID, id string) (CustomRole, error) {
	if !ids.Valid(id) {
		return CustomRole{}, errs.E(errs.NotFound, "role not found")
	}
	r, err := scanCustomRole(q.QueryRowContext(ctx, selectCustomRole+`WHERE org_id = $1 AND id = $2`, orgID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return CustomRole{}, errs.E(errs.NotFound, "role not found")
	}
	if err != nil {
		return CustomRole{}, fmt.Errorf("find role: %w", err)
	}
	return r, nil
}

// CustomRoleByName finds a custom role of the organization by name.
func CustomRoleByName(ctx context.Context, q sqldb.Querier, orgID, name string) (CustomRole, error) {
	if !validRoleName(name) {
		return CustomRole{}, errs.E(errs.NotFound, "role not found")
	}
	r, err := scanCustomRole(q.QueryRowContext(ctx, selectCustomRole+`WHERE org_id = $1 AND name = $2`, orgID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return CustomRole{}, errs.E(errs.NotFound, "role not found")
	}
	if err != nil {
		return CustomRole{}, fmt.Errorf("find role: %w", err)
	}
	return r, nil
}

// DeleteCustomRole deletes a custom role that no one holds; a role in use
// is a Conflict and stays. Field-visibility rules naming the role go with
// it.
func DeleteCustomRole(ctx context.Context, tx sqldb.Tx, orgID, id string) (CustomRole, error) {
	r, err := CustomRoleByID(ctx, tx, orgID, id)
	if err != nil {
		return CustomRole{}, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM role_assignments WHERE org_id = $1 AND custom_role_id = $2`,
		orgID, r.ID).Scan(&n); err != nil {
		return CustomRole{}, fmt.Errorf("delete role: %w", err)
	}
	if n > 0 {
		return CustomRole{}, errs.E(errs.Conflict, "the role %s is held by %d assignment(s); remove them first", r.Name, n)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM field_visibility WHERE org_id = $1 AND role = $2`, orgID, r.Name); err != nil {
		return CustomRole{}, fmt.Errorf("delete role: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM custom_roles WHERE org_id = $1 AND id = $2`, orgID, r.ID); err != nil {
		return CustomRole{}, fmt.Errorf("delete role: %w", err)
	}
	return r, nil
}

// roleDefinition finds the levels and permissions of a role named for an
// assignment in the organization: a built-in role, or a custom role of that
// organization (whose id it returns too).
func roleDefinition(ctx context.Context, q sqldb.Querier, orgID string, role Role) (levels []Level, perms []Action, customID string, err error) {
	if role.IsBuiltin() {
		return role.Levels(), permissions[role], "", nil
	}
	r, err := CustomRoleByName(ctx, q, orgID, string(role))
	if errs.Is(err, errs.NotFound) {
		_, perr := ParseRole(string(role))
		return nil, nil, "", errs.E(errs.Invalid, "%s, nor a role of this organization", errs.SafeMessage(perr))
	}
	if err != nil {
		return nil, nil, "", err
	}
	return r.Levels, r.Permissions, r.ID, nil
}

// ResolveRole fills in what an assignment of a.Role grants in a.OrgID: for
// a custom role its id and permission set, so that CanGrant can weigh it
// before the assignment exists. An unknown role is Invalid, and so is a
// role that may not be held at the assignment's level.
func ResolveRole(ctx context.Context, q sqldb.Querier, a Assignment) (Assignment, error) {
	levels, perms, id, err := roleDefinition(ctx, q, a.OrgID, a.Role)
	if err != nil {
		return Assignment{}, err
	}
	if !slices.Contains(levels, a.Level()) {
		return Assignment{}, errs.E(errs.Invalid, "role %s is held at %s level, not at %s level",
			a.Role, strings.ReplaceAll(joinLevels(levels), ",", " or "), a.Level())
	}
	a.CustomRoleID = id
	if id != "" {
		a.Permissions = perms
	}
	return a, nil
}

// selectAssignments reads assignments with the permission set of their
// custom role, if any, in the columns of AssignmentRow.
const selectAssignments = `SELECT ra.id, ra.org_id, ra.account_id, ra.role, COALESCE(ra.study_id, ''), COALESCE(ra.site_id, ''),
	ra.created_at, COALESCE(ra.custom_role_id, ''), COALESCE(cr.permissions, '')
	FROM role_assignments ra LEFT JOIN custom_roles cr ON cr.id = ra.custom_role_id AND cr.org_id = ra.org_id `

// AccountAssignments is the statement that reads the assignments of the
// account $2 in the organization $1, in the columns of AssignmentRow, for
// a caller that reads them in a statement of its own making (the gate reads
// them with the organization's network ranges).
const AccountAssignments = selectAssignments + accountWhere

// accountWhere picks the assignments of the account $2 in the organization $1.
const accountWhere = `WHERE ra.org_id = $1 AND ra.account_id = $2`

// AssignmentRow receives a row of AccountAssignments.
type AssignmentRow struct {
	a     Assignment
	perms string
}

// Dest are the scan destinations of the row's columns.
func (r *AssignmentRow) Dest() []any {
	return []any{&r.a.ID, &r.a.OrgID, &r.a.AccountID, &r.a.Role, &r.a.StudyID, &r.a.SiteID, &r.a.CreatedAt,
		&r.a.CustomRoleID, &r.perms}
}

// Assignment is the assignment the row holds.
func (r *AssignmentRow) Assignment() Assignment {
	a := r.a
	if a.CustomRoleID != "" {
		a.Permissions = splitActions(r.perms)
	}
	return a
}

func queryAssignments(ctx context.Context, q sqldb.Querier, where string, args ...any) ([]Assignment, error) {
	rows, err := q.QueryContext(ctx, selectAssignments+where+` ORDER BY ra.created_at, ra.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list role assignments: %w", err)
	}
	defer rows.Close()
	var out []Assignment
	for rows.Next() {
		var r AssignmentRow
		if err := rows.Scan(r.Dest()...); err != nil {
			return nil, fmt.Errorf("list role assignments: %w", err)
		}
		out = append(out, r.Assignment())
	}
	return out, rows.Err()
}

// OrgAssignments lists every assignment in an organization.
func OrgAssignments(ctx context.Context, q sqldb.Querier, orgID string) ([]Assignment, error) {
	return queryAssignments(ctx, q, `WHERE ra.org_id = $1`, orgID)
}

// AssignmentByID finds one assignment of an account in an organization.
func AssignmentByID(ctx context.Context, q sqldb.Querier, orgID, accountID, id string) (Assignment, error) {
	if !ids.Valid(id) || !ids.Valid(accountID) {
		return Assignment{}, errs.E(errs.NotFound, "role assignment not found")
	}
	as, err := queryAssignments(ctx, q, `WHERE ra.org_id = $1 AND ra.account_id = $2 AND ra.id = $3`, orgID, accountID, id)
	if err != nil {
		return Assignment{}, err
	}
	if len(as) == 0 {
		return Assignment{}, errs.E(errs.NotFound, "role assignment not found")
	}
	return as[0], nil
}

// Unassign deletes an assignment. The organization keeps at least one
// organization admin whose account is not disabled: removing the last one
// is a Conflict, whoever asks.
// On PostgreSQL the organization's admin assignments are locked first, so
// two administrators removing each other at once cannot both succeed
// (SQLite runs one writing transaction at a time).
func Unassign(ctx context.Context, tx sqldb.Tx, d sqldb.Dialect, a Assignment) error {
	if a.Role == OrgAdmin {
		lock := `SELECT id FROM role_assignments WHERE org_id = $1 AND role = $2 ORDER BY id`
		if d == sqldb.Postgres {
			lock += ` FOR UPDATE`
		}
		rows, err := tx.QueryContext(ctx, lock, a.OrgID, string(OrgAdmin))
		if err != nil {
			return fmt.Errorf("remove role: %w", err)
		}
		others := 0
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("remove role: %w", err)
			}
			if id != a.ID {
				others++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("remove role: %w", err)
		}
		if others > 0 {
			// Only an admin who can sign in counts (a disabled account,
			// ASVS V7.4.2, does not), read after the lock as
			// accounts.Disable reads it.
			if err := tx.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM role_assignments r JOIN accounts a ON a.id = r.account_id
				 WHERE r.org_id = $1 AND r.role = $2 AND r.id <> $3 AND a.disabled_at IS NULL`,
				a.OrgID, string(OrgAdmin), a.ID).Scan(&others); err != nil {
				return fmt.Errorf("remove role: %w", err)
			}
		}
		if others == 0 {
			return errs.E(errs.Conflict, "the last organization admin cannot be removed; make someone else organization admin first")
		}
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM role_assignments WHERE org_id = $1 AND account_id = $2 AND id = $3`,
		a.OrgID, a.AccountID, a.ID)
	if err != nil {
		return fmt.Errorf("remove role: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errs.E(errs.NotFound, "role assignment not found")
	}
	return nil
}

package authz

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// FieldRules says which fields of one study are hidden from which roles
// (ACL-04): a form-qualified field name ("identity.name",
// "baseline.weight") maps to the roles it is hidden from, built-in or
// custom by name.
//
// Every page, API answer, search and export that shows fields of a study
// passes them through VisibleFields or FilterFields (gate.Tx.VisibleFields
// loads the study's rules), and leaves out what they drop: a hidden field
// is absent, not blanked, so an answer does not even tell that it exists.
type FieldRules map[string][]Role

// MaxHiddenFields bounds the rules of one study.
const MaxHiddenFields = 1000

// CheckFieldName checks a form-qualified field name: form and field, each
// a lower-case letter followed by up to 63 lower-case letters, digits and
// underscores, joined by a dot.
func CheckFieldName(s string) error {
	form, field, ok := cut(s, '.')
	if !ok || !fieldPart(form) || !fieldPart(field) {
		return errs.E(errs.Invalid, "field %q must be written form.field (lower-case letters, digits and _)", errs.Clip(s, 64))
	}
	return nil
}

func cut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func fieldPart(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// CheckFieldRules validates rules for a study: well-formed field names,
// roles that known accepts, nothing given twice; a field hidden from no
// role is dropped. It returns the rules with roles in a stable order.
func CheckFieldRules(rules FieldRules, known func(Role) bool) (FieldRules, error) {
	if len(rules) > MaxHiddenFields {
		return nil, errs.E(errs.Invalid, "at most %d fields may be hidden in one study", MaxHiddenFields)
	}
	out := FieldRules{}
	for f, roles := range rules {
		if err := CheckFieldName(f); err != nil {
			return nil, err
		}
		rs := slices.Clone(roles)
		slices.Sort(rs)
		for i, r := range rs {
			if !known(r) {
				return nil, errs.E(errs.Invalid, "field %s: unknown role %q", f, errs.Clip(string(r), 48))
			}
			if i > 0 && rs[i-1] == r {
				return nil, errs.E(errs.Invalid, "field %s: role %s is given twice", f, r)
			}
		}
		if len(rs) > 0 {
			out[f] = rs
		}
	}
	return out, nil
}

// FieldRulesOf loads the rules of a study.
func FieldRulesOf(ctx context.Context, q sqldb.Querier, orgID, studyID string) (FieldRules, error) {
	out := FieldRules{}
	if studyID == "" {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT field, role FROM field_visibility WHERE org_id = $1 AND study_id = $2 ORDER BY field, role`,
		orgID, studyID)
	if err != nil {
		return nil, fmt.Errorf("load field visibility: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var f, r string
		if err := rows.Scan(&f, &r); err != nil {
			return nil, fmt.Errorf("load field visibility: %w", err)
		}
		out[f] = append(out[f], Role(r))
	}
	return out, rows.Err()
}

// SetFieldRules replaces the rules of a study with rules, which must have
// passed CheckFieldRules.
func SetFieldRules(ctx context.Context, tx sqldb.Tx, orgID, studyID string, rules FieldRules) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM field_visibility WHERE org_id = $1 AND study_id = $2`, orgID, studyID); err != nil {
		return fmt.Errorf("set field visibility: %w", err)
	}
	now := sqldb.Now()
	fields := make([]string, 0, len(rules))
	for f := range rules {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		for _, r := range rules[f] {
			if _, err := tx.ExecContext(ctx, `INSERT INTO field_visibility (org_id, study_id, field, role, created_at)
				VALUES ($1, $2, $3, $4, $5)`, orgID, studyID, f, string(r), now); err != nil {
				return fmt.Errorf("set field visibility: %w", err)
			}
		}
	}
	return nil
}

// grantingRoles lists the roles through which the subject may take action
// a on r: the roles of the assignments that allow it by themselves.
func grantingRoles(s Subject, a Action, r Resource) []Role {
	var out []Role
	for _, as := range s.Assignments {
		if allows(s, as, a, r) && !slices.Contains(out, as.Role) {
			out = append(out, as.Role)
		}
	}
	return out
}

// VisibleFields keeps, of fields of r's study, those the subject may see
// when taking action a (reading) on r (ACL-04). A field is visible when at
// least one role through which the subject may take a on r is not among
// those the field is hidden from; a role the subject holds elsewhere, or
// one that does not let them read r, does not count. A subject who may not
// take a on r at all sees no field. The order of fields is kept.
func VisibleFields(s Subject, a Action, r Resource, rules FieldRules, fields []string) []string {
	roles := grantingRoles(s, a, r)
	out := []string{}
	for _, f := range fields {
		if visibleThrough(roles, rules[f]) {
			out = append(out, f)
		}
	}
	return out
}

// FilterFields removes from m, keyed by form-qualified field name, every
// field VisibleFields would leave out: the key goes, not only the value.
func FilterFields[V any](s Subject, a Action, r Resource, rules FieldRules, m map[string]V) {
	roles := grantingRoles(s, a, r)
	for f := range m {
		if !visibleThrough(roles, rules[f]) {
			delete(m, f)
		}
	}
}

func visibleThrough(roles, hiddenFrom []Role) bool {
	for _, r := range roles {
		if !slices.Contains(hiddenFrom, r) {
			return true
		}
	}
	return false
}

package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// SecurityPolicy is an organization's security policy: its password rules
// (AUTH-02), password rotation and required second factor (AUTH-09) and
// session limits (AUTH-10), stored in one row of org_policies. A person in
// several organizations lives under the strictest value of each field
// (Strictest, EffectivePolicy).
//
// Each field's tags describe it for forms and validation, so a page can
// list the fields (PolicyFields) and the bounds are kept in one place:
// json is the field's name in the API and in forms, label and help are
// shown to administrators, min, max and def bound and default an integer,
// unit names its unit, and strict says which value is the stricter
// ("higher", "lower", "lower-nonzero" where 0 means off, or "true").
type SecurityPolicy struct {
	PasswordMinLength    int  `json:"password_min_length" label:"Minimum password length" help:"Passwords shorter than this are refused when they are set." min:"8" max:"128" def:"12" unit:"characters" strict:"higher"`
	PasswordRequireMixed bool `json:"password_require_mixed" label:"Require a digit and a capital letter" help:"Passwords without at least one digit and one capital letter are refused." def:"false" strict:"true"`
	PasswordRotationDays int  `json:"password_rotation_days" label:"Password rotation" help:"A password older than this must be changed at the next sign-in before anything else; 0 turns rotation off." min:"0" max:"3650" def:"0" unit:"days" strict:"lower-nonzero"`
	SessionIdleMinutes   int  `json:"session_idle_minutes" label:"Session idle limit" help:"A session unused this long ends." min:"5" max:"60" def:"20" unit:"minutes" strict:"lower"`
	SessionAbsoluteHours int  `json:"session_absolute_hours" label:"Session absolute limit" help:"A session ends this long after sign-in, however busy." min:"1" max:"24" def:"12" unit:"hours" strict:"lower"`
	RequireSecondFactor  bool `json:"require_second_factor" label:"Require a second factor" help:"Members without a second factor must set one up at their next sign-in." def:"false" strict:"true"`
}

// PolicyField describes one field of SecurityPolicy.
type PolicyField struct {
	Name     string // the json name, e.g. "password_min_length"
	Label    string
	Help     string
	Kind     string // "int" or "bool"
	Min, Max int    // for "int"
	Default  string
	Unit     string // for "int"
	Strict   string // which value is stricter: "higher", "lower", "lower-nonzero", "true"
	index    int
}

var policyFields = func() []PolicyField {
	t := reflect.TypeFor[SecurityPolicy]()
	out := make([]PolicyField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		pf := PolicyField{
			Name: f.Tag.Get("json"), Label: f.Tag.Get("label"), Help: f.Tag.Get("help"),
			Default: f.Tag.Get("def"), Unit: f.Tag.Get("unit"), Strict: f.Tag.Get("strict"), index: i,
		}
		switch f.Type.Kind() {
		case reflect.Int:
			pf.Kind = "int"
			pf.Min, _ = strconv.Atoi(f.Tag.Get("min"))
			pf.Max, _ = strconv.Atoi(f.Tag.Get("max"))
		case reflect.Bool:
			pf.Kind = "bool"
		default:
			panic("accounts: SecurityPolicy field " + f.Name + " has an unsupported type")
		}
		out[i] = pf
	}
	return out
}()

// PolicyFields lists the fields of SecurityPolicy in order, for pages and
// API documents that show or edit a policy.
func PolicyFields() []PolicyField { return append([]PolicyField(nil), policyFields...) }

// DefaultSecurityPolicy is the policy of an organization that has set none.
func DefaultSecurityPolicy() SecurityPolicy {
	var p SecurityPolicy
	v := reflect.ValueOf(&p).Elem()
	for _, f := range policyFields {
		switch f.Kind {
		case "int":
			n, _ := strconv.Atoi(f.Default)
			v.Field(f.index).SetInt(int64(n))
		case "bool":
			v.Field(f.index).SetBool(f.Default == "true")
		}
	}
	return p
}

// Validate checks every integer field against its bounds. The message names
// the field and its bounds.
func (p SecurityPolicy) Validate() error {
	v := reflect.ValueOf(p)
	for _, f := range policyFields {
		if f.Kind != "int" {
			continue
		}
		n := int(v.Field(f.index).Int())
		if n < f.Min || n > f.Max {
			return errs.E(errs.Invalid, "%s must be between %d and %d %s", f.Name, f.Min, f.Max, f.Unit)
		}
	}
	return nil
}

// Strictest returns, field by field, the stricter of p and q.
func (p SecurityPolicy) Strictest(q SecurityPolicy) SecurityPolicy {
	out := p
	a, b, o := reflect.ValueOf(p), reflect.ValueOf(q), reflect.ValueOf(&out).Elem()
	for _, f := range policyFields {
		x, y := a.Field(f.index), b.Field(f.index)
		switch f.Strict {
		case "higher":
			o.Field(f.index).SetInt(max(x.Int(), y.Int()))
		case "lower":
			o.Field(f.index).SetInt(min(x.Int(), y.Int()))
		case "lower-nonzero":
			switch {
			case x.Int() == 0:
				o.Field(f.index).SetInt(y.Int())
			case y.Int() == 0:
				o.Field(f.index).SetInt(x.Int())
			default:
				o.Field(f.index).SetInt(min(x.Int(), y.Int()))
			}
		case "true":
			o.Field(f.index).SetBool(x.Bool() || y.Bool())
		}
	}
	return out
}

// Summary renders the policy as "name=value" pairs in field order, for
// audit events: every value is a number or a boolean, never a secret.
func (p SecurityPolicy) Summary() string {
	v := reflect.ValueOf(p)
	parts := make([]string, len(policyFields))
	for i, f := range policyFields {
		parts[i] = f.Name + "=" + fmt.Sprint(v.Field(f.index).Interface())
	}
	return strings.Join(parts, " ")
}

// Password returns the password rules of the policy.
func (p SecurityPolicy) Password() Policy {
	return Policy{MinLength: p.PasswordMinLength, RequireMixed: p.PasswordRequireMixed, MaxLength: DefaultPolicy.MaxLength}
}

// SessionIdle and SessionAbsolute are the policy's session limits.
func (p SecurityPolicy) SessionIdle() time.Duration {
	return time.Duration(p.SessionIdleMinutes) * time.Minute
}

func (p SecurityPolicy) SessionAbsolute() time.Duration {
	return time.Duration(p.SessionAbsoluteHours) * time.Hour
}

// policyColumns are the org_policies columns of SecurityPolicy, in the
// order scanPolicy reads them.
const policyColumns = `password_min_length, password_require_mixed, password_rotation_days,
	session_idle_minutes, session_absolute_hours, require_second_factor`

// scanPolicy reads one org_policies row; a NULL column keeps the default.
func scanPolicy(row interface{ Scan(...any) error }) (SecurityPolicy, error) {
	p := DefaultSecurityPolicy()
	var minLen, rotation, idle, absolute sql.NullInt64
	var mixed sql.NullBool
	if err := row.Scan(&minLen, &mixed, &rotation, &idle, &absolute, &p.RequireSecondFactor); err != nil {
		return SecurityPolicy{}, err
	}
	if minLen.Valid {
		p.PasswordMinLength = int(minLen.Int64)
	}
	if mixed.Valid {
		p.PasswordRequireMixed = mixed.Bool
	}
	if rotation.Valid {
		p.PasswordRotationDays = int(rotation.Int64)
	}
	if idle.Valid {
		p.SessionIdleMinutes = int(idle.Int64)
	}
	if absolute.Valid {
		p.SessionAbsoluteHours = int(absolute.Int64)
	}
	return p, nil
}

// SecurityPolicyOf reads an organization's policy; one that has set none
// has DefaultSecurityPolicy.
func SecurityPolicyOf(ctx context.Context, q sqldb.Querier, orgID string) (SecurityPolicy, error) {
	p, err := scanPolicy(q.QueryRowContext(ctx, `SELECT `+policyColumns+` FROM org_policies WHERE org_id = $1`, orgID))
	if errors.Is(err, sql.ErrNoRows) {
		return DefaultSecurityPolicy(), nil
	}
	if err != nil {
		return SecurityPolicy{}, errs.Wrap(errs.Unavailable, err, "read organization policy")
	}
	return p, nil
}

// SetSecurityPolicy validates p and stores it as the organization's policy
// in tx, returning the policy it replaces. The caller records the change, a
// security event (AUD-05), in tx with both Summaries. The new rules apply
// at each member's next sign-in and wherever a password is set from then
// on; the session limits apply to running sessions at their next request.
func SetSecurityPolicy(ctx context.Context, tx sqldb.Tx, orgID string, p SecurityPolicy) (SecurityPolicy, error) {
	if err := p.Validate(); err != nil {
		return SecurityPolicy{}, err
	}
	if !ids.Valid(orgID) {
		return SecurityPolicy{}, errs.E(errs.NotFound, "organization not found")
	}
	old, err := SecurityPolicyOf(ctx, tx, orgID)
	if err != nil {
		return SecurityPolicy{}, err
	}
	var rotation any // NULL: rotation off
	if p.PasswordRotationDays > 0 {
		rotation = p.PasswordRotationDays
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO org_policies (org_id, password_min_length, password_require_mixed, password_rotation_days,
		   session_idle_minutes, session_absolute_hours, require_second_factor, updated_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		 ON CONFLICT (org_id) DO UPDATE SET
		   password_min_length = excluded.password_min_length,
		   password_require_mixed = excluded.password_require_mixed,
		   password_rotation_days = excluded.password_rotation_days,
		   session_idle_minutes = excluded.session_idle_minutes,
		   session_absolute_hours = excluded.session_absolute_hours,
		   require_second_factor = excluded.require_second_factor,
		   updated_at = excluded.updated_at`,
		orgID, p.PasswordMinLength, p.PasswordRequireMixed, rotation,
		p.SessionIdleMinutes, p.SessionAbsoluteHours, p.RequireSecondFactor, sqldb.Now())
	if err != nil {
		return SecurityPolicy{}, fmt.Errorf("set organization policy: %w", err)
	}
	return old, nil
}

// EffectivePolicy is the policy an account lives under: the strictest of
// the policies of every organization in which it holds a role, or the
// default for an account without any.
func EffectivePolicy(ctx context.Context, q sqldb.Querier, accountID string) (SecurityPolicy, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT `+policyColumns+` FROM org_policies
		 WHERE org_id IN (SELECT r.org_id FROM role_assignments r WHERE r.account_id = $1)`, accountID)
	if err != nil {
		return SecurityPolicy{}, errs.Wrap(errs.Unavailable, err, "read organization policies")
	}
	defer rows.Close()
	eff := DefaultSecurityPolicy()
	first := true
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return SecurityPolicy{}, errs.Wrap(errs.Unavailable, err, "read organization policies")
		}
		if first {
			// An organization may loosen a default (a longer session), but
			// only its own policy does, never the default of another.
			eff, first = p, false
		} else {
			eff = eff.Strictest(p)
		}
	}
	if err := rows.Err(); err != nil {
		return SecurityPolicy{}, errs.Wrap(errs.Unavailable, err, "read organization policies")
	}
	if !first {
		// An organization without a row has the default policy.
		var without int
		if err := q.QueryRowContext(ctx,
			`SELECT COUNT(DISTINCT r.org_id) FROM role_assignments r
			 WHERE r.account_id = $1 AND r.org_id NOT IN (SELECT org_id FROM org_policies)`, accountID).Scan(&without); err != nil {
			return SecurityPolicy{}, errs.Wrap(errs.Unavailable, err, "read organization policies")
		}
		if without > 0 {
			eff = eff.Strictest(DefaultSecurityPolicy())
		}
	}
	return eff, nil
}

// PasswordExpired reports whether the account's password is older than the
// rotation period of its effective policy at now (AUTH-09). An account
// without a password, or under a policy without rotation, is not expired.
func PasswordExpired(ctx context.Context, q sqldb.Querier, accountID string, now time.Time) (bool, error) {
	p, err := EffectivePolicy(ctx, q, accountID)
	if err != nil || p.PasswordRotationDays == 0 {
		return false, err
	}
	var changed sql.NullInt64
	err = q.QueryRowContext(ctx, `SELECT password_changed_at FROM accounts WHERE id = $1`, accountID).Scan(&changed)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !changed.Valid {
		return false, nil
	}
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "read password age")
	}
	age := now.Sub(time.UnixMicro(changed.Int64))
	return age >= time.Duration(p.PasswordRotationDays)*24*time.Hour, nil
}

// passwordRules is the stricter of the rules a caller asks for and those
// of the account's effective policy, so that every place that sets a
// password (reset, invitation, change, CLI) applies its organizations'
// rules.
func passwordRules(ctx context.Context, q sqldb.Querier, accountID string, asked Policy) (Policy, error) {
	eff, err := EffectivePolicy(ctx, q, accountID)
	if err != nil {
		return Policy{}, err
	}
	org := eff.Password()
	out := asked
	out.MinLength = max(asked.MinLength, org.MinLength)
	out.RequireMixed = asked.RequireMixed || org.RequireMixed
	if out.MaxLength == 0 {
		out.MaxLength = org.MaxLength
	}
	return out, nil
}

// Package policy owns an organization's security policy (AUTH-02, AUTH-09,
// AUTH-10): its password rules, password rotation, required second factor
// and session limits, stored in one row of org_policies, and what they make
// of a person in several organizations (the strictest value of each field).
// It sits below the gate and is called with the gate's transaction; its
// administration through requests is policy/policyadmin.
package policy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Security is an organization's security policy: its password rules
// (AUTH-02), password rotation and required second factor (AUTH-09) and
// session limits (AUTH-10), the retention of its deleted data (LIFE-01)
// and of its inactive data (LIFE-02), stored in one row of org_policies. A person in
// several organizations lives under the strictest value of each field
// (Strictest, Effective).
//
// Each field's tags describe it for forms and validation, so a page can
// list the fields (Fields) and the bounds are kept in one place:
// json is the field's name in the API and in forms, label and help are
// shown to administrators, min, max and def bound and default an integer,
// unit names its unit, and strict says which value is the stricter
// ("higher", "lower", "lower-nonzero" where 0 means off, or "true"; "none"
// for a setting of the organization's data rather than of its people).
type Security struct {
	PasswordMinLength    int  `json:"password_min_length" label:"Minimum password length" help:"Passwords shorter than this are refused when they are set." min:"8" max:"128" def:"12" unit:"characters" strict:"higher"`
	PasswordRequireMixed bool `json:"password_require_mixed" label:"Require a digit and a capital letter" help:"Passwords without at least one digit and one capital letter are refused." def:"false" strict:"true"`
	PasswordRotationDays int  `json:"password_rotation_days" label:"Password rotation" help:"A password older than this must be changed at the next sign-in before anything else; 0 turns rotation off." min:"0" max:"3650" def:"0" unit:"days" strict:"lower-nonzero"`
	SessionIdleMinutes   int  `json:"session_idle_minutes" label:"Session idle limit" help:"A session unused this long ends." min:"5" max:"60" def:"20" unit:"minutes" strict:"lower"`
	SessionAbsoluteHours int  `json:"session_absolute_hours" label:"Session absolute limit" help:"A session ends this long after sign-in, however busy." min:"1" max:"24" def:"12" unit:"hours" strict:"lower"`
	RequireSecondFactor  bool `json:"require_second_factor" label:"Require a second factor" help:"Members without a second factor must set one up at their next sign-in." def:"false" strict:"true"`
	// DeletionRetentionDays is how long deleted participants and entries
	// may be restored before the purge erases them for good (LIFE-01). It
	// is the organization's, not a person's: strict "none", so Strictest
	// keeps the first policy's.
	DeletionRetentionDays int `json:"deletion_retention_days" label:"Retention of deleted data" help:"Deleted participants and entries may be restored by an organization admin for this long; then they are erased for good." min:"1" max:"365" def:"30" unit:"days" strict:"none"`
	// InactivityDays is how long an account or a participant of the
	// organization may go without activity before it is noticed for the
	// purge, and InactivityNoticeDays how long after that notice it is
	// purged unless held or active again (LIFE-02). Both are the
	// organization's: strict "none".
	InactivityDays       int `json:"inactivity_days" label:"Retention of inactive data" help:"Accounts and participants without activity for this long are listed to the organization's admins, who are told, and purged after the notice period unless on legal hold or active again." min:"90" max:"3650" def:"730" unit:"days" strict:"none"`
	InactivityNoticeDays int `json:"inactivity_notice_days" label:"Notice before an inactive purge" help:"How long after the notice an inactive account or participant is purged." min:"7" max:"365" def:"30" unit:"days" strict:"none"`
}

// Field describes one field of Security.
type Field struct {
	Name     string // the json name, e.g. "password_min_length"
	Label    string
	Help     string
	Kind     string // "int" or "bool"
	Min, Max int    // for "int"
	Default  string
	Unit     string // for "int"
	Strict   string // which value is stricter: "higher", "lower", "lower-nonzero", "true", "none"
	index    int
}

var policyFields = func() []Field {
	t := reflect.TypeFor[Security]()
	out := make([]Field, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		pf := Field{
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
			panic("policy: Security field " + f.Name + " has an unsupported type")
		}
		out[i] = pf
	}
	return out
}()

// Fields lists the fields of Security in order, for pages and
// API documents that show or edit a policy.
func Fields() []Field { return append([]Field(nil), policyFields...) }

// secondFactorByDefault: the instance requires a second factor of every
// organization that has not lifted the requirement (RequireSecondFactorByDefault).
var secondFactorByDefault atomic.Bool

// RequireSecondFactorByDefault makes the second factor part of the default
// policy (ASVS V6.3.3): `serve --env production` turns it on at start. An
// organization may still lift it, with a reason on the record
// (policyadmin.Service.SetPolicy).
func RequireSecondFactorByDefault(on bool) { secondFactorByDefault.Store(on) }

// SecondFactorByDefault reports whether the default policy requires a
// second factor.
func SecondFactorByDefault() bool { return secondFactorByDefault.Load() }

// Default is the policy of an organization that has set none.
func Default() Security {
	var p Security
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
	p.RequireSecondFactor = p.RequireSecondFactor || secondFactorByDefault.Load()
	return p
}

// Validate checks every integer field against its bounds. The message names
// the field and its bounds.
func (p Security) Validate() error {
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
func (p Security) Strictest(q Security) Security {
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
func (p Security) Summary() string {
	v := reflect.ValueOf(p)
	parts := make([]string, len(policyFields))
	for i, f := range policyFields {
		parts[i] = f.Name + "=" + fmt.Sprint(v.Field(f.index).Interface())
	}
	return strings.Join(parts, " ")
}

// SessionIdle and SessionAbsolute are the policy's session limits.
func (p Security) SessionIdle() time.Duration {
	return time.Duration(p.SessionIdleMinutes) * time.Minute
}

func (p Security) SessionAbsolute() time.Duration {
	return time.Duration(p.SessionAbsoluteHours) * time.Hour
}

// DeletionRetention is how long deleted data may be restored (LIFE-01).
func (p Security) DeletionRetention() time.Duration {
	return time.Duration(p.DeletionRetentionDays) * 24 * time.Hour
}

// Retention reads how long the organization's deleted data may be
// restored before the purge erases them (LIFE-01).
func Retention(ctx context.Context, q sqldb.Querier, orgID string) (time.Duration, error) {
	p, err := Of(ctx, q, orgID)
	if err != nil {
		return 0, err
	}
	return p.DeletionRetention(), nil
}

// Inactivity is how long an account or a participant may go without
// activity before it is noticed for the purge (LIFE-02).
func (p Security) Inactivity() time.Duration {
	return time.Duration(p.InactivityDays) * 24 * time.Hour
}

// InactivityNotice is how long after its notice an inactive account or
// participant is purged (LIFE-02).
func (p Security) InactivityNotice() time.Duration {
	return time.Duration(p.InactivityNoticeDays) * 24 * time.Hour
}

// DeletedBefore is the SQL condition that a deletion of the organization
// whose id is in the column org, made at the column at, is past the
// organization's retention period at now (the first placeholder, $n, in
// microseconds); the second placeholder is the default period in days
// (DefaultRetentionDays). It is how the purges find their work in every
// organization at once.
func DeletedBefore(org, at string, n int) string {
	return fmt.Sprintf(`%s + coalesce((SELECT op.deletion_retention_days FROM org_policies op WHERE op.org_id = %s), $%d) * 86400000000 <= $%d`,
		at, org, n+1, n)
}

// DefaultRetentionDays is the retention period of an organization that has
// set none, in days.
func DefaultRetentionDays() int { return Default().DeletionRetentionDays }

// policyColumns are the org_policies columns of Security, in the
// order stored.scan reads them.
const policyColumns = `password_min_length, password_require_mixed, password_rotation_days,
	session_idle_minutes, session_absolute_hours, require_second_factor, deletion_retention_days,
	inactivity_days, inactivity_notice_days`

// stored is one org_policies row as stored: a NULL column (or no row at
// all, all NULL) leaves the field to a default.
type stored struct {
	minLen, rotation, idle, absolute, retention, inactivity, notice sql.NullInt64
	mixed, secondFactor                                             sql.NullBool
}

func (r *stored) scan(row interface{ Scan(...any) error }) error {
	return row.Scan(&r.minLen, &r.mixed, &r.rotation, &r.idle, &r.absolute, &r.secondFactor, &r.retention, &r.inactivity, &r.notice)
}

// policy is the row as a Security, Default where it leaves a field unset.
func (r stored) policy() Security {
	p := Default()
	if r.minLen.Valid {
		p.PasswordMinLength = int(r.minLen.Int64)
	}
	if r.mixed.Valid {
		p.PasswordRequireMixed = r.mixed.Bool
	}
	if r.rotation.Valid {
		p.PasswordRotationDays = int(r.rotation.Int64)
	}
	if r.idle.Valid {
		p.SessionIdleMinutes = int(r.idle.Int64)
	}
	if r.absolute.Valid {
		p.SessionAbsoluteHours = int(r.absolute.Int64)
	}
	if r.secondFactor.Valid {
		p.RequireSecondFactor = r.secondFactor.Bool
	}
	if r.retention.Valid {
		p.DeletionRetentionDays = int(r.retention.Int64)
	}
	if r.inactivity.Valid {
		p.InactivityDays = int(r.inactivity.Int64)
	}
	if r.notice.Valid {
		p.InactivityNoticeDays = int(r.notice.Int64)
	}
	return p
}

// Customized counts the organizations that set a policy of their own,
// for the instance's security statement.
func Customized(ctx context.Context, q sqldb.Querier) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM org_policies`).Scan(&n); err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "read the organizations' policies")
	}
	return n, nil
}

// Of reads an organization's policy; one that has set none
// has Default.
func Of(ctx context.Context, q sqldb.Querier, orgID string) (Security, error) {
	var r stored
	err := r.scan(q.QueryRowContext(ctx, `SELECT `+policyColumns+` FROM org_policies WHERE org_id = $1`, orgID))
	if errors.Is(err, sql.ErrNoRows) {
		return Default(), nil
	}
	if err != nil {
		return Security{}, errs.Wrap(errs.Unavailable, err, "read organization policy")
	}
	return r.policy(), nil
}

// Set validates p and stores it as the organization's policy
// in tx, returning the policy it replaces. The caller records the change, a
// security event (AUD-05), in tx with both Summaries. The new rules apply
// at each member's next sign-in and wherever a password is set from then
// on; the session limits apply to running sessions at their next request.
func Set(ctx context.Context, tx sqldb.Tx, orgID string, p Security) (Security, error) {
	if err := p.Validate(); err != nil {
		return Security{}, err
	}
	if !ids.Valid(orgID) {
		return Security{}, errs.E(errs.NotFound, "organization not found")
	}
	old, err := Of(ctx, tx, orgID)
	if err != nil {
		return Security{}, err
	}
	var rotation any // NULL: rotation off
	if p.PasswordRotationDays > 0 {
		rotation = p.PasswordRotationDays
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO org_policies (org_id, password_min_length, password_require_mixed, password_rotation_days,
		   session_idle_minutes, session_absolute_hours, require_second_factor, deletion_retention_days,
		   inactivity_days, inactivity_notice_days, updated_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		 ON CONFLICT (org_id) DO UPDATE SET
		   password_min_length = excluded.password_min_length,
		   password_require_mixed = excluded.password_require_mixed,
		   password_rotation_days = excluded.password_rotation_days,
		   session_idle_minutes = excluded.session_idle_minutes,
		   session_absolute_hours = excluded.session_absolute_hours,
		   require_second_factor = excluded.require_second_factor,
		   deletion_retention_days = excluded.deletion_retention_days,
		   inactivity_days = excluded.inactivity_days,
		   inactivity_notice_days = excluded.inactivity_notice_days,
		   updated_at = excluded.updated_at`,
		orgID, p.PasswordMinLength, p.PasswordRequireMixed, rotation,
		p.SessionIdleMinutes, p.SessionAbsoluteHours, p.RequireSecondFactor, p.DeletionRetentionDays,
		p.InactivityDays, p.InactivityNoticeDays, sqldb.Now())
	if err != nil {
		return Security{}, fmt.Errorf("set organization policy: %w", err)
	}
	return old, nil
}

// AccountPolicies is a statement part, for the callers that read an
// account's policies with a statement of their own, to spare a round trip
// (the lookup of a session or of an access token): joined to a statement
// whose accounts row is aliased a, it gives one row for each role of the
// account, with the policy of the role's organization (NULLs where it set
// none), or one row of NULLs for an account without a role.
// AccountPolicyColumns are its columns, which Account.Scan reads.
const AccountPolicies = ` LEFT JOIN role_assignments pr ON pr.account_id = a.id
	LEFT JOIN org_policies pp ON pp.org_id = pr.org_id`

// AccountPolicyColumns are the columns of AccountPolicies, which
// Account.Scan reads.
const AccountPolicyColumns = `pr.org_id, pp.password_min_length, pp.password_require_mixed, pp.password_rotation_days,
	pp.session_idle_minutes, pp.session_absolute_hours, pp.require_second_factor, pp.deletion_retention_days,
	pp.inactivity_days, pp.inactivity_notice_days`

// Account is the policies of the organizations in which an account holds
// a role, one for each role, read with AccountPolicies (Scan).
type Account []stored

// OfAccount reads, in one statement, the policies of every organization in
// which the account holds a role (an organization that set none gives a
// policy of NULLs) and when its password last changed.
func OfAccount(ctx context.Context, q sqldb.Querier, accountID string) (a Account, passwordChanged sql.NullInt64, err error) {
	rows, err := q.QueryContext(ctx, `SELECT a.password_changed_at, `+AccountPolicyColumns+`
		FROM accounts a`+AccountPolicies+` WHERE a.id = $1`, accountID)
	if err == nil {
		_, err = a.Scan(rows, &passwordChanged)
	}
	if err != nil {
		return nil, sql.NullInt64{}, errs.Wrap(errs.Unavailable, err, "read organization policies")
	}
	return a, passwordChanged, nil
}

// Scan reads the rows of a statement whose last columns are
// AccountPolicyColumns into a, and the columns before them, from each row,
// into lead: a statement that reads one account gives its values on every
// row. It reports whether there was a row, and closes rows.
func (a *Account) Scan(rows *sql.Rows, lead ...any) (bool, error) {
	defer rows.Close()
	found := false
	for rows.Next() {
		var org sql.NullString
		var r stored
		dest := []any{&org, &r.minLen, &r.mixed, &r.rotation, &r.idle, &r.absolute, &r.secondFactor, &r.retention, &r.inactivity, &r.notice}
		if err := rows.Scan(append(lead, dest...)...); err != nil {
			return false, err
		}
		found = true
		if org.Valid { // not the row of an account without a role
			*a = append(*a, r)
		}
	}
	return found, rows.Err()
}

// Effective is the policy an account lives under: the strictest of the
// policies of every organization in which it holds a role (Default for one
// that set none), or Default for an account without any. An organization
// may loosen a default (a longer session) only for people who belong to
// it alone, never the default of another organization.
func Effective(ctx context.Context, q sqldb.Querier, accountID string) (Security, error) {
	a, _, err := OfAccount(ctx, q, accountID)
	return a.Effective(), err
}

// Effective is the strictest of a's policies, or Default for none.
func (a Account) Effective() Security {
	if len(a) == 0 {
		return Default()
	}
	eff := a[0].policy()
	for _, r := range a[1:] {
		eff = eff.Strictest(r.policy())
	}
	return eff
}

// SessionLimits are the session limits an account lives under (AUTH-10):
// for each, the shortest its organizations set, where an organization that
// set none counts with the server's defaults idle and absolute.
func SessionLimits(ctx context.Context, q sqldb.Querier, accountID string, idle, absolute time.Duration) (time.Duration, time.Duration, error) {
	a, _, err := OfAccount(ctx, q, accountID)
	if err != nil {
		return 0, 0, err
	}
	outIdle, outAbsolute := a.SessionLimits(idle, absolute)
	return outIdle, outAbsolute, nil
}

// SessionLimits are the session limits of an account of a's policies (see
// the function SessionLimits).
func (a Account) SessionLimits(idle, absolute time.Duration) (time.Duration, time.Duration) {
	shortest := func(set sql.NullInt64, unit, def time.Duration, d *time.Duration, first bool) {
		v := def
		if set.Valid {
			v = time.Duration(set.Int64) * unit
		}
		if first || v < *d {
			*d = v
		}
	}
	outIdle, outAbsolute := idle, absolute
	for i, r := range a {
		shortest(r.idle, time.Minute, idle, &outIdle, i == 0)
		shortest(r.absolute, time.Hour, absolute, &outAbsolute, i == 0)
	}
	return outIdle, outAbsolute
}

// PasswordExpired reports whether the account's password is older than the
// rotation period of its effective policy at now (AUTH-09). An account
// without a password, or under a policy without rotation, is not expired.
func PasswordExpired(ctx context.Context, q sqldb.Querier, accountID string, now time.Time) (bool, error) {
	a, changed, err := OfAccount(ctx, q, accountID)
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "read password age")
	}
	return a.PasswordExpired(changed, now), nil
}

// PasswordExpired is PasswordExpired for an account of a's policies whose
// password changed at changedAt (accounts.password_changed_at), read by the
// caller with AccountPolicies or OfAccount.
func (a Account) PasswordExpired(changedAt sql.NullInt64, now time.Time) bool {
	p := a.Effective()
	if p.PasswordRotationDays == 0 || !changedAt.Valid {
		return false
	}
	age := now.Sub(time.UnixMicro(changedAt.Int64))
	return age >= time.Duration(p.PasswordRotationDays)*24*time.Hour
}

// SecondFactorRequired reports whether any organization in which the
// account holds a role requires a second factor (AUTH-09).
func SecondFactorRequired(ctx context.Context, q sqldb.Querier, accountID string) (bool, error) {
	p, err := Effective(ctx, q, accountID)
	return p.RequireSecondFactor, err
}

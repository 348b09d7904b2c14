package mfa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Policy is the part of an organization's policy (AUTH-09) about second
// factors. The org_policies table also holds the password rules, whose
// owner reads and writes them; SetPolicy leaves them as they are.
type Policy struct {
	// RequireSecondFactor obliges every member to sign in with a second
	// factor. A member without one is made to set one up at their next
	// sign-in; sessions that exist already continue.
	RequireSecondFactor bool
}

// SetPolicy stores an organization's second-factor policy in the work of
// o and makes the work's event org.policy.set, a security event (AUD-05)
// about the organization, naming the new setting.
func SetPolicy(ctx context.Context, o *gate.OpTx, orgID string, p Policy) error {
	if !ids.Valid(orgID) {
		return errs.E(errs.NotFound, "organization not found")
	}
	now := sqldb.Now()
	_, err := o.ExecContext(ctx,
		`INSERT INTO org_policies (org_id, require_second_factor, updated_at) VALUES ($1, $2, $3)
		 ON CONFLICT (org_id) DO UPDATE
		 SET require_second_factor = excluded.require_second_factor, updated_at = excluded.updated_at`,
		orgID, p.RequireSecondFactor, now)
	if err != nil {
		return fmt.Errorf("set organization policy: %w", err)
	}
	o.Action("org.policy.set")
	o.Org(orgID)
	o.Object("organization", orgID)
	o.Security()
	o.Detail("require_second_factor", strconv.FormatBool(p.RequireSecondFactor))
	return nil
}

// PolicyOf reads an organization's second-factor policy; an organization
// that has set none has the zero Policy.
func PolicyOf(ctx context.Context, q sqldb.Querier, orgID string) (Policy, error) {
	var p Policy
	err := q.QueryRowContext(ctx,
		`SELECT require_second_factor FROM org_policies WHERE org_id = $1`, orgID).Scan(&p.RequireSecondFactor)
	if errors.Is(err, sql.ErrNoRows) {
		return Policy{}, nil
	}
	if err != nil {
		return Policy{}, fmt.Errorf("read organization policy: %w", err)
	}
	return p, nil
}

// Requirement is what an account must do after its password at sign-in.
type Requirement int

const (
	// NoSecondFactor: the password is enough.
	NoSecondFactor Requirement = iota
	// SecondFactor: the account has a factor and must give a code of it.
	SecondFactor
	// MustEnrol: an organization of the account requires a second factor
	// and the account has none; it must set one up before it gets a session.
	MustEnrol
)

// RequirementOf tells what the account must do after its password: give its
// factor if it has one, set one up if any organization in which it holds a
// role requires one, or nothing.
func RequirementOf(ctx context.Context, q sqldb.Querier, accountID string) (Requirement, error) {
	has, err := HasFactor(ctx, q, accountID)
	if err != nil {
		return 0, err
	}
	if has {
		return SecondFactor, nil
	}
	var n int
	err = q.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM org_policies p
		 WHERE p.require_second_factor = $2
		   AND p.org_id IN (SELECT r.org_id FROM role_assignments r WHERE r.account_id = $1)`,
		accountID, true).Scan(&n)
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "read organization policies")
	}
	if n > 0 {
		return MustEnrol, nil
	}
	return NoSecondFactor, nil
}

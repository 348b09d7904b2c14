package mfa

import (
	"context"

	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

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
	required, err := policy.SecondFactorRequired(ctx, q, accountID)
	if err != nil {
		return 0, err
	}
	if required {
		return MustEnrol, nil
	}
	return NoSecondFactor, nil
}

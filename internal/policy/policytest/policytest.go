// Package policytest sets organizations' security policies in tests.
package policytest

import (
	"context"

	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

// RequireSecondFactor turns the organization's second-factor requirement
// on or off in tx, keeping the rest of its policy.
func RequireSecondFactor(ctx context.Context, tx sqldb.Tx, orgID string, on bool) error {
	p, err := policy.Of(ctx, tx, orgID)
	if err != nil {
		return err
	}
	p.RequireSecondFactor = on
	_, err = policy.Set(ctx, tx, orgID, p)
	return err
}

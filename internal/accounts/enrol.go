package accounts

import (
	"context"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Enrol gives the person with this e-mail address a role, creating their
// account first if they have none. It reports whether the account is new.
func Enrol(ctx context.Context, tx sqldb.Tx, email, displayName string, a authz.Assignment) (Account, bool, error) {
	acc, err := ByEmail(ctx, tx, email)
	created := false
	switch {
	case errs.Is(err, errs.NotFound):
		if acc, err = Create(ctx, tx, email, displayName); err != nil {
			return Account{}, false, err
		}
		created = true
	case err != nil:
		return Account{}, false, err
	}
	a.AccountID = acc.ID
	if _, err := authz.Assign(ctx, tx, a); err != nil {
		return Account{}, false, err
	}
	return acc, created, nil
}

package accounts

import (
	"context"
	"fmt"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
)

// Service offers a signed-in person their own account through the gate
// (Gate.Own): reading it, which is theirs to read at any time and so
// recorded nowhere, and renaming it, which is on the trail.
type Service struct {
	Gate *gate.Gate
}

// Account returns the actor's own account.
func (s *Service) Account(ctx context.Context, a gate.Actor) (Account, error) {
	var acc Account
	err := s.Gate.Own(ctx, a, "account.read", func(o *gate.OpTx) error {
		o.Nothing()
		var err error
		acc, err = ByID(ctx, o, a.AccountID)
		return err
	})
	return acc, err
}

// Rename changes the name shown for the actor's account
// (CheckDisplayName; an empty name becomes the part of the e-mail address
// before the @). The account.rename event is recorded in each of the
// account's organizations, so that their administrators find it, in the
// same transaction. It names no name: a name is personal data, and the
// trail keeps references only.
func (s *Service) Rename(ctx context.Context, a gate.Actor, name string) (Account, error) {
	name, err := CheckDisplayName(name)
	if err != nil {
		return Account{}, err
	}
	var acc Account
	err = s.Gate.Own(ctx, a, "account.rename", func(o *gate.OpTx) error {
		if acc, err = ByID(ctx, o, a.AccountID); err != nil {
			return err
		}
		if name == "" {
			name = acc.Email[:strings.IndexByte(acc.Email, '@')]
		}
		if _, err := o.ExecContext(ctx, `UPDATE accounts SET display_name = $1 WHERE id = $2`, name, acc.ID); err != nil {
			return fmt.Errorf("rename account: %w", err)
		}
		acc.DisplayName = name
		o.Object("account", acc.ID)
		orgIDs, err := Organizations(ctx, o, acc.ID)
		if err != nil {
			return err
		}
		o.InEach(orgIDs)
		return nil
	})
	if errs.Is(err, errs.NotFound) {
		return Account{}, errs.E(errs.NotFound, "account not found")
	}
	return acc, err
}

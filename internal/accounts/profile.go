package accounts

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Rename changes the name shown for the account (CheckDisplayName; an empty
// name becomes the part of the e-mail address before the @) and records ev,
// the person's own account.rename event, in each of the account's
// organizations, in the same transaction. The event names no name: a name
// is personal data, and the trail keeps references only.
func Rename(ctx context.Context, db *sqldb.DB, accountID, name string, ev audit.Event) (Account, error) {
	name, err := CheckDisplayName(name)
	if err != nil {
		return Account{}, err
	}
	var acc Account
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		if acc, err = ByID(ctx, tx, accountID); err != nil {
			return err
		}
		if name == "" {
			name = acc.Email[:strings.IndexByte(acc.Email, '@')]
		}
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET display_name = $1 WHERE id = $2`, name, acc.ID); err != nil {
			return fmt.Errorf("rename account: %w", err)
		}
		acc.DisplayName = name
		ev.Action, ev.ActorAccount, ev.Outcome = "account.rename", acc.ID, audit.Success
		return appendForEachOrg(ctx, tx, acc.ID, ev)
	})
	if errs.Is(err, errs.NotFound) {
		return Account{}, errs.E(errs.NotFound, "account not found")
	}
	return acc, err
}

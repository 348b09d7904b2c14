package notify

import (
	"context"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// ForgetAccount deletes, in q, the notices queued for the account and its
// notice settings: for an account the purge of inactive data forgets
// (LIFE-02; accounts.Forget).
func ForgetAccount(ctx context.Context, q sqldb.Querier, accountID string) error {
	for _, stmt := range []string{
		`DELETE FROM notifications WHERE account_id = $1`,
		`DELETE FROM notification_settings WHERE account_id = $1`,
	} {
		if _, err := q.ExecContext(ctx, stmt, accountID); err != nil {
			return errs.Wrap(errs.Unavailable, err, "forget the notices")
		}
	}
	return nil
}

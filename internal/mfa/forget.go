package mfa

import (
	"context"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// ForgetAccount removes, in tx, every second factor of the account and
// its recovery codes (ClearFactors), and the texted codes, sign-in
// challenges and passkey ceremonies it has pending, which hold the
// addresses it signed in from: for an account the purge of inactive data
// forgets (LIFE-02; accounts.Forget). It returns how many factors it
// removed; the caller records it.
func ForgetAccount(ctx context.Context, tx sqldb.Tx, accountID string) (int64, error) {
	n, err := ClearFactors(ctx, tx, accountID)
	if err != nil {
		return 0, err
	}
	for _, q := range []string{
		`DELETE FROM sms_codes WHERE account_id = $1`,
		`DELETE FROM login_challenges WHERE account_id = $1`,
		`DELETE FROM webauthn_ceremonies WHERE account_id = $1`,
	} {
		if _, err := tx.ExecContext(ctx, q, accountID); err != nil {
			return 0, errs.Wrap(errs.Unavailable, err, "remove second factors")
		}
	}
	return n, nil
}

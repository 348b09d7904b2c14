package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Purpose says what a one-time link is for.
type Purpose string

const (
	// PurposeSetup links let a new account's owner choose a first password
	// (from the CLI, or an invitation).
	PurposeSetup Purpose = "setup"
	// PurposeReset links let an account's owner replace a forgotten password.
	PurposeReset Purpose = "reset"
)

// IssueToken creates a single-use token for the account, valid for ttl. It
// returns the token, to be sent to the person; only its SHA-256 is stored.
func IssueToken(ctx context.Context, tx sqldb.Tx, accountID string, purpose Purpose, ttl time.Duration) (string, error) {
	token, digest := ids.NewSecret()
	now := time.Now()
	_, err := tx.ExecContext(ctx,
		`INSERT INTO account_tokens (id, account_id, purpose, token_hash, expires_at, created_at)
		 VALUES ($1, $2, $3, $4, $5, $6)`,
		ids.New(), accountID, purpose, digest, now.Add(ttl).UnixMicro(), now.UnixMicro())
	if err != nil {
		return "", fmt.Errorf("issue %s link: %w", purpose, err)
	}
	return token, nil
}

// RedeemToken consumes a token and returns the account it was issued for.
// An unknown, used or expired token is NotFound, with one message for all.
func RedeemToken(ctx context.Context, tx sqldb.Tx, purpose Purpose, token string) (string, error) {
	return lookupToken(ctx, tx, purpose, token, true)
}

// PeekToken reports the account of a valid token without consuming it, so a
// page can show its form before the person submits.
func PeekToken(ctx context.Context, q sqldb.Querier, purpose Purpose, token string) (string, error) {
	return lookupToken(ctx, q, purpose, token, false)
}

// EndTokens ends, in tx, the live tokens of purpose among those whose
// digests (ids.Digest of the token) are given, as if used: RedeemToken and
// PeekToken refuse them from then on, whatever the clock says. It returns
// the accounts the ended tokens were issued for, one per token.
func EndTokens(ctx context.Context, tx sqldb.Tx, purpose Purpose, digests []string) ([]string, error) {
	now := sqldb.Now()
	var out []string
	for _, d := range digests {
		var accountID string
		err := tx.QueryRowContext(ctx,
			`UPDATE account_tokens SET used_at = $1
			 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1
			 RETURNING account_id`, now, d, purpose).Scan(&accountID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue // used, expired or unknown: nothing to end
		case err != nil:
			return nil, fmt.Errorf("end %s links: %w", purpose, err)
		}
		out = append(out, accountID)
	}
	return out, nil
}

func lookupToken(ctx context.Context, q sqldb.Querier, purpose Purpose, token string, consume bool) (string, error) {
	invalid := errs.E(errs.NotFound, "this link is invalid, used or expired")
	if len(token) != ids.SecretLen {
		return "", invalid
	}
	now := sqldb.Now()
	var accountID string
	var err error
	if consume {
		err = q.QueryRowContext(ctx,
			`UPDATE account_tokens SET used_at = $1
			 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1
			 RETURNING account_id`, now, ids.Digest(token), purpose).Scan(&accountID)
	} else {
		err = q.QueryRowContext(ctx,
			`SELECT account_id FROM account_tokens
			 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3`,
			ids.Digest(token), purpose, now).Scan(&accountID)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "", invalid
	}
	if err != nil {
		return "", fmt.Errorf("check %s link: %w", purpose, err)
	}
	return accountID, nil
}

// CompleteSetup consumes a setup link and stores the account's first
// password, in one transaction: a refused password leaves the link usable.
func CompleteSetup(ctx context.Context, db *sqldb.DB, token, password string) (Account, error) {
	var acc Account
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		acc, err = CompleteSetupIn(ctx, tx, token, password, false)
		return err
	})
	return acc, err
}

// CompleteSetupIn is CompleteSetup in the caller's transaction, so that
// what the link grants besides the password commits with it. With
// keepExisting, an account that has a password already keeps it: password
// must be that one (ErrBadCredentials otherwise), which accepts the link
// without handing its holder a way to replace the password.
func CompleteSetupIn(ctx context.Context, tx sqldb.Tx, token, password string, keepExisting bool) (Account, error) {
	id, err := RedeemToken(ctx, tx, PurposeSetup, token)
	if err != nil {
		return Account{}, err
	}
	acc, err := ByID(ctx, tx, id)
	if err != nil {
		return Account{}, err
	}
	action := "account.setup"
	if keepExisting && acc.HasPassword {
		var hash string
		if err := tx.QueryRowContext(ctx, `SELECT password_hash FROM accounts WHERE id = $1`, acc.ID).Scan(&hash); err != nil {
			return Account{}, fmt.Errorf("check password: %w", err)
		}
		ok, _, err := Verify(ctx, hash, password)
		if err != nil {
			return Account{}, fmt.Errorf("check password: %w", err)
		}
		if !ok {
			return Account{}, ErrBadCredentials
		}
		action = "account.accept"
	} else if err := SetPassword(ctx, tx, acc, password, DefaultPolicy); err != nil {
		return Account{}, err
	}
	_, err = audit.Append(ctx, tx, audit.Event{
		Action: action, ActorAccount: acc.ID, ObjectType: "account", ObjectID: acc.ID,
		Outcome: audit.Success, Security: true,
	})
	return acc, err
}

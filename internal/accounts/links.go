package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
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

// One-time links: a secret in an e-mailed address that lets an account's
// owner set a password once (setup, reset). In this package a "token" is
// such a link's secret; access tokens live in sessions.

// IssueLink creates a one-time link for the account, valid for ttl. It
// returns the link's secret (its token), to be sent to the person; only its
// SHA-256 is stored.
func IssueLink(ctx context.Context, tx sqldb.Tx, accountID string, purpose Purpose, ttl time.Duration) (string, error) {
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

// RedeemLink consumes a link and returns the account it was issued for.
// An unknown, used or expired link is NotFound, with one message for all.
func RedeemLink(ctx context.Context, tx sqldb.Tx, purpose Purpose, token string) (string, error) {
	return lookupLink(ctx, tx, purpose, token, true)
}

// PeekLink reports the account of a valid link without consuming it, so a
// page can show its form before the person submits.
func PeekLink(ctx context.Context, q sqldb.Querier, purpose Purpose, token string) (string, error) {
	return lookupLink(ctx, q, purpose, token, false)
}

// EndLinks ends, in tx, the live links of purpose among those whose
// digests (ids.Digest of the token) are given, as if used: RedeemLink and
// PeekLink refuse them from then on, whatever the clock says. It returns
// the accounts the ended links were issued for, one per link.
func EndLinks(ctx context.Context, tx sqldb.Tx, purpose Purpose, digests []string) ([]string, error) {
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

func lookupLink(ctx context.Context, q sqldb.Querier, purpose Purpose, token string, consume bool) (string, error) {
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
// password, recorded as account.setup: the link is read unaudited
// (ReadSetup), the password checked and hashed outside any transaction,
// and the link spent and the password stored in the gate's account work.
// A refused password leaves the link usable.
func CompleteSetup(ctx context.Context, g *gate.Gate, token, password string) (Account, error) {
	var st Setup
	err := g.Identify(ctx, func(q sqldb.Querier) error {
		var err error
		st, err = ReadSetup(ctx, q, token, false)
		return err
	})
	if err != nil {
		return Account{}, err
	}
	if err := st.Check(ctx, password); err != nil {
		return Account{}, err
	}
	err = g.Account(ctx, gate.Actor{}, st.Action(), func(o *gate.OpTx) error {
		st.Describe(o)
		return st.Complete(ctx, o, token)
	})
	return st.Account, err
}

// CompleteSetupIn completes a setup link in the caller's transaction, all
// steps of CompleteSetup in one, so that what the link grants besides the
// password commits with it; the caller records the event (Setup.Action).
// With keepExisting, an account that has a password already keeps it:
// password must be that one (ErrBadCredentials otherwise), which accepts
// the link without handing its holder a way to replace the password.
func CompleteSetupIn(ctx context.Context, tx sqldb.Tx, token, password string, keepExisting bool) (Account, error) {
	st, err := ReadSetup(ctx, tx, token, keepExisting)
	if err != nil {
		return Account{}, err
	}
	if err := st.Check(ctx, password); err != nil {
		return Account{}, err
	}
	return st.Account, st.Complete(ctx, tx, token)
}

// Setup is the completion of a setup link, read before the password is
// checked.
type Setup struct {
	// Account is the account the link was issued for.
	Account Account
	// Accept: the account keeps the password it has (keepExisting), which
	// the person gives to accept the link.
	Accept bool
	hash   string // Accept: the account's password hash
	rules  Policy // otherwise: the rules of its first password
	pw     Password
}

// ReadSetup reads, without spending it, the live setup link token and what
// its completion checks the password against.
func ReadSetup(ctx context.Context, q sqldb.Querier, token string, keepExisting bool) (Setup, error) {
	id, err := PeekLink(ctx, q, PurposeSetup, token)
	if err != nil {
		return Setup{}, err
	}
	var st Setup
	if st.Account, err = ByID(ctx, q, id); err != nil {
		return Setup{}, err
	}
	if keepExisting && st.Account.HasPassword {
		st.Accept = true
		if err := q.QueryRowContext(ctx, `SELECT password_hash FROM accounts WHERE id = $1`, id).Scan(&st.hash); err != nil {
			return Setup{}, fmt.Errorf("check password: %w", err)
		}
		return st, nil
	}
	st.rules, err = PasswordRules(ctx, q, id, DefaultPolicy)
	return st, err
}

// Check checks password, outside any transaction: the account's own
// password (Accept) or a first password that keeps its rules, hashed.
func (st *Setup) Check(ctx context.Context, password string) error {
	if !st.Accept {
		var err error
		st.pw, err = NewPassword(ctx, st.Account, password, st.rules)
		return err
	}
	ok, _, err := Verify(ctx, st.hash, password)
	if err != nil {
		return fmt.Errorf("check password: %w", err)
	}
	if !ok {
		return ErrBadCredentials
	}
	return nil
}

// Action is what the completion is recorded as: account.setup, or
// account.accept for an account that kept its password.
func (st Setup) Action() string {
	if st.Accept {
		return "account.accept"
	}
	return "account.setup"
}

// Complete spends the link and stores the checked password in tx. In the
// gate's account work, Describe shapes the work's event.
func (st Setup) Complete(ctx context.Context, tx sqldb.Tx, token string) error {
	id, err := RedeemLink(ctx, tx, PurposeSetup, token)
	if err != nil {
		return err
	}
	if id != st.Account.ID {
		return errs.E(errs.NotFound, "this link is invalid, used or expired")
	}
	if !st.Accept {
		if err := st.pw.Store(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

// Describe shapes the event of the gate's account work that completes the
// link: the account, as actor and object, and a security event (AUD-05).
func (st Setup) Describe(o *gate.OpTx) {
	o.As(st.Account.ID, "")
	o.Object("account", st.Account.ID)
	o.Security()
}

package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// ErrBadCredentials is the one answer to every failed sign-in, whether the
// account exists, is locked, or the password was wrong (AUTH-06).
var ErrBadCredentials = errs.E(errs.Unauthenticated, "wrong e-mail address or password")

var dummy = sync.OnceValue(func() string {
	h, err := Hash(context.Background(), "custodia-dummy-password-for-unknown-accounts")
	if err != nil {
		panic(err)
	}
	return h
})

// Authenticate checks an e-mail address and password. For an unknown
// address it still verifies against a dummy hash, so the answer takes as
// long as for a known one. A hash below the current parameters is replaced.
func Authenticate(ctx context.Context, q sqldb.Querier, email, password string) (Account, error) {
	acc, _, err := Attempt(ctx, q, email, password)
	return acc, err
}

// Attempt is Authenticate that also reports, for the audit trail, the id of
// the account the address belongs to, even when the password was wrong.
// Callers must never show that id to the requester.
func Attempt(ctx context.Context, q sqldb.Querier, email, password string) (Account, string, error) {
	acc, at, err := Check(ctx, q, email, password)
	return acc, at.AccountID, err
}

// Attempted is what a sign-in attempt learned that the requester must never
// learn: it goes to the audit trail and the lockout counter only.
type Attempted struct {
	AccountID string // the account the e-mail address belongs to; "" if none
	Locked    bool   // the account is locked (AUTH-04)
	Disabled  bool   // the account is disabled (ASVS V7.4.2)
}

// Check is Attempt with everything the sign-in needs to know. A locked or
// disabled account fails with ErrBadCredentials even for the right password, after
// the same password verification as any other attempt, so that neither the
// answer nor its timing tells a locked account from a wrong password or an
// unknown address (AUTH-06). It reads and replaces a stale hash in q; the
// server's sign-in reads (Find), verifies (Candidate.Check) and writes
// (Upgrade.Store) in three steps instead, so that no transaction waits for
// a password's verification.
func Check(ctx context.Context, q sqldb.Querier, email, password string) (Account, Attempted, error) {
	c, err := Find(ctx, q, email)
	if err != nil {
		return Account{}, Attempted{}, err
	}
	acc, at, up, err := c.Check(ctx, password)
	if err == nil {
		up.Store(ctx, q) // best effort: the next sign-in tries again
	}
	return acc, at, err
}

// Candidate is what a sign-in reads about the account an e-mail address
// names, before any password is checked.
type Candidate struct {
	acc     Account
	at      Attempted
	hash    sql.NullString
	invalid bool // the address or the password cannot be right
}

// Find reads the account an e-mail address names, for Candidate.Check. An
// address that names none is no error: its check fails as a wrong password
// does, in the same time.
func Find(ctx context.Context, q sqldb.Querier, email string) (Candidate, error) {
	norm, err := NormalizeEmail(email)
	if err != nil {
		return Candidate{invalid: true}, nil
	}
	var c Candidate
	err = q.QueryRowContext(ctx,
		`SELECT id, email, display_name, password_hash, created_at, locked_at IS NOT NULL, disabled_at IS NOT NULL
		 FROM accounts WHERE email = $1`, norm,
	).Scan(&c.acc.ID, &c.acc.Email, &c.acc.DisplayName, &c.hash, &c.acc.CreatedAt, &c.at.Locked, &c.at.Disabled)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Candidate{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	c.at.AccountID = c.acc.ID
	return c, nil
}

// AccountID is the id of the account the address names, "" if none. Like
// Attempted.AccountID, it is for the audit trail and the lockout counter,
// never for the requester.
func (c Candidate) AccountID() string { return c.acc.ID }

// Upgrade is a password hash below the current parameters, replaced after
// a right password; the zero Upgrade replaces nothing.
type Upgrade struct{ accountID, old, new string }

// Store replaces the hash in tx, unless the password changed meanwhile.
func (u Upgrade) Store(ctx context.Context, tx sqldb.Tx) error {
	if u.new == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = $1 WHERE id = $2 AND password_hash = $3`, u.new, u.accountID, u.old)
	return err
}

// Check verifies password for the candidate account, outside any
// transaction. It answers as the package's Check does, and with the
// replacement of a stale hash for the sign-in's work to store.
func (c Candidate) Check(ctx context.Context, password string) (Account, Attempted, Upgrade, error) {
	if c.invalid || len(password) > 1024 {
		Verify(ctx, dummy(), password)
		return Account{}, Attempted{}, Upgrade{}, ErrBadCredentials
	}
	at := c.at
	if !c.hash.Valid {
		if _, _, err := Verify(ctx, dummy(), password); err != nil {
			return Account{}, at, Upgrade{}, err
		}
		return Account{}, at, Upgrade{}, ErrBadCredentials
	}
	ok, stale, err := Verify(ctx, c.hash.String, password)
	if err != nil {
		return Account{}, at, Upgrade{}, fmt.Errorf("verify password: %w", err)
	}
	if !ok || at.Locked || at.Disabled {
		return Account{}, at, Upgrade{}, ErrBadCredentials
	}
	a := c.acc
	a.HasPassword = true
	var up Upgrade
	if stale {
		if h, err := Hash(ctx, password); err == nil {
			up = Upgrade{accountID: a.ID, old: c.hash.String, new: h}
		}
	}
	return a, at, up, nil
}

// KnownID returns the id of the account an e-mail address belongs to, or ""
// for none, for the record of an attempt refused before any password check.
// It costs one indexed lookup either way.
func KnownID(ctx context.Context, q sqldb.Querier, email string) (string, error) {
	norm, err := NormalizeEmail(email)
	if err != nil {
		return "", nil
	}
	var id string
	err = q.QueryRowContext(ctx, `SELECT id FROM accounts WHERE email = $1`, norm).Scan(&id)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("find account: %w", err)
	}
	return id, nil
}

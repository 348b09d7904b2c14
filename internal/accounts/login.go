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
func Authenticate(ctx context.Context, db *sqldb.DB, email, password string) (Account, error) {
	acc, _, err := Attempt(ctx, db, email, password)
	return acc, err
}

// Attempt is Authenticate that also reports, for the audit trail, the id of
// the account the address belongs to, even when the password was wrong.
// Callers must never show that id to the requester.
func Attempt(ctx context.Context, db *sqldb.DB, email, password string) (Account, string, error) {
	acc, at, err := Check(ctx, db, email, password)
	return acc, at.AccountID, err
}

// Attempted is what a sign-in attempt learned that the requester must never
// learn: it goes to the audit trail and the lockout counter only.
type Attempted struct {
	AccountID string // the account the e-mail address belongs to; "" if none
	Locked    bool   // the account is locked (AUTH-04)
}

// Check is Attempt with everything the sign-in needs to know. A locked
// account fails with ErrBadCredentials even for the right password, after
// the same password verification as any other attempt, so that neither the
// answer nor its timing tells a locked account from a wrong password or an
// unknown address (AUTH-06).
func Check(ctx context.Context, db sqldb.Querier, email, password string) (Account, Attempted, error) {
	var at Attempted
	norm, err := NormalizeEmail(email)
	if err != nil || len(password) > 1024 {
		Verify(ctx, dummy(), password)
		return Account{}, at, ErrBadCredentials
	}
	var a Account
	var hash sql.NullString
	err = db.QueryRowContext(ctx,
		`SELECT id, email, display_name, password_hash, created_at, locked_at IS NOT NULL FROM accounts WHERE email = $1`, norm,
	).Scan(&a.ID, &a.Email, &a.DisplayName, &hash, &a.CreatedAt, &at.Locked)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Account{}, at, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	at.AccountID = a.ID
	if !hash.Valid {
		if _, _, err := Verify(ctx, dummy(), password); err != nil {
			return Account{}, at, err
		}
		return Account{}, at, ErrBadCredentials
	}
	ok, stale, err := Verify(ctx, hash.String, password)
	if err != nil {
		return Account{}, at, fmt.Errorf("verify password: %w", err)
	}
	if !ok || at.Locked {
		return Account{}, at, ErrBadCredentials
	}
	a.HasPassword = true
	if stale {
		if h, err := Hash(ctx, password); err == nil {
			db.ExecContext(ctx, `UPDATE accounts SET password_hash = $1 WHERE id = $2 AND password_hash = $3`, h, a.ID, hash.String)
		}
	}
	return a, at, nil
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

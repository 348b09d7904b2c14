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
// account exists or not (AUTH-06).
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
	norm, err := NormalizeEmail(email)
	if err != nil || len(password) > 1024 {
		Verify(ctx, dummy(), password)
		return Account{}, "", ErrBadCredentials
	}
	var a Account
	var hash sql.NullString
	err = db.QueryRowContext(ctx,
		`SELECT id, email, display_name, password_hash, created_at FROM accounts WHERE email = $1`, norm,
	).Scan(&a.ID, &a.Email, &a.DisplayName, &hash, &a.CreatedAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Account{}, "", errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	if !hash.Valid {
		if _, _, err := Verify(ctx, dummy(), password); err != nil {
			return Account{}, a.ID, err
		}
		return Account{}, a.ID, ErrBadCredentials
	}
	ok, stale, err := Verify(ctx, hash.String, password)
	if err != nil {
		return Account{}, a.ID, fmt.Errorf("verify password: %w", err)
	}
	if !ok {
		return Account{}, a.ID, ErrBadCredentials
	}
	a.HasPassword = true
	if stale {
		if h, err := Hash(ctx, password); err == nil {
			db.ExecContext(ctx, `UPDATE accounts SET password_hash = $1 WHERE id = $2 AND password_hash = $3`, h, a.ID, hash.String)
		}
	}
	return a, a.ID, nil
}

package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Retention of inactive data (LIFE-02): an account that no organization
// keeps any more (its last role went with the purge of inactive data) is
// forgotten: its e-mail address, name and password are removed and it is
// disabled for good. The row stays, under its id, because the audit trail
// and the records that name their author point to it; neither holds the
// person's address or name.

// ForgottenEmail is the address a forgotten account keeps in place of its
// own: unique, and no one's (the .invalid domain, RFC 2606).
func ForgottenEmail(accountID string) string {
	return "forgotten-" + accountID + "@forgotten.invalid"
}

// Forget removes, in q, the account's e-mail address (ForgottenEmail
// takes its place), display name, password and lockout, and disables it
// at now if it is not disabled already. Its second factors, sessions,
// access tokens and notices are the caller's to remove in the same
// transaction (mfa, sessions, notify); the caller records it. An unknown
// account is NotFound.
func Forget(ctx context.Context, q sqldb.Querier, accountID string, now time.Time) error {
	if !ids.Valid(accountID) {
		return errs.E(errs.NotFound, "account not found")
	}
	res, err := q.ExecContext(ctx, `UPDATE accounts SET email = $2, display_name = '', password_hash = NULL,
		password_changed_at = NULL, failed_logins = 0, locked_at = NULL, disabled_at = coalesce(disabled_at, $3)
		WHERE id = $1`, accountID, ForgottenEmail(accountID), now.UnixMicro())
	if err != nil {
		return fmt.Errorf("forget account: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("forget account: %w", err)
	} else if n == 0 {
		return errs.E(errs.NotFound, "account not found")
	}
	return nil
}

// SubjectAccount is what the account row holds about its person, for a
// data subject's export (LIFE-02).
type SubjectAccount struct {
	ID                string     `json:"id"`
	Email             string     `json:"email"`
	DisplayName       string     `json:"display_name"`
	HasPassword       bool       `json:"has_password"`
	CreatedAt         time.Time  `json:"created_at"`
	PasswordChangedAt *time.Time `json:"password_changed_at,omitempty"`
	DisabledAt        *time.Time `json:"disabled_at,omitempty"`
	LockedAt          *time.Time `json:"locked_at,omitempty"`
}

// ReadSubject reads the account for a data subject's export.
func ReadSubject(ctx context.Context, q sqldb.Querier, accountID string) (SubjectAccount, error) {
	var (
		a                         SubjectAccount
		created                   int64
		changed, disabled, locked sql.NullInt64
	)
	err := q.QueryRowContext(ctx, `SELECT id, email, display_name, password_hash IS NOT NULL, created_at,
		password_changed_at, disabled_at, locked_at FROM accounts WHERE id = $1`, accountID).
		Scan(&a.ID, &a.Email, &a.DisplayName, &a.HasPassword, &created, &changed, &disabled, &locked)
	if errors.Is(err, sql.ErrNoRows) {
		return SubjectAccount{}, errs.E(errs.NotFound, "account not found")
	}
	if err != nil {
		return SubjectAccount{}, fmt.Errorf("read account: %w", err)
	}
	a.CreatedAt = time.UnixMicro(created).UTC()
	at := func(v sql.NullInt64) *time.Time {
		if !v.Valid {
			return nil
		}
		t := time.UnixMicro(v.Int64).UTC()
		return &t
	}
	a.PasswordChangedAt, a.DisabledAt, a.LockedAt = at(changed), at(disabled), at(locked)
	return a, nil
}

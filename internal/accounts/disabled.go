package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// A disabled account (ASVS V7.4.2) cannot sign in, whatever the password:
// the sign-in fails as a wrong password does (ErrBadCredentials, AUTH-06),
// and its sessions and access tokens, which the caller ends in the same
// transaction (sessions.EndAccess), are refused should one remain. It is
// disabled by an administrator of one of its organizations or by the
// operator, and enabled the same way; a password reset does not enable it.
// Accounts are shared across organizations, so a disabled account is
// disabled in all of them.

// ErrLastAdmin refuses to disable the last enabled organization admin of
// an organization: it would be left with no one to administer it.
var ErrLastAdmin = errs.E(errs.Conflict,
	"this person is the last organization admin who can sign in; make someone else organization admin first")

// LastAdminOf lists the organizations whose only enabled organization
// admin the account is: disabling it would leave them with none.
func LastAdminOf(ctx context.Context, q sqldb.Querier, accountID string) ([]string, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT r.org_id FROM role_assignments r
		 WHERE r.account_id = $2 AND r.role = $1
		   AND NOT EXISTS (SELECT 1 FROM role_assignments o JOIN accounts a ON a.id = o.account_id
		                   WHERE o.org_id = r.org_id AND o.role = $1 AND o.account_id <> $2 AND a.disabled_at IS NULL)`,
		string(authz.OrgAdmin), accountID)
	if err != nil {
		return nil, fmt.Errorf("read organization admins: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read organization admins: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Disable marks the account disabled at now and reports whether it was
// enabled; a disabled account is left as it is. It refuses (ErrLastAdmin)
// if the account is an organization admin of an organization whose other
// organization admins are all disabled. On PostgreSQL the organization
// admin assignments of those organizations are locked first, as
// authz.Unassign locks them, so that two administrators disabling each
// other at once cannot both succeed (SQLite runs one writing transaction
// at a time). The caller ends the account's sessions and tokens in tx and
// records account.disable, a security event, in each of Organizations.
func Disable(ctx context.Context, tx sqldb.Tx, d sqldb.Dialect, accountID string, now time.Time) (bool, error) {
	lock := `SELECT id FROM role_assignments
		 WHERE role = $1 AND org_id IN (SELECT org_id FROM role_assignments WHERE account_id = $2 AND role = $1)
		 ORDER BY id`
	if d == sqldb.Postgres {
		lock += ` FOR UPDATE`
	}
	rows, err := tx.QueryContext(ctx, lock, string(authz.OrgAdmin), accountID)
	if err != nil {
		return false, fmt.Errorf("disable account: %w", err)
	}
	for rows.Next() {
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("disable account: %w", err)
	}
	// A statement of its own, after the lock: on PostgreSQL it sees what a
	// concurrent disabling committed while this one waited.
	var alone int
	err = tx.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM role_assignments r
		 WHERE r.account_id = $2 AND r.role = $1
		   AND NOT EXISTS (SELECT 1 FROM role_assignments o JOIN accounts a ON a.id = o.account_id
		                   WHERE o.org_id = r.org_id AND o.role = $1 AND o.account_id <> $2 AND a.disabled_at IS NULL)`,
		string(authz.OrgAdmin), accountID).Scan(&alone)
	if err != nil {
		return false, fmt.Errorf("disable account: %w", err)
	}
	if alone > 0 {
		return false, ErrLastAdmin
	}
	res, err := tx.ExecContext(ctx,
		`UPDATE accounts SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL`, accountID, now.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("disable account: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("disable account: %w", err)
	}
	return n == 1, nil
}

// Enable lifts a disabling and reports whether the account was disabled;
// an enabled account is left as it is. A lockout stays: it is lifted by
// Unlock. The caller records account.enable, a security event, in each of
// Organizations.
func Enable(ctx context.Context, tx sqldb.Tx, accountID string) (bool, error) {
	res, err := tx.ExecContext(ctx,
		`UPDATE accounts SET disabled_at = NULL WHERE id = $1 AND disabled_at IS NOT NULL`, accountID)
	if err != nil {
		return false, fmt.Errorf("enable account: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("enable account: %w", err)
	}
	return n == 1, nil
}

// DisabledAt tells when the account was disabled: the zero time if it is
// not.
func DisabledAt(ctx context.Context, q sqldb.Querier, accountID string) (time.Time, error) {
	var at sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT disabled_at FROM accounts WHERE id = $1`, accountID).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, errs.E(errs.NotFound, "account not found")
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read account: %w", err)
	}
	if !at.Valid {
		return time.Time{}, nil
	}
	return time.UnixMicro(at.Int64), nil
}

// MemberAccess is an account holding a role in an organization as its
// administrators see it when they manage who may sign in.
type MemberAccess struct {
	Account    Account
	DisabledAt time.Time // zero unless disabled
	Locked     bool
}

// Disabled reports whether the account is disabled.
func (m MemberAccess) Disabled() bool { return !m.DisabledAt.IsZero() }

// MembersAccess lists the accounts that hold a role in the organization,
// by e-mail address, with whether each is disabled or locked.
func MembersAccess(ctx context.Context, q sqldb.Querier, orgID string) ([]MemberAccess, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT a.id, a.email, a.display_name, a.password_hash IS NOT NULL, a.created_at, a.disabled_at, a.locked_at IS NOT NULL
		 FROM accounts a
		 WHERE a.id IN (SELECT r.account_id FROM role_assignments r WHERE r.org_id = $1)
		 ORDER BY a.email`, orgID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list members")
	}
	defer rows.Close()
	var out []MemberAccess
	for rows.Next() {
		var m MemberAccess
		var at sql.NullInt64
		if err := rows.Scan(&m.Account.ID, &m.Account.Email, &m.Account.DisplayName, &m.Account.HasPassword,
			&m.Account.CreatedAt, &at, &m.Locked); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "list members")
		}
		if at.Valid {
			m.DisabledAt = time.UnixMicro(at.Int64)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list members")
	}
	return out, nil
}

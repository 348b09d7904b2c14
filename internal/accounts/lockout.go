package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// LockAfter is how many consecutive failed sign-ins lock an account
// (AUTH-04). A locked account stays locked until an administrator unlocks
// it or its owner resets the password; time alone does not unlock it.
const LockAfter = 10

// RecordFailure counts a failed sign-in against the account, in the
// transaction that records the failed attempt, and at the LockAfter-th
// consecutive failure locks the account and records account.lock, a
// security event, for each organization the account belongs to (AUD-05):
// through the gate (Recorder, the gate's account work) besides the
// attempt's own event.
// It reports whether this failure locked the account, so the caller can
// raise the alert. An empty accountID (an address without an account) runs
// the same statement, which matches nothing: the work does not tell known
// accounts from unknown ones.
func RecordFailure(ctx context.Context, tx Recorder, accountID, remoteAddr string, now time.Time) (bool, error) {
	var failures int
	var locked bool
	err := tx.QueryRowContext(ctx,
		`UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = $1
		 RETURNING failed_logins, locked_at IS NOT NULL`, accountID).Scan(&failures, &locked)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("count failed sign-in: %w", err)
	}
	if locked || failures < LockAfter {
		return false, nil
	}
	// The update above holds the row until the transaction ends, so of two
	// concurrent failures only one finds the account unlocked here.
	res, err := tx.ExecContext(ctx,
		`UPDATE accounts SET locked_at = $2 WHERE id = $1 AND locked_at IS NULL`, accountID, now.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("lock account: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, err
	}
	err = recordForEachOrg(ctx, tx, accountID, audit.Event{
		Action: "account.lock", RemoteAddr: remoteAddr, Outcome: audit.Success, Security: true,
		Details: map[string]string{"failures": strconv.Itoa(failures)},
	})
	return err == nil, err
}

// Recorder is the gate's account work (gate.OpTx) as this package needs
// it: a transaction that records, besides its own event, the other facts
// its change establishes.
type Recorder interface {
	sqldb.Tx
	Also(ctx context.Context, ev audit.Event) error
}

// ResetFailures sets the failure count back to zero after a successful
// sign-in, in the transaction that starts the session. If the account was
// locked meanwhile (by a concurrent failure on another node) or disabled
// meanwhile (between the password and the second step) it fails with
// ErrBadCredentials, and the sign-in must fail with it.
func ResetFailures(ctx context.Context, tx sqldb.Tx, accountID string) error {
	res, err := tx.ExecContext(ctx,
		`UPDATE accounts SET failed_logins = 0 WHERE id = $1 AND locked_at IS NULL AND disabled_at IS NULL`, accountID)
	if err != nil {
		return fmt.Errorf("reset failed sign-ins: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("reset failed sign-ins: %w", err)
	}
	if n != 1 {
		return ErrBadCredentials
	}
	return nil
}

// Unlock lifts a lock and clears the failure count, and reports whether the
// account was locked. An unlocked account is left as it is. The caller
// records account.unlock, a security event, in tx with itself as the actor,
// for each organization of Organizations: an administrator's unlock, or a
// password reset by the owner.
func Unlock(ctx context.Context, tx sqldb.Tx, accountID string) (bool, error) {
	res, err := tx.ExecContext(ctx,
		`UPDATE accounts SET locked_at = NULL, failed_logins = 0 WHERE id = $1 AND locked_at IS NOT NULL`, accountID)
	if err != nil {
		return false, fmt.Errorf("unlock account: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("unlock account: %w", err)
	}
	return n == 1, nil
}

// LockState is an account's lockout record.
type LockState struct {
	Failures int       // consecutive failed sign-ins
	LockedAt time.Time // zero unless locked
}

// Locked reports whether the account is locked.
func (s LockState) Locked() bool { return !s.LockedAt.IsZero() }

// Lockout reads an account's lockout record.
func Lockout(ctx context.Context, q sqldb.Querier, accountID string) (LockState, error) {
	var s LockState
	var at sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT failed_logins, locked_at FROM accounts WHERE id = $1`, accountID).Scan(&s.Failures, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return LockState{}, errs.E(errs.NotFound, "account not found")
	}
	if err != nil {
		return LockState{}, fmt.Errorf("read lockout: %w", err)
	}
	if at.Valid {
		s.LockedAt = time.UnixMicro(at.Int64)
	}
	return s, nil
}

// Organizations lists the organizations in which the account holds a role,
// the ones whose administrators hear about its lockout.
func Organizations(ctx context.Context, q sqldb.Querier, accountID string) ([]string, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT DISTINCT org_id FROM role_assignments WHERE account_id = $1 ORDER BY org_id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("list organizations of account: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list organizations of account: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// recordForEachOrg records ev about the account once in each of its
// organizations, so each one's administrators find it in their trail, or
// once without an organization if it has none. In the gate's work it is
// recorded by the gate (Recorder); a caller that still runs its own
// transaction (the second-factor flows of package mfa, until they run as
// the gate's work) has it appended in that transaction.
func recordForEachOrg(ctx context.Context, tx Recorder, accountID string, ev audit.Event) error {
	orgIDs, err := Organizations(ctx, tx, accountID)
	if err != nil {
		return err
	}
	if len(orgIDs) == 0 {
		orgIDs = []string{""}
	}
	ev.ObjectType, ev.ObjectID = "account", accountID
	for _, org := range orgIDs {
		ev.OrgID = org
		if err := tx.Also(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

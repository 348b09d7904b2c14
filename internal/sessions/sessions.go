// Package sessions owns server-side sign-in sessions (AUTH-10). A session is
// a row in the clinical database, so every server node sees the same
// sessions; the browser holds only a random token whose hash is the key.
// A session ends at its idle timeout, its absolute lifetime or revocation.
package sessions

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

// Limits are a session's timeouts.
type Limits struct {
	Idle     time.Duration
	Absolute time.Duration
}

// DefaultLimits apply where an organization has set nothing else.
var DefaultLimits = Limits{Idle: 20 * time.Minute, Absolute: 12 * time.Hour}

// touchEvery bounds how often a session's last-seen time is written.
const touchEvery = 30 * time.Second

// Session is a signed-in person's session.
type Session struct {
	ID         string
	AccountID  string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
	// ConfirmedAt is when the person last proved to be the account's owner
	// (signing in, or Confirm): the step-up of ACL-09.
	ConfirmedAt time.Time
	// RenewDue: the account's roles changed since the session began; the
	// shell must replace it (Renew) before serving the request (AUTH-10).
	RenewDue bool
	// PasswordExpired: the session began with a password older than the
	// rotation period (AUTH-09); it may only change the password or end.
	PasswordExpired bool
}

// Store reads and writes sessions. Sign-in attempts run as the gate's
// attempts (Gate.Attempt), with the rate-limit budget they spend and the
// failures they count; sessions' and access tokens' changes as account
// work (Gate.Account, Gate.Own), all recorded with their audit events; what
// tells who a request comes from is read unaudited (Gate.Identify), and
// the bookkeeping the trail does not record (when a session or token was
// last used, the budget an attempt spends before its outcome is known) is
// written as such (Gate.Stamp).
type Store struct {
	Gate   *gate.Gate
	Limits Limits
	Now    func() time.Time // for tests; time.Now when nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Create starts a session for the account and returns its token, which is
// shown to the client once and never stored.
// It records no event: the sign-in that starts a session records it
// (Store.SignIn); tests start sessions with it directly.
func (s *Store) Create(ctx context.Context, accountID, remoteAddr, userAgent string) (token string, sess Session, err error) {
	err = s.Gate.Stamp(ctx, func(q sqldb.Querier) error {
		token, sess, err = s.create(ctx, q, accountID, remoteAddr, userAgent)
		return err
	})
	return token, sess, err
}

func (s *Store) create(ctx context.Context, q sqldb.Querier, accountID, remoteAddr, userAgent string) (string, Session, error) {
	token, digest := ids.NewSecret()
	now := s.now()
	sess := Session{ID: ids.New(), AccountID: accountID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.Limits.Absolute), ConfirmedAt: now}
	userAgent = audit.CleanUserAgent(userAgent)
	_, err := q.ExecContext(ctx,
		`INSERT INTO sessions (id, token_hash, account_id, created_at, last_seen_at, expires_at, remote_addr, user_agent, confirmed_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		sess.ID, digest, accountID, now.UnixMicro(), now.UnixMicro(), sess.ExpiresAt.UnixMicro(), remoteAddr, userAgent, now.UnixMicro())
	if err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	if err := s.stamp(ctx, q, &sess); err != nil {
		return "", Session{}, err
	}
	return token, sess, nil
}

var errNoSession = errs.E(errs.Unauthenticated, "sign-in required")

// ClockTolerance is how far in the future a session's recorded times may
// lie, for nodes whose clocks differ a little; a session whose times lie
// further ahead was made or used under a clock that ran fast, and ends.
const ClockTolerance = time.Minute

// Lookup returns the live session for a token and records the activity.
// An unknown, revoked, idle or expired session is Unauthenticated; the idle
// and absolute limits are the strictest of the account's organizations'
// policies (AUTH-10), and a tightened limit applies at once.
func (s *Store) Lookup(ctx context.Context, token string) (Session, error) {
	if len(token) != ids.SecretLen {
		return Session{}, errNoSession
	}
	var sess Session
	var lim Limits
	err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		var created, seen, expires, epoch, current int64
		var revoked, confirmed sql.NullInt64
		var disabled bool
		// The session, its account and the account's policies, in one
		// statement: one round trip for every request.
		rows, err := q.QueryContext(ctx,
			`SELECT s.id, s.account_id, s.created_at, s.last_seen_at, s.expires_at, s.revoked_at, s.confirmed_at,
			        s.privilege_epoch, a.privilege_epoch, s.password_expired, a.disabled_at IS NOT NULL, `+policy.AccountPolicyColumns+`
			 FROM sessions s JOIN accounts a ON a.id = s.account_id`+policy.AccountPolicies+` WHERE s.token_hash = $1`,
			ids.Digest(token))
		var policies policy.Account
		found := false
		if err == nil {
			found, err = policies.Scan(rows, &sess.ID, &sess.AccountID, &created, &seen, &expires, &revoked, &confirmed,
				&epoch, &current, &sess.PasswordExpired, &disabled)
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "look up session")
		}
		if !found {
			return errNoSession
		}
		sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt = time.UnixMicro(created), time.UnixMicro(seen), time.UnixMicro(expires)
		if confirmed.Valid {
			sess.ConfirmedAt = time.UnixMicro(confirmed.Int64)
		}
		if revoked.Valid || disabled {
			// A disabled account's sessions ended with the disabling; one
			// that began at the same moment ends here (ASVS V7.4.2).
			return errNoSession
		}
		// The account's roles changed since the session began (AUTH-10).
		sess.RenewDue = epoch != current
		idle, absolute := policies.SessionLimits(s.Limits.Idle, s.Limits.Absolute)
		lim = Limits{Idle: idle, Absolute: absolute}
		return nil
	})
	if err != nil {
		return Session{}, err
	}
	now := s.now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.CreatedAt) >= lim.Absolute || now.Sub(sess.LastSeenAt) >= lim.Idle {
		return Session{}, errNoSession
	}
	if ahead := now.Add(ClockTolerance); sess.CreatedAt.After(ahead) || sess.LastSeenAt.After(ahead) {
		// Made or used while the clock ran fast: its age cannot be told,
		// and its limits would stretch by as much as the clock was ahead
		// (a day fast: a 12-hour session for 36). It ends; the person
		// signs in again.
		return Session{}, errNoSession
	}
	if now.Sub(sess.LastSeenAt) >= touchEvery {
		if err := s.Gate.Stamp(ctx, func(q sqldb.Querier) error {
			_, err := q.ExecContext(ctx,
				`UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND revoked_at IS NULL`, now.UnixMicro(), sess.ID)
			return err
		}); err != nil {
			return Session{}, errs.Wrap(errs.Unavailable, err, "record session activity")
		}
		sess.LastSeenAt = now
	}
	return sess, nil
}

// Revoke ends one session, unrecorded: for tests; people end their
// sessions through SignOut and EndDevice, which record it.
func (s *Store) Revoke(ctx context.Context, id string) error {
	err := s.Gate.Stamp(ctx, func(q sqldb.Querier) error {
		_, err := q.ExecContext(ctx,
			`UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, s.now().UnixMicro(), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}

// RevokeAll ends every session of an account, unrecorded: for tests;
// people sign out everywhere through SignOutEverywhere, which records it.
func (s *Store) RevokeAll(ctx context.Context, accountID string) error {
	return s.Gate.Stamp(ctx, func(q sqldb.Querier) error { return RevokeAllIn(ctx, q, accountID, s.now()) })
}

// RevokeAllIn ends every session of an account within a caller's
// transaction, e.g. the one that resets the account's password (AUTH-07).
func RevokeAllIn(ctx context.Context, q sqldb.Querier, accountID string, now time.Time) error {
	_, err := q.ExecContext(ctx,
		`UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL`, now.UnixMicro(), accountID)
	if err != nil {
		return fmt.Errorf("revoke sessions: %w", err)
	}
	return nil
}

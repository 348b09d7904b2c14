package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Device is one live session of an account as its owner sees it in the
// list of their sessions: where and with what it signed in, and when it was
// last used. It holds no token.
type Device struct {
	ID         string
	CreatedAt  time.Time
	LastSeenAt time.Time
	RemoteAddr string
	UserAgent  string
	Current    bool // the session asking
}

// Devices lists the live sessions of the account of sess (not revoked,
// within their idle and absolute limits), the most recently used first.
func (s *Store) Devices(ctx context.Context, sess Session) ([]Device, error) {
	var out []Device
	err := s.Gate.Own(ctx, gate.Actor{AccountID: sess.AccountID, SessionID: sess.ID}, "auth.session.list", func(o *gate.OpTx) error {
		o.Nothing() // the account's own, to read at any time
		lim, err := s.limitsOf(ctx, o, sess.AccountID)
		if err != nil {
			return err
		}
		now := s.now()
		rows, err := o.QueryContext(ctx,
			`SELECT id, created_at, last_seen_at, remote_addr, user_agent FROM sessions
			 WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3 AND created_at > $4
			 ORDER BY last_seen_at DESC, id`,
			sess.AccountID, now.UnixMicro(), now.Add(-lim.Idle).UnixMicro(), now.Add(-lim.Absolute).UnixMicro())
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "list sessions")
		}
		defer rows.Close()
		for rows.Next() {
			var d Device
			var created, seen int64
			if err := rows.Scan(&d.ID, &created, &seen, &d.RemoteAddr, &d.UserAgent); err != nil {
				return errs.Wrap(errs.Unavailable, err, "list sessions")
			}
			d.CreatedAt, d.LastSeenAt, d.Current = time.UnixMicro(created), time.UnixMicro(seen), d.ID == sess.ID
			out = append(out, d)
		}
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "list sessions")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EndDevice ends one session of the account of sess ("sign out this
// session"), on the record as auth.session.end, a security event. A session
// of another account, or one that ended already, is NotFound, the same
// answer as for one that never existed.
func (s *Store) EndDevice(ctx context.Context, sess Session, id, remoteAddr, userAgent string) error {
	notFound := errs.E(errs.NotFound, "no such session")
	if !ids.Valid(id) {
		return notFound
	}
	return s.Gate.Own(ctx, sessionActor(sess, remoteAddr, userAgent), "auth.session.end", func(o *gate.OpTx) error {
		o.Object("session", id)
		o.Security()
		// Ending another of one's sessions asks the owner to prove
		// themselves first (ASVS V7.5.2); signing this one out does not.
		if id != sess.ID {
			if err := o.RequireStepUp(s.now()); err != nil {
				return err
			}
		}
		res, err := o.ExecContext(ctx,
			`UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL`,
			s.now().UnixMicro(), id, sess.AccountID)
		if err != nil {
			return fmt.Errorf("end session: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return notFound
		}
		return nil
	})
}

// SignOutEverywhere ends every session of the account of sess, the asking
// one included (AUTH-10), on the record as auth.logout.everywhere, a
// security event naming how many sessions ended; every access token of the
// account ends with them (ASVS V7.4.3).
func (s *Store) SignOutEverywhere(ctx context.Context, sess Session, remoteAddr, userAgent string) error {
	return s.Gate.Own(ctx, sessionActor(sess, remoteAddr, userAgent), "auth.logout.everywhere", func(o *gate.OpTx) error {
		o.Object("account", sess.AccountID)
		o.Security()
		// The owner proves themselves first (ASVS V7.5.2).
		if err := o.RequireStepUp(s.now()); err != nil {
			return err
		}
		res, err := o.ExecContext(ctx,
			`UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL`,
			s.now().UnixMicro(), sess.AccountID)
		if err != nil {
			return fmt.Errorf("end sessions: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("end sessions: %w", err)
		}
		tokens, err := revokeTokens(ctx, o, sess.AccountID, s.now())
		if err != nil {
			return err
		}
		o.Object("account", sess.AccountID)
		o.Security()
		o.Detail("sessions_ended_count", fmt.Sprint(n))
		o.Detail("tokens_ended_count", fmt.Sprint(tokens))
		return nil
	})
}

// sessionActor is the account of sess acting from it.
func sessionActor(sess Session, remoteAddr, userAgent string) gate.Actor {
	return gate.Actor{AccountID: sess.AccountID, SessionID: sess.ID, RemoteAddr: remoteAddr,
		UserAgent: truncate(userAgent, 512), ConfirmedAt: sess.ConfirmedAt}
}

// KeepAlive records activity on sess now, whatever Lookup's write
// throttling would do, when the person asks to stay signed in. It returns
// how long the session has before its idle limit ends it, which its
// absolute limit may shorten.
func (s *Store) KeepAlive(ctx context.Context, sess Session) (time.Duration, error) {
	now := s.now()
	var n int64
	err := s.Gate.Stamp(ctx, func(q sqldb.Querier) error {
		res, err := q.ExecContext(ctx,
			`UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND revoked_at IS NULL`, now.UnixMicro(), sess.ID)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "record session activity")
	}
	if n != 1 {
		return 0, errNoSession
	}
	sess.LastSeenAt = now
	return s.TimeLeft(ctx, sess)
}

// TimeLeft is how long sess has, from its last recorded activity, before
// its idle limit or its absolute limit ends it; the pages warn the person
// ahead of it.
func (s *Store) TimeLeft(ctx context.Context, sess Session) (time.Duration, error) {
	var lim Limits
	err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		var err error
		lim, err = s.limitsOf(ctx, q, sess.AccountID)
		return err
	})
	if err != nil {
		return 0, err
	}
	now := s.now()
	left := sess.LastSeenAt.Add(lim.Idle).Sub(now)
	left = min(left, sess.ExpiresAt.Sub(now), sess.CreatedAt.Add(lim.Absolute).Sub(now))
	return max(left, 0), nil
}

package sessions

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/ratelimit"
)

// addressAlertEvery bounds how often one source address over its sign-in
// limit raises an alert, so a long attack raises one an hour, not one a
// request.
const addressAlertEvery = time.Hour

// SignIn checks a person's e-mail address and password and starts a
// session.
//
// Before any password is checked, the attempt counts against the limits of
// its source address and of the e-mail address it names, in the database
// shared by all nodes (AUTH-05); past a limit it fails with errs.RateLimited,
// whose ratelimit.RetryAfter says when to come back. A failure counts
// towards the account's lockout (AUTH-04), in the transaction that records
// it. The failure that locks the account raises an alert for each of its
// organizations, and a source address going past its limit one for the
// operator (AUTH-12).
//
// Every attempt, refused, failed or successful, is on the audit trail with
// its time, address, outcome and, when the e-mail address belongs to an
// account, that account (AUTH-11); the session and its event commit
// together. Every failed check is accounts.ErrBadCredentials, whether the
// account is unknown, locked or the password wrong (AUTH-06).
func (s *Store) SignIn(ctx context.Context, email, password, remoteAddr, userAgent string) (string, Session, error) {
	ev := audit.Event{Action: "auth.login", RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	lim := &ratelimit.Limiter{DB: s.DB, Now: s.now}
	if err := lim.Check(ctx, signInRules(email, remoteAddr)...); err != nil {
		if !errs.Is(err, errs.RateLimited) {
			return "", Session{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
		}
		if rerr := s.recordRefusal(ctx, lim, ev, email, err); rerr != nil {
			return "", Session{}, errs.Wrap(errs.Unavailable, rerr, "sign-in unavailable")
		}
		return "", Session{}, err
	}
	acc, at, err := accounts.Check(ctx, s.DB, email, password)
	if err != nil {
		return "", Session{}, s.recordFailure(ctx, ev, at, err)
	}
	var token string
	var sess Session
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		// Fails if another node locked the account since the check.
		if err := accounts.ResetFailures(ctx, tx, acc.ID); err != nil {
			return err
		}
		var err error
		if token, sess, err = s.create(ctx, tx, acc.ID, remoteAddr, userAgent); err != nil {
			return err
		}
		ev.ActorAccount, ev.ActorSession, ev.Outcome = acc.ID, sess.ID, audit.Success
		_, err = audit.Append(ctx, tx, ev)
		return err
	})
	if errors.Is(err, accounts.ErrBadCredentials) {
		return "", Session{}, s.recordFailure(ctx, ev, accounts.Attempted{AccountID: acc.ID, Locked: true}, err)
	}
	if err != nil {
		return "", Session{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	return token, sess, nil
}

// Bucket prefixes of the sign-in limits.
const (
	addressBucket = "login:address:"
	accountBucket = "login:account:"
)

// signInRules are the limits one attempt counts against: its source address
// (per minute and per hour) and the e-mail address it names. The e-mail
// address appears only as a digest, and the same way whether or not it
// belongs to an account.
func signInRules(email, remoteAddr string) []ratelimit.Rule {
	norm, err := accounts.NormalizeEmail(email)
	if err != nil {
		norm = strings.ToLower(strings.TrimSpace(email))
	}
	addr := addressBucket + ratelimit.AddressKey(remoteAddr)
	return []ratelimit.Rule{
		{Bucket: addr, Limit: ratelimit.AddressPerMinute, Window: time.Minute},
		{Bucket: addr, Limit: ratelimit.AddressPerHour, Window: time.Hour},
		{Bucket: accountBucket + ids.Digest(norm), Limit: ratelimit.AccountPerMinute, Window: time.Minute},
	}
}

// recordRefusal puts an attempt refused by a rate limit on the audit trail.
// When the source address's limit refused it, the address raises an alert
// for the operator, at most once per addressAlertEvery.
func (s *Store) recordRefusal(ctx context.Context, lim *ratelimit.Limiter, ev audit.Event, email string, refusal error) error {
	known, err := accounts.KnownID(ctx, s.DB, email)
	if err != nil {
		return err
	}
	ev.ActorAccount, ev.Outcome = known, audit.Denied
	ev.Details = map[string]string{"reason": "rate_limited"}
	raise := false
	var ex *ratelimit.Exceeded
	if errors.As(refusal, &ex) && strings.HasPrefix(ex.Rule.Bucket, addressBucket) {
		if raise, _, err = lim.Allow(ctx, "alert:"+ex.Rule.Bucket, 1, addressAlertEvery); err != nil {
			return err
		}
	}
	var raised []alerts.Alert
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		raised = nil
		if _, err := audit.Append(ctx, tx, ev); err != nil {
			return err
		}
		if !raise {
			return nil
		}
		a, err := alerts.Raise(ctx, tx, alerts.Alert{
			Kind: alerts.AddressLimited, Subject: strings.TrimPrefix(ex.Rule.Bucket, addressBucket),
		})
		raised = append(raised, a)
		return err
	})
	if err != nil {
		return err
	}
	announce(ctx, raised)
	return nil
}

// recordFailure puts a failed attempt on the audit trail and, for wrong
// credentials, counts it towards the lockout in the same transaction. It
// returns the error the requester gets: cause, unless the record could not
// be written.
func (s *Store) recordFailure(ctx context.Context, ev audit.Event, at accounts.Attempted, cause error) error {
	ev.ActorAccount, ev.Outcome = at.AccountID, audit.Failure
	if at.Locked {
		ev.Details = map[string]string{"reason": "locked"}
	}
	var raised []alerts.Alert
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		raised = nil
		if _, err := audit.Append(ctx, tx, ev); err != nil {
			return err
		}
		if !errors.Is(cause, accounts.ErrBadCredentials) {
			return nil // a fault, not a guess
		}
		locked, err := accounts.RecordFailure(ctx, tx, at.AccountID, ev.RemoteAddr, s.now())
		if err != nil || !locked {
			return err
		}
		orgIDs, err := accounts.Organizations(ctx, tx, at.AccountID)
		if err != nil {
			return err
		}
		if len(orgIDs) == 0 {
			orgIDs = []string{""} // nobody but the operator to tell
		}
		for _, org := range orgIDs {
			a, err := alerts.Raise(ctx, tx, alerts.Alert{OrgID: org, Kind: alerts.AccountLocked, Subject: at.AccountID})
			if err != nil {
				return err
			}
			raised = append(raised, a)
		}
		return nil
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	announce(ctx, raised)
	return cause
}

// announce tells the operator about committed alerts through slog's
// default logger. Administrators read them in the application until mail
// delivery exists.
func announce(ctx context.Context, raised []alerts.Alert) {
	alerts.Announce(ctx, slog.Default(), alerts.Discard{}, raised...)
}

// SignOut ends a session, on the record.
func (s *Store) SignOut(ctx context.Context, sess Session, remoteAddr, userAgent string) error {
	return s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, s.now().UnixMicro(), sess.ID); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{
			Action: "auth.logout", ActorAccount: sess.AccountID, ActorSession: sess.ID,
			RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512), Outcome: audit.Success,
		})
		return err
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

package sessions

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

// limitsOf returns the session limits of an account: the strictest of the
// limits set by its organizations' policies (AUTH-10), where an
// organization that set none counts with the store's defaults.
func (s *Store) limitsOf(ctx context.Context, q sqldb.Querier, accountID string) (Limits, error) {
	idle, absolute, err := policy.SessionLimits(ctx, q, accountID, s.Limits.Idle, s.Limits.Absolute)
	if err != nil {
		return Limits{}, errs.Wrap(errs.Unavailable, err, "read session limits")
	}
	return Limits{Idle: idle, Absolute: absolute}, nil
}

// stamp completes a session just inserted in q: its absolute lifetime under
// the account's policies, the privilege epoch it begins in, and whether the
// account's password has expired (AUTH-09), in which case the session can
// only change it.
func (s *Store) stamp(ctx context.Context, q sqldb.Querier, sess *Session) error {
	policies, changed, err := policy.OfAccount(ctx, q, sess.AccountID)
	if err != nil {
		return err
	}
	_, absolute := policies.SessionLimits(s.Limits.Idle, s.Limits.Absolute)
	expired := policies.PasswordExpired(changed, s.now())
	sess.ExpiresAt = sess.CreatedAt.Add(absolute)
	sess.PasswordExpired = expired
	_, err = q.ExecContext(ctx,
		`UPDATE sessions SET expires_at = $1, password_expired = $2,
		   privilege_epoch = (SELECT privilege_epoch FROM accounts WHERE id = $3)
		 WHERE id = $4`, sess.ExpiresAt.UnixMicro(), expired, sess.AccountID, sess.ID)
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// Reasons for a new session id (AUTH-10), as recorded in auth.session.renew.
const (
	RenewRoleChange     = "role-change"
	RenewSecondFactor   = "second-factor"
	RenewPasswordChange = "password-change"
	RenewStepUp         = "step-up"
)

// Renew replaces session old with a new one of the same account, at a
// privilege change (AUTH-10): the old token stops working at once and the
// new one, returned, is given to the client. The new session keeps the
// old one's age (its absolute limit is not extended) and step-up
// confirmation. Of two requests renewing one session at once, one gets the
// new session and the other Unauthenticated.
func (s *Store) Renew(ctx context.Context, old Session, reason, remoteAddr, userAgent string) (string, Session, error) {
	var token string
	var sess Session
	err := s.Gate.Own(ctx, sessionActor(old, remoteAddr, userAgent), "auth.session.renew", func(o *gate.OpTx) error {
		var err error
		if token, sess, err = s.renewSession(ctx, o, old, false, remoteAddr, userAgent); err != nil {
			return err
		}
		o.As(old.AccountID, sess.ID)
		o.Object("session", sess.ID)
		o.Detail("reason", reason)
		o.Detail("previous_session_id", old.ID)
		return nil
	})
	if err != nil {
		return "", Session{}, err
	}
	return token, sess, nil
}

// renewIn is Renew in tx, a transaction of package mfa that activates a
// factor or proves the owner, which records auth.session.renew besides its
// own event (record). With confirmed, the person has just proved to be the
// account's owner (a code or the password), and the new session's step-up
// confirmation is now.
func (s *Store) renewIn(ctx context.Context, tx sqldb.Tx, old Session, reason string, confirmed bool, remoteAddr, userAgent string) (string, Session, error) {
	token, sess, err := s.renewSession(ctx, tx, old, confirmed, remoteAddr, userAgent)
	if err != nil {
		return "", Session{}, err
	}
	err = record(ctx, tx, audit.Event{
		Action: "auth.session.renew", ActorAccount: old.AccountID, ActorSession: sess.ID,
		RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512), Outcome: audit.Success,
		ObjectType: "session", ObjectID: sess.ID,
		Details: map[string]string{"reason": reason, "previous_session_id": old.ID},
	})
	if err != nil {
		return "", Session{}, err
	}
	return token, sess, nil
}

// record records ev in tx, the work of package mfa that the step runs in
// (the gate's account work), beside the work's own event.
func record(ctx context.Context, tx sqldb.Tx, ev audit.Event) error {
	r, ok := tx.(accounts.Recorder)
	if !ok {
		return errs.E(errs.Internal, "%s was to be recorded outside the gate's work", ev.Action)
	}
	return r.Also(ctx, ev)
}

// renewSession replaces session old with a new one in tx (see Renew).
func (s *Store) renewSession(ctx context.Context, tx sqldb.Tx, old Session, confirmed bool, remoteAddr, userAgent string) (string, Session, error) {
	now := s.now()
	var created, expires int64
	var confirmedAt sql.NullInt64
	err := tx.QueryRowContext(ctx,
		`UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL
		 RETURNING created_at, expires_at, confirmed_at`,
		now.UnixMicro(), old.ID, old.AccountID).Scan(&created, &expires, &confirmedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return "", Session{}, errNoSession // renewed or ended meanwhile
	}
	if err != nil {
		return "", Session{}, fmt.Errorf("renew session: %w", err)
	}
	token, sess, err := s.create(ctx, tx, old.AccountID, remoteAddr, userAgent)
	if err != nil {
		return "", Session{}, err
	}
	sess.CreatedAt, sess.ExpiresAt = time.UnixMicro(created), time.UnixMicro(expires)
	sess.ConfirmedAt = time.Time{}
	if confirmedAt.Valid {
		sess.ConfirmedAt = time.UnixMicro(confirmedAt.Int64)
	}
	if confirmed {
		sess.ConfirmedAt = now
	}
	var conf any
	if !sess.ConfirmedAt.IsZero() {
		conf = sess.ConfirmedAt.UnixMicro()
	}
	if _, err := tx.ExecContext(ctx,
		`UPDATE sessions SET created_at = $1, expires_at = $2, confirmed_at = $3 WHERE id = $4`,
		created, expires, conf, sess.ID); err != nil {
		return "", Session{}, fmt.Errorf("renew session: %w", err)
	}
	return token, sess, nil
}

// ChangePassword is the signed-in person's password change: the current
// password proves the person is the account's owner (a wrong one counts
// towards the lockout, AUTH-04), the new one must keep the rules of every
// organization of the account (AUTH-02) and differ from the current one.
// In one transaction it stores the new password, ends every other session
// of the account and every access token (ASVS V7.4.3: a token made under the
// old password, perhaps by whoever knew it, must not outlive it), replaces
// the current session with a new id (AUTH-10) and records
// account.password.change, a security event, in each organization. It
// returns the new session's token.
func (s *Store) ChangePassword(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor, current, next string) (string, Session, error) {
	if current == "" || next == "" {
		return "", Session{}, errs.E(errs.Invalid, "give the current password and the new one")
	}
	if subtle.ConstantTimeCompare([]byte(current), []byte(next)) == 1 {
		return "", Session{}, errs.E(errs.Invalid, "the new password must differ from the current one")
	}
	if factors == nil {
		return "", Session{}, errs.E(errs.Unavailable, "password changes are unavailable")
	}
	a.AccountID, a.SessionID = sess.AccountID, sess.ID
	var token string
	var renewed Session
	err := factors.Prove(ctx, a, "account.password.change", "", current, func(tx sqldb.Tx, ev *audit.Event) error {
		acc, err := accounts.ByID(ctx, tx, sess.AccountID)
		if err != nil {
			return err
		}
		if err := accounts.SetPassword(ctx, tx, acc, next, accounts.DefaultPolicy); err != nil {
			return err
		}
		if token, renewed, err = s.renewIn(ctx, tx, sess, RenewPasswordChange, true, a.RemoteAddr, a.UserAgent); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND id <> $3 AND revoked_at IS NULL`,
			s.now().UnixMicro(), sess.AccountID, renewed.ID)
		if err != nil {
			return fmt.Errorf("end other sessions: %w", err)
		}
		n, _ := res.RowsAffected()
		ended, err := revokeTokens(ctx, tx, sess.AccountID, s.now())
		if err != nil {
			return err
		}
		ev.Details["new_session_id"] = renewed.ID
		ev.Details["other_sessions_ended_count"] = fmt.Sprint(n)
		ev.Details["tokens_ended_count"] = fmt.Sprint(ended)
		return nil
	})
	if errors.Is(err, mfa.ErrWrongCode) {
		return "", Session{}, errs.E(errs.Forbidden, "the current password is wrong")
	}
	if err != nil {
		return "", Session{}, err
	}
	return token, renewed, nil
}

// ConfirmFactor activates the signed-in person's pending TOTP factor with
// a code from it (mfa.Service.ConfirmThen) and, in the same transaction,
// replaces the session with a new id (AUTH-10): the session now stands on
// two factors. It returns the recovery codes, shown once, and the new
// session's token.
func (s *Store) ConfirmFactor(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor, code string) ([]string, string, Session, error) {
	return s.confirmRenewing(ctx, sess, a, code, factors.ConfirmThen)
}

// ConfirmSMSFactor is ConfirmFactor for a phone number begun with
// mfa.Service.BeginSMS and the code sent to it.
func (s *Store) ConfirmSMSFactor(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor, code string) ([]string, string, Session, error) {
	return s.confirmRenewing(ctx, sess, a, code, factors.ConfirmSMSThen)
}

// confirmRenewing activates a pending factor with confirm and, in the same
// transaction, replaces the session with a new id.
func (s *Store) confirmRenewing(ctx context.Context, sess Session, a gate.Actor, code string,
	confirm func(ctx context.Context, a gate.Actor, code string, then func(tx sqldb.Tx) error) ([]string, error)) ([]string, string, Session, error) {
	a.AccountID, a.SessionID = sess.AccountID, sess.ID
	var token string
	var renewed Session
	codes, err := confirm(ctx, a, code, func(tx sqldb.Tx) error {
		var err error
		token, renewed, err = s.renewIn(ctx, tx, sess, RenewSecondFactor, true, a.RemoteAddr, a.UserAgent)
		return err
	})
	if err != nil {
		return nil, "", Session{}, err
	}
	return codes, token, renewed, nil
}

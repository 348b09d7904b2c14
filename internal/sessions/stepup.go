package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sqldb"
)

// Confirm is the step-up of ACL-09: the person holding session sess proves
// again, with the account's password or a current second-factor code
// (exactly one), that they are its owner, and the session records when.
// For gate.StepUpWindow after that, the session may take the actions that
// ask for it (role changes, exports, key operations, re-identification).
// The proof, the session's new confirmation time and the security event
// auth.confirm commit together; a wrong proof counts towards the lockout
// like a wrong password (AUTH-04) and is on the audit trail.
func (s *Store) Confirm(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor, password, code string) (Session, error) {
	if factors == nil {
		return Session{}, errs.E(errs.Unavailable, "confirmation is unavailable")
	}
	if code != "" && !factors.SecretsAvailable() && password == "" {
		return Session{}, errs.E(errs.Unavailable, "second factors are unavailable: confirm with the account's password")
	}
	now := s.now()
	a.AccountID, a.SessionID = sess.AccountID, sess.ID
	if err := factors.Prove(ctx, a, "auth.confirm", code, password, s.confirmed(ctx, sess, now)); err != nil {
		return Session{}, err
	}
	sess.ConfirmedAt = now
	return sess, nil
}

// ConfirmPasskeyOptions begins Confirm answered with a passkey: it returns
// the request options for navigator.credentials.get, allowing the
// account's own passkeys, and keeps the ceremony bound to session sess, for
// one answer (ConfirmWithPasskey). An account without passkeys is
// NotFound.
func (s *Store) ConfirmPasskeyOptions(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor) ([]byte, error) {
	if factors == nil {
		return nil, errs.E(errs.Unavailable, "second factors are unavailable")
	}
	a.AccountID, a.SessionID = sess.AccountID, sess.ID
	return factors.BeginPasskeyProof(ctx, a)
}

// ConfirmWithPasskey is Confirm with a passkey: response is the browser's
// assertion for the options ConfirmPasskeyOptions gave this session. The
// assertion, the session's new confirmation time and auth.confirm (proof
// "webauthn") commit together; a wrong, foreign or replayed assertion, or
// one for another session's options, counts towards the lockout like a
// wrong code and is on the audit trail (mfa.Service.ProvePasskey).
func (s *Store) ConfirmWithPasskey(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor, response []byte) (Session, error) {
	if factors == nil {
		return Session{}, errs.E(errs.Unavailable, "second factors are unavailable")
	}
	now := s.now()
	a.AccountID, a.SessionID = sess.AccountID, sess.ID
	if err := factors.ProvePasskey(ctx, a, "auth.confirm", response, s.confirmed(ctx, sess, now)); err != nil {
		return Session{}, err
	}
	sess.ConfirmedAt = now
	return sess, nil
}

// confirmed records, in the transaction of a proof, that sess confirmed its
// owner at now.
func (s *Store) confirmed(ctx context.Context, sess Session, now time.Time) func(tx sqldb.Tx, ev *audit.Event) error {
	return func(tx sqldb.Tx, _ *audit.Event) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE sessions SET confirmed_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL`,
			now.UnixMicro(), sess.ID, sess.AccountID)
		if err != nil {
			return fmt.Errorf("record confirmation: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errNoSession // signed out meanwhile
		}
		return nil
	}
}

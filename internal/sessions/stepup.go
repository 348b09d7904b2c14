package sessions

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sqldb"
)

// Confirm is the step-up of ACL-09: the person holding session sess proves
// again, with the account's password or a current second-factor code
// (exactly one), that they are its owner. The session is replaced by a new
// one, with a new token (V7.2.4: a token seen before the proof is worth
// nothing after it), whose confirmation time is now; for
// gate.StepUpWindow after that, it may take the actions that ask for it
// (role changes, exports, key operations, re-identification). The proof,
// the new session, auth.session.renew and the security event auth.confirm
// commit together; a wrong proof counts towards the lockout like a wrong
// password (AUTH-04) and is on the audit trail. It returns the new token.
func (s *Store) Confirm(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor, password, code string) (string, Session, error) {
	if factors == nil {
		return "", Session{}, errs.E(errs.Unavailable, "confirmation is unavailable")
	}
	if code != "" && !factors.SecretsAvailable() && password == "" {
		return "", Session{}, errs.E(errs.Unavailable, "second factors are unavailable: confirm with the account's password")
	}
	a.AccountID, a.SessionID = sess.AccountID, sess.ID
	var step renewal
	if err := factors.Prove(ctx, a, "auth.confirm", code, password, s.confirmed(ctx, sess, a, &step)); err != nil {
		return "", Session{}, err
	}
	return step.token, step.sess, nil
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
func (s *Store) ConfirmWithPasskey(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor, response []byte) (string, Session, error) {
	if factors == nil {
		return "", Session{}, errs.E(errs.Unavailable, "second factors are unavailable")
	}
	a.AccountID, a.SessionID = sess.AccountID, sess.ID
	var step renewal
	if err := factors.ProvePasskey(ctx, a, "auth.confirm", response, s.confirmed(ctx, sess, a, &step)); err != nil {
		return "", Session{}, err
	}
	return step.token, step.sess, nil
}

// renewal is the session that replaced another, and its token.
type renewal struct {
	token string
	sess  Session
}

// confirmed replaces sess, in the transaction of a proof, by a new session
// confirmed now, kept in out.
func (s *Store) confirmed(ctx context.Context, sess Session, a gate.Actor, out *renewal) func(tx sqldb.Tx, ev *audit.Event) error {
	return func(tx sqldb.Tx, _ *audit.Event) error {
		var err error
		out.token, out.sess, err = s.renewIn(ctx, tx, sess, RenewStepUp, true, a.RemoteAddr, a.UserAgent)
		return err
	}
}

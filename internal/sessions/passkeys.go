package sessions

import (
	"context"
	"errors"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sqldb"
)

// PasskeyOptions begins the passkey answer to a sign-in challenge
// (AUTH-08): it returns the request options for navigator.credentials.get,
// allowing the account's passkeys, and keeps the ceremony bound to the
// challenge. It counts against the limits of a second step (per source
// address, challenge and account, AUTH-05); an unknown, used or expired
// challenge, and one of an account without passkeys, is mfa.ErrChallenge.
func (s *Store) PasskeyOptions(ctx context.Context, factors *mfa.Service, challenge, remoteAddr, userAgent string) ([]byte, error) {
	ev := audit.Event{Action: "auth.second-factor.webauthn", RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	c, err := s.openChallenge(ctx, ev, challenge, mfa.PurposeSecondFactor, remoteAddr)
	if err != nil {
		return nil, err
	}
	if factors == nil {
		return nil, errs.E(errs.Unavailable, "second factors are unavailable")
	}
	a := gate.Actor{AccountID: c.AccountID, RemoteAddr: remoteAddr, UserAgent: userAgent}
	options, err := factors.BeginPasskeySignIn(ctx, a, c.ID)
	if errors.Is(err, mfa.ErrWrongCode) {
		ev.Details = map[string]string{"reason": "no_passkey"}
		return nil, s.recordFailure(ctx, ev, accounts.Attempted{AccountID: c.AccountID}, mfa.ErrChallenge)
	}
	return options, err
}

// SecondFactorPasskey is SecondFactor answered with a passkey: response is
// the browser's PublicKeyCredential (JSON) from navigator.credentials.get
// for the options of PasskeyOptions. The assertion, the ceremony, the
// challenge and the new session are spent and written in one transaction;
// every failure is mfa.ErrChallenge, is on the audit trail and counts
// towards the account's lockout exactly as a wrong code does.
func (s *Store) SecondFactorPasskey(ctx context.Context, factors *mfa.Service, challenge string, response []byte, remoteAddr, userAgent string) (string, Session, error) {
	return s.secondStep(ctx, factors, challenge, remoteAddr, userAgent,
		func(a gate.Actor, c mfa.Challenge, then func(tx sqldb.Tx, m mfa.Method, ev *audit.Event) error) error {
			return factors.VerifyPasskey(ctx, a, c.ID, response, then)
		})
}

// ConfirmPasskey completes the registration of a passkey begun from
// session sess (mfa.Service.BeginPasskey) and, in the same transaction,
// replaces the session with a new id (AUTH-10), as ConfirmFactor does. It
// returns the passkey, the recovery codes (for the account's first second
// factor only, shown once) and the new session's token.
func (s *Store) ConfirmPasskey(ctx context.Context, factors *mfa.Service, sess Session, a gate.Actor, name string, response []byte) (mfa.Passkey, []string, string, Session, error) {
	a.AccountID, a.SessionID, a.ConfirmedAt = sess.AccountID, sess.ID, sess.ConfirmedAt
	var token string
	var renewed Session
	pk, codes, err := factors.ConfirmPasskeyThen(ctx, a, name, response, func(tx sqldb.Tx) error {
		var err error
		token, renewed, err = s.renewIn(ctx, tx, sess, RenewSecondFactor, false, a.RemoteAddr, a.UserAgent)
		return err
	})
	if err != nil {
		return mfa.Passkey{}, nil, "", Session{}, err
	}
	return pk, codes, token, renewed, nil
}

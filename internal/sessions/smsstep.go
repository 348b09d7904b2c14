package sessions

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
)

// SendSecondFactorSMS texts a code to the SMS factor of the account of a
// sign-in challenge (AUTH-08), for SecondFactor, and returns the number
// masked. It counts against the same limits as a second step (per source
// address, challenge and account, AUTH-05) and the factor's own limit of
// texts per account; an unknown, used or expired challenge is
// mfa.ErrChallenge. The code never leaves the text message: it is neither
// returned, logged nor audited.
func (s *Store) SendSecondFactorSMS(ctx context.Context, factors *mfa.Service, challenge, remoteAddr, userAgent string) (string, error) {
	ev := audit.Event{Action: "auth.second-factor.sms", RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	c, err := s.openChallenge(ctx, ev, challenge, mfa.PurposeSecondFactor, remoteAddr)
	if err != nil {
		return "", err
	}
	if factors == nil {
		return "", errs.E(errs.Unavailable, "second factors are unavailable")
	}
	return factors.SendSignInCode(ctx, gate.Actor{AccountID: c.AccountID, RemoteAddr: remoteAddr, UserAgent: userAgent}, c.ID)
}

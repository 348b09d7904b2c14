package links

import (
	"context"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/accounts/accountadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
)

// Factor recovery, the person's step (ASVS V6.4.4; the administrators'
// steps are accountadmin's): the e-mailed link proves control of the
// address, the password that the account's owner knows proves the rest.

// recoverPerAccount bounds the password tries through one recovery's
// link, beside the per-address limit of every link.
var recoverPerAccount = ratelimit.Rule{Limit: 5, Window: 15 * time.Minute}

// PeekFactorRecovery reports whether a recovery link is live, for the page
// that shows its form, and the organization whose administrator started it.
func (s *Service) PeekFactorRecovery(ctx context.Context, token string) (orgName string, err error) {
	err = s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		r, err := accounts.FactorRecoveryOf(ctx, q, token, time.Now())
		if err != nil {
			return err
		}
		org, err := orgs.OrganizationByID(ctx, q, r.OrgID)
		orgName = org.Name
		return err
	})
	return orgName, err
}

// ProveFactorRecovery spends a recovery's link with the account's
// password, recorded as account.factor_recovery.prove in the account's
// trail and the organization's; when a second administrator approved
// already, it finishes the recovery in the same transaction. It reports
// whether the recovery is done. A wrong password is recorded as a failure
// and leaves the link as it was.
func (s *Service) ProveFactorRecovery(ctx context.Context, token, password string, a gate.Actor) (done bool, err error) {
	var p accounts.RecoveryProof
	err = s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		var err error
		p, err = accounts.ReadRecoveryProof(ctx, q, token, time.Now())
		return err
	})
	if err == nil {
		err = p.Check(ctx, password)
	}
	if err != nil && !failedAttempt(err) {
		return false, err
	}
	checked := err
	r := p.Recovery
	from := gate.Actor{RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent}
	limits := []ratelimit.Rule{rule(confirmPerAddress, "link:address:"+ratelimit.AddressKey(a.RemoteAddr))}
	if r.AccountID != "" {
		limits = append(limits, rule(recoverPerAccount, "recover:account:"+r.AccountID))
	}
	err = s.attempt(ctx, from, "account.factor_recovery.prove", limits, func(o *gate.OpTx) error {
		if checked != nil {
			return checked
		}
		o.As(r.AccountID, "")
		o.Object("factor_recovery", r.ID)
		o.InEach([]string{r.OrgID, ""})
		now := time.Now()
		if err := accounts.ProveFactorRecovery(ctx, o, &r, token, now); err != nil {
			return err
		}
		if !r.Approved() {
			o.Detail("done", "false")
			return nil
		}
		ended, err := sessions.FinishFactorRecovery(ctx, o, &r, now)
		if err != nil {
			return err
		}
		for k, v := range ended.Details() {
			o.Detail(k, v)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if r.Done() {
		s.send(accountadmin.RecoveredNotice(r.Email))
	}
	return r.Done(), nil
}

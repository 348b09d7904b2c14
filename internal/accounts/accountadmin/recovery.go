package accountadmin

import (
	"context"
	"fmt"
	"strings"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sessions"
)

// The recovery of a member who lost every second factor and recovery code
// (ASVS V6.4.4), under the same proofs as an enrolment: an administrator
// starts it, the person proves control of their e-mail address with the
// e-mailed one-time link and their password (links.Service), and a second
// administrator, neither the first nor the person, approves. Whichever of
// the proof and the approval comes last removes the account's factors and
// recovery codes and ends its sessions and access tokens
// (sessions.FinishFactorRecovery); the person then signs in with their
// password and enrols a factor anew. Every step is a security event, in
// the organization's trail and the account's.

var (
	// ErrRecoverSelf refuses an administrator's recovery of their own
	// factors: another administrator starts it.
	ErrRecoverSelf = errs.E(errs.Conflict, "you cannot recover your own second factors; ask another administrator")
	// ErrNoFactor refuses the recovery of an account without a factor:
	// it signs in with its password already.
	ErrNoFactor = errs.E(errs.Conflict, "this member has no second factor to recover")
)

// StartFactorRecovery starts the recovery of a member's factors, recorded
// as account.factor_recovery.start, and e-mails the member the link that
// proves their address. Starting again ends the earlier link.
func (s *Service) StartFactorRecovery(ctx context.Context, a gate.Actor, slug, accountID string) (accounts.FactorRecovery, error) {
	var (
		r       accounts.FactorRecovery
		token   string
		email   string
		orgName string
	)
	err := s.change(ctx, a, slug, accountID, "account.factor_recovery.start", func(t *gate.Tx, acc accounts.Account) (bool, error) {
		if acc.ID == a.AccountID {
			return false, ErrRecoverSelf
		}
		has, err := mfa.HasFactor(ctx, t, acc.ID)
		if err != nil {
			return false, err
		}
		if !has {
			return false, ErrNoFactor
		}
		if r, token, err = accounts.StartFactorRecovery(ctx, t, t.Org().ID, acc.ID, a.AccountID, s.now()); err != nil {
			return false, err
		}
		email, orgName = acc.Email, t.Org().Name
		t.Detail("factor_recovery_id", r.ID)
		return true, nil
	})
	if err != nil {
		return accounts.FactorRecovery{}, err
	}
	if err := s.mail(ctx, mail.Message{To: email, Subject: "Recovering your second factor in Custodia", Text: fmt.Sprintf(
		"An administrator of %s started the recovery of your second factors in Custodia, as you lost them.\n\n"+
			"If you asked for it, confirm with your password here (the link works once, for 3 days):\n\n  %s\n\n"+
			"A second administrator approves it too; then your old factors and recovery codes are removed, and you add a\n"+
			"new factor at your next sign-in. If you did not ask for this, do not open the link, and tell your administrators.\n",
		orgName, strings.TrimRight(s.BaseURL, "/")+"/recover/"+token)}); err != nil {
		return r, errs.Wrap(errs.Unavailable, err, "the recovery is recorded, but its e-mail could not be sent: start it again")
	}
	return r, nil
}

// FactorRecoveries lists the organization's recoveries that wait for the
// person or an approval.
func (s *Service) FactorRecoveries(ctx context.Context, a gate.Actor, slug string) ([]accounts.FactorRecovery, error) {
	var out []accounts.FactorRecovery
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "account.factor_recovery.list", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("organization", org.ID)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		out, err = accounts.PendingFactorRecoveries(ctx, t, org.ID, s.now())
		return err
	})
	return out, err
}

// ApproveFactorRecovery approves a recovery as its second administrator,
// recorded as account.factor_recovery.approve; when the person has proved
// already, it finishes it in the same transaction. It reports the
// recovery, done or waiting for the person.
func (s *Service) ApproveFactorRecovery(ctx context.Context, a gate.Actor, slug, id string) (accounts.FactorRecovery, error) {
	var (
		r     accounts.FactorRecovery
		email string
	)
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "account.factor_recovery.approve", func(t *gate.Tx) error {
		org := t.Org()
		t.Security()
		t.Object("factor_recovery", id)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		now := s.now()
		var err error
		if r, err = accounts.FactorRecoveryByID(ctx, t, org.ID, id, now); err != nil {
			return err
		}
		if err := accounts.ApproveFactorRecovery(ctx, t, &r, a.AccountID, now); err != nil {
			return err
		}
		t.Detail("account", r.AccountID)
		if !r.Proved() {
			t.Detail("done", "false")
			return nil
		}
		done, err := sessions.FinishFactorRecovery(ctx, t, &r, now)
		if err != nil {
			return err
		}
		for k, v := range done.Details() {
			t.Detail(k, v)
		}
		others, err := accounts.Organizations(ctx, t, r.AccountID)
		if err != nil {
			return err
		}
		for _, o := range others {
			if o != org.ID {
				t.AlsoIn(o)
			}
		}
		email = r.Email
		return nil
	})
	if err == nil && r.Done() {
		// The recovery is done whether or not the notice goes.
		_ = s.mail(ctx, RecoveredNotice(email))
	}
	return r, err
}

// RecoveredNotice tells the person that their factors were removed.
func RecoveredNotice(to string) mail.Message {
	return mail.Message{To: to, Subject: "Your second factors were removed in Custodia", Text: "" +
		"The recovery of your second factors is done: your old factors and recovery codes were removed, and\n" +
		"every session of yours ended. Sign in with your password and add a new second factor.\n\n" +
		"If you did not ask for this, tell your administrators at once.\n"}
}

func (s *Service) mail(ctx context.Context, m mail.Message) error {
	if s.Mail == nil {
		return errs.E(errs.Unavailable, "no mail sender is configured")
	}
	return s.Mail.Send(ctx, m)
}

// Package links owns the one-time links Custodia e-mails: password reset
// (AUTH-07) and invitations. Both answer the requester identically, in
// content and in time, whether or not the address has an account (AUTH-06),
// and the e-mails carry a notice and a link, nothing confidential (WEB-07).
package links

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
)

// Lifetimes of the links.
const (
	ResetTTL  = 30 * time.Minute
	InviteTTL = 7 * 24 * time.Hour
)

// answerTime is the least time a reset or invitation request takes, so the
// work done for an existing account cannot be told from the work skipped
// for a missing one.
const answerTime = 250 * time.Millisecond

// Service issues and redeems links. Every request at its endpoints is an
// attempt recorded through the gate (Gate.Attempt) with the rate-limit
// budget it spends; the links it checks before that are read unaudited
// (Gate.Identify).
type Service struct {
	Gate    *gate.Gate
	Mail    mail.Sender
	BaseURL string // e.g. https://custodia.example.org
	Log     *slog.Logger

	wg sync.WaitGroup
}

// Wait blocks until every e-mail started so far is handed over.
func (s *Service) Wait() { s.wg.Wait() }

// send hands a message to the sender in the background: the request's
// answer must not wait for, or reveal, a delivery.
func (s *Service) send(m mail.Message) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.Mail.Send(ctx, m); err != nil && s.Log != nil {
			s.Log.Error("send e-mail", "subject", m.Subject, "err", err)
		}
	}()
}

func pad(start time.Time) {
	if d := answerTime - time.Since(start); d > 0 {
		time.Sleep(d)
	}
}

func (s *Service) link(kind, token string) string {
	return strings.TrimRight(s.BaseURL, "/") + "/" + kind + "/" + token
}

// Limits of the link endpoints (AUTH-05), per source address and, for reset
// requests, per named address whether or not it has an account.
var (
	resetPerAddress   = ratelimit.Rule{Limit: 10, Window: time.Minute}
	resetPerAccount   = ratelimit.Rule{Limit: 3, Window: 15 * time.Minute}
	confirmPerAddress = ratelimit.Rule{Limit: 20, Window: time.Minute}
)

func rule(r ratelimit.Rule, bucket string) ratelimit.Rule {
	r.Bucket = bucket
	return r
}

// attempt runs one request at a link endpoint as an attempt in the gate
// (Gate.Attempt), recorded as action, a security event: it counts against
// rules first, then runs work. A refusal by the rules, and a failed
// attempt (a dead link, a refused password), commit with their event, so
// that the budget the attempt spent stands (AUTH-05); a failed attempt
// leaves nothing else of its work. A fault commits nothing.
func (s *Service) attempt(ctx context.Context, from gate.Actor, action string, rules []ratelimit.Rule, work func(o *gate.OpTx) error) error {
	var refusal error
	spend := func(o *gate.OpTx) (bool, error) {
		o.Security()
		err := (&ratelimit.Limiter{DB: o}).Check(ctx, rules...)
		if errs.Is(err, errs.RateLimited) {
			refusal = err
			o.Outcome(audit.Denied)
			o.Detail("reason", "rate_limited")
			return false, nil
		}
		return err == nil, err
	}
	err := s.Gate.Attempt(ctx, from, action, func(o *gate.OpTx) error {
		if ok, err := spend(o); !ok {
			return err
		}
		return work(o)
	})
	if !failedAttempt(err) {
		if err != nil {
			return err
		}
		return refusal
	}
	// The failed work left nothing: spend its budget again, this time
	// with the failure on the record.
	failure := err
	err = s.Gate.Attempt(ctx, from, action, func(o *gate.OpTx) error {
		if ok, err := spend(o); !ok {
			return err
		}
		o.Outcome(audit.Failure)
		o.Detail("error", errs.KindOf(failure).String())
		return nil
	})
	switch {
	case err != nil:
		return errs.Wrap(errs.Unavailable, err, "the attempt could not be recorded; try again later")
	case refusal != nil:
		return refusal
	}
	return failure
}

// failedAttempt tells the failures of an attempt from faults.
func failedAttempt(err error) bool {
	for _, k := range []errs.Kind{errs.NotFound, errs.Invalid, errs.Conflict, errs.Unauthenticated} {
		if errs.Is(err, k) {
			return true
		}
	}
	return false
}

// RequestReset starts a password reset for the address. It returns nil
// whether or not an account exists; only a malformed address is an error.
func (s *Service) RequestReset(ctx context.Context, email string, a gate.Actor) error {
	start := time.Now()
	defer pad(start)
	norm, err := accounts.NormalizeEmail(email)
	if err != nil {
		return err
	}
	var token string
	var refusal error
	from := gate.Actor{RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent}
	err = s.Gate.Attempt(ctx, from, "auth.reset_request", func(o *gate.OpTx) error {
		o.Security()
		err := (&ratelimit.Limiter{DB: o}).Check(ctx,
			rule(resetPerAddress, "reset:address:"+ratelimit.AddressKey(a.RemoteAddr)),
			rule(resetPerAccount, "reset:account:"+ids.Digest(norm)))
		if errs.Is(err, errs.RateLimited) {
			// The rules before the refusing one counted the attempt.
			refusal = err
			o.Outcome(audit.Denied)
			o.Detail("reason", "rate_limited")
			return nil
		}
		if err != nil {
			return err
		}
		acc, err := accounts.ByEmail(ctx, o, norm)
		switch {
		case errs.Is(err, errs.NotFound):
			o.Outcome(audit.Failure)
			return nil
		case err != nil:
			return err
		}
		// A disabled account gets no link: its administrators turned it
		// off, and a new password would open nothing. The answer and the
		// time taken are those of any other address.
		if at, err := accounts.DisabledAt(ctx, o, acc.ID); err != nil {
			return err
		} else if !at.IsZero() {
			o.As(acc.ID, "")
			o.Outcome(audit.Failure)
			o.Detail("reason", "disabled")
			return nil
		}
		if token, err = accounts.IssueLink(ctx, o, acc.ID, accounts.PurposeReset, ResetTTL); err != nil {
			return err
		}
		o.As(acc.ID, "")
		return nil
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the reset could not be started; try again later")
	}
	if refusal != nil {
		return refusal
	}
	if token != "" {
		s.send(mail.Message{To: norm, Subject: "Reset your Custodia password", Text: fmt.Sprintf(
			"Someone, probably you, asked to reset the password of your Custodia account.\n\n"+
				"Choose a new password here (the link works once, for %d minutes):\n\n  %s\n\n"+
				"If you did not ask for this, ignore this e-mail: your password stays as it is.\n",
			int(ResetTTL/time.Minute), s.link("reset", token))})
	}
	return nil
}

// ConfirmReset consumes a reset link and sets the new password. In the same
// transaction it ends every session of the account and lifts a lockout, so
// whoever held a stolen session is out (AUTH-07). The link and the rules of
// the password are read first and the password hashed outside the
// transaction, which then spends the link and stores it.
func (s *Service) ConfirmReset(ctx context.Context, token, password string, a gate.Actor) error {
	var (
		acc   accounts.Account
		rules accounts.Policy
	)
	err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		id, err := accounts.PeekLink(ctx, q, accounts.PurposeReset, token)
		if err != nil {
			return err
		}
		if acc, err = accounts.ByID(ctx, q, id); err != nil {
			return err
		}
		rules, err = accounts.PasswordRules(ctx, q, id, accounts.DefaultPolicy)
		return err
	})
	var pw accounts.Password
	if err == nil {
		pw, err = accounts.NewPassword(ctx, acc, password, rules)
	}
	if err != nil && !failedAttempt(err) {
		return err
	}
	checked := err
	from := gate.Actor{RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent}
	limits := []ratelimit.Rule{rule(confirmPerAddress, "link:address:"+ratelimit.AddressKey(a.RemoteAddr))}
	return s.attempt(ctx, from, "auth.reset", limits, func(o *gate.OpTx) error {
		if checked != nil {
			return checked
		}
		id, err := accounts.RedeemLink(ctx, o, accounts.PurposeReset, token)
		if err != nil {
			return err
		}
		if id != acc.ID {
			return errs.E(errs.NotFound, "this link is invalid, used or expired")
		}
		o.As(acc.ID, "")
		o.Object("account", acc.ID)
		if err := pw.Store(ctx, o); err != nil {
			return err
		}
		now := time.Now()
		if err := sessions.RevokeAllIn(ctx, o, acc.ID, now); err != nil {
			return err
		}
		// A reset follows a lost or stolen password: access tokens end too.
		if err := sessions.RevokeTokensIn(ctx, o, acc.ID, now); err != nil {
			return err
		}
		// The owner proved control of the address: a lockout ends (AUTH-04).
		unlocked, err := accounts.Unlock(ctx, o, acc.ID)
		if err != nil || !unlocked {
			return err
		}
		orgIDs, err := accounts.Organizations(ctx, o, acc.ID)
		if err != nil {
			return err
		}
		for _, org := range append(orgIDs, "") {
			if err := o.Also(ctx, audit.Event{
				Action: "account.unlock", OrgID: org, ActorAccount: acc.ID, RemoteAddr: a.RemoteAddr,
				ObjectType: "account", ObjectID: acc.ID, Outcome: audit.Success, Security: true,
				Details: map[string]string{"by": "password-reset"},
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// CompleteSetup consumes a setup or invitation link and stores the
// account's first password, or, for an invitation to an account that has
// one, accepts it with that password: an organization's invitation grants
// its role (recorded as member.accept in that organization's trail as well
// as the account's), a participant's makes the account the participant's
// own. The link and what the password is checked against are read first,
// the password checked outside the transaction, which then spends the
// link.
func (s *Service) CompleteSetup(ctx context.Context, token, password string, a gate.Actor) error {
	var (
		st             accounts.Setup
		pending        participants.PendingAccount
		forParticipant bool
		member         accounts.Invitation
		forMember      bool
	)
	err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		var err error
		if pending, forParticipant, err = participants.InvitationOf(ctx, q, token); err != nil {
			return err
		}
		if member, forMember, err = accounts.InvitationOf(ctx, q, token); err != nil {
			return err
		}
		st, err = accounts.ReadSetup(ctx, q, token, forParticipant || forMember)
		return err
	})
	if err == nil {
		err = st.Check(ctx, password)
	}
	if err != nil && !failedAttempt(err) {
		return err
	}
	checked := err
	from := gate.Actor{RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent}
	limits := []ratelimit.Rule{rule(confirmPerAddress, "link:address:"+ratelimit.AddressKey(a.RemoteAddr))}
	return s.attempt(ctx, from, st.Action(), limits, func(o *gate.OpTx) error {
		if checked != nil {
			return checked
		}
		st.Describe(o)
		if err := st.Complete(ctx, o, token); err != nil {
			return err
		}
		switch {
		case forMember:
			if member.AccountID != st.Account.ID {
				return errs.E(errs.Internal, "invitation names another account")
			}
			as, err := member.Accept(ctx, o)
			if err != nil {
				return err
			}
			return o.Record(ctx, audit.Event{Action: "member.accept", ObjectType: "invitation", ObjectID: member.ID,
				Security: true, Details: map[string]string{"role": string(as.Role), "assignment_id": as.ID}}, member.OrgID)
		case forParticipant:
			if pending.AccountID != st.Account.ID {
				return errs.E(errs.Internal, "participant invitation names another account")
			}
			return participants.LinkAccount(ctx, o, pending)
		}
		return nil
	})
}

// SetupLink is what the page of a live setup link shows.
type SetupLink struct {
	// KeepPassword: the link is accepted with the password the account has
	// already (an invitation to an account that has one) rather than by
	// choosing one.
	KeepPassword bool
	// Invitation: the link is an organization's invitation, which the
	// person may decline; OrgName and Role say what it offers.
	Invitation bool
	OrgName    string
	Role       authz.Role
}

// PeekSetup reports whether a setup or invitation link is still usable,
// for the page that shows its form, and what it is for.
func (s *Service) PeekSetup(ctx context.Context, token string) (SetupLink, error) {
	var out SetupLink
	err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		id, err := accounts.PeekLink(ctx, q, accounts.PurposeSetup, token)
		if err != nil {
			return err
		}
		_, forParticipant, err := participants.InvitationOf(ctx, q, token)
		if err != nil {
			return err
		}
		inv, forMember, err := accounts.InvitationOf(ctx, q, token)
		if err != nil {
			return err
		}
		if forMember {
			org, err := orgs.OrganizationByID(ctx, q, inv.OrgID)
			if err != nil {
				return err
			}
			out.Invitation, out.OrgName, out.Role = true, org.Name, inv.Grant.Role
		}
		if !forParticipant && !forMember {
			return nil
		}
		acc, err := accounts.ByID(ctx, q, id)
		out.KeepPassword = acc.HasPassword
		return err
	})
	return out, err
}

// DeclineInvitation spends an organization's invitation link without
// granting its role, recorded as member.decline in the organization's
// trail and the account's. Whoever holds the link may decline; it asks for
// no password, as declining gives nothing.
func (s *Service) DeclineInvitation(ctx context.Context, token string, a gate.Actor) error {
	var (
		inv       accounts.Invitation
		forMember bool
	)
	err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		var err error
		inv, forMember, err = accounts.InvitationOf(ctx, q, token)
		return err
	})
	if err != nil {
		return err
	}
	if !forMember {
		return errs.E(errs.NotFound, "this link is invalid, used or expired")
	}
	from := gate.Actor{RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent}
	limits := []ratelimit.Rule{rule(confirmPerAddress, "link:address:"+ratelimit.AddressKey(a.RemoteAddr))}
	return s.attempt(ctx, from, "member.decline", limits, func(o *gate.OpTx) error {
		o.As(inv.AccountID, "")
		o.Object("invitation", inv.ID)
		o.Detail("role", string(inv.Grant.Role))
		o.InEach([]string{inv.OrgID, ""})
		id, err := accounts.RedeemLink(ctx, o, accounts.PurposeSetup, token)
		if err != nil {
			return err
		}
		if id != inv.AccountID {
			return errs.E(errs.NotFound, "this link is invalid, used or expired")
		}
		return inv.Decline(ctx, o)
	})
}

// Participants is what InviteParticipant needs of the participants.
type Participants interface {
	InviteAccount(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym, email string, ttl time.Duration) (participants.AccountInvitation, error)
}

// InviteParticipant invites a participant to an account of their own
// (ACL-05; see participants.InviteAccount): the e-mail carries a setup link,
// valid once for InviteTTL, whose acceptance makes the account the
// participant's own. It names no study, site or pseudonym (WEB-07).
func (s *Service) InviteParticipant(ctx context.Context, ps Participants, a gate.Actor, slug, studyID, siteID, pseudonym, email string) error {
	inv, err := ps.InviteAccount(ctx, a, slug, studyID, siteID, pseudonym, email, InviteTTL)
	if err != nil {
		return err
	}
	how := "Choose your password here"
	if inv.Existing {
		how = "Accept with the password of your existing Custodia account here"
	}
	s.send(mail.Message{To: inv.Email, Subject: "Your own access to Custodia", Text: fmt.Sprintf(
		"You have been invited to your own participant account with %s in Custodia.\n\n"+
			"%s (the link works once, for 7 days):\n\n  %s\n\n"+
			"If you did not expect this, ignore this e-mail.\n", inv.OrgName, how, s.link("setup", inv.Token))})
	return nil
}

// PeekReset reports whether a reset link is still usable, for the page that
// shows its form.
func (s *Service) PeekReset(ctx context.Context, token string) error {
	return s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		_, err := accounts.PeekLink(ctx, q, accounts.PurposeReset, token)
		return err
	})
}

// Invitation asks a person to join an organization with a role.
type Invitation struct {
	Email   string
	Role    authz.Role
	StudyID string
	SiteID  string
}

// Invite invites the person to the organization with a role (ACL-02) and
// e-mails them a one-time link: to choose a password when the address has
// no account yet, or to accept with the password of the one it has. The
// role is granted only when they accept; until then the organization sees
// the address and that it is invited. A member of staff of the
// organization gets the role at once and a notice. The inviter's answer,
// the event and the time taken are the same in every case.
func (s *Service) Invite(ctx context.Context, a gate.Actor, slug string, inv Invitation) error {
	start := time.Now()
	defer pad(start)
	norm, err := accounts.NormalizeEmail(inv.Email)
	if err != nil {
		return err
	}
	if _, err := authz.ParseRole(string(inv.Role)); err != nil {
		return err
	}
	var (
		done accounts.Invited
		org  orgs.Organization
	)
	err = s.Gate.Do(ctx, a, gate.Slug(slug), "member.invite", func(t *gate.Tx) error {
		org = t.Org()
		if err := t.Authorize(authz.MemberInvite, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if inv.SiteID != "" && inv.StudyID == "" {
			site, err := orgs.SiteByID(ctx, t, org.ID, inv.SiteID)
			if err != nil {
				return err
			}
			inv.StudyID = site.StudyID
		}
		grant := authz.Assignment{OrgID: org.ID, Role: inv.Role, StudyID: inv.StudyID, SiteID: inv.SiteID}
		if !authz.CanGrant(t.Subject, grant) {
			return errs.E(errs.Forbidden, "you cannot grant the role %s: it holds permissions you do not have", inv.Role)
		}
		// Every invitation sends an e-mail (ASVS V2.4.1); the limits are
		// the same whether or not the address has an account.
		if err := (&ratelimit.Limiter{DB: t}).Check(ctx, ratelimit.InviteRules(a.AccountID, org.ID, ids.Digest(norm))...); err != nil {
			return err
		}
		var err error
		if done, err = accounts.Invite(ctx, t, norm, grant, a.AccountID, InviteTTL); err != nil {
			return err
		}
		// An invitation's event names the invitation, never the account
		// behind the address, so the trail tells no more than the answer.
		if done.Member {
			t.Object("account", done.Grant.AccountID)
		} else {
			t.Object("invitation", done.Invitation.ID)
		}
		t.Detail("role", string(inv.Role))
		t.Security()
		return nil
	})
	if err != nil {
		return err
	}
	var text string
	switch {
	case done.Member:
		text = fmt.Sprintf("You have been given another role in %s in Custodia.\n\nSign in at %s\n",
			org.Name, strings.TrimRight(s.BaseURL, "/")+"/")
	case done.HasPassword:
		text = fmt.Sprintf("You are invited to join %s in Custodia.\n\n"+
			"To accept, open this link and confirm with the password of your Custodia account;\n"+
			"you can decline there too (the link works once, for 7 days):\n\n  %s\n\n"+
			"Until you accept, %s cannot see your account.\n", org.Name, s.link("setup", done.Link), org.Name)
	default:
		text = fmt.Sprintf("You have been invited to %s in Custodia.\n\n"+
			"Choose your password here to accept, or decline there "+
			"(the link works once, for 7 days):\n\n  %s\n", org.Name, s.link("setup", done.Link))
	}
	s.send(mail.Message{To: norm, Subject: "Your access to Custodia", Text: text})
	return nil
}

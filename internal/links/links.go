// Package links owns the one-time links Custodia e-mails: password reset
// (AUTH-07) and invitations. Both answer the requester identically, in
// content and in time, whether or not the address has an account (AUTH-06),
// and the e-mails carry a notice and a link, nothing confidential (WEB-07).
package links

import (
	"context"
	"database/sql"
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

// Service issues and redeems links.
type Service struct {
	DB      *sqldb.DB
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

func (s *Service) limit(ctx context.Context, rules ...ratelimit.Rule) error {
	return (&ratelimit.Limiter{DB: s.DB}).Check(ctx, rules...)
}

func rule(r ratelimit.Rule, bucket string) ratelimit.Rule {
	r.Bucket = bucket
	return r
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
	if err := s.limit(ctx,
		rule(resetPerAddress, "reset:address:"+ratelimit.AddressKey(a.RemoteAddr)),
		rule(resetPerAccount, "reset:account:"+ids.Digest(norm))); err != nil {
		return err
	}
	ev := audit.Event{Action: "auth.reset_request", RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent, Security: true}
	var token string
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		acc, err := accounts.ByEmail(ctx, tx, norm)
		switch {
		case errs.Is(err, errs.NotFound):
			ev.Outcome = audit.Failure
		case err != nil:
			return err
		default:
			if token, err = accounts.IssueToken(ctx, tx, acc.ID, accounts.PurposeReset, ResetTTL); err != nil {
				return err
			}
			ev.ActorAccount, ev.Outcome = acc.ID, audit.Success
		}
		_, err = audit.Append(ctx, tx, ev)
		return err
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the reset could not be started; try again later")
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
// whoever held a stolen session is out (AUTH-07).
func (s *Service) ConfirmReset(ctx context.Context, token, password string, a gate.Actor) error {
	if err := s.limit(ctx, rule(confirmPerAddress, "link:address:"+ratelimit.AddressKey(a.RemoteAddr))); err != nil {
		return err
	}
	return s.DB.InTx(ctx, func(tx *sql.Tx) error {
		id, err := accounts.RedeemToken(ctx, tx, accounts.PurposeReset, token)
		if err != nil {
			return err
		}
		acc, err := accounts.ByID(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := accounts.SetPassword(ctx, tx, acc, password, accounts.DefaultPolicy); err != nil {
			return err
		}
		if err := sessions.RevokeAllIn(ctx, tx, acc.ID, time.Now()); err != nil {
			return err
		}
		// A reset follows a lost or stolen password: access tokens end too.
		if err := sessions.RevokeTokensIn(ctx, tx, acc.ID, time.Now()); err != nil {
			return err
		}
		// The owner proved control of the address: a lockout ends (AUTH-04).
		unlocked, err := accounts.Unlock(ctx, tx, acc.ID)
		if err != nil {
			return err
		}
		if unlocked {
			orgIDs, err := accounts.Organizations(ctx, tx, acc.ID)
			if err != nil {
				return err
			}
			for _, org := range append(orgIDs, "") {
				if _, err := audit.Append(ctx, tx, audit.Event{
					Action: "account.unlock", OrgID: org, ActorAccount: acc.ID, RemoteAddr: a.RemoteAddr,
					ObjectType: "account", ObjectID: acc.ID, Outcome: audit.Success, Security: true,
					Details: map[string]string{"by": "password-reset"},
				}); err != nil {
					return err
				}
			}
		}
		_, err = audit.Append(ctx, tx, audit.Event{
			Action: "auth.reset", ActorAccount: acc.ID, RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent,
			ObjectType: "account", ObjectID: acc.ID, Outcome: audit.Success, Security: true,
		})
		return err
	})
}

// CompleteSetup consumes a setup or invitation link and stores the
// account's first password.
func (s *Service) CompleteSetup(ctx context.Context, token, password string, a gate.Actor) error {
	if err := s.limit(ctx, rule(confirmPerAddress, "link:address:"+ratelimit.AddressKey(a.RemoteAddr))); err != nil {
		return err
	}
	return s.DB.InTx(ctx, func(tx *sql.Tx) error {
		pending, forParticipant, err := participants.InvitationOf(ctx, tx, token)
		if err != nil {
			return err
		}
		acc, err := accounts.CompleteSetupIn(ctx, tx, token, password, forParticipant)
		if err != nil {
			return err
		}
		if !forParticipant {
			return nil
		}
		if pending.AccountID != acc.ID {
			return errs.E(errs.Internal, "participant invitation names another account")
		}
		return participants.LinkAccount(ctx, linkTx{tx, a}, pending)
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

// PeekSetup reports whether a setup or invitation link is still usable,
// for the page that shows its form, and whether it is accepted with the
// password the account has already (a participant's invitation to an
// account that has one) rather than by choosing one.
func (s *Service) PeekSetup(ctx context.Context, token string) (keepPassword bool, err error) {
	id, err := accounts.PeekToken(ctx, s.DB, accounts.PurposeSetup, token)
	if err != nil {
		return false, err
	}
	_, forParticipant, err := participants.InvitationOf(ctx, s.DB, token)
	if err != nil || !forParticipant {
		return false, err
	}
	acc, err := accounts.ByID(ctx, s.DB, id)
	if err != nil {
		return false, err
	}
	return acc.HasPassword, nil
}

// PeekReset reports whether a reset link is still usable, for the page that
// shows its form.
func (s *Service) PeekReset(ctx context.Context, token string) error {
	_, err := accounts.PeekToken(ctx, s.DB, accounts.PurposeReset, token)
	return err
}

// Invitation asks a person to join an organization with a role.
type Invitation struct {
	Email   string
	Role    authz.Role
	StudyID string
	SiteID  string
}

// Invite gives the person the role and e-mails them: a link to choose a
// password when the address has no account yet, a notice otherwise. The
// answer is the same in both cases.
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
		token string
		org   orgs.Organization
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
		acc, created, err := accounts.Enrol(ctx, t, norm, "", grant)
		if err != nil {
			return err
		}
		t.Object("account", acc.ID)
		t.Detail("role", string(inv.Role))
		t.Security()
		if created || !acc.HasPassword {
			token, err = accounts.IssueToken(ctx, t, acc.ID, accounts.PurposeSetup, InviteTTL)
		}
		return err
	})
	if err != nil {
		return err
	}
	text := fmt.Sprintf("You have been given access to %s in Custodia.\n\nSign in at %s\n", org.Name, strings.TrimRight(s.BaseURL, "/")+"/")
	if token != "" {
		text = fmt.Sprintf("You have been invited to %s in Custodia.\n\n"+
			"Choose your password here (the link works once, for 7 days):\n\n  %s\n", org.Name, s.link("setup", token))
	}
	s.send(mail.Message{To: norm, Subject: "Your access to Custodia", Text: text})
	return nil
}

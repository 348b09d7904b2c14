package sessions

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sso"
)

// SingleSignOn is the sign-in through an organization's own OpenID Connect
// provider (AUTH-13, package sso): Begin sends the browser to the
// provider, Finish takes the provider's answer and ends where a password
// would: a session, or the challenge of the organization's second factor.
type SingleSignOn struct {
	Store *Store
	// RP speaks OpenID Connect to the providers (sso/oidcrp).
	RP sso.RelyingParty
	// RedirectURL is the address the providers send the browser back to:
	// the public URL's /login/sso/callback.
	RedirectURL string
	// Issuers are the issuer prefixes the operator allowed (serve
	// --sso-issuer); a stored provider outside them is not used.
	Issuers []string
}

// ssoAddressBucket counts the single sign-on requests of one source
// address, begun and answered alike (AUTH-05).
const ssoAddressBucket = "sso:address:"

// Started is a begun single sign-on: the provider's address to send the
// browser to, and the binding secret the browser keeps in a cookie until
// the provider's answer comes back, no longer than ExpiresAt.
type Started struct {
	URL       string
	Binding   string
	ExpiresAt time.Time
}

// available answers, for a service missing its parts, that single sign-on
// is not set up.
func (s *SingleSignOn) available() error {
	if s == nil || s.Store == nil || s.RP == nil || s.RedirectURL == "" {
		return sso.ErrNotConfigured
	}
	return nil
}

// spend counts a request against the limits of its source address.
func (s *SingleSignOn) spend(ctx context.Context, remoteAddr string) error {
	addr := ssoAddressBucket + ratelimit.AddressKey(remoteAddr)
	return s.Store.spend(ctx,
		ratelimit.Rule{Bucket: addr, Limit: ratelimit.AddressPerMinute, Window: time.Minute},
		ratelimit.Rule{Bucket: addr, Limit: ratelimit.AddressPerHour, Window: time.Hour})
}

// provider reads the provider of the organization slug names; an unknown
// organization, one without a provider and one whose provider the
// operator no longer allows are alike sso.ErrNotConfigured.
func (s *SingleSignOn) provider(ctx context.Context, q sqldb.Querier, org orgs.Organization) (sso.Provider, sso.Sealed, error) {
	p, sealed, err := sso.Load(ctx, q, org.ID)
	if err != nil {
		return sso.Provider{}, sso.Sealed{}, err
	}
	if sso.CheckIssuer(p.Issuer, s.Issuers) != nil {
		return sso.Provider{}, sso.Sealed{}, sso.ErrNotConfigured
	}
	return p, sealed, nil
}

func (s *SingleSignOn) client(p sso.Provider, secret string) sso.Client {
	return sso.Client{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: secret, RedirectURL: s.RedirectURL, Scopes: p.AllScopes()}
}

// Begin starts a sign-in at the provider of the organization slug names,
// returning to the local page next once signed in. The flow is recorded in
// the database shared by all nodes (sso.BeginFlow) as bookkeeping of the
// sign-in, like the budget of an attempt: it proves nothing and changes no
// account, so it is not on the audit trail; how it ends is. An
// organization without a provider is sso.ErrNotConfigured; too many
// requests from the address are RateLimited.
func (s *SingleSignOn) Begin(ctx context.Context, slug, next, remoteAddr string) (Started, error) {
	if err := s.available(); err != nil {
		return Started{}, err
	}
	if err := s.spend(ctx, remoteAddr); err != nil {
		return Started{}, err
	}
	var p sso.Provider
	err := s.Store.Gate.Identify(ctx, func(q sqldb.Querier) error {
		if orgs.CheckSlug(slug) != nil {
			return sso.ErrNotConfigured
		}
		org, err := orgs.OrganizationBySlug(ctx, q, slug)
		if errs.Is(err, errs.NotFound) {
			return sso.ErrNotConfigured
		}
		if err != nil {
			return err
		}
		p, _, err = s.provider(ctx, q, org)
		return err
	})
	if err != nil {
		return Started{}, err
	}
	var b sso.Begun
	err = s.Store.Gate.Stamp(ctx, func(q sqldb.Querier) error {
		var err error
		b, err = sso.BeginFlow(ctx, q, p.OrgID, next, s.Store.now())
		return err
	})
	if err != nil {
		return Started{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	u, err := s.RP.AuthCodeURL(ctx, s.client(p, ""), b.State, b.Nonce, sso.Verifier(b.Binding))
	if err != nil {
		return Started{}, err
	}
	return Started{URL: u, Binding: b.Binding, ExpiresAt: b.ExpiresAt}, nil
}

// Answer is the provider's answer as the browser brought it back: the
// state and code, or the provider's error, the issuer it names (its iss
// parameter, RFC 9207, if the provider sends one), and the binding secret
// of the browser's cookie.
type Answer struct {
	State, Code, Error, Issuer string
	Binding                    string
}

// Finish takes the provider's answer to a flow Begin started and signs the
// person in: a session, or, where their organization requires a second
// factor that the provider's own does not stand for, the challenge of the
// second step (Step.Challenge), exactly as a right password would. It
// returns the page the flow was to return to.
//
// The answer must belong to a live flow begun in the same browser; its code
// is redeemed with the flow's PKCE verifier and the client's secret, and
// the ID token verified (signature, issuer, audience, expiry, nonce: the
// RelyingParty). The person it names signs in to the account linked to
// them, or, the first time, to the account of their e-mail address, or to
// one made for them where the provider may (sso.AccountFor), if that
// account belongs to this organization alone (sso.OnlyHere) and is neither
// locked nor disabled; the roles their groups give are brought up to date
// (sso.SyncRoles) and they must hold one. The flow is spent in the
// transaction that records the outcome, so it answers once.
//
// Every refusal is an sso refusal (Unauthenticated, one line for the
// person) recorded as auth.sso, a failed security event in the
// organization's trail with its reason, and changes nothing else; a
// success is auth.login (or auth.challenge) with method sso, a security
// event when it changed roles. Neither token nor claim goes on the trail
// or in a log.
func (s *SingleSignOn) Finish(ctx context.Context, a Answer, remoteAddr, userAgent string) (Step, string, error) {
	if err := s.available(); err != nil {
		return Step{}, "", err
	}
	from := gate.Actor{RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	if err := s.spend(ctx, remoteAddr); err != nil {
		if errs.Is(err, errs.RateLimited) {
			return Step{}, "", s.Store.refuse(ctx, audit.Event{Action: "auth.sso", RemoteAddr: from.RemoteAddr, UserAgent: from.UserAgent}, "", err)
		}
		return Step{}, "", err
	}
	var (
		flow   sso.Flow
		p      sso.Provider
		sealed sso.Sealed
	)
	err := s.Store.Gate.Identify(ctx, func(q sqldb.Querier) error {
		var err error
		if flow, err = sso.FlowOf(ctx, q, a.State, a.Binding, s.Store.now()); err != nil {
			return err
		}
		org, err := orgs.OrganizationByID(ctx, q, flow.OrgID)
		if err != nil {
			return err
		}
		p, sealed, err = s.provider(ctx, q, org)
		return err
	})
	if err != nil {
		if reason := sso.ReasonOf(err); reason != "" {
			return Step{}, "", s.refused(ctx, from, flow, reason, "", err)
		}
		return Step{}, "", errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	if a.Error != "" || a.Code == "" {
		return Step{}, "", s.refused(ctx, from, flow, sso.ReasonProvider, "", sso.Refuse(sso.ReasonProvider, errors.New("the provider answered without a code")))
	}
	secret, err := s.openSecret(ctx, from, p, sealed)
	if err != nil {
		return Step{}, "", err
	}
	claims, err := s.RP.Redeem(ctx, s.client(p, secret), a.Code, sso.Verifier(a.Binding), flow.Nonce, a.Issuer)
	if err != nil {
		if reason := sso.ReasonOf(err); reason != "" {
			return Step{}, "", s.refused(ctx, from, flow, reason, "", err)
		}
		return Step{}, "", err
	}
	id, err := p.Identity(claims)
	if err != nil {
		return Step{}, "", s.refused(ctx, from, flow, sso.ReasonOf(err), "", err)
	}
	var (
		st      Step
		account string
	)
	err = s.Store.Gate.Attempt(ctx, from, "auth.login", func(o *gate.OpTx) error {
		st, account = Step{}, ""
		return s.signIn(ctx, o, p, flow, id, remoteAddr, userAgent, &st, &account)
	})
	if reason := sso.ReasonOf(err); reason != "" {
		spent := flow
		if reason == sso.ReasonState {
			spent = sso.Flow{} // spent meanwhile by another request
		}
		return Step{}, "", s.refused(ctx, from, spent, reason, account, err)
	}
	if err != nil {
		return Step{}, "", errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	return st, flow.Next, nil
}

// signIn is the work of a verified answer (Finish), in the attempt that
// records it.
func (s *SingleSignOn) signIn(ctx context.Context, o *gate.OpTx, p sso.Provider, flow sso.Flow, id sso.Identity,
	remoteAddr, userAgent string, st *Step, account *string) error {
	now := s.Store.now()
	if err := sso.SpendFlow(ctx, o, flow, now); err != nil {
		return err
	}
	accountID, how, err := sso.AccountFor(ctx, o, p, id, now)
	if err != nil {
		return err
	}
	*account = accountID
	if only, err := sso.OnlyHere(ctx, o, accountID, p.OrgID); err != nil {
		return err
	} else if !only {
		return sso.Refuse(sso.ReasonShared, nil)
	}
	lock, err := accounts.Lockout(ctx, o, accountID)
	if err != nil {
		return err
	}
	disabled, err := accounts.DisabledAt(ctx, o, accountID)
	if err != nil {
		return err
	}
	if lock.Locked() || !disabled.IsZero() {
		return sso.Refuse(sso.ReasonLocked, nil)
	}
	changes, err := sso.SyncRoles(ctx, o, o.Dialect(), p, accountID, id.Groups, now)
	if err != nil {
		return err
	}
	roles, err := authz.AssignmentsOf(ctx, o, p.OrgID, accountID)
	if err != nil {
		return err
	}
	if len(roles) == 0 {
		return sso.Refuse(sso.ReasonNoRole, nil)
	}
	need, err := mfa.RequirementOf(ctx, o, accountID)
	if err != nil {
		return err
	}
	o.Org(p.OrgID)
	o.Detail("method", "sso")
	o.Detail("issuer", p.Issuer)
	o.Detail("account_link", how)
	if changes.Any() || how == sso.Created {
		o.Security()
	}
	if len(changes.Added) > 0 {
		o.Detail("roles_added", strings.Join(changes.Added, " "))
	}
	if len(changes.Removed) > 0 {
		o.Detail("roles_removed", strings.Join(changes.Removed, " "))
	}
	if len(changes.Kept) > 0 {
		o.Detail("roles_kept", strings.Join(changes.Kept, " "))
	}
	if need == mfa.NoSecondFactor || id.SecondFactor {
		if need != mfa.NoSecondFactor {
			// The organization accepts the provider's own second factor
			// (sso.Provider.ProvesSecondFactor).
			o.Detail("second_factor", "provider")
		}
		err := s.Store.start(ctx, o, accountID, remoteAddr, userAgent, st)
		if errors.Is(err, accounts.ErrBadCredentials) {
			return sso.Refuse(sso.ReasonLocked, err) // locked by a concurrent failure
		}
		return err
	}
	purpose := mfa.PurposeSecondFactor
	if need == mfa.MustEnrol {
		purpose = mfa.PurposeEnrolment
	}
	if st.Challenge, err = mfa.IssueChallenge(ctx, o, accountID, purpose, remoteAddr, now); err != nil {
		return err
	}
	o.Action("auth.challenge")
	o.As(accountID, "")
	o.Detail("purpose", string(purpose))
	return nil
}

// openSecret opens the provider's client secret, as account work that
// reads and records nothing: the secret is never on the trail, and what it
// is used for is.
func (s *SingleSignOn) openSecret(ctx context.Context, from gate.Actor, p sso.Provider, sealed sso.Sealed) (string, error) {
	var secret string
	err := s.Store.Gate.Account(ctx, from, "auth.sso.secret", func(o *gate.OpTx) error {
		o.Nothing()
		sec, err := o.Secrets()
		if err != nil {
			return err
		}
		b, err := sec.Open(ctx, sealed.Secret, sso.SecretAD(p.OrgID, p.Issuer, p.ClientID))
		if err != nil {
			return err
		}
		secret = string(b)
		return nil
	})
	if err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "single sign-on is unavailable: the provider's client secret cannot be opened")
	}
	return secret, nil
}

// refused records a refused single sign-on, spending its flow if it has
// one still live, and returns cause, the refusal the person gets, unless
// the record could not be written.
func (s *SingleSignOn) refused(ctx context.Context, from gate.Actor, flow sso.Flow, reason, accountID string, cause error) error {
	err := s.Store.Gate.Attempt(ctx, from, "auth.sso", func(o *gate.OpTx) error {
		if flow.ID != "" {
			if err := sso.SpendFlow(ctx, o, flow, s.Store.now()); err != nil && sso.ReasonOf(err) == "" {
				return err
			}
		}
		o.Org(flow.OrgID)
		o.As(accountID, "")
		o.Outcome(audit.Failure)
		o.Security()
		o.Detail("method", "sso")
		o.Detail("reason", reason)
		return nil
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	return cause
}

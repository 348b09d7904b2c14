// Package sso owns single sign-on with an organization's own OpenID Connect
// provider (AUTH-13): Microsoft Entra ID, AD FS for Active Directory,
// Keycloak, Google Workspace or any other that speaks OpenID Connect.
//
// An organization's administrators name their provider (issuer, client id
// and secret), how its answer is read (the claim that holds the e-mail
// address, the one that holds the groups, and which group gives which
// role), which e-mail domains it may sign in, whether it may create
// accounts, and whether its own second factor (its amr or acr values)
// stands for the one the organization's policy requires. The client secret
// is stored wrapped by the key-encryption key, through the gate's vault of
// secrets, bound to the organization, the issuer and the client id.
//
// A sign-in is the authorization code flow with PKCE and a nonce. The flow
// in progress lives in the database (sso_flows), so that any node may
// receive the provider's answer: the digest of its state, the nonce, and
// the digest of a binding secret that only the browser that began it holds
// (in a cookie), from which the PKCE verifier is derived. A flow is spent
// once and ends after FlowTTL. The provider's ID token must be signed by a
// key the issuer publishes, name the configured issuer and the client as
// its audience, be unexpired and carry the flow's nonce; anything else is
// refused (Refusal), recorded as a failed security event, and changes
// nothing.
//
// The package promises that a provider signs in only accounts that belong
// to its organization alone: an account that holds a role in another
// organization is never reached through this organization's provider, so
// that one organization's provider (or its administrators) cannot take over
// the account of a person another organization shares.
//
// It sits below the gate: its functions run in the gate's transactions.
// The protocol itself (discovery, the token request, the ID token's
// signature) is spoken by a RelyingParty (sso/oidcrp), which speaks HTTP;
// this package knows nothing of HTTP. The sign-in's steps are
// sessions.SingleSignOn's, its administration sso/ssoadmin's.
package sso

import (
	"context"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
)

// Provider is an organization's OpenID Connect provider and how its answer
// is read.
type Provider struct {
	OrgID    string `json:"-"`
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// Scopes are asked for besides openid, email and profile: "groups"
	// for a provider that sends groups only when asked.
	Scopes []string `json:"scopes"`
	// EmailClaim names the claim that holds the person's e-mail address:
	// "email" (which must come with email_verified true), or the
	// directory's sign-in name, "preferred_username" or "upn", for
	// providers that send no verified e-mail (Entra ID, AD FS).
	EmailClaim string `json:"email_claim"`
	// GroupsClaim names the claim that lists the person's groups (or
	// roles): "groups", "roles" (Entra ID's app roles), or a claim type
	// URI of AD FS.
	GroupsClaim string `json:"groups_claim"`
	// Roles give a role to the members of a group. At each sign-in the
	// roles that groups gave follow the groups; roles an administrator
	// gave are left alone.
	Roles []GroupRole `json:"roles"`
	// AllowedDomains are the e-mail domains the provider may sign in;
	// none means any (only where CreateAccounts is off).
	AllowedDomains []string `json:"allowed_domains"`
	// CreateAccounts lets the provider create an account for a person of
	// an allowed domain who has none; otherwise only existing accounts
	// sign in.
	CreateAccounts bool `json:"create_accounts"`
	// AcceptProviderMFA: the provider's own second factor, proven by one
	// of MFAAMR in the ID token's amr or by its acr being one of MFAACR,
	// stands for the second factor the organization's policy requires.
	AcceptProviderMFA bool     `json:"accept_provider_mfa"`
	MFAAMR            []string `json:"mfa_amr"`
	MFAACR            []string `json:"mfa_acr"`
	// HasSecret reports that a client secret is stored; the secret itself
	// is never read back.
	HasSecret bool      `json:"has_client_secret"`
	UpdatedAt time.Time `json:"updated_at"`
}

// GroupRole gives role to the members of a provider's group, in the
// organization or narrowed to a study or a site of it.
type GroupRole struct {
	Group   string     `json:"group"`
	Role    authz.Role `json:"role"`
	StudyID string     `json:"study,omitempty"`
	SiteID  string     `json:"site,omitempty"`
}

// Claims are what a RelyingParty verified of a provider's ID token.
type Claims struct {
	Issuer   string
	Subject  string
	Audience []string
	Nonce    string
	AMR      []string
	ACR      string
	// Raw holds every claim of the ID token, for the claims the provider's
	// settings name (EmailClaim, GroupsClaim).
	Raw map[string]any
}

// Client is what a RelyingParty needs of a provider for one flow.
type Client struct {
	Issuer, ClientID, ClientSecret string
	// RedirectURL is the server's callback address.
	RedirectURL string
	Scopes      []string
}

// RelyingParty speaks OpenID Connect to providers (sso/oidcrp).
type RelyingParty interface {
	// AuthCodeURL returns the address of the provider's authorization
	// endpoint for a flow: the code flow, with the state, the nonce and
	// the S256 challenge of verifier.
	AuthCodeURL(ctx context.Context, c Client, state, nonce, verifier string) (string, error)
	// Redeem exchanges code, with the PKCE verifier, for the provider's
	// tokens and verifies the ID token: signed by a key the issuer
	// publishes, issued by c.Issuer for c.ClientID, unexpired, carrying
	// nonce. iss is the authorization response's iss parameter (RFC 9207,
	// against mix-up): where given it must be c.Issuer, and a provider
	// that announces it must give it. Every failure is a Refusal (Refuse)
	// naming what failed, or Unavailable when the provider cannot be
	// reached.
	Redeem(ctx context.Context, c Client, code, verifier, nonce, iss string) (Claims, error)
}

// Scopes every flow asks for.
var baseScopes = []string{"openid", "email", "profile"}

// AllScopes are the scopes a flow of p asks for.
func (p Provider) AllScopes() []string {
	out := slices.Clone(baseScopes)
	for _, s := range p.Scopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Default is the setting of a provider not yet configured.
func Default() Provider {
	return Provider{EmailClaim: "email", GroupsClaim: "groups", MFAAMR: []string{"mfa"}}
}

// Limits of a provider's settings.
const (
	maxURL      = 512
	maxName     = 200
	maxList     = 50
	maxRoles    = 200
	maxGroupLen = 256
)

// CheckIssuer checks an issuer's address: https, or http on a loopback
// address (a provider on the server's own machine), without a query,
// fragment or credentials; and one of the address prefixes the operator
// allowed (--sso-issuer), so that the server reaches no provider its
// operator did not name. A prefix allows itself and every address below
// it: "https://login.microsoftonline.com/" allows every Entra ID tenant.
func CheckIssuer(issuer string, allowed []string) error {
	u, err := url.Parse(issuer)
	switch {
	case issuer == "" || len(issuer) > maxURL:
		return errs.E(errs.Invalid, "the issuer must be an address of at most %d characters", maxURL)
	case err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return errs.E(errs.Invalid, "the issuer must be an address like https://login.example.com/tenant, without a query")
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return errs.E(errs.Invalid, "the issuer must be an https address (http only on this machine's loopback address)")
	case u.Scheme != "https" && u.Scheme != "http":
		return errs.E(errs.Invalid, "the issuer must be an https address")
	}
	if len(allowed) == 0 {
		return errs.E(errs.Invalid, "single sign-on is not enabled on this server: its operator names the providers organizations may use (serve --sso-issuer)")
	}
	for _, a := range allowed {
		if IssuerAllowed(issuer, a) {
			return nil
		}
	}
	return errs.E(errs.Invalid, "this server's operator has not allowed the issuer %s (serve --sso-issuer)", issuer)
}

// IssuerAllowed reports whether issuer is prefix or lies below it.
func IssuerAllowed(issuer, prefix string) bool {
	if issuer == prefix || issuer == strings.TrimSuffix(prefix, "/") {
		return true
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return strings.HasPrefix(issuer, prefix)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Check validates p's settings (not its roles, which need the database:
// see CheckRoles) and completes the defaults. allowed are the operator's
// issuer prefixes (CheckIssuer).
func (p *Provider) Check(allowed []string) error {
	p.Issuer = strings.TrimSpace(p.Issuer)
	p.ClientID = strings.TrimSpace(p.ClientID)
	if err := CheckIssuer(p.Issuer, allowed); err != nil {
		return err
	}
	if !token(p.ClientID, 255) {
		return errs.E(errs.Invalid, "the client id must be at most 255 printable characters without spaces")
	}
	if p.EmailClaim == "" {
		p.EmailClaim = "email"
	}
	if p.GroupsClaim == "" {
		p.GroupsClaim = "groups"
	}
	if !token(p.EmailClaim, maxName) || !token(p.GroupsClaim, maxName) {
		return errs.E(errs.Invalid, "a claim's name must be at most %d printable characters without spaces", maxName)
	}
	for _, l := range []struct {
		what string
		list *[]string
	}{{"scope", &p.Scopes}, {"amr value", &p.MFAAMR}, {"acr value", &p.MFAACR}} {
		out, err := tokens(l.what, *l.list)
		if err != nil {
			return err
		}
		*l.list = out
	}
	var domains []string
	for _, d := range p.AllowedDomains {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" {
			continue
		}
		if !domain(d) {
			return errs.E(errs.Invalid, "%q is not an e-mail domain", d)
		}
		if !slices.Contains(domains, d) {
			domains = append(domains, d)
		}
	}
	if len(domains) > maxList {
		return errs.E(errs.Invalid, "at most %d e-mail domains", maxList)
	}
	p.AllowedDomains = domains
	if p.CreateAccounts && len(p.AllowedDomains) == 0 {
		return errs.E(errs.Invalid, "a provider that creates accounts must be limited to the organization's e-mail domains")
	}
	if p.AcceptProviderMFA && len(p.MFAAMR) == 0 && len(p.MFAACR) == 0 {
		return errs.E(errs.Invalid, "name the amr or acr values by which the provider proves its second factor (amr \"mfa\" for Entra ID)")
	}
	if len(p.Roles) > maxRoles {
		return errs.E(errs.Invalid, "at most %d group roles", maxRoles)
	}
	for i, r := range p.Roles {
		g := strings.TrimSpace(r.Group)
		if g == "" || len(g) > maxGroupLen || !utf8.ValidString(g) || strings.ContainsFunc(g, unicode.IsControl) {
			return errs.E(errs.Invalid, "a group must be named, in at most %d characters without control characters", maxGroupLen)
		}
		p.Roles[i].Group = g
	}
	return nil
}

// token reports whether s is printable ASCII without spaces, 1 to n long.
func token(s string, n int) bool {
	if s == "" || len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func tokens(what string, in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !token(s, maxName) {
			return nil, errs.E(errs.Invalid, "a %s must be at most %d printable characters without spaces", what, maxName)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) > maxList {
		return nil, errs.E(errs.Invalid, "at most %d of each %s", maxList, what)
	}
	return out, nil
}

// domain reports whether d looks like a DNS name with at least one dot.
func domain(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// SecretAD is the associated data that binds a provider's wrapped client
// secret to its organization, issuer and client: moved to another
// organization's row, or left behind a changed issuer, it does not open.
func SecretAD(orgID, issuer, clientID string) []byte {
	return []byte("custodia sso client secret\x00" + orgID + "\x00" + issuer + "\x00" + clientID)
}

// Package oidcrp is Custodia's OpenID Connect relying party
// (sso.RelyingParty) over golang.org/x/oauth2 and
// github.com/coreos/go-oidc/v3: discovery, the authorization code flow
// with PKCE (S256) and a nonce, and the verification of the ID token.
//
// It is apart from package sso because it speaks HTTP to the providers,
// and the domain packages know nothing of HTTP; like a database driver
// behind sqldb, the server hands it to the sign-in (sessions.SingleSignOn).
//
// It promises that an ID token is accepted only when it is signed with an
// asymmetric algorithm the provider announces (RS256, ES256, …; never
// "none", never an HMAC) by a key of the key set the issuer's discovery
// document names (never a key or key address the token carries), names the
// configured issuer, has
// the client among its audience, has not expired, and carries the flow's
// nonce; that the code is redeemed with the flow's PKCE verifier and the
// client's secret; and that it reaches only issuers the server was given
// (the operator's --sso-issuer list, checked by package sso), over a client
// that follows no redirect and gives up after Timeout.
package oidcrp

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sso"
)

// Timeout bounds each request to a provider.
const Timeout = 10 * time.Second

// discoveryTTL is how long a provider's discovery document is kept; its
// keys are refetched by go-oidc when a token names a key it does not know.
const discoveryTTL = time.Hour

// RP is a relying party for every organization's provider.
type RP struct {
	client *http.Client
	// Now is the clock of the expiry check; time.Now when nil (tests).
	Now func() time.Time

	mu        sync.Mutex
	providers map[string]discovered
}

type discovered struct {
	p  *oidc.Provider
	at time.Time
}

var _ sso.RelyingParty = (*RP)(nil)

// maxAnswer bounds what the relying party reads of any answer of a
// provider (a discovery document, a key set, a token response).
const maxAnswer = 1 << 20

// New returns a relying party. Its HTTP client follows no redirect (a
// provider's endpoints are where its discovery document says) and reads at
// most maxAnswer bytes of an answer.
func New() *RP {
	return &RP{
		client: &http.Client{
			Timeout:       Timeout,
			Transport:     limited{http.DefaultTransport},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		providers: map[string]discovered{},
	}
}

// limited cuts every answer's body at maxAnswer bytes.
type limited struct{ next http.RoundTripper }

func (l limited) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := l.next.RoundTrip(r)
	if err == nil {
		res.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(res.Body, maxAnswer), res.Body}
	}
	return res, err
}

func (rp *RP) now() time.Time {
	if rp.Now != nil {
		return rp.Now()
	}
	return time.Now()
}

// ctx carries the relying party's client to go-oidc and oauth2.
func (rp *RP) ctx(ctx context.Context) context.Context { return oidc.ClientContext(ctx, rp.client) }

// provider is the issuer's discovered configuration. go-oidc refuses a
// document that names another issuer.
func (rp *RP) provider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	rp.mu.Lock()
	d, ok := rp.providers[issuer]
	rp.mu.Unlock()
	if ok && time.Since(d.at) < discoveryTTL {
		return d.p, nil
	}
	p, err := oidc.NewProvider(rp.ctx(ctx), issuer)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "your organization's sign-in service cannot be reached; please try again later")
	}
	rp.mu.Lock()
	rp.providers[issuer] = discovered{p: p, at: time.Now()}
	rp.mu.Unlock()
	return p, nil
}

func (rp *RP) config(p *oidc.Provider, c sso.Client) *oauth2.Config {
	return &oauth2.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, RedirectURL: c.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: c.Scopes,
	}
}

// AuthCodeURL returns the provider's authorization address for a flow.
func (rp *RP) AuthCodeURL(ctx context.Context, c sso.Client, state, nonce, verifier string) (string, error) {
	if state == "" || nonce == "" || len(verifier) < 43 {
		return "", errs.E(errs.Internal, "a flow needs its state, nonce and verifier")
	}
	p, err := rp.provider(ctx, c.Issuer)
	if err != nil {
		return "", err
	}
	return rp.config(p, c).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), nil
}

// Redeem exchanges the code and verifies the ID token (see the package
// comment).
func (rp *RP) Redeem(ctx context.Context, c sso.Client, code, verifier, nonce, iss string) (sso.Claims, error) {
	if code == "" || len(verifier) < 43 || nonce == "" {
		return sso.Claims{}, sso.Refuse(sso.ReasonExchange, errors.New("no code, verifier or nonce"))
	}
	p, err := rp.provider(ctx, c.Issuer)
	if err != nil {
		return sso.Claims{}, err
	}
	// The code goes to no token endpoint but that of the provider the
	// answer says it comes from (RFC 9207).
	var meta struct {
		IssParameter bool `json:"authorization_response_iss_parameter_supported"`
	}
	p.Claims(&meta)
	if iss != "" && iss != c.Issuer || iss == "" && meta.IssParameter {
		return sso.Claims{}, sso.Refuse(sso.ReasonIssuer, errors.New("the authorization response names another issuer, or none"))
	}
	tok, err := rp.config(p, c).Exchange(rp.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) {
			return sso.Claims{}, errs.Wrap(errs.Unavailable, err, "your organization's sign-in service cannot be reached; please try again later")
		}
		return sso.Claims{}, sso.Refuse(sso.ReasonExchange, errors.New("the provider refused the code: "+re.ErrorCode))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return sso.Claims{}, sso.Refuse(sso.ReasonToken, errors.New("no ID token"))
	}
	algs := algorithms(p)
	idt, err := p.VerifierContext(rp.ctx(ctx), &oidc.Config{ClientID: c.ClientID, Now: rp.now, SupportedSigningAlgs: algs}).Verify(ctx, raw)
	if err != nil {
		return sso.Claims{}, sso.Refuse(rp.why(ctx, p, c, algs, raw), err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return sso.Claims{}, sso.Refuse(sso.ReasonNonce, errors.New("the ID token carries another nonce"))
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return sso.Claims{}, sso.Refuse(sso.ReasonToken, err)
		}
	}
	out := sso.Claims{Issuer: idt.Issuer, Subject: idt.Subject, Audience: idt.Audience, Nonce: idt.Nonce}
	if err := idt.Claims(&out.Raw); err != nil {
		return sso.Claims{}, sso.Refuse(sso.ReasonToken, err)
	}
	out.AMR = stringList(out.Raw["amr"])
	out.ACR, _ = out.Raw["acr"].(string)
	return out, nil
}

// why names what failed of a token that did not verify, for the audit
// trail: it verifies the signature alone, and, if that holds, compares
// what the token says with what was expected. The token is refused either
// way; this only chooses the reason.
func (rp *RP) why(ctx context.Context, p *oidc.Provider, c sso.Client, algs []string, raw string) string {
	t, err := p.VerifierContext(rp.ctx(ctx), &oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true, SkipIssuerCheck: true,
		SupportedSigningAlgs: algs}).Verify(ctx, raw)
	switch {
	case err != nil:
		return sso.ReasonSignature
	case t.Issuer != c.Issuer:
		return sso.ReasonIssuer
	case !slices.Contains(t.Audience, c.ClientID):
		return sso.ReasonAudience
	case !rp.now().Before(t.Expiry):
		return sso.ReasonExpired
	}
	return sso.ReasonToken
}

// idTokenAlgorithms are the algorithms an ID token may be signed with
// (ASVS V9.1.2): asymmetric ones only, so that no token is checked with a
// secret the server holds (the client's), and never none.
var idTokenAlgorithms = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}

// algorithms are those of idTokenAlgorithms the provider announces, or
// RS256, which OpenID Connect Discovery makes every provider support.
func algorithms(p *oidc.Provider) []string {
	var meta struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	p.Claims(&meta)
	var out []string
	for _, a := range meta.Algs {
		if slices.Contains(idTokenAlgorithms, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return []string{oidc.RS256}
	}
	return out
}

// stringList reads a claim that is a list of strings.
func stringList(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

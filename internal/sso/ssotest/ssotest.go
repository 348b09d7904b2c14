// Package ssotest runs a real OpenID Connect provider for tests: the
// OpenID Provider of github.com/zitadel/oidc/v3 (pkg/op, a provider library
// certified by the OpenID Foundation), in-process on a loopback port, with
// its own users, a groups claim, one confidential client and a sign-in
// page. It signs ID tokens with ES256 (an ECDSA P-256 key, the approved
// kind this module generates, CRY-11), or, started by StartWithKeys, with
// the algorithm and keys a test gives (RS256, as most providers sign). It
// serves discovery, the authorization endpoint (PKCE required where a
// challenge was sent), the token endpoint and the key set.
//
//	idp := ssotest.Start(t)
//	idp.AllowRedirect(serverURL + "/login/sso/callback")
//	idp.AddUser(ssotest.User{Username: "ada", Password: "…", Email: "ada@example.org", Groups: []string{"staff"}})
//
// Its answers can be made wrong on purpose, the way a broken or hostile
// provider (or someone between it and the server) would: Tamper rewrites
// the ID token's claims and signs it again with the provider's own key (a
// wrong issuer, audience or nonce that is signed all the same), SignWithForeignKey
// signs with a key the provider does not publish (under the provider's key
// id), Forge replaces the signature with none, with an HMAC keyed by the
// client's secret or with a key the token carries in its header, and
// DropVerifier takes the PKCE verifier out of token requests.
package ssotest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/text/language"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is a person of the provider.
type User struct {
	// Subject is the stable id the provider gives (sub); the username
	// when empty.
	Subject  string
	Username string
	Password string
	Email    string
	// EmailVerified is sent as email_verified.
	EmailVerified bool
	Name          string
	Groups        []string
	// AMR are the methods the provider says it used (amr); ["pwd"] when
	// empty. ACR is its acr, if any.
	AMR []string
	ACR string
}

// Provider is the running provider.
type Provider struct {
	// Issuer is the provider's address, http://127.0.0.1:PORT.
	Issuer string
	// ClientID and ClientSecret are those of its one client.
	ClientID, ClientSecret string

	srv *httptest.Server
	st  *storage
}

// Start starts a provider that signs with ES256; it stops when the test
// ends.
func Start(t testing.TB) *Provider {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return StartWithKeys(t, "ES256", key, foreign)
}

// StartWithKeys starts a provider that signs with alg (a JWS algorithm,
// e.g. "RS256") and key, and has foreign for SignWithForeignKey and Forge.
func StartWithKeys(t testing.TB, alg string, key, foreign crypto.Signer) *Provider {
	t.Helper()
	secret := make([]byte, 24)
	rand.Read(secret)
	st := &storage{
		alg: jose.SignatureAlgorithm(alg), key: key, foreign: foreign, keyID: "ssotest-1",
		users: map[string]User{}, requests: map[string]*authRequest{}, codes: map[string]string{},
		client: &client{id: "custodia-test", secret: base64.RawURLEncoding.EncodeToString(secret)},
	}
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	var cryptoKey [32]byte
	rand.Read(cryptoKey[:])
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:          cryptoKey,
		CodeMethodS256:     true,
		AuthMethodPost:     true,
		SupportedUILocales: []language.Tag{language.English},
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	st.callback = op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", st.loginPage)
	mux.Handle("POST /login", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(st.login))
	mux.Handle("/", st.tamper(provider))
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)
	return &Provider{Issuer: issuer, ClientID: st.client.id, ClientSecret: st.client.secret, srv: srv, st: st}
}

// AllowRedirect registers a redirect address of the client.
func (p *Provider) AllowRedirect(uri string) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.client.redirects = append(p.st.client.redirects, uri)
}

// AddUser adds (or replaces) a user.
func (p *Provider) AddUser(u User) {
	if u.Subject == "" {
		u.Subject = u.Username
	}
	if len(u.AMR) == 0 {
		u.AMR = []string{"pwd"}
	}
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.users[u.Username] = u
}

// Tamper has the provider rewrite the claims of every ID token it issues
// with change, and sign it again with its own key; nil stops it.
func (p *Provider) Tamper(change func(claims map[string]any)) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.change = change
}

// SignWithForeignKey has the provider sign ID tokens with a key it does
// not publish, under its own key's id.
func (p *Provider) SignWithForeignKey(on bool) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.foreignSign = on
}

// Forge has the provider replace the signature of every ID token it
// issues: "none" sends it unsigned (alg none), "HS256" signs it with an
// HMAC keyed by the client's secret, which a relying party that let the
// token choose its algorithm would check with that secret, and "jwk" signs
// it with a key it does not publish and carries that key's public half in
// the token's header (jwk), for a relying party that would check it with
// the key the token brings; "" stops it.
func (p *Provider) Forge(alg string) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.forge = alg
}

// DropVerifier has the provider's token endpoint receive token requests
// without their PKCE code_verifier.
func (p *Provider) DropVerifier(on bool) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.dropVerifier = on
}

// Tokens counts the ID tokens the provider issued.
func (p *Provider) Tokens() int {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.issued
}

// SignIn goes through the provider's sign-in as a browser would, from
// authURL (its authorization address as the server gave it) with the
// user's name and password, and returns the address the provider sends the
// browser back to (the server's callback with code and state), without
// following it.
func (p *Provider) SignIn(t testing.TB, authURL, username, password string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	res.Body.Close()
	login := res.Header.Get("Location")
	if res.StatusCode != http.StatusFound || !strings.Contains(login, "/login?") {
		t.Fatalf("authorize answered %d to %q", res.StatusCode, login)
	}
	u, err := url.Parse(login)
	if err != nil {
		t.Fatal(err)
	}
	res, err = c.PostForm(p.Issuer+"/login", url.Values{
		"id": {u.Query().Get("id")}, "username": {username}, "password": {password},
	})
	if err != nil {
		t.Fatalf("sign in at the provider: %v", err)
	}
	res.Body.Close()
	for i := 0; i < 3 && res.StatusCode == http.StatusFound; i++ {
		next := res.Header.Get("Location")
		if !strings.HasPrefix(next, p.Issuer) {
			return next // back to the relying party
		}
		if res, err = c.Get(next); err != nil {
			t.Fatalf("provider callback: %v", err)
		}
		res.Body.Close()
	}
	t.Fatalf("the provider's sign-in answered %d, not a redirect to the relying party", res.StatusCode)
	return ""
}

type storage struct {
	mu           sync.Mutex
	alg          jose.SignatureAlgorithm
	key, foreign crypto.Signer
	keyID        string
	client       *client
	users        map[string]User
	requests     map[string]*authRequest
	codes        map[string]string // code → request id
	callback     func(context.Context, string) string
	change       func(map[string]any)
	foreignSign  bool
	forge        string
	dropVerifier bool
	issued       int
}

// The sign-in page: a form of the provider's own, which posts to itself.
func (s *storage) loginPage(w http.ResponseWriter, r *http.Request) {
	writeLogin(w, r.URL.Query().Get("id"), "")
}

func writeLogin(w http.ResponseWriter, id, problem string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><html><head><title>Test provider sign-in</title></head><body>
<h1>Test identity provider</h1>%s
<form method="post" action="/login">
<input type="hidden" name="id" value="%s">
<label for="username">Username</label> <input id="username" name="username">
<label for="password">Password</label> <input id="password" name="password" type="password">
<button type="submit" id="provider-sign-in">Sign in</button>
</form></body></html>`, problemHTML(problem), html.EscapeString(id))
}

func problemHTML(p string) string {
	if p == "" {
		return ""
	}
	return `<p id="provider-error">` + html.EscapeString(p) + `</p>`
}

func (s *storage) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("id")
	s.mu.Lock()
	u, ok := s.users[r.PostForm.Get("username")]
	req := s.requests[id]
	good := ok && u.Password == r.PostForm.Get("password") && req != nil
	if good {
		req.user, req.done, req.authTime = u, true, time.Now()
	}
	s.mu.Unlock()
	if !good {
		writeLogin(w, id, "Wrong username or password.")
		return
	}
	http.Redirect(w, r, s.callback(r.Context(), id), http.StatusFound)
}

// tamper rewrites token requests and answers as the provider's settings
// say.
func (s *storage) tamper(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" {
			next.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		drop, change, foreign, forge := s.dropVerifier, s.change, s.foreignSign, s.forge
		s.mu.Unlock()
		if drop {
			body, _ := io.ReadAll(r.Body)
			form, _ := url.ParseQuery(string(body))
			form.Del("code_verifier")
			enc := form.Encode()
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(enc)), int64(len(enc))
			r.Header.Set("Content-Length", strconv.Itoa(len(enc)))
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		out := rec.Body.Bytes()
		if rec.Code == http.StatusOK {
			var answer map[string]any
			if json.Unmarshal(out, &answer) == nil {
				if raw, ok := answer["id_token"].(string); ok {
					s.mu.Lock()
					s.issued++
					s.mu.Unlock()
					if change != nil || foreign || forge != "" {
						if signed, err := s.resign(raw, change, foreign, forge); err == nil {
							answer["id_token"] = signed
							out, _ = json.Marshal(answer)
						}
					}
				}
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(rec.Code)
		w.Write(out)
	})
}

// resign rewrites the claims of an ID token and signs it again, with the
// provider's key, a foreign one, or as forge says.
func (s *storage) resign(raw string, change func(map[string]any), foreign bool, forge string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return "", err
	}
	if change != nil {
		change(claims)
	}
	payload, err = json.Marshal(claims)
	if err != nil {
		return "", err
	}
	switch forge {
	case "none", "HS256":
		header, _ := json.Marshal(map[string]string{"alg": forge, "typ": "JWT", "kid": s.keyID})
		input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
		if forge == "none" {
			return input + ".", nil
		}
		mac := hmac.New(sha256.New, []byte(s.client.secret))
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
	case "", "jwk":
	default:
		return "", fmt.Errorf("ssotest: cannot forge %q", forge)
	}
	key := s.key
	if foreign || forge == "jwk" {
		key = s.foreign
	}
	var signing any = jose.JSONWebKey{Key: key, KeyID: s.keyID}
	if forge == "jwk" {
		signing = key // the header carries the key itself, not its id
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: signing},
		(&jose.SignerOptions{EmbedJWK: forge == "jwk"}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	sig, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return sig.CompactSerialize()
}

// The op.Storage of the provider, in memory.

type authRequest struct {
	id       string
	req      *oidc.AuthRequest
	user     User
	done     bool
	authTime time.Time
}

func (a *authRequest) GetID() string { return a.id }
func (a *authRequest) GetACR() string {
	return a.user.ACR
}
func (a *authRequest) GetAMR() []string {
	if a.done {
		return a.user.AMR
	}
	return nil
}
func (a *authRequest) GetAudience() []string              { return []string{a.req.ClientID} }
func (a *authRequest) GetAuthTime() time.Time             { return a.authTime }
func (a *authRequest) GetClientID() string                { return a.req.ClientID }
func (a *authRequest) GetNonce() string                   { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string             { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                { return a.req.Scopes }
func (a *authRequest) GetState() string                   { return a.req.State }
func (a *authRequest) GetSubject() string                 { return a.user.Subject }
func (a *authRequest) Done() bool                         { return a.done }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &authRequest{id: newID(), req: req}
	s.requests[a.id] = a
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.requests[id]; ok {
		return a, nil
	}
	return nil, errors.New("auth request not found")
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.requests[s.codes[code]]; ok {
		return a, nil
	}
	return nil, errors.New("code not found")
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest ends a request once its code is redeemed: a code
// answers once.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for c, r := range s.codes {
		if r == id {
			delete(s.codes, c)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return newID(), time.Now().Add(5 * time.Minute), nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not issued")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(context.Context, string, string, string) *oidc.Error { return nil }

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

type signingKey struct {
	alg jose.SignatureAlgorithm
	key crypto.Signer
	id  string
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return k.alg }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.key.Public() }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{s.alg, s.key, s.keyID}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.alg}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{signingKey{s.alg, s.key, s.keyID}}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.id {
		return nil, errors.New("client not found")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.client
	c.redirects = append([]string(nil), s.client.redirects...)
	return &c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != s.client.id || secret != s.client.secret {
		return errors.New("wrong client or secret")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest puts the user's claims in the ID token.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var u User
	for _, x := range s.users {
		if x.Subject == req.GetSubject() {
			u = x
		}
	}
	info.Subject = u.Subject
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email, oidc.Bool(u.EmailVerified)
		case oidc.ScopeProfile:
			info.Name, info.PreferredUsername = u.Name, u.Username
		}
	}
	if len(u.Groups) > 0 {
		info.AppendClaims("groups", u.Groups)
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errors.New("the userinfo endpoint is not served")
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not served")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("no client keys")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("no JWT profile")
}

func (s *storage) Health(context.Context) error { return nil }

// client is the provider's one client: a confidential web application
// that authenticates with its secret (client_secret_basic or _post).
type client struct {
	id, secret string
	redirects  []string
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string { return nil }
func (c *client) ApplicationType() op.ApplicationType {
	return op.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode}
}
func (c *client) LoginURL(id string) string { return "/login?id=" + url.QueryEscape(id) }
func (c *client) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeBearer
}
func (c *client) IDTokenLifetime() time.Duration { return 5 * time.Minute }
func (c *client) DevMode() bool                  { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }

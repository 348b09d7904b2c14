package oidcrp_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sso"
	"github.com/custodia/custodia/internal/sso/oidcrp"
	"github.com/custodia/custodia/internal/sso/ssotest"
)

const redirect = "https://custodia.test/login/sso/callback"

// flow begins a flow at the provider for ada and returns the client, the
// code the provider sent back, and the flow's verifier and nonce.
func flow(t *testing.T, rp *oidcrp.RP, idp *ssotest.Provider) (sso.Client, string, string, string) {
	t.Helper()
	c := sso.Client{Issuer: idp.Issuer, ClientID: idp.ClientID, ClientSecret: idp.ClientSecret, RedirectURL: redirect,
		Scopes: []string{"openid", "email", "profile"}}
	binding := "binding-secret-of-the-browser-0123456789abcdef"
	verifier, nonce, state := sso.Verifier(binding), "nonce-0123456789", "state-0123456789"
	auth, err := rp.AuthCodeURL(context.Background(), c, state, nonce, verifier)
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, auth)
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") != nonce || q.Get("state") != state {
		t.Fatalf("authorization request without S256 PKCE, nonce or state: %s", auth)
	}
	back := mustQuery(t, idp.SignIn(t, auth, "ada", "ada's password"))
	if back.Get("state") != state || back.Get("code") == "" {
		t.Fatalf("the provider came back with %v", back)
	}
	return c, back.Get("code"), verifier, nonce
}

func mustQuery(t *testing.T, u string) url.Values {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Query()
}

func provider(t *testing.T) *ssotest.Provider { return providerOf(t, ssotest.Start) }

// startRSA starts a provider that signs with RS256 and RSA 2048 keys, as
// most providers do; the module itself makes no RSA key.
func startRSA(t testing.TB) *ssotest.Provider {
	t.Helper()
	var keys [2]crypto.Signer
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	return ssotest.StartWithKeys(t, "RS256", keys[0], keys[1])
}

// providerOf starts a provider with start (ssotest.Start or startRSA),
// with ada among its users.
func providerOf(t *testing.T, start func(testing.TB) *ssotest.Provider) *ssotest.Provider {
	idp := start(t)
	idp.AllowRedirect(redirect)
	idp.AddUser(ssotest.User{Subject: "sub-ada", Username: "ada", Password: "ada's password", Email: "ada@example.org",
		EmailVerified: true, Name: "Ada", Groups: []string{"staff"}, AMR: []string{"pwd", "otp", "mfa"}})
	return idp
}

// The relying party redeems a code of the real provider with the flow's
// verifier and reads the verified ID token: subject, nonce, amr, groups.
func TestAUTH13_RelyingPartyRedeemsAndVerifies(t *testing.T) {
	idp := provider(t)
	rp := oidcrp.New()
	c, code, verifier, nonce := flow(t, rp, idp)
	claims, err := rp.Redeem(context.Background(), c, code, verifier, nonce, "")
	if err != nil {
		t.Fatal(err)
	}
	if claims.Issuer != idp.Issuer || claims.Subject != "sub-ada" || claims.Nonce != nonce || !strings.Contains(strings.Join(claims.AMR, " "), "mfa") {
		t.Errorf("claims %+v", claims)
	}
	if g, _ := claims.Raw["groups"].([]any); len(g) != 1 || g[0] != "staff" {
		t.Errorf("groups %v", claims.Raw["groups"])
	}
	// The code answers once.
	if _, err := rp.Redeem(context.Background(), c, code, verifier, nonce, ""); sso.ReasonOf(err) != sso.ReasonExchange {
		t.Errorf("a code redeemed twice: %v", err)
	}
}

// Every wrong answer is refused, each for its reason: a token signed by
// the provider's key but naming another issuer or audience or carrying
// another nonce, a token signed by a key the provider does not publish,
// an expired token, and a code whose PKCE verifier is missing or wrong.
func TestAUTH13_RelyingPartyRefusesWrongAnswers(t *testing.T) {
	idp := provider(t)
	cases := []struct {
		name   string
		set    func()
		redeem func(rp *oidcrp.RP, c sso.Client, code, verifier, nonce string) error
		want   string
	}{
		{"issuer", func() { idp.Tamper(func(c map[string]any) { c["iss"] = "https://evil.example" }) }, nil, sso.ReasonIssuer},
		{"audience", func() { idp.Tamper(func(c map[string]any) { c["aud"] = []string{"another-client"} }) }, nil, sso.ReasonAudience},
		{"nonce", func() { idp.Tamper(func(c map[string]any) { c["nonce"] = "another-nonce" }) }, nil, sso.ReasonNonce},
		{"signature", func() { idp.SignWithForeignKey(true) }, nil, sso.ReasonSignature},
		{"expired", func() {}, func(rp *oidcrp.RP, c sso.Client, code, verifier, nonce string) error {
			rp.Now = func() time.Time { return time.Now().Add(time.Hour) }
			_, err := rp.Redeem(context.Background(), c, code, verifier, nonce, "")
			return err
		}, sso.ReasonExpired},
		{"missing verifier", func() { idp.DropVerifier(true) }, nil, sso.ReasonExchange},
		{"wrong verifier", func() {}, func(rp *oidcrp.RP, c sso.Client, code, _, nonce string) error {
			_, err := rp.Redeem(context.Background(), c, code, sso.Verifier("another browser's binding secret 0123456789"), nonce, "")
			return err
		}, sso.ReasonExchange},
		{"another issuer's response", func() {}, func(rp *oidcrp.RP, c sso.Client, code, verifier, nonce string) error {
			_, err := rp.Redeem(context.Background(), c, code, verifier, nonce, "https://login.evil.example")
			return err
		}, sso.ReasonIssuer},
		{"wrong secret", func() {}, func(rp *oidcrp.RP, c sso.Client, code, verifier, nonce string) error {
			c.ClientSecret = "not the secret"
			_, err := rp.Redeem(context.Background(), c, code, verifier, nonce, "")
			return err
		}, sso.ReasonExchange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() { idp.Tamper(nil); idp.SignWithForeignKey(false); idp.DropVerifier(false) }()
			rp := oidcrp.New()
			c, code, verifier, nonce := flow(t, rp, idp)
			tc.set()
			var err error
			if tc.redeem != nil {
				err = tc.redeem(rp, c, code, verifier, nonce)
			} else {
				_, err = rp.Redeem(context.Background(), c, code, verifier, nonce, "")
			}
			if got := sso.ReasonOf(err); got != tc.want {
				t.Errorf("refused for %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

// A provider whose discovery document names another issuer is not used.
func TestAUTH13_RelyingPartyRefusesAnotherIssuersDiscovery(t *testing.T) {
	idp := provider(t)
	c := sso.Client{Issuer: strings.Replace(idp.Issuer, "127.0.0.1", "localhost", 1), ClientID: idp.ClientID, RedirectURL: redirect}
	if _, err := oidcrp.New().AuthCodeURL(context.Background(), c, "s", "n", sso.Verifier("b")); err == nil {
		t.Fatal("a discovery document of another issuer was accepted")
	}
}

// A provider that signs with RS256, as most do, is verified the same way:
// its tokens are accepted, and one signed by a key it does not publish, or
// signed by its key but naming another issuer, is refused.
func TestAUTH13_RelyingPartyVerifiesRS256Tokens(t *testing.T) {
	idp := providerOf(t, startRSA)
	rp := oidcrp.New()
	c, code, verifier, nonce := flow(t, rp, idp)
	claims, err := rp.Redeem(context.Background(), c, code, verifier, nonce, "")
	if err != nil {
		t.Fatalf("an RS256 token of the provider: %v", err)
	}
	if claims.Subject != "sub-ada" || claims.Issuer != idp.Issuer {
		t.Errorf("claims %+v", claims)
	}
	for _, tc := range []struct {
		name string
		set  func()
		want string
	}{
		{"foreign key", func() { idp.SignWithForeignKey(true) }, sso.ReasonSignature},
		{"issuer", func() { idp.Tamper(func(c map[string]any) { c["iss"] = "https://evil.example" }) }, sso.ReasonIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() { idp.Tamper(nil); idp.SignWithForeignKey(false) }()
			c, code, verifier, nonce := flow(t, rp, idp)
			tc.set()
			if _, err := rp.Redeem(context.Background(), c, code, verifier, nonce, ""); sso.ReasonOf(err) != tc.want {
				t.Errorf("refused for %q (%v), want %q", sso.ReasonOf(err), err, tc.want)
			}
		})
	}
}

// A token does not choose how it is checked: an unsigned one (alg none),
// one signed with an HMAC keyed by the client's secret (HS256, which a
// relying party that took the token's word for its algorithm would check
// with a secret it holds), and one signed by a key it carries in its own
// header (jwk) are refused, whatever the provider signs with.
func TestAUTH13_RelyingPartyRefusesUnsignedAndSecretKeyedTokens(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *ssotest.Provider{"ES256": ssotest.Start, "RS256": startRSA} {
		t.Run(name, func(t *testing.T) {
			idp := providerOf(t, start)
			for _, alg := range []string{"none", "HS256", "jwk"} {
				rp := oidcrp.New()
				c, code, verifier, nonce := flow(t, rp, idp)
				idp.Forge(alg)
				_, err := rp.Redeem(context.Background(), c, code, verifier, nonce, "")
				idp.Forge("")
				if sso.ReasonOf(err) != sso.ReasonSignature {
					t.Errorf("a token forged with %s: refused for %q (%v), want %q", alg, sso.ReasonOf(err), err, sso.ReasonSignature)
				}
			}
			// The same flow with the provider's own signature passes.
			rp := oidcrp.New()
			c, code, verifier, nonce := flow(t, rp, idp)
			if _, err := rp.Redeem(context.Background(), c, code, verifier, nonce, ""); err != nil {
				t.Errorf("the provider's own token: %v", err)
			}
		})
	}
}

package web_test

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/policy/policytest"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/mfa/passkeytest"
	"github.com/custodia/custodia/internal/orgs"
)

// postJSON sends v as JSON, as static/passkey.js does.
func postJSON(t *testing.T, c *http.Client, u string, v any) answer {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", u, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(body)}
}

// addPasskey registers a software authenticator's passkey for the
// signed-in client through the API, as the account page's script does.
func addPasskey(t *testing.T, srv *browsertest.Server, c *http.Client) *passkeytest.Authenticator {
	t.Helper()
	a := postJSON(t, c, srv.URL+"/api/v1/account/factors/webauthn", map[string]any{})
	if a.status != http.StatusOK {
		t.Fatalf("begin passkey: %d %s", a.status, a.body)
	}
	key := passkeytest.New(srv.URL)
	cred, err := key.Create([]byte(a.body))
	if err != nil {
		t.Fatal(err)
	}
	if a := postJSON(t, c, srv.URL+"/api/v1/account/factors/webauthn/confirm", map[string]any{"name": "Desk", "credential": json.RawMessage(cred)}); a.status != http.StatusCreated {
		t.Fatalf("confirm passkey: %d %s", a.status, a.body)
	}
	return key
}

// The account page of an account that began with a passkey offers an
// authenticator app; setting it up asks for a fresh confirmation first
// (the step-up page offering the passkey too), then shows no second set of
// recovery codes.
func TestAUTH08_AccountPageAddsAnAppBesideAPasskey(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{Localhost: true})
	c := signInHTTP(t, srv, authz.DataManager)
	addPasskey(t, srv, c)

	a := request(t, c, "GET", srv.URL+"/account", nil, nil)
	if a.status != http.StatusOK || !strings.Contains(a.body, `id="add-factor"`) || strings.Contains(a.body, `id="remove-factor"`) ||
		!strings.Contains(a.body, "signs in with a passkey") {
		t.Fatalf("account page of a passkey account: %d\n%s", a.status, a.body)
	}

	ageConfirmations(t, srv.Instance.Clinical)
	a = request(t, c, "POST", srv.URL+"/account/factors/totp", url.Values{"next": {"/account"}}, nil)
	if a.status != http.StatusForbidden || !strings.Contains(a.body, `action="/confirm"`) || !strings.Contains(a.body, `name="next" value="/account"`) {
		t.Fatalf("app without a fresh confirmation: %d\n%s", a.status, a.body)
	}
	if !strings.Contains(a.body, `id="confirm-passkey"`) || !strings.Contains(a.body, `<script src="/static/passkey.js" defer></script>`) {
		t.Errorf("the step-up page does not offer the passkey:\n%s", a.body)
	}
	if strings.Contains(a.body, `id="totp-secret"`) {
		t.Fatal("a secret was shown without a fresh confirmation")
	}
	l := srv.Logins[authz.DataManager]
	a = request(t, c, "POST", srv.URL+"/confirm", url.Values{"password": {l.Password}, "next": {"/account"}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/account?done=confirmed" {
		t.Fatalf("confirm: %d %s", a.status, a.header.Get("Location"))
	}

	a = request(t, c, "POST", srv.URL+"/account/factors/totp", url.Values{"next": {"/account"}}, nil)
	m := regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`).FindStringSubmatch(a.body)
	if a.status != http.StatusOK || m == nil {
		t.Fatalf("app after a confirmation: %d\n%s", a.status, a.body)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	a = request(t, c, "POST", srv.URL+"/account/factors/totp/confirm", url.Values{"code": {mfa.Code(secret, mfa.Step(time.Now()))}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/account?done=factor-added" {
		t.Fatalf("confirm the app beside a passkey: %d %s\n%s", a.status, a.header.Get("Location"), a.body)
	}
	a = request(t, c, "GET", srv.URL+"/account?done=factor-added", nil, nil)
	if !strings.Contains(a.body, `id="remove-factor"`) || !strings.Contains(a.body, "recovery codes stay") {
		t.Errorf("account page after adding the app:\n%s", a.body)
	}
	// After a factor change the page offers to end every other session
	// (ASVS V7.4.3), and the change's renewed session may do so at once.
	if !strings.Contains(a.body, "sign out everywhere below") || !strings.Contains(a.body, `id="sign-out-everywhere"`) {
		t.Errorf("the account page does not offer to end the other sessions after a factor change")
	}
	if a := request(t, c, "POST", srv.URL+"/account/sessions/end-all", url.Values{"next": {"/account"}}, nil); a.status != http.StatusSeeOther {
		t.Errorf("sign out everywhere right after the factor change: %d, want no confirmation asked", a.status)
	}

	// Without a passkey of its own, the step-up page offers none.
	plain := signInHTTP(t, srv, authz.Monitor)
	if a := request(t, plain, "GET", srv.URL+"/confirm", nil, nil); strings.Contains(a.body, `id="confirm-passkey"`) {
		t.Error("the step-up page offers a passkey to an account without one")
	}
}

// Under a policy that requires a second factor, the enrolment page offers
// a passkey when the server has a host name, and its script's steps set
// one up and sign in with the challenge the cookie holds.
func TestAUTH08_EnrolmentPageSetsUpAPasskey(t *testing.T) {
	t.Parallel()
	for _, localhost := range []bool{false, true} {
		srv := browsertest.StartServer(t, browsertest.Options{Localhost: localhost})
		ctx := context.Background()
		org, err := orgs.OrganizationBySlug(ctx, srv.Instance.Clinical, demo.Slug)
		if err != nil {
			t.Fatal(err)
		}
		if err := gate.New(gate.Config{Clinical: srv.Instance.Clinical}).Operate(ctx, "org.policy.set", func(o *gate.OpTx) error {
			return policytest.RequireSecondFactor(ctx, o, org.ID, true)
		}); err != nil {
			t.Fatal(err)
		}
		c := client(t, srv)
		l := srv.Logins[authz.Monitor]
		a := request(t, c, "POST", srv.URL+"/login", url.Values{"email": {l.Email}, "password": {l.Password}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/login/enrol" {
			t.Fatalf("password under the policy: %d %s", a.status, a.header.Get("Location"))
		}
		a = request(t, c, "GET", srv.URL+"/login/enrol", nil, nil)
		if offered := strings.Contains(a.body, `id="enrol-passkey"`); a.status != http.StatusOK || offered != localhost {
			t.Fatalf("enrolment page (host name %v): %d, passkey offered %v", localhost, a.status, offered)
		}
		if !localhost {
			continue
		}

		a = postJSON(t, c, srv.URL+"/login/enrol/webauthn/options", map[string]any{})
		if a.status != http.StatusOK {
			t.Fatalf("options: %d %s", a.status, a.body)
		}
		cred, err := passkeytest.New(srv.URL).Create([]byte(a.body))
		if err != nil {
			t.Fatal(err)
		}
		// The answer is read strictly (ASVS V2.2.1): JSON, one object.
		body, _ := json.Marshal(map[string]any{"name": "Laptop", "credential": json.RawMessage(cred)})
		for ct, b := range map[string]string{"text/plain": string(body), "application/json": string(body) + ` {"more":1}`} {
			req, _ := http.NewRequest("POST", srv.URL+"/login/enrol/webauthn", strings.NewReader(b))
			req.Header.Set("Content-Type", ct)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("a passkey answer as %s (%d bytes): %d, want 400", ct, len(b), resp.StatusCode)
			}
		}
		a = postJSON(t, c, srv.URL+"/login/enrol/webauthn", map[string]any{"name": "Laptop", "credential": json.RawMessage(cred)})
		var out struct {
			Next          string   `json:"next"`
			RecoveryCodes []string `json:"recovery_codes"`
		}
		if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &out) != nil || out.Next != "/" || len(out.RecoveryCodes) != mfa.RecoveryCodes {
			t.Fatalf("enrol the passkey: %d %s", a.status, a.body)
		}
		cleared := false
		for _, ck := range (&http.Response{Header: a.header}).Cookies() {
			cleared = cleared || ck.Name == "__Host-custodia_challenge" && ck.MaxAge < 0
		}
		if !cleared {
			t.Errorf("the enrolment left the challenge cookie: %v", a.header["Set-Cookie"])
		}
		if a := request(t, c, "GET", srv.URL+"/account", nil, nil); a.status != http.StatusOK || !strings.Contains(a.body, "signs in with a passkey") {
			t.Errorf("after enrolling a passkey: %d", a.status)
		}
		// The challenge is spent: no second passkey with it.
		if a := postJSON(t, c, srv.URL+"/login/enrol/webauthn/options", map[string]any{}); a.status != http.StatusUnauthorized {
			t.Errorf("options after the enrolment: %d %s", a.status, a.body)
		}
	}
}

var shownCode = regexp.MustCompile(`<li><code>([0-9A-Z-]+)</code></li>`)

// The account page makes new recovery codes for an account without an
// authenticator app (here: a passkey only): with a fresh confirmation, and
// without one by way of the step-up page, which leads back to the account
// page; a recovery code in the form does as well. An account without a
// factor is offered no form and refused.
func TestAUTH08_AccountPageMakesRecoveryCodesAfterAConfirmation(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{Localhost: true})
	c := signInHTTP(t, srv, authz.DataManager)
	l := srv.Logins[authz.DataManager]
	renew := func(code string) answer {
		t.Helper()
		form := url.Values{"next": {"/account"}}
		if code != "" {
			form.Set("code", code)
		}
		return request(t, c, "POST", srv.URL+"/account/recovery-codes", form, nil)
	}

	if a := request(t, c, "GET", srv.URL+"/account", nil, nil); strings.Contains(a.body, `id="new-recovery-codes"`) {
		t.Error("the account page offers recovery codes to an account without a factor")
	}
	if a := renew(""); a.status != http.StatusConflict || !strings.Contains(a.body, `id="error"`) || shownCode.MatchString(a.body) {
		t.Errorf("recovery codes without a factor: %d\n%s", a.status, a.body)
	}

	addPasskey(t, srv, c)
	a := request(t, c, "GET", srv.URL+"/account", nil, nil)
	_, form, _ := strings.Cut(a.body, `action="/account/recovery-codes"`)
	form, _, _ = strings.Cut(form, `</form>`)
	if !strings.Contains(form, `id="new-recovery-codes"`) || !strings.Contains(form, `name="next" value="/account"`) || strings.Contains(form, `id="rc-code"`) {
		t.Fatalf("account page of a passkey account: recovery codes form missing, not leading back, or asking for an app's code\n%s", a.body)
	}

	ageConfirmations(t, srv.Instance.Clinical)
	a = renew("")
	if a.status != http.StatusForbidden || !strings.Contains(a.body, `action="/confirm"`) || !strings.Contains(a.body, `name="next" value="/account"`) {
		t.Fatalf("recovery codes without a fresh confirmation: %d\n%s", a.status, a.body)
	}
	if shownCode.MatchString(a.body) {
		t.Fatal("recovery codes shown without a fresh confirmation")
	}
	a = request(t, c, "POST", srv.URL+"/confirm", url.Values{"password": {l.Password}, "next": {"/account"}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/account?done=confirmed" {
		t.Fatalf("confirm: %d %s", a.status, a.header.Get("Location"))
	}
	a = renew("")
	first := shownCode.FindAllStringSubmatch(a.body, -1)
	if a.status != http.StatusOK || !strings.Contains(a.body, `id="recovery-codes"`) || len(first) != mfa.RecoveryCodes {
		t.Fatalf("recovery codes after a confirmation: %d, %d codes\n%s", a.status, len(first), a.body)
	}

	// Without a fresh confirmation, one of the codes is proof enough.
	ageConfirmations(t, srv.Instance.Clinical)
	a = renew(first[0][1])
	if second := shownCode.FindAllStringSubmatch(a.body, -1); a.status != http.StatusOK || len(second) != mfa.RecoveryCodes || second[0][1] == first[0][1] {
		t.Fatalf("recovery codes with a recovery code: %d\n%s", a.status, a.body)
	}
	// The first set is gone with the second.
	if a := renew(first[1][1]); a.status != http.StatusForbidden || shownCode.MatchString(a.body) {
		t.Errorf("recovery codes with a replaced code: %d\n%s", a.status, a.body)
	}
}

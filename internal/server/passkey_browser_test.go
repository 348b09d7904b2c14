package server_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
)

// jsFetch is a same-origin JSON request from the page, resolving to
// {"status":…, "body":…}.
const jsFetch = `async function custodiaFetch(method, path, body) {
	const resp = await fetch(path, {method, credentials: "same-origin",
		headers: {"Content-Type": "application/json"}, body: body === undefined ? undefined : JSON.stringify(body)});
	let data = null;
	try { data = await resp.json(); } catch (e) {}
	return {status: resp.status, body: data};
}`

type fetched struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// call runs an async JavaScript body in the page and decodes what it
// returns (JSON-encoded by the page).
func call[T any](t *testing.T, ctx context.Context, body string) T {
	t.Helper()
	js := `(async () => { ` + jsFetch + `
		const out = await (async () => { ` + body + ` })();
		return JSON.stringify(out);
	})()`
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("run in page: %v\n%s", err, body)
	}
	var out T
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("page answered %q: %v", s, err)
	}
	return out
}

// loadPasskeyScript loads the page's passkey script into a page that does
// not include it (the sign-in page), as its own script would be.
func loadPasskeyScript(t *testing.T, ctx context.Context) {
	t.Helper()
	ok := call[bool](t, ctx, `
		if (!window.CustodiaPasskey) {
			await new Promise((resolve, reject) => {
				const s = document.createElement("script");
				s.src = "/static/passkey.js";
				s.onload = resolve; s.onerror = reject;
				document.head.appendChild(s);
			});
		}
		return !!window.CustodiaPasskey;`)
	if !ok {
		t.Fatal("passkey.js did not load")
	}
}

// addAuthenticator enables WebAuthn in ctx's tab and adds a virtual
// platform authenticator that holds passkeys and verifies its user.
func addAuthenticator(t *testing.T, ctx context.Context) webauthn.AuthenticatorID {
	t.Helper()
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("enable WebAuthn: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Transport: webauthn.AuthenticatorTransportInternal,
			HasResidentKey: true, HasUserVerification: true, IsUserVerified: true,
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("add virtual authenticator: %v", err)
	}
	return res.AuthenticatorID
}

// signInWithPassword posts the password from the page and returns the
// answer: a session, or a challenge.
func signInWithPassword(t *testing.T, ctx context.Context, email, password string) map[string]any {
	t.Helper()
	login, _ := json.Marshal(map[string]string{"email": email, "password": password})
	r := call[fetched](t, ctx, `return await custodiaFetch("POST", "/api/v1/auth/login", `+string(login)+`);`)
	if r.Status != 200 {
		t.Fatalf("sign in with password: %d %s", r.Status, r.Body)
	}
	var out map[string]any
	json.Unmarshal(r.Body, &out)
	return out
}

func signedIn(t *testing.T, ctx context.Context) bool {
	t.Helper()
	return call[fetched](t, ctx, `return await custodiaFetch("GET", "/api/v1/account/factors/webauthn");`).Status == 200
}

func TestAUTH08_PasskeyInChromium(t *testing.T) {
	b := browsertest.Start(t, browsertest.Options{Localhost: true, Timeout: 3 * time.Minute})
	if !strings.HasPrefix(b.BaseURL, "https://localhost:") {
		t.Fatalf("server at %s; passkeys need a host name", b.BaseURL)
	}
	login := b.Server.Logins[authz.CareProvider]
	ctx := b.Ctx
	authenticator := addAuthenticator(t, ctx)

	// Sign in with the password; the account has no second factor yet.
	if err := chromedp.Do(ctx, chromedp.Navigate(b.BaseURL+"/login")); err != nil {
		t.Fatal(err)
	}
	if out := signInWithPassword(t, ctx, login.Email, login.Password); out["challenge"] != nil {
		t.Fatalf("account without a factor got a challenge: %v", out)
	}

	// Register a passkey with the account page's button.
	err := chromedp.Do(ctx,
		chromedp.Navigate(b.BaseURL+"/account"),
		chromedp.WaitVisible(chromedp.ID("add-passkey")),
		chromedp.SendKeys(chromedp.ID("passkey-name"), "Test laptop"),
		chromedp.Click(chromedp.ID("add-passkey"), chromedp.NodeVisible),
	)
	if err != nil {
		t.Fatalf("add a passkey on the account page: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.Poll[string](
		`(() => { const s = document.getElementById("passkey-status").textContent; return /added|not added/.test(s) ? s : null; })()`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil || !strings.Contains(status, "Passkey “Test laptop” added.") {
		t.Fatalf("registration status %q, %v", status, err)
	}
	codes, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#passkey-recovery-codes li").length`))
	if err != nil || codes != 10 {
		t.Errorf("recovery codes shown: %d, %v; want 10", codes, err)
	}
	creds, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: authenticator})
	if err != nil || len(creds.Credentials) != 1 || creds.Credentials[0].RpID != "localhost" {
		t.Fatalf("authenticator holds %+v, %v; want one credential for localhost", creds, err)
	}

	// Sign out, sign in again: the password now leads to a challenge that
	// offers the passkey.
	if r := call[fetched](t, ctx, `return await custodiaFetch("POST", "/api/v1/auth/logout");`); r.Status != 204 {
		t.Fatalf("sign out: %d", r.Status)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(b.BaseURL+"/login")); err != nil {
		t.Fatal(err)
	}
	loadPasskeyScript(t, ctx)
	out := signInWithPassword(t, ctx, login.Email, login.Password)
	challenge, _ := out["challenge"].(string)
	methods, _ := out["methods"].([]any)
	if challenge == "" || !slices.Contains(methods, any("webauthn")) {
		t.Fatalf("second sign-in: %v; want a challenge offering webauthn", out)
	}
	if signedIn(t, ctx) {
		t.Fatal("signed in on the password alone")
	}

	// The second step with the passkey, through the page's script; the
	// assertion it posts is kept for the replay below.
	type step struct {
		Status     int             `json:"status"`
		Body       json.RawMessage `json:"body"`
		Credential json.RawMessage `json:"credential"`
		Error      string          `json:"error"`
	}
	answer := func(ctx context.Context, challenge string) step {
		t.Helper()
		c, _ := json.Marshal(challenge)
		return call[step](t, ctx, `
			const opts = await custodiaFetch("POST", "/api/v1/auth/second-factor/webauthn/options", {challenge: `+string(c)+`});
			if (opts.status !== 200) { return {status: opts.status, body: opts.body}; }
			const req = CustodiaPasskey.requestOptions(opts.body);
			req.signal = AbortSignal.timeout(5000);
			let cred;
			try { cred = await navigator.credentials.get(req); } catch (e) { return {status: 0, error: e.name}; }
			const credential = CustodiaPasskey.credentialJSON(cred);
			const r = await custodiaFetch("POST", "/api/v1/auth/second-factor/webauthn", {challenge: `+string(c)+`, credential});
			return {status: r.status, body: r.body, credential};`)
	}
	first := answer(ctx, challenge)
	if first.Status != 200 || !signedIn(t, ctx) {
		t.Fatalf("second step with the passkey: %d %s %s", first.Status, first.Body, first.Error)
	}
	list := call[fetched](t, ctx, `return await custodiaFetch("GET", "/api/v1/account/factors/webauthn");`)
	if !strings.Contains(string(list.Body), `"name":"Test laptop"`) || !strings.Contains(string(list.Body), `"last_used_at"`) {
		t.Errorf("passkeys after use: %s", list.Body)
	}

	// Attack: the captured assertion, replayed, opens no session: not for
	// its own spent challenge, nor for a fresh one.
	call[fetched](t, ctx, `return await custodiaFetch("POST", "/api/v1/auth/logout");`)
	replay := func(challenge string) int {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"challenge": challenge, "credential": first.Credential})
		return call[fetched](t, ctx, `return await custodiaFetch("POST", "/api/v1/auth/second-factor/webauthn", `+string(body)+`);`).Status
	}
	if got := replay(challenge); got != 401 {
		t.Errorf("assertion replayed on its challenge: %d, want 401", got)
	}
	fresh, _ := signInWithPassword(t, ctx, login.Email, login.Password)["challenge"].(string)
	freshJSON, _ := json.Marshal(fresh)
	if r := call[fetched](t, ctx, `return await custodiaFetch("POST", "/api/v1/auth/second-factor/webauthn/options", {challenge: `+string(freshJSON)+`});`); r.Status != 200 {
		t.Fatalf("options for a fresh challenge: %d %s", r.Status, r.Body)
	}
	if got := replay(fresh); got != 401 {
		t.Errorf("assertion replayed on a fresh challenge: %d, want 401", got)
	}
	if signedIn(t, ctx) {
		t.Fatal("a replayed assertion opened a session")
	}

	// Attack: a second browser (its own context: no cookies, and no
	// authenticator holding the passkey) knows the password but cannot
	// complete the step.
	other := b.NewContext(t)
	if _, err := chromedp.Call(other, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(other, chromedp.Navigate(b.BaseURL+"/login")); err != nil {
		t.Fatal(err)
	}
	loadPasskeyScript(t, other)
	theirs, _ := signInWithPassword(t, other, login.Email, login.Password)["challenge"].(string)
	if got := answer(other, theirs); got.Status == 200 || got.Error == "" {
		t.Errorf("second browser without the authenticator: %d %s %q; want no assertion", got.Status, got.Body, got.Error)
	} else {
		t.Logf("second browser without the authenticator: %s", got.Error)
	}
	if signedIn(t, other) {
		t.Fatal("the second browser got a session without the passkey")
	}
	// The first browser, holding the authenticator, still signs in.
	if got := answer(ctx, fresh); got.Status != 200 {
		t.Errorf("the genuine authenticator after the attacks: %d %s %s", got.Status, got.Body, got.Error)
	}
}

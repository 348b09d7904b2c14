package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/sqldb"
)

// passwordOnPage signs in on the sign-in page's form and waits for the
// page it leads to.
func passwordOnPage(t *testing.T, ctx context.Context, base, email, password string) string {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("sign-in"), chromedp.NodeVisible),
	)
	if err != nil {
		t.Fatalf("password on the sign-in page: %v", err)
	}
	return settle(t, ctx, `location.pathname !== "/login" && document.readyState === "complete" ? location.pathname : ""`)
}

// settle evaluates js in the tab until it gives a non-empty answer,
// through the navigations it waits for.
func settle(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err == nil && s != "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("page did not settle: %q, %v", s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// usePasskey presses the second step's "Use a passkey" and returns, once
// settled, the path the tab is at and the button's status text.
func usePasskey(t *testing.T, ctx context.Context) (string, string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("use-passkey")), chromedp.Click(chromedp.ID("use-passkey"), chromedp.NodeVisible)); err != nil {
		t.Fatalf("press Use a passkey: %v", err)
	}
	out := settle(t, ctx, `(() => {
		if (location.pathname === "/" && document.readyState === "complete") { return "/\n"; }
		const s = document.getElementById("passkey-signin-status");
		return s && /did not/.test(s.textContent) ? location.pathname + "\n" + s.textContent : "";
	})()`)
	path, status, _ := strings.Cut(out, "\n")
	return path, status
}

// TestAUTH08_PasskeyOnTheSignInPage registers a passkey, signs out, and
// signs in on the pages: the password, then "Use a passkey" on the second
// step, whose challenge stays in its HttpOnly cookie, out of the script's
// reach. Attack: a browser that knows the password but holds no
// authenticator fails the step and has no session.
func TestAUTH08_PasskeyOnTheSignInPage(t *testing.T) {
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		t.Run(string(d), func(t *testing.T) { passkeyOnTheSignInPage(t, d) })
	}
}

func passkeyOnTheSignInPage(t *testing.T, d sqldb.Dialect) {
	b := browsertest.Start(t, browsertest.Options{Localhost: true, Timeout: 3 * time.Minute, Dialect: d})
	login := b.Server.Logins[authz.Monitor]
	ctx := b.Ctx
	addAuthenticator(t, ctx)

	if path := passwordOnPage(t, ctx, b.BaseURL, login.Email, login.Password); path != "/" {
		t.Fatalf("an account without a second factor landed on %s", path)
	}
	err := chromedp.Do(ctx,
		chromedp.Navigate(b.BaseURL+"/account"),
		chromedp.WaitVisible(chromedp.ID("add-passkey")),
		chromedp.SendKeys(chromedp.ID("passkey-name"), "Desk key"),
		chromedp.Click(chromedp.ID("add-passkey"), chromedp.NodeVisible),
	)
	if err != nil {
		t.Fatalf("add a passkey: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.Poll[string](
		`(() => { const s = document.getElementById("passkey-status").textContent; return /added|not added/.test(s) ? s : null; })()`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil || !strings.Contains(status, "added.") || strings.Contains(status, "not added") {
		t.Fatalf("registration: %q, %v", status, err)
	}
	if r := call[fetched](t, ctx, `return await custodiaFetch("POST", "/api/v1/auth/logout");`); r.Status != 204 || signedIn(t, ctx) {
		t.Fatalf("sign out: %d", r.Status)
	}

	// The password leads to the second step, whose challenge the page's
	// script cannot read.
	if path := passwordOnPage(t, ctx, b.BaseURL, login.Email, login.Password); path != "/login/second-factor" {
		t.Fatalf("with a passkey the password led to %s", path)
	}
	if cookies, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`)); strings.Contains(cookies, "challenge") {
		t.Errorf("the challenge cookie is readable by script: %q", cookies)
	}
	if signedIn(t, ctx) {
		t.Fatal("signed in on the password alone")
	}
	if path, status := usePasskey(t, ctx); path != "/" {
		t.Fatalf("Use a passkey: at %s, %q", path, status)
	}
	if !signedIn(t, ctx) {
		t.Fatal("no session after the passkey")
	}
	if title, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title`)); !strings.HasPrefix(title, "Home") {
		t.Errorf("landed on %q, want the signed-in home page", title)
	}
	list := call[fetched](t, ctx, `return await custodiaFetch("GET", "/api/v1/account/factors/webauthn");`)
	if !strings.Contains(string(list.Body), `"last_used_at"`) {
		t.Errorf("the passkey is not marked used: %s", list.Body)
	}

	// Attack: another browser knows the password but has no
	// authenticator holding the passkey. Its WebAuthn prompt is cut short
	// so the refusal comes quickly.
	other := b.NewContext(t)
	if _, err := chromedp.Call(other, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if path := passwordOnPage(t, other, b.BaseURL, login.Email, login.Password); path != "/login/second-factor" {
		t.Fatalf("second browser: the password led to %s", path)
	}
	call[bool](t, other, `
		const get = navigator.credentials.get.bind(navigator.credentials);
		navigator.credentials.get = (o) => get(Object.assign({}, o, {signal: AbortSignal.timeout(3000)}));
		return true;`)
	path, status := usePasskey(t, other)
	if path != "/login/second-factor" || !strings.Contains(status, "did not sign you in") {
		t.Errorf("without the authenticator: at %s, %q", path, status)
	}
	// Nor does a made-up answer, posted straight to the step.
	forged := call[fetched](t, other, `return await custodiaFetch("POST", "/login/second-factor/webauthn",
		{credential: {id: "AAAA", rawId: "AAAA", type: "public-key", response: {clientDataJSON: "e30", authenticatorData: "AAAA", signature: "AAAA"}}});`)
	if forged.Status != 401 {
		t.Errorf("a forged assertion: %d %s, want 401", forged.Status, forged.Body)
	}
	if signedIn(t, other) {
		t.Fatal("the browser without the authenticator has a session")
	}
}

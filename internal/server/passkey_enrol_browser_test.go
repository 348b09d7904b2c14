package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/policy/policytest"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
)

// TestAUTH08_PasskeyAtEnrolmentAndStepUpInChromium runs the two pages
// whose passkey buttons static/passkey.js drives, with Chromium's virtual
// authenticator: under a policy that requires a second factor, "Use a
// passkey instead" on the enrolment page sets one up, shows the recovery
// codes and signs in; later, with the confirmation gone stale, "Use a
// passkey" on the step-up page confirms and leads back to the page named.
func TestAUTH08_PasskeyAtEnrolmentAndStepUpInChromium(t *testing.T) {
	b := browsertest.Start(t, browsertest.Options{Localhost: true, Timeout: 3 * time.Minute})
	db := b.Server.Instance.Clinical
	bg := context.Background()
	org, err := orgs.OrganizationBySlug(bg, db, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	if err := gate.New(gate.Config{Clinical: db}).Operate(bg, "org.policy.set", func(o *gate.OpTx) error {
		return policytest.RequireSecondFactor(bg, o, org.ID, true)
	}); err != nil {
		t.Fatal(err)
	}
	login := b.Server.Logins[authz.Monitor]
	ctx := b.Ctx
	addAuthenticator(t, ctx)

	if path := passwordOnPage(t, ctx, b.BaseURL, login.Email, login.Password); path != "/login/enrol" {
		t.Fatalf("under the policy the password led to %s", path)
	}
	if signedIn(t, ctx) {
		t.Fatal("signed in before enrolling")
	}
	err = chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.ID("enrol-passkey")),
		chromedp.SendKeys(chromedp.ID("enrol-passkey-name"), "Desk key"),
		chromedp.Click(chromedp.ID("enrol-passkey"), chromedp.NodeVisible),
	)
	if err != nil {
		t.Fatalf("press Use a passkey instead: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.Poll[string](
		`(() => { const s = document.getElementById("passkey-enrol-status").textContent; return /signed in|not set up/.test(s) ? s : null; })()`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil || !strings.Contains(status, "You are signed in.") {
		t.Fatalf("enrolment with a passkey: %q, %v", status, err)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#passkey-recovery-codes li").length`)); n != mfa.RecoveryCodes {
		t.Errorf("%d recovery codes shown, want %d", n, mfa.RecoveryCodes)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("continue"), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	if path := settle(t, ctx, `document.readyState === "complete" && location.pathname === "/" ? "/" : ""`); path != "/" || !signedIn(t, ctx) {
		t.Fatalf("after the enrolment: at %s, signed in %v", path, signedIn(t, ctx))
	}

	// Six minutes on, a second passkey needs a fresh confirmation; the
	// passkey gives it on the step-up page, which leads back to /account.
	if _, err := db.ExecContext(bg, `UPDATE sessions SET confirmed_at = $1`, time.Now().Add(-6*time.Minute).UnixMicro()); err != nil {
		t.Fatal(err)
	}
	addSecond := `return await custodiaFetch("POST", "/api/v1/account/factors/webauthn");`
	if r := call[fetched](t, ctx, addSecond); r.Status != 403 {
		t.Fatalf("second passkey with a stale confirmation: %d %s", r.Status, r.Body)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(b.BaseURL+"/confirm?next=/account"),
		chromedp.WaitVisible(chromedp.ID("confirm-passkey")),
		chromedp.Click(chromedp.ID("confirm-passkey"), chromedp.NodeVisible),
	)
	if err != nil {
		t.Fatalf("press Use a passkey on the step-up page: %v", err)
	}
	at := settle(t, ctx, `(() => {
		if (location.pathname === "/account" && document.readyState === "complete") { return location.pathname + location.search; }
		const s = document.getElementById("passkey-confirm-status");
		return s && /did not/.test(s.textContent) ? s.textContent : "";
	})()`)
	if at != "/account?done=confirmed" {
		t.Fatalf("step-up with the passkey: %q", at)
	}
	if r := call[fetched](t, ctx, addSecond); r.Status != 200 {
		t.Errorf("second passkey after the step-up: %d %s", r.Status, r.Body)
	}
}

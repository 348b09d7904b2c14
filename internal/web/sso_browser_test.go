package web_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sso/ssotest"
)

// ssoThroughProvider signs in through the demo organization's provider in
// the browser: the sign-in page, the organization's short name, the link
// to the provider, and the provider's own sign-in page.
func ssoThroughProvider(t *testing.T, ctx context.Context, b *browsertest.Browser, idp *ssotest.Provider, username, password string) {
	t.Helper()
	do(t, ctx, chromedp.Navigate(b.BaseURL+"/login"), typeInto("#sso-org", demo.Slug), click("#sso-next"))
	arrive(t, ctx, "#sso-continue")
	do(t, ctx, click("#sso-continue"))
	arrive(t, ctx, "#provider-sign-in")
	if loc := eval[string](t, ctx, `location.href`); !strings.HasPrefix(loc, idp.Issuer+"/login?") {
		t.Fatalf("the provider's sign-in page is at %s", loc)
	}
	do(t, ctx, typeInto("#username", username), typeInto("#password", password), click("#provider-sign-in"))
	arrive(t, ctx, "#signed-in-as, #error, #continue-second-factor, #provider-error")
}

// Single sign-on end to end in Chromium against a real OpenID Connect
// provider on loopback (zitadel/oidc's OpenID Provider): the
// organization's administrator sets the provider up on the settings page;
// a newcomer in the provider's "staff" group goes from the sign-in page to
// the provider's sign-in page and back, and is signed in with an account
// made for them and the role of their group. A provider's answer whose
// issuer is wrong is refused with one line. Where the organization
// requires a second factor, the provider's sign-in leads on to it.
func TestAUTH13_BrowserSignInThroughTheOrganizationsProvider(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		idp := ssotest.Start(t)
		b := browsertest.Start(t, browsertest.Options{Dialect: d, Configure: func(deps *server.Deps) {
			deps.SSOIssuers = []string{idp.Issuer}
		}})
		idp.AllowRedirect(b.BaseURL + "/login/sso/callback")
		const password = "the newcomer's password at the provider"
		idp.AddUser(ssotest.User{Subject: "sub-newcomer", Username: "newcomer", Password: password,
			Email: "newcomer@demo.example", EmailVerified: true, Name: "New Comer", Groups: []string{"staff"}})
		db := b.Server.Instance.Clinical
		bg := context.Background()
		org, err := orgs.OrganizationBySlug(bg, db, demo.Slug)
		if err != nil {
			t.Fatal(err)
		}
		studies, err := orgs.Studies(bg, db, org.ID)
		if err != nil {
			t.Fatal(err)
		}
		ctx := b.Ctx

		// The administrator sets the provider up.
		admin := b.Server.Logins[authz.OrgAdmin]
		signIn(t, ctx, b.BaseURL, admin.Email, admin.Password)
		do(t, ctx, chromedp.Navigate(b.BaseURL+"/orgs/demo/sso"))
		arrive(t, ctx, "#save-sso")
		if got := text(t, ctx, "#callback"); got != b.BaseURL+"/login/sso/callback" {
			t.Errorf("the page names the redirect address %q", got)
		}
		do(t, ctx, typeInto("#issuer", idp.Issuer), typeInto("#client_id", idp.ClientID), typeInto("#client_secret", idp.ClientSecret),
			typeInto("#roles", "staff = monitor@"+studies[0].ID), typeInto("#allowed_domains", "demo.example"),
			click("#create_accounts"), click("#save-sso"))
		arrive(t, ctx, "#notice, #error")
		if got := text(t, ctx, "#notice"); !strings.Contains(got, "single sign-on settings are saved") {
			t.Fatalf("after saving: %q", got)
		}
		do(t, ctx, click("#sign-out"))
		arrive(t, ctx, "#sign-in")

		// The newcomer signs in through the provider.
		ssoThroughProvider(t, ctx, b, idp, "newcomer", password)
		if got := text(t, ctx, "#signed-in-as"); got != "New Comer" {
			t.Fatalf("signed in as %q", got)
		}
		if loc := eval[string](t, ctx, `location.pathname`); loc != "/" {
			t.Errorf("after the sign-in the browser is at %s", loc)
		}
		var roles int
		if err := db.QueryRowContext(bg, `SELECT COUNT(*) FROM role_assignments r JOIN accounts a ON a.id = r.account_id
			WHERE a.email = $1 AND r.role = $2 AND r.study_id = $3`, "newcomer@demo.example", "monitor", studies[0].ID).Scan(&roles); err != nil || roles != 1 {
			t.Errorf("the newcomer's monitor role from the group: %d %v", roles, err)
		}
		do(t, ctx, click("#sign-out"))
		arrive(t, ctx, "#sign-in")

		// An answer naming another issuer: one line, no session.
		idp.Tamper(func(c map[string]any) { c["iss"] = "https://login.evil.example" })
		ssoThroughProvider(t, ctx, b, idp, "newcomer", password)
		if got := text(t, ctx, "#error"); !strings.Contains(got, "could not be verified") {
			t.Errorf("a wrong issuer is answered %q", got)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll("#signed-in-as").length`); n != 0 {
			t.Error("a wrong issuer signed the person in")
		}
		idp.Tamper(nil)

		// The organization requires a second factor: the provider's sign-in
		// leads on to setting one up.
		err = db.InTx(bg, func(tx *sql.Tx) error {
			p := policy.Default()
			p.RequireSecondFactor = true
			_, err := policy.Set(bg, db.In(tx), org.ID, p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		ssoThroughProvider(t, ctx, b, idp, "newcomer", password)
		if n := eval[int](t, ctx, `document.querySelectorAll("#signed-in-as").length`); n != 0 {
			t.Fatal("signed in without the second factor the organization requires")
		}
		do(t, ctx, click("#continue-second-factor"))
		arrive(t, ctx, "#totp-secret, #error")
		if n := eval[int](t, ctx, `document.querySelectorAll("#totp-secret").length`); n != 1 {
			t.Errorf("the second step did not follow: %s", eval[string](t, ctx, `document.body.innerText`))
		}
	})
}

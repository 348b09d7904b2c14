package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/sqldb"
)

// landOn waits until the tab shows a loaded page whose address ends with
// suffix.
func landOn(t *testing.T, b *browsertest.Browser, suffix string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		loc, err := chromedp.Run(b.Ctx, chromedp.Location())
		if err == nil && strings.HasSuffix(loc, suffix) {
			if ok, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](`document.readyState === "complete"`)); err == nil && ok {
				return
			}
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(b.Ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("waiting for …%s, at %s\n%s", suffix, loc, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An administrator gives a role on the people page in Chromium. Their
// confirmation of identity is older than the step-up window (ACL-09), so
// the page leads to the confirmation and back; there the role is given and
// shown where it applies (ACL-02); then it is taken away again.
func TestACL02_BrowserAssignAndRevokeRoleThroughStepUp(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		b := browsertest.Start(t, browsertest.Options{Dialect: d})
		f := demoOf(t, b.Server)
		ctx := b.Ctx
		login := b.Server.Logins[authz.OrgAdmin]
		member := f.account(t, authz.Participant)

		signIn(t, ctx, b.BaseURL, login.Email, login.Password)
		do(t, ctx, click("a.people"))
		landOn(t, b, "/orgs/demo/members")
		ageConfirmations(t, b.Server.Instance.Clinical)

		give := func() {
			t.Helper()
			do(t, ctx,
				chromedp.SetValue(chromedp.CSS("#account"), member.ID, chromedp.NodeVisible),
				chromedp.SetValue(chromedp.CSS("#role"), "data-manager", chromedp.NodeVisible),
				chromedp.SetValue(chromedp.CSS("#scope"), "site:"+f.south.ID, chromedp.NodeVisible),
				click("#assign-role"))
		}
		give()
		arrive(t, ctx, "#confirm")
		if _, ok := holds(f.holdings(t, member.ID), authz.DataManager, f.south.ID); ok {
			t.Fatal("the role was given without a fresh confirmation")
		}
		do(t, ctx, typeInto("#password", login.Password), click("#confirm"))
		landOn(t, b, "/orgs/demo/members?done=confirmed")

		give()
		landOn(t, b, "/orgs/demo/members?done=role-assigned")
		if got := text(t, ctx, "#notice"); !strings.HasPrefix(got, "The role is given") {
			t.Errorf("notice %q", got)
		}
		given, ok := holds(f.holdings(t, member.ID), authz.DataManager, f.south.ID)
		if !ok {
			t.Fatal("the role was not given")
		}
		row := `tr[data-account="` + member.ID + `"][data-role="data-manager"] .where`
		if got := text(t, ctx, row); got != "site South Clinic (Demo Study)" {
			t.Errorf("the new assignment shows as %q", got)
		}

		do(t, ctx, click("#revoke-"+given.ID))
		landOn(t, b, "/orgs/demo/members?done=role-revoked")
		if n := eval[int](t, ctx, `document.querySelectorAll('`+strings.TrimSuffix(row, " .where")+`').length`); n != 0 {
			t.Errorf("%d rows of the revoked role remain", n)
		}
		if _, ok := holds(f.holdings(t, member.ID), authz.DataManager, f.south.ID); ok {
			t.Error("the revoked role is still held")
		}
	})
}

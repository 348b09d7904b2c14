package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
)

// raise records an alert of the demo organization, as a lockout would.
func raise(t *testing.T, srv *browsertest.Server, kind alerts.Kind, subject string) alerts.Alert {
	t.Helper()
	ctx := context.Background()
	p := places(t, srv)
	var a alerts.Alert
	err := gate.New(gate.Config{Clinical: srv.Instance.Clinical}).Operate(ctx, "alert.test", func(tx *gate.OpTx) error {
		var err error
		a, err = alerts.Raise(ctx, tx, alerts.Alert{OrgID: p.org.ID, Kind: kind, Subject: subject})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// An administrator sets the alert rules on the alerts page; a rule the
// domain refuses shows its message and the form as posted, and saves
// nothing; an empty list restores the default. No one else reads or
// changes them, and a cross-site post is refused (AUD-05, WEB-03).
func TestAUD05_AdminSetsAlertRulesOnPage(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		ctx := context.Background()
		p := places(t, srv)
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		rules := func() alerts.Rules {
			r, err := alerts.RulesOf(ctx, srv.Instance.Clinical, p.org.ID)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		a := request(t, admin, "POST", srv.URL+"/orgs/demo/alert-rules", url.Values{"rules": {"role.\r\nmfa., keys."}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/alerts?done=alert-rules" {
			t.Fatalf("save rules: %d %s", a.status, a.header.Get("Location"))
		}
		if got := strings.Join(rules().Prefixes, " "); got != "keys. mfa. role." {
			t.Fatalf("rules saved: %q", got)
		}
		a = request(t, admin, "GET", srv.URL+"/orgs/demo/alerts?done=alert-rules", nil, nil)
		if a.status != 200 || !strings.Contains(a.body, "keys.\nmfa.\nrole.</textarea>") || !strings.Contains(a.body, "The alert rules are saved.") {
			t.Errorf("alerts page after saving: %d\n%s", a.status, a.body)
		}

		a = request(t, admin, "POST", srv.URL+"/orgs/demo/alert-rules", url.Values{"rules": {"mfa.\nRole<script>"}}, nil)
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, `id="error">alert rule &#34;Role&lt;script&gt;&#34;: an action prefix holds only`) ||
			!strings.Contains(a.body, "mfa.\nRole&lt;script&gt;</textarea>") {
			t.Errorf("a bad rule: %d\n%s", a.status, a.body)
		}
		if got := strings.Join(rules().Prefixes, " "); got != "keys. mfa. role." {
			t.Errorf("a refused form changed the rules to %q", got)
		}

		for _, role := range []authz.Role{authz.Monitor, authz.OrgManager} {
			c := signInHTTP(t, srv, role)
			if a := request(t, c, "GET", srv.URL+"/orgs/demo/alerts", nil, nil); a.status != http.StatusNotFound {
				t.Errorf("%s reads the alerts page: %d, want 404", role, a.status)
			}
			if a := request(t, c, "POST", srv.URL+"/orgs/demo/alert-rules", url.Values{"rules": {""}}, nil); a.status != http.StatusNotFound {
				t.Errorf("%s sets the rules: %d, want 404", role, a.status)
			}
			if a := request(t, c, "POST", srv.URL+"/orgs/demo/alert-rules", url.Values{"rules": {"BAD!"}}, nil); a.status != http.StatusNotFound || strings.Contains(a.body, "keys.") {
				t.Errorf("%s posts a bad rule: %d, want 404 and nothing of the rules", role, a.status)
			}
		}
		if a := request(t, admin, "POST", srv.URL+"/orgs/demo/alert-rules", url.Values{"rules": {""}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); a.status != http.StatusForbidden {
			t.Errorf("cross-site post: %d, want 403", a.status)
		}
		if r := rules(); r.Default {
			t.Fatal("a refused post restored the default")
		}
		if a := request(t, admin, "POST", srv.URL+"/orgs/demo/alert-rules", url.Values{"rules": {" \n "}}, nil); a.status != http.StatusSeeOther {
			t.Fatalf("empty rules: %d", a.status)
		}
		if r := rules(); !r.Default {
			t.Errorf("an empty list did not restore the default: %v", r.Prefixes)
		}
		var n int
		if err := srv.Instance.Clinical.QueryRowContext(ctx,
			`SELECT count(*) FROM audit_events WHERE action = 'alert.rules.set' AND outcome = 'success' AND security = $1`, true).Scan(&n); err != nil || n != 2 {
			t.Errorf("rule changes on the trail as security events: %d, %v; want 2", n, err)
		}
	})
}

// Another organization's administrator cannot mark the demo
// organization's alert read, nor see it (ACL-08).
func TestAUD05_AlertOfAnotherOrganizationIsNotFound(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	al := raise(t, srv, alerts.AccountLocked, accountOf(t, srv, authz.DataManager))
	other := adminOfOtherOrg(t, srv)
	for _, u := range []string{"/orgs/other/alerts/" + al.ID + "/read", "/orgs/demo/alerts/" + al.ID + "/read"} {
		if a := request(t, other, "POST", srv.URL+u, url.Values{}, nil); a.status != http.StatusNotFound {
			t.Errorf("other admin POST %s: %d, want 404", u, a.status)
		}
	}
	if a := request(t, other, "GET", srv.URL+"/orgs/other/alerts", nil, nil); a.status != 200 || strings.Contains(a.body, al.ID) {
		t.Errorf("other admin's alerts page: %d, shows demo's alert %v", a.status, strings.Contains(a.body, al.ID))
	}
	list, err := alerts.List(context.Background(), srv.Instance.Clinical, places(t, srv).org.ID)
	if err != nil || len(list) != 1 || !list[0].ReadAt.IsZero() {
		t.Errorf("demo's alert after the attempts: %+v, %v", list, err)
	}
}

// An administrator finds an unread alert through the home page, marks it
// read, and it stays listed as read (AUTH-12, AUD-05).
func TestAUD05_BrowserAdminMarksAlertRead(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		b := browsertest.Start(t, browsertest.Options{Dialect: d})
		victim := accountOf(t, b.Server, authz.DataManager)
		older := raise(t, b.Server, alerts.AddressLimited, "203.0.113.9")
		locked := raise(t, b.Server, alerts.AccountLocked, victim)
		ctx := b.Ctx
		admin := b.Server.Logins[authz.OrgAdmin]
		signIn(t, ctx, b.BaseURL, admin.Email, admin.Password)
		do(t, ctx, click(`a[href="/orgs/demo/alerts"]`))
		arrive(t, ctx, "#alerts")
		if got := eval[string](t, ctx, `[...document.querySelectorAll("#alerts tbody tr")].map(r => r.id + ":" + r.className).join()`); got != "alert-"+locked.ID+":unread,alert-"+older.ID+":unread" {
			t.Fatalf("alerts listed %q, want the newest first, both unread", got)
		}
		if got := text(t, ctx, "#unread-count"); got != "2 unread" {
			t.Errorf("unread count %q", got)
		}
		do(t, ctx, click("#alert-"+locked.ID+" .mark-read"))
		arrive(t, ctx, "#notice")
		if got := text(t, ctx, "#notice"); got != "The alert is marked as read." {
			t.Errorf("notice %q", got)
		}
		if got := eval[string](t, ctx, `[...document.querySelectorAll("#alerts tbody tr")].map(r => r.className).join()`); got != "read,unread" {
			t.Errorf("after marking: %q, want read,unread", got)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll("#alert-`+locked.ID+` .mark-read").length`); n != 0 {
			t.Error("a read alert still offers to be marked read")
		}
		list, err := alerts.List(context.Background(), b.Server.Instance.Clinical, places(t, b.Server).org.ID)
		if err != nil || len(list) != 2 || list[0].ID != locked.ID || list[0].ReadAt.IsZero() || !list[1].ReadAt.IsZero() {
			t.Errorf("alerts stored: %+v, %v", list, err)
		}
		// The locked account's alert leads to its events on the trail.
		do(t, ctx, click(`#alert-`+locked.ID+` a[href*="actor=`+victim+`"]`))
		arriveAt(t, ctx, "actor=", "#trail-filter")
	})
}

// The new pages escape what they show and carry no inline script
// (WEB-02): an administrator's name with markup, as the actor on the
// trail, and an alert subject with markup, are shown as text.
func TestWEB02_TrailAndAlertPagesEscape(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	evil := `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	if a := request(t, admin, "POST", srv.URL+"/account/name", url.Values{"name": {evil}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("rename: %d", a.status)
	}
	raise(t, srv, alerts.AddressLimited, evil)
	request(t, admin, "GET", srv.URL+"/orgs/demo/audit", nil, nil) // puts the admin on the trail
	for _, path := range []string{"/orgs/demo/audit?action=audit.", "/orgs/demo/alerts", "/me/access-log"} {
		a := request(t, admin, "GET", srv.URL+path, nil, nil)
		if a.status != 200 {
			t.Fatalf("%s: %d", path, a.status)
		}
		if strings.Contains(a.body, "<script>alert") || strings.Contains(a.body, "<img src=x") {
			t.Errorf("%s shows markup from data", path)
		}
		if path != "/me/access-log" && !strings.Contains(a.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the value as text", path)
		}
		for _, tag := range []string{"<script>", "<script type", " onclick=", " onload="} {
			if strings.Contains(a.body, tag) {
				t.Errorf("%s carries script %q", path, tag)
			}
		}
	}
}

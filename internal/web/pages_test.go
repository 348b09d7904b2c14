package web_test

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/audit/audittest"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/web"
)

// client is a cookie-keeping HTTPS client of the test server that does not
// follow redirects, so a test sees each answer.
func client(t *testing.T, srv *browsertest.Server) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := srv.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func request(t *testing.T, c *http.Client, method, u string, form url.Values, header map[string]string) answer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// signInHTTP signs in through the sign-in form.
func signInHTTP(t *testing.T, srv *browsertest.Server, role authz.Role) *http.Client {
	t.Helper()
	c := client(t, srv)
	l := srv.Logins[role]
	a := request(t, c, "POST", srv.URL+"/login", url.Values{"email": {l.Email}, "password": {l.Password}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("sign in as %s: %d %s", role, a.status, a.header.Get("Location"))
	}
	return c
}

func TestSessionCookieIsTheAPIs(t *testing.T) {
	t.Parallel()
	if web.SessionCookie != api.SessionCookie {
		t.Errorf("web uses cookie %q, the API %q: one sign-in must serve both", web.SessionCookie, api.SessionCookie)
	}
}

// Every state-changing form is refused when it comes from another site
// (WEB-03): the browser's Sec-Fetch-Site or an Origin of another site. The
// refusal changes nothing: the session lives on.
func TestWEB03_CrossSiteFormPostsAreRefused(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	c := signInHTTP(t, srv, authz.OrgAdmin)
	posts := []struct {
		path string
		form url.Values
	}{
		{"/login", url.Values{"email": {srv.Logins[authz.Monitor].Email}, "password": {srv.Logins[authz.Monitor].Password}}},
		{"/logout", url.Values{}},
		{"/account/name", url.Values{"name": {"Mallory"}}},
		{"/account/password", url.Values{"current": {"x"}, "password": {"Mallory chose this 1"}, "confirm": {"Mallory chose this 1"}}},
		{"/account/factors/totp", url.Values{}},
		{"/account/sessions/end-all", url.Values{}},
		{"/session/keep-alive", url.Values{}},
		{"/orgs/demo/security", url.Values{"require_second_factor": {"on"}}},
		{"/confirm", url.Values{"password": {"x"}}},
	}
	attacks := []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "https://evil.example"},
	}
	for _, p := range posts {
		for _, h := range attacks {
			if a := request(t, c, "POST", srv.URL+p.path, p.form, h); a.status != http.StatusForbidden {
				t.Errorf("cross-site POST %s with %v: %d, want 403", p.path, h, a.status)
			}
		}
	}
	// Nothing changed: still signed in, under the same name.
	a := request(t, c, "GET", srv.URL+"/account", nil, nil)
	if a.status != http.StatusOK || strings.Contains(a.body, "Mallory") {
		t.Fatalf("after the attacks: %d, renamed %v", a.status, strings.Contains(a.body, "Mallory"))
	}
	// The same request from the site itself goes through.
	a = request(t, c, "POST", srv.URL+"/account/name", url.Values{"name": {"Ada Admin"}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
	if a.status != http.StatusSeeOther {
		t.Errorf("same-origin POST: %d", a.status)
	}
}

// Pages escape what they show and carry no inline script (WEB-02): a name
// with markup is shown as text on every signed-in page.
func TestWEB02_SignedInPagesEscapeAndHaveNoInlineScript(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	c := signInHTTP(t, srv, authz.OrgAdmin)
	evil := `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	if a := request(t, c, "POST", srv.URL+"/account/name", url.Values{"name": {evil}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("rename: %d %s", a.status, a.body)
	}
	tags := regexp.MustCompile(`<[a-zA-Z][^>]*>`)
	handler := regexp.MustCompile(`(?i)\son[a-z]+\s*=|javascript:`)
	script := regexp.MustCompile(`(?i)<script[^>]*>`)
	for _, path := range []string{"/", "/account", "/orgs/demo/security", "/orgs/demo/locked", "/confirm", "/login", "/login/second-factor"} {
		a := request(t, c, "GET", srv.URL+path, nil, nil)
		for _, tag := range tags.FindAllString(a.body, -1) {
			// What stands between quotes is an escaped value, not markup.
			bare := regexp.MustCompile(`"[^"]*"`).ReplaceAllString(tag, `""`)
			if handler.MatchString(bare) || strings.HasPrefix(tag, "<img src=x") {
				t.Errorf("%s: tag %s carries script", path, tag)
			}
		}
		for _, loc := range script.FindAllStringIndex(a.body, -1) {
			tag := a.body[loc[0]:loc[1]]
			if !strings.Contains(tag, `src="/static/`) || !strings.HasPrefix(a.body[loc[1]:], "</script>") {
				t.Errorf("%s: inline script %s", path, a.body[loc[0]:min(len(a.body), loc[1]+40)])
			}
		}
		if path == "/account" && !strings.Contains(a.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the name as text", path)
		}
	}
}

// An administrator finds a locked member on the locked-accounts page and
// unlocks them; the unlock is a security event with the administrator as
// actor (AUTH-04). Other roles, and administrators of another
// organization, get 404 as for a page that does not exist (ACL-08).
func TestAUTH04_AdminUnlocksLockedMemberOnPage(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		ctx := context.Background()
		db := srv.Instance.Clinical
		victim := srv.Logins[authz.DataManager]
		acc, err := accounts.ByEmail(ctx, db, victim.Email)
		if err != nil {
			t.Fatal(err)
		}
		lockAccount(t, db, acc.ID)

		admin := signInHTTP(t, srv, authz.OrgAdmin)
		a := request(t, admin, "GET", srv.URL+"/orgs/demo/locked", nil, nil)
		if a.status != 200 || !strings.Contains(a.body, victim.Email) {
			t.Fatalf("locked page: %d, lists the locked member: %v", a.status, strings.Contains(a.body, victim.Email))
		}

		// Not for a monitor, nor across organizations.
		monitor := signInHTTP(t, srv, authz.Monitor)
		for _, p := range []string{"/orgs/demo/locked", "/orgs/demo/security", "/orgs/other/locked", "/orgs/nowhere/locked"} {
			if a := request(t, monitor, "GET", srv.URL+p, nil, nil); a.status != http.StatusNotFound {
				t.Errorf("monitor GET %s: %d, want 404", p, a.status)
			}
		}
		if a := request(t, monitor, "POST", srv.URL+"/orgs/demo/locked/"+acc.ID+"/unlock", url.Values{}, nil); a.status != http.StatusNotFound {
			t.Errorf("monitor unlock: %d, want 404", a.status)
		}
		otherAdmin := adminOfOtherOrg(t, srv)
		if a := request(t, otherAdmin, "POST", srv.URL+"/orgs/other/locked/"+acc.ID+"/unlock", url.Values{}, nil); a.status != http.StatusNotFound {
			t.Errorf("other organization's admin unlock: %d, want 404", a.status)
		}
		if a := request(t, otherAdmin, "GET", srv.URL+"/orgs/demo/locked", nil, nil); a.status != http.StatusNotFound {
			t.Errorf("other organization's admin reads demo's locked page: %d, want 404", a.status)
		}
		if st, _ := accounts.Lockout(ctx, db, acc.ID); !st.Locked() {
			t.Fatal("a refused unlock unlocked the account")
		}

		a = request(t, admin, "POST", srv.URL+"/orgs/demo/locked/"+acc.ID+"/unlock", url.Values{}, nil)
		if a.status != http.StatusSeeOther || !strings.HasSuffix(a.header.Get("Location"), "done=unlocked") {
			t.Fatalf("unlock: %d %s", a.status, a.header.Get("Location"))
		}
		if st, _ := accounts.Lockout(ctx, db, acc.ID); st.Locked() {
			t.Fatal("still locked")
		}
		var security bool
		var body string
		err = db.QueryRowContext(ctx,
			`SELECT security, body FROM audit_events WHERE action = 'account.unlock' AND outcome = 'success'`).Scan(&security, &body)
		adminAcc, _ := accounts.ByEmail(ctx, db, srv.Logins[authz.OrgAdmin].Email)
		if err != nil || !security || !strings.Contains(body, adminAcc.ID) {
			t.Errorf("account.unlock event: %v, security %v, names the admin %v", err, security, strings.Contains(body, adminAcc.ID))
		}
		signInHTTP(t, srv, authz.DataManager) // the owner signs in again
	})
}

// lockAccount locks an account as ten failed sign-ins would.
func lockAccount(t *testing.T, db *sqldb.DB, id string) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		for range accounts.LockAfter {
			if _, err := accounts.RecordFailure(ctx, audittest.Appending{Tx: tx}, id, "192.0.2.1", time.Now()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// adminOfOtherOrg signs in the administrator of a second organization.
func adminOfOtherOrg(t *testing.T, srv *browsertest.Server) *http.Client {
	t.Helper()
	ctx := context.Background()
	db := srv.Instance.Clinical
	const email, pw = "admin@other.example", "Lantern orchard velvet 9021"
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		o, err := orgs.CreateOrganization(ctx, tx, "Other Hospital", "other")
		if err != nil {
			return err
		}
		acc, _, err := accounts.Enrol(ctx, tx, email, "Other admin", authz.Assignment{OrgID: o.ID, Role: authz.OrgAdmin})
		if err != nil {
			return err
		}
		return accounts.SetPassword(ctx, tx, acc, pw, accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, srv)
	if a := request(t, c, "POST", srv.URL+"/login", url.Values{"email": {email}, "password": {pw}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("sign in other admin: %d", a.status)
	}
	return c
}

// A page reached without a session answers 401 with the sign-in form,
// which brings the person back to it; a "next" of another site is ignored
// (no open redirect).
func TestAUTH10_SignedInPagesNeedASession(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	c := client(t, srv)
	a := request(t, c, "GET", srv.URL+"/account", nil, nil)
	if a.status != http.StatusUnauthorized || !strings.Contains(a.body, `name="next" value="/account"`) {
		t.Fatalf("/account without a session: %d\n%s", a.status, a.body)
	}
	l := srv.Logins[authz.Monitor]
	for next, want := range map[string]string{"/account": "/account", "https://evil.example/": "/", "//evil.example/x": "/", "/\\evil.example": "/",
		// An escaped slash that decodes to the scheme-relative
		// "//evil.example" (another site to a browser) is refused.
		"/%2Fevil.example": "/", "/%2F%2Fevil.example": "/", "/%5Cevil.example": "/",
		"/orgs/demo/audit?actor=x&action=site.read#top": "/orgs/demo/audit?actor=x&action=site.read", "/x?next=https://evil.example": "/x?next=https://evil.example"} {
		c := client(t, srv)
		a := request(t, c, "POST", srv.URL+"/login", url.Values{"email": {l.Email}, "password": {l.Password}, "next": {next}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != want {
			t.Errorf("next %q: %d to %q, want %q", next, a.status, a.header.Get("Location"), want)
		}
		var cookie string
		for _, c := range a.header.Values("Set-Cookie") {
			if strings.HasPrefix(c, web.SessionCookie+"=") {
				cookie = c
			}
		}
		for _, attr := range []string{web.SessionCookie + "=", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
			if !strings.Contains(cookie, attr) {
				t.Errorf("session cookie %q lacks %s", cookie, attr)
			}
		}
	}
}

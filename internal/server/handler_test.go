package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type testServer struct {
	*httptest.Server
	inst   *instance.Instance
	shells Shells
	logins map[authz.Role]demo.Login
	logs   *bytes.Buffer
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ctx := context.Background()
	inst, err := instance.Open(ctx, migratedConfig(t, sqldb.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	logins, err := demo.Seed(ctx, gate.New(gate.Config{Clinical: inst.Clinical}))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{inst: inst, logins: map[authz.Role]demo.Login{}, logs: new(bytes.Buffer)}
	for _, l := range logins {
		ts.logins[l.Role] = l
	}
	var h http.Handler
	h, ts.shells = NewHandler(Deps{Log: slog.New(slog.NewJSONHandler(ts.logs, nil)), Instance: inst})
	ts.Server = httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// migratedConfig configures a fresh instance on databases of dialect d
// that hold the schema already (SQLite's a copy made once a process,
// sqldbtest.MigratedURL): instance.Open then only pairs them and makes the
// keys, as at the first start after `custodia migrate`.
func migratedConfig(t *testing.T, d sqldb.Dialect) instance.Config {
	t.Helper()
	return instance.Config{
		DataDir:          t.TempDir(),
		Database:         sqldbtest.MigratedURL(t, d, sqldb.Clinical),
		IdentityDatabase: sqldbtest.MigratedURL(t, d, sqldb.Identity),
	}
}

// client returns an HTTPS client with its own cookie jar (a copy of the
// server's client: setting the jar on that one would share it).
func (ts *testServer) client() *http.Client {
	c := *ts.Client()
	jar, _ := cookiejar.New(nil)
	c.Jar = jar
	return &c
}

func (ts *testServer) signIn(t *testing.T, role authz.Role) *http.Client {
	t.Helper()
	c := ts.client()
	l := ts.logins[role]
	body, _ := json.Marshal(map[string]string{"email": l.Email, "password": l.Password})
	resp, err := c.Post(ts.URL+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in as %s: %s", role, resp.Status)
	}
	return c
}

func do(t *testing.T, c *http.Client, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k, v := range SecurityHeaders {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, must := range []string{"frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, must) {
			t.Errorf("%s: CSP lacks %s", what, must)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: CSP allows unsafe script: %s", what, csp)
	}
	if h.Get("X-Request-Id") == "" {
		t.Errorf("%s: no X-Request-Id", what)
	}
}

func TestWEB04_SecurityHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client()
	type probe struct{ method, path string }
	probes := []probe{
		{"GET", "/"}, {"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/static/custodia.css"},
		{"GET", "/no/such/page"}, {"GET", "/api/v1/no/such"}, {"DELETE", "/"}, {"POST", "/healthz"},
		{"TRACE", "/"}, {"DEBUG", "/api/v1/auth/login"}, {"GET", "/api/v1/auth/login"},
		{"GET", "/api/v1/orgs/demo/studies"}, {"POST", "/api/v1/auth/login"},
	}
	// Every registered route, as declared.
	for _, rt := range append(ts.shells.Web.Routes(), ts.shells.API.Routes()...) {
		path := strings.NewReplacer("{$}", "", "{org}", "demo", "{study}", "x", "{site}", "y", "{token}", "z").Replace(rt.Path)
		probes = append(probes, probe{rt.Method, path})
	}
	for _, p := range probes {
		resp, _ := do(t, c, p.method, ts.URL+p.path, "")
		checkSecurityHeaders(t, p.method+" "+p.path+" ("+resp.Status+")", resp.Header)
	}
}

func TestOnlyDeclaredMethodsAreAnswered(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client()
	for _, tc := range []struct {
		method, path string
		want         int
		json         bool
	}{
		{"TRACE", "/", 405, false},
		{"TRACE", "/api/v1/auth/login", 405, false},
		{"DEBUG", "/healthz", 405, false},
		{"CONNECT", "/", 405, false},
		{"DELETE", "/", 405, false},
		{"POST", "/healthz", 405, false},
		{"GET", "/api/v1/auth/login", 405, true},
		{"PUT", "/api/v1/orgs/demo/studies", 405, true},
		{"GET", "/api/v1/nothing", 404, true},
		{"GET", "/nothing", 404, false},
	} {
		resp, body := do(t, c, tc.method, ts.URL+tc.path, "")
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		if tc.json {
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Errorf("%s %s: body %q is not the error shape", tc.method, tc.path, body)
			}
		}
		if resp.StatusCode == 405 && tc.method != "TRACE" && tc.method != "DEBUG" && tc.method != "CONNECT" && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
}

func TestWEB05_BadJSONIsRefusedWithErrorShapeAndNothingStored(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.signIn(t, authz.OrgAdmin)
	url := ts.URL + "/api/v1/orgs/demo/studies"
	before, _ := orgs.Studies(context.Background(), ts.inst.Clinical, orgID(t, ts))
	for name, body := range map[string]string{
		"not JSON":       `kind=study&name=x`,
		"truncated":      `{"kind":"study","name":"x"`,
		"wrong type":     `{"kind":"study","name":42}`,
		"array":          `[{"kind":"study","name":"x"}]`,
		"unknown field":  `{"kind":"study","name":"x","admin":true}`,
		"two values":     `{"kind":"study","name":"x"}{"kind":"study","name":"y"}`,
		"repeated key":   `{"kind":"study","kind":"registry","name":"x"}`,
		"repeated name":  `{"name":"x","kind":"study","name":"y"}`,
		"empty":          ``,
		"bad kind":       `{"kind":"trial","name":"x"}`,
		"empty name":     `{"kind":"study","name":"   "}`,
		"too large":      `{"kind":"study","name":"` + strings.Repeat("a", 70<<10) + `"}`,
		"larger than 1M": `{"kind":"study","name":"` + strings.Repeat("a", 2<<20) + `"}`,
	} {
		resp, out := do(t, c, "POST", url, body)
		if resp.StatusCode != 400 && resp.StatusCode != 413 {
			t.Errorf("%s: status %d, want 400 or 413", name, resp.StatusCode)
		}
		if resp.StatusCode == 400 {
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(out), &e); err != nil || e.Error.Code != "invalid" || e.Error.Message == "" {
				t.Errorf("%s: body %q is not the error shape", name, out)
			}
		}
	}
	after, _ := orgs.Studies(context.Background(), ts.inst.Clinical, orgID(t, ts))
	if len(after) != len(before) {
		t.Errorf("bad requests stored studies: %d before, %d after", len(before), len(after))
	}
	// And a good request works, so the refusals above are about the input.
	resp, out := do(t, c, "POST", url, `{"kind":"registry","name":"Rare Disease Registry"}`)
	if resp.StatusCode != 201 || !strings.Contains(out, `"kind":"registry"`) {
		t.Fatalf("good request: %d %s", resp.StatusCode, out)
	}
}

func orgID(t *testing.T, ts *testServer) string {
	o, err := orgs.OrganizationBySlug(context.Background(), ts.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	return o.ID
}

func TestLIFE05_OtherOrganizationsObjectsAreNotFoundOverAPI(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	// A second organization with its own admin and study.
	var other orgs.Study
	var otherSite orgs.Site
	err := ts.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		o, err := orgs.CreateOrganization(ctx, tx, "Other Hospital", "other")
		if err != nil {
			return err
		}
		if other, err = orgs.CreateStudy(ctx, tx, o.ID, orgs.KindStudy, "Other Trial"); err != nil {
			return err
		}
		if otherSite, err = orgs.CreateSite(ctx, tx, o.ID, other.ID, "Other Site"); err != nil {
			return err
		}
		acc, _, err := accounts.Enrol(ctx, tx, "admin@other.example", "", authz.Assignment{OrgID: o.ID, Role: authz.OrgAdmin})
		if err != nil {
			return err
		}
		return accounts.SetPassword(ctx, tx, acc, "correct horse battery staple", accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	demoAdmin := ts.signIn(t, authz.OrgAdmin)
	nonexistent := "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	for _, path := range []string{
		"/api/v1/orgs/demo/studies/" + other.ID,
		"/api/v1/orgs/demo/studies/" + other.ID + "/sites",
		"/api/v1/orgs/demo/studies/" + other.ID + "/sites/" + otherSite.ID,
		"/api/v1/orgs/other/studies",
		"/api/v1/orgs/other/studies/" + other.ID,
	} {
		resp, body := do(t, demoAdmin, "GET", ts.URL+path, "")
		missing, missingBody := do(t, demoAdmin, "GET", ts.URL+strings.ReplaceAll(strings.ReplaceAll(path, other.ID, nonexistent), "/other/", "/nonexistent-org/"), "")
		if resp.StatusCode != 404 {
			t.Errorf("GET %s as demo admin: %d, want 404", path, resp.StatusCode)
		}
		if resp.StatusCode != missing.StatusCode || body != missingBody {
			t.Errorf("GET %s: answer differs from a nonexistent object's: %q vs %q", path, body, missingBody)
		}
	}
	resp, _ := do(t, demoAdmin, "POST", ts.URL+"/api/v1/orgs/demo/studies/"+other.ID+"/sites", `{"name":"Sneaky"}`)
	if resp.StatusCode != 404 {
		t.Errorf("creating a site in another organization's study: %d, want 404", resp.StatusCode)
	}
	sites, _ := orgs.Sites(ctx, ts.inst.Clinical, other.OrgID, other.ID)
	if len(sites) != 1 {
		t.Errorf("other organization's study has %d sites, want 1", len(sites))
	}
}

func TestACL01_APIRefusesRequestsWithoutSession(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client()
	for _, rt := range ts.shells.API.Routes() {
		if rt.Access == "open" {
			continue
		}
		path := strings.NewReplacer("{org}", "demo", "{study}", "x", "{site}", "y").Replace(rt.Path)
		resp, body := do(t, c, rt.Method, ts.URL+path, "{}")
		if resp.StatusCode != 401 || !strings.Contains(body, `"unauthenticated"`) {
			t.Errorf("%s %s without session: %d %s", rt.Method, path, resp.StatusCode, body)
		}
	}
}

func TestLoginAnswersIdenticallyForUnknownAccountAndWrongPassword(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client()
	var bodies []string
	for _, body := range []string{
		`{"email":"org-admin@demo.example","password":"wrong password here"}`,
		`{"email":"nobody@demo.example","password":"wrong password here"}`,
		`{"email":"not an address","password":"wrong password here"}`,
	} {
		resp, out := do(t, c, "POST", ts.URL+"/api/v1/auth/login", body)
		if resp.StatusCode != 401 {
			t.Errorf("login %s: %d, want 401", body, resp.StatusCode)
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("failed login set a cookie")
		}
		bodies = append(bodies, out)
	}
	if bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Errorf("answers differ: %q", bodies)
	}
}

func TestAUTH10_SessionCookieAttributesAndLogout(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client()
	l := ts.logins[authz.OrgAdmin]
	body := `{"email":"` + l.Email + `","password":"` + l.Password + `"}`
	resp, _ := do(t, c, "POST", ts.URL+"/api/v1/auth/login", body)
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-custodia_session" {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Domain != "" {
		t.Fatalf("session cookie = %+v", cookie)
	}
	if resp, _ := do(t, c, "GET", ts.URL+"/api/v1/orgs/demo/studies", ""); resp.StatusCode != 200 {
		t.Fatalf("with session: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, "POST", ts.URL+"/api/v1/auth/logout", ""); resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	// The old cookie, replayed by an attacker, no longer works.
	thief := ts.client()
	req, _ := http.NewRequest("GET", ts.URL+"/api/v1/orgs/demo/studies", nil)
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	resp, err := thief.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("replayed cookie after logout: %d, want 401", resp.StatusCode)
	}
}

func TestWEB03_CrossOriginStateChangeRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.signIn(t, authz.OrgAdmin)
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/orgs/demo/studies", strings.NewReader(`{"kind":"study","name":"Forged"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	list, _ := orgs.Studies(context.Background(), ts.inst.Clinical, orgID(t, ts))
	for _, s := range list {
		if s.Name == "Forged" {
			t.Error("cross-site POST created a study")
		}
	}
}

func TestRequestLogHoldsNoSecrets(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.signIn(t, authz.OrgAdmin)
	do(t, c, "GET", ts.URL+"/setup/secret-token-value-that-must-not-be-logged-123456", "")
	do(t, c, "GET", ts.URL+"/api/v1/orgs/demo/studies", "")
	logs := ts.logs.String()
	if !strings.Contains(logs, `"route":"GET /api/v1/orgs/{org}/studies"`) {
		t.Fatalf("request log lacks the route line:\n%s", logs)
	}
	for _, secret := range []string{"secret-token-value", ts.logins[authz.OrgAdmin].Password, "custodia_session="} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
}

func TestReadyzReportsDatabaseOutage(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client()
	if resp, _ := do(t, c, "GET", ts.URL+"/readyz", ""); resp.StatusCode != 200 {
		t.Fatalf("readyz: %d", resp.StatusCode)
	}
	ts.inst.Identity.Close()
	if resp, _ := do(t, c, "GET", ts.URL+"/readyz", ""); resp.StatusCode != 503 {
		t.Errorf("readyz with identity database closed: %d, want 503", resp.StatusCode)
	}
	if resp, _ := do(t, c, "GET", ts.URL+"/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("healthz: %d, want 200 (process alive)", resp.StatusCode)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestWEB08_StaticFolderIsNotListed: the assets are served, their folder
// is not listed (ASVS V13.4.3).
func TestWEB08_StaticFolderIsNotListed(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client()
	for _, p := range []string{"/static/", "/static", "/static/.", "/static//"} {
		resp, body := do(t, c, "GET", ts.URL+p, "")
		if resp.StatusCode == http.StatusOK || strings.Contains(body, "custodia.css") {
			t.Errorf("GET %s: %s, listing %q", p, resp.Status, body)
		}
	}
	if resp, body := do(t, c, "GET", ts.URL+"/static/custodia.css", ""); resp.StatusCode != http.StatusOK || body == "" {
		t.Errorf("GET /static/custodia.css: %s", resp.Status)
	}
}

// What another site makes a signed-in browser ask for is refused (Fetch
// Metadata, ASVS V3.5.3): every API call, GET included, and the audit
// export's download; a link from elsewhere still opens a page, and the
// same calls from the browser's own pages or from a script pass.
func TestWEB03_CrossSiteRequestsForDataAreRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	admin := ts.signIn(t, authz.OrgAdmin)
	status := func(path, site string) int {
		t.Helper()
		req, err := http.NewRequest("GET", ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
			req.Header.Set("Sec-Fetch-Mode", "navigate")
		}
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/api/v1/orgs/demo/studies", "/api/v1/orgs/demo/audit/export", "/orgs/demo/audit/export"} {
		for _, site := range []string{"cross-site", "same-site"} {
			if got := status(path, site); got != http.StatusForbidden {
				t.Errorf("GET %s from %s: %d, want 403", path, site, got)
			}
		}
	}
	for _, site := range []string{"", "same-origin", "none"} {
		if got := status("/api/v1/orgs/demo/studies", site); got != http.StatusOK {
			t.Errorf("GET /api/v1/orgs/demo/studies (Sec-Fetch-Site %q): %d, want 200", site, got)
		}
	}
	if got := status("/orgs/demo/members", "cross-site"); got != http.StatusOK {
		t.Errorf("a link from another site to a page: %d, want 200", got)
	}
}

// A refused request says why in the request log, by its refusal's code and
// never its message or the input (ASVS V16.3.3): bad input, a missing
// confirmation, a role that may not.
func TestAUD05_RequestLogSaysWhyARequestWasRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	admin := ts.signIn(t, authz.OrgAdmin)
	manager := ts.signIn(t, authz.OrgManager)
	do(t, admin, "POST", ts.URL+"/api/v1/orgs/demo/studies", `{"kind":"study","name":"","bogus-field-xyz":1}`)
	do(t, manager, "GET", ts.URL+"/api/v1/orgs/demo/audit/events?action=zzz-probe.", "")
	do(t, admin, "GET", ts.URL+"/orgs/demo/audit?actr=oops-probe", "")
	do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/studies", "")
	lines := map[string]string{}
	for line := range strings.Lines(ts.logs.String()) {
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var l struct{ Route, Refused string }
		if err := json.Unmarshal([]byte(line), &l); err == nil {
			lines[l.Route] = l.Refused
		}
	}
	for route, want := range map[string]string{
		"POST /api/v1/orgs/{org}/studies":     "invalid",
		"GET /api/v1/orgs/{org}/audit/events": "not_found",
		"GET /orgs/{org}/audit":               "invalid",
		"GET /api/v1/orgs/{org}/studies":      "",
	} {
		if got, ok := lines[route]; !ok || got != want {
			t.Errorf("%s: refused %q (logged %v), want %q", route, got, ok, want)
		}
	}
	if logs := ts.logs.String(); strings.Contains(logs, "bogus-field-xyz") || strings.Contains(logs, "zzz-probe") || strings.Contains(logs, "oops-probe") {
		t.Error("the request log holds what the request sent")
	}
}

// A User-Agent that is not valid UTF-8, holds control characters or is
// very long is cleaned, not refused (AUTH-04, AUTH-05, AUTH-11): every
// sign-in attempt with one is answered as any other, recorded on the trail
// and counted towards the lockout, which a refused audit event would have
// skipped.
func TestAUTH11_SignInWithAMalformedUserAgentIsRecordedAndCounted(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	l := ts.logins[authz.Monitor]
	agents := []string{"Mozilla \xff\xfe", "bot\tforged\ttabs", strings.Repeat("é", 400)}
	for i := range accounts.LockAfter {
		body, _ := json.Marshal(map[string]string{"email": l.Email, "password": "not the password " + strconv.Itoa(i)})
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/auth/login", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", agents[i%len(agents)])
		resp, err := ts.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d with a malformed user agent: %s, want 401", i+1, resp.Status)
		}
	}
	var recorded int
	ts.inst.Clinical.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'failure'`).Scan(&recorded)
	if recorded < accounts.LockAfter {
		t.Fatalf("%d failed sign-ins on the trail, want %d", recorded, accounts.LockAfter)
	}
	var uas []string
	rows, err := ts.inst.Clinical.QueryContext(ctx, `SELECT body FROM audit_events WHERE action = 'auth.login'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var b string
		rows.Scan(&b)
		var ev struct{ UA string }
		json.Unmarshal([]byte(b), &ev)
		uas = append(uas, ev.UA)
	}
	rows.Close()
	for _, ua := range uas {
		if !utf8.ValidString(ua) || strings.ContainsAny(ua, "\x00\r\n\t") || len(ua) > audit.MaxUserAgent {
			t.Errorf("a user agent on the trail as %q", ua)
		}
	}
	acc, err := accounts.ByEmail(ctx, ts.inst.Clinical, l.Email)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := accounts.Lockout(ctx, ts.inst.Clinical, acc.ID); err != nil || !st.Locked() {
		t.Fatalf("after %d failures with malformed user agents the account is locked: %+v, %v", accounts.LockAfter, st, err)
	}
}

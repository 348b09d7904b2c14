package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
)

// answer is one response of sweep: what was asked and what came back.
type answer struct {
	what   string // method, path and who asked
	path   string
	status int
	header http.Header
	body   []byte
}

// sweep asks ts every question a browser or a client can: every declared
// route with every declared method, anonymously, and every GET signed in
// as an organization's administrator (whose pages and API answers hold
// the organization's data); the health checks, the assets, unknown paths
// and methods, the requests the server refuses before routing (a method
// it never answers, a body too large, a cross-site request for data or
// for a change), successful changes, JSON answers of the pages' scripts
// and the audit trail's downloads. edit, if not nil, changes each request
// before it goes.
func sweep(t *testing.T, ts *testServer, edit func(*http.Request)) []answer {
	t.Helper()
	anon := ownClient(ts)
	admin := signInOwn(t, ts, authz.OrgAdmin)
	var out []answer
	ask := func(who string, c *http.Client, method, path, ctype, body string, header map[string]string) {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if edit != nil {
			edit(req)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		out = append(out, answer{what: method + " " + path + " (" + who + ", " + resp.Status + ")", path: path, status: resp.StatusCode, header: resp.Header, body: b})
	}
	fill := strings.NewReplacer("{$}", "", "{org}", "demo", "{study}", "x", "{site}", "y", "{token}", "z")
	routes := append(ts.shells.Web.Routes(), ts.shells.API.Routes()...)
	for _, rt := range routes {
		path := fill.Replace(rt.Path)
		switch {
		case rt.Method == "GET":
			ask("anonymous", anon, "GET", path, "", "", nil)
			ask("administrator", admin, "GET", path, "", "", nil)
		case strings.HasPrefix(path, "/api/"):
			ask("anonymous", anon, rt.Method, path, "application/json", "{}", nil)
		default:
			ask("anonymous", anon, rt.Method, path, "application/x-www-form-urlencoded", "", nil)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/static/custodia.css", "/static/idle.js", "/static/passkey.js", "/static/export.js", "/static/signature.js", "/static/", "/static/none.js", "/no/such/page", "/api/v1/no/such"} {
		ask("anonymous", anon, "GET", p, "", "", nil)
	}
	ask("anonymous", anon, "DELETE", "/", "", "", nil)
	ask("anonymous", anon, "TRACE", "/", "", "", nil)
	ask("anonymous", anon, "POST", "/healthz", "", "", nil)
	ask("administrator", admin, "PUT", "/api/v1/orgs/demo/studies", "application/json", "{}", nil)
	ask("administrator", admin, "POST", "/api/v1/orgs/demo/studies", "application/json", `{"kind":"study","name":"`+strings.Repeat("a", 2<<20)+`"}`, nil)
	ask("administrator", admin, "POST", "/api/v1/orgs/demo/studies", "application/json", `{"kind":"study","name":"Swept"}`, nil)
	ask("administrator", admin, "POST", "/api/v1/orgs/demo/studies", "application/json", `{"kind":"study","name":""}`, nil)
	ask("administrator", admin, "GET", "/api/v1/orgs/demo/studies", "", "", map[string]string{"Sec-Fetch-Site": "cross-site"})
	ask("administrator", admin, "POST", "/api/v1/orgs/demo/studies", "application/json", `{"kind":"study","name":"Forged"}`, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	ask("administrator", admin, "POST", "/session/keep-alive", "", "", map[string]string{"Accept": "application/json"})
	ask("administrator", admin, "POST", "/account/name", "application/x-www-form-urlencoded", "name=Swept+Admin", nil)
	for _, p := range []string{"/api/v1/orgs/demo/audit/export?format=jsonl", "/api/v1/orgs/demo/audit/export?format=syslog", "/orgs/demo/audit/export?format=jsonl", "/orgs/demo/audit/export?format=syslog"} {
		ask("administrator", admin, "GET", p, "", "", nil)
	}
	l := ts.logins[authz.OrgManager]
	ask("anonymous", ownClient(ts), "POST", "/api/v1/auth/login", "application/json", `{"email":"`+l.Email+`","password":"`+l.Password+`"}`, nil)
	ask("anonymous", ownClient(ts), "POST", "/login", "application/x-www-form-urlencoded", "email="+l.Email+"&password="+l.Password, nil)
	ask("anonymous", anon, "POST", "/login/second-factor/webauthn/options", "application/json", "{}", nil)
	return out
}

// TestWEB03_NoResponseAllowsOtherOrigins proves ASVS V3.4.2 (CORS origin
// fixed or allowlisted): the server sends no CORS header at all, so a
// browser lets no other origin read an answer. Every question of the
// sweep is asked with another site's Origin, and every route is also
// asked a CORS preflight (OPTIONS with Access-Control-Request-Method and
// -Headers), anonymously and signed in: no answer carries an
// Access-Control-* header, and no preflight succeeds.
func TestWEB03_NoResponseAllowsOtherOrigins(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	origin := func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }
	answers := sweep(t, ts, origin)
	admin := signInOwn(t, ts, authz.OrgAdmin)
	fill := strings.NewReplacer("{$}", "", "{org}", "demo", "{study}", "x", "{site}", "y", "{token}", "z")
	for _, c := range []*http.Client{ownClient(ts), admin} {
		for _, rt := range append(ts.shells.Web.Routes(), ts.shells.API.Routes()...) {
			req, _ := http.NewRequest("OPTIONS", ts.URL+fill.Replace(rt.Path), nil)
			origin(req)
			req.Header.Set("Access-Control-Request-Method", rt.Method)
			req.Header.Set("Access-Control-Request-Headers", "content-type, authorization")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("preflight of %s %s: %s, want a refusal", rt.Method, rt.Path, resp.Status)
			}
			answers = append(answers, answer{what: "OPTIONS " + rt.Path + " (" + resp.Status + ")", status: resp.StatusCode, header: resp.Header, body: b})
		}
	}
	if len(answers) < 300 {
		t.Fatalf("only %d answers", len(answers))
	}
	for _, a := range answers {
		for k, v := range a.header {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("%s: %s: %q; no origin is allowed to read answers (ASVS V3.4.2)", a.what, k, v)
			}
		}
	}
}

// staticAssets are the embedded assets by their path on the server, with
// the files they are served from.
func staticAssets(t *testing.T) map[string][]byte {
	t.Helper()
	dir := filepath.Join("..", "web", "static")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out["/static/"+e.Name()] = b
	}
	return out
}

// TestWEB04_EveryAnswerNamesItsTypeAndCharset proves ASVS V4.1.1
// (Content-Type with charset): every answer with a body, errors and
// refusals included, names a Content-Type that matches the body (an HTML
// page, JSON, JSON lines, plain text, the asset's own CSS or
// JavaScript); every text/* type says charset=utf-8, and so does every
// JSON answer of the API; the body is valid UTF-8. The JSON that the
// sign-in pages answer their script and the JSON-lines download name no
// charset, which their types do not define (JSON is UTF-8, RFC 8259 §8.1);
// where one is named it is utf-8.
func TestWEB04_EveryAnswerNamesItsTypeAndCharset(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	assets := staticAssets(t)
	answers := sweep(t, ts, nil)
	kinds := map[string]int{}
	for _, a := range answers {
		if len(a.body) == 0 {
			continue
		}
		ct := a.header.Get("Content-Type")
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Errorf("%s: Content-Type %q: %v", a.what, ct, err)
			continue
		}
		kinds[mt]++
		charset, named := params["charset"]
		if named && !strings.EqualFold(charset, "utf-8") {
			t.Errorf("%s: charset %q, want utf-8", a.what, charset)
		}
		if strings.HasPrefix(mt, "text/") && !named {
			t.Errorf("%s: %q names no charset (ASVS V4.1.1)", a.what, ct)
		}
		if !utf8.Valid(a.body) {
			t.Errorf("%s: the body is not valid UTF-8", a.what)
		}
		api := strings.HasPrefix(a.path, "/api/") && !strings.HasPrefix(a.path, "/api/v1/orgs/demo/audit/export") || a.path == "/healthz" || a.path == "/readyz"
		switch mt {
		case "text/html":
			if !bytes.HasPrefix(bytes.ToLower(bytes.TrimSpace(a.body)), []byte("<!doctype html>")) {
				t.Errorf("%s: text/html, but the body is no HTML page: %.60q", a.what, a.body)
			}
		case "application/json":
			if !json.Valid(a.body) {
				t.Errorf("%s: application/json, but the body is not JSON: %.60q", a.what, a.body)
			}
			if api && !named {
				t.Errorf("%s: the API's JSON says charset=utf-8, this answer %q does not", a.what, ct)
			}
		case "application/x-ndjson":
			for line := range strings.Lines(string(a.body)) {
				if !json.Valid([]byte(line)) {
					t.Errorf("%s: a line of the JSON-lines download is not JSON: %.60q", a.what, line)
				}
			}
		case "text/plain":
			if bytes.HasPrefix(bytes.ToLower(bytes.TrimSpace(a.body)), []byte("<!doctype")) || json.Valid(a.body) && bytes.HasPrefix(a.body, []byte("{")) {
				t.Errorf("%s: text/plain, but the body is HTML or JSON: %.60q", a.what, a.body)
			}
		case "text/css", "text/javascript":
			if want, ok := assets[a.path]; !ok || !bytes.Equal(a.body, want) || a.status != http.StatusOK {
				t.Errorf("%s: %s that is not an asset of internal/web/static", a.what, mt)
			}
			if (mt == "text/css") != strings.HasSuffix(a.path, ".css") {
				t.Errorf("%s: %s for %s", a.what, mt, a.path)
			}
		default:
			t.Errorf("%s: Content-Type %q: a type this test does not know the body of", a.what, ct)
		}
	}
	for _, mt := range []string{"text/html", "application/json", "text/plain", "text/css", "text/javascript", "application/x-ndjson"} {
		if kinds[mt] == 0 {
			t.Errorf("the sweep met no %s answer", mt)
		}
	}
}

// TestWEB04_NothingSensitiveIsCached proves ASVS V14.3.2 (Cache-Control:
// no-store) and V14.2.2 (no caching in server components): every answer,
// pages, API answers, downloads, errors and refusals, says Cache-Control:
// no-store, which no browser, proxy or load balancer may keep. The one
// exception is the embedded assets (CSS, scripts), the same public bytes
// for everyone: they may be cached for a day, and the test checks that
// what is cached is exactly those files, carrying no cookie.
func TestWEB04_NothingSensitiveIsCached(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	assets := staticAssets(t)
	answers := sweep(t, ts, nil)
	public := 0
	for _, a := range answers {
		cc := a.header.Get("Cache-Control")
		if want, asset := assets[a.path]; asset && a.status == http.StatusOK {
			public++
			if cc != "public, max-age=86400" || !bytes.Equal(a.body, want) || len(a.header.Values("Set-Cookie")) > 0 {
				t.Errorf("%s: an asset is cacheable only as the public file it is: Cache-Control %q, %d bytes, cookies %q", a.what, cc, len(a.body), a.header.Values("Set-Cookie"))
			}
			continue
		}
		if cc != "no-store" || len(a.header.Values("Cache-Control")) != 1 {
			t.Errorf("%s: Cache-Control %q, want no-store (ASVS V14.3.2)", a.what, a.header.Values("Cache-Control"))
		}
		for _, h := range []string{"Expires", "ETag", "Last-Modified", "Age"} {
			if v := a.header.Get(h); v != "" {
				t.Errorf("%s: %s: %q invites caching", a.what, h, v)
			}
		}
	}
	if public != len(assets) {
		t.Errorf("the sweep fetched %d assets of %d", public, len(assets))
	}
}

// TestWEB08_NoSourceOrMetadataIsServed proves ASVS V13.4.1 (no source
// control metadata deployed): the binary serves only its embedded pages
// and assets, so asking for source-control metadata (.git, .svn, .hg),
// environment files, the module's own files (go.mod, the source, the
// scripts, the docs) or a way out of /static/ (.., encoded or not) finds
// nothing, signed in or not: 404, and nothing of the files.
func TestWEB08_NoSourceOrMetadataIsServed(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	admin := signInOwn(t, ts, authz.OrgAdmin)
	files := []string{
		".git/config", ".git/HEAD", ".git/index", ".git/logs/HEAD", ".git/refs/heads/main", ".gitignore",
		".svn/entries", ".svn/wc.db", ".hg/store/00manifest.i", ".bzr/branch-format", "CVS/Entries",
		".env", ".env.local", ".DS_Store", ".idea/workspace.xml", ".vscode/settings.json",
		"go.mod", "go.sum", "README.md", "Dockerfile", "Makefile", "scripts/test",
		"docs/asvs.md", "internal/web/web.go", "internal/server/handler.go", "cmd/custodia/main.go",
		"web/web.go", "templates/login.html", "internal/web/templates/login.html",
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, "/"+f, "/static/"+f, "/static/../"+f, "/static/../../"+f, "/static/%2e%2e/"+f,
			"/static/..%2f..%2f"+f, "/static/%2e%2e%2f%2e%2e%2f"+f, "/api/"+f, "/api/v1/../../"+f, "/orgs/demo/"+f)
	}
	// The markers of what must not come back.
	markers := []string{"[core]", "ref: refs/", "module github.com/custodia", "package ", "#!/", "repositoryformatversion",
		"{{define", "{{template", "# OWASP", "func ", "github.com/custodia/custodia v", "(function ()"}
	for _, c := range []*http.Client{ownClient(ts), admin} {
		for _, p := range paths {
			for _, method := range []string{"GET", "HEAD"} {
				req, err := http.NewRequest(method, ts.URL+p, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, p, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s %s: %s, want 404 (ASVS V13.4.1)", method, p, resp.Status)
				}
				for _, m := range markers {
					if bytes.Contains(b, []byte(m)) {
						t.Errorf("%s %s: the answer holds %q", method, p, m)
					}
				}
			}
		}
	}
}

// TestAUTH10_SessionTokensAre256BitSecrets proves, with
// TestCRY11_SecretsAndIdentifiersCarryEnoughRandomBits, ASVS V7.2.3
// (reference tokens ≥128 bits from a CSPRNG): the session token a sign-in
// hands out, through the API and through the sign-in page, is 43
// characters of base64url that decode to 256 bits, and each sign-in gets
// a token of its own.
func TestAUTH10_SessionTokensAre256BitSecrets(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	seen := map[string]bool{}
	for _, role := range []authz.Role{authz.OrgAdmin, authz.OrgManager, authz.OrgAdmin} {
		for _, form := range []bool{false, true} {
			l := ts.logins[role]
			var req *http.Request
			if form {
				req, _ = http.NewRequest("POST", ts.URL+"/login", strings.NewReader("email="+l.Email+"&password="+l.Password))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				body, _ := json.Marshal(map[string]string{"email": l.Email, "password": l.Password})
				req, _ = http.NewRequest("POST", ts.URL+"/api/v1/auth/login", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
			}
			c := ownClient(ts)
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var token string
			for _, ck := range resp.Cookies() {
				if ck.Name == "__Host-custodia_session" {
					token = ck.Value
				}
			}
			b, err := base64.RawURLEncoding.DecodeString(token)
			if err != nil || len(token) != 43 || len(b) != 32 {
				t.Fatalf("sign-in as %s (form %v): %s, session token %q: want 256 bits in base64url", role, form, resp.Status, token)
			}
			if seen[token] {
				t.Fatalf("a session token came back twice")
			}
			seen[token] = true
		}
	}
}

// rawExchange sends raw bytes to a TLS server and reads the answers until
// the server closes the connection or stops answering.
func rawExchange(t *testing.T, addr, raw string) []*http.Response {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(conn)
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
}

// TestWEB05_RequestBoundariesCannotBeSmuggled proves ASVS V4.2.1 (HTTP
// message boundaries): the server as Serve runs it (Go's net/http, no
// proxy of its own) finds where a request ends as HTTP/1.1 says. With
// both Transfer-Encoding: chunked and Content-Length, the length is
// ignored: the chunked body ends the request, and what follows is read
// as a request of its own, never as the first one's body. Conflicting
// lengths, a malformed length and a transfer coding other than chunked
// are refused before any handler runs.
func TestWEB05_RequestBoundariesCannotBeSmuggled(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	type seen struct {
		path, body string
		broken     bool // reading the body failed
	}
	var got []seen
	addr := startServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.URL.Path, string(b), err != nil})
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	reached := func() []seen {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}

	// Content-Length would swallow the second request; chunked ends at "0".
	tail := "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
	resps := rawExchange(t, addr, "POST /first HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "+itoa(len(tail))+
		"\r\nTransfer-Encoding: chunked\r\n\r\n"+tail)
	r := reached()
	switch {
	case len(resps) == 1 && resps[0].StatusCode == http.StatusBadRequest && len(r) == 0:
		t.Log("Content-Length with Transfer-Encoding: refused")
	case len(r) == 2 && r[0] == seen{"/first", "", false} && r[1] == seen{"/smuggled", "", false}:
		t.Log("Content-Length with Transfer-Encoding: the chunked body ended the request, as RFC 9112 §6.3 says")
	default:
		t.Errorf("Content-Length with Transfer-Encoding: the handler saw %+v (%d answers); want the chunked body to end the first request", r, len(resps))
	}

	// Refused before any handler runs.
	for name, raw := range map[string]string{
		"two different lengths":  "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 40\r\n\r\nA",
		"a signed length":        "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +1\r\n\r\nA",
		"a length in hex":        "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0x1\r\n\r\nA",
		"chunked then identity":  "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
		"an unknown coding":      "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
		"two transfer codings":   "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
		"a folded header":        "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n Transfer-Encoding: chunked\r\n\r\nA",
		"a space before a colon": "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 1\r\n\r\nA",
	} {
		resps := rawExchange(t, addr, raw+"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if r := reached(); len(r) > 0 {
			t.Errorf("%s: the handler saw %+v; want a refusal before it", name, r)
		}
		if len(resps) != 1 || resps[0].StatusCode < 400 {
			t.Errorf("%s: %d answers (first %v), want one refusal and the connection closed", name, len(resps), status(resps))
		}
	}

	// A chunked body that breaks off: the handler's read fails, and the
	// connection ends there; nothing after it is read as a request.
	resps = rawExchange(t, addr, "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nA\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if r := reached(); len(r) != 1 || !r[0].broken || len(resps) > 1 {
		t.Errorf("a bad chunk size: the handler saw %+v, %d answers; want one request whose body fails to read", r, len(resps))
	}
}

// status is the status of the first response, if any.
func status(resps []*http.Response) string {
	if len(resps) == 0 {
		return "none"
	}
	return resps[0].Status
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestAUTH07_ResetOverHTTPSignsNobodyIn proves, with
// TestAUTH07_ResetStartsNoSessionAndKeepsTheSecondFactors, ASVS V6.4.3 (a
// reset does not bypass multi-factor authentication) for the two ways in:
// a password reset through the API and through the page sets no cookie
// and leaves the client signed out; signing in, with its second step if
// the account has a factor, stays the only way to a session.
func TestAUTH07_ResetOverHTTPSignsNobodyIn(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := t.Context()
	l := ts.logins[authz.OrgManager]
	acc, err := accounts.ByEmail(ctx, ts.inst.Clinical, l.Email)
	if err != nil {
		t.Fatal(err)
	}
	var tokens [2]string
	err = ts.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		for i := range tokens {
			if tokens[i], err = accounts.IssueLink(ctx, tx, acc.ID, accounts.PurposeReset, time.Hour); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []probe{
		jsonProbe("/api/v1/auth/reset/confirm", map[string]string{"token": tokens[0], "password": "Juniper tidal compass 3141"}),
		{path: "/reset/" + tokens[1], ctype: "application/x-www-form-urlencoded", body: "password=Copper+meadow+sailing+2718&confirm=Copper+meadow+sailing+2718"},
	} {
		c := ownClient(ts)
		req, _ := http.NewRequest("POST", ts.URL+p.path, strings.NewReader(p.body))
		req.Header.Set("Content-Type", p.ctype)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
			t.Fatalf("reset %d: %s", i, resp.Status)
		}
		if cookies := resp.Header.Values("Set-Cookie"); len(cookies) > 0 {
			t.Errorf("reset through %s set cookies %q; a reset signs nobody in (ASVS V6.4.3)", p.path[:12], cookies)
		}
		if resp, _ := do(t, c, "GET", ts.URL+"/api/v1/account/organizations", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("after the reset through %s the client reads the account: %s", p.path[:12], resp.Status)
		}
	}
	var live int
	ts.inst.Clinical.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE account_id = $1 AND revoked_at IS NULL`, acc.ID).Scan(&live)
	if live != 0 {
		t.Errorf("%d live sessions after two resets", live)
	}
}

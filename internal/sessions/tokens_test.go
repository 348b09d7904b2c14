package sessions_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// newTextSite is newMFASite whose text messages land in the returned
// recorder.
func newTextSite(t *testing.T, d sqldb.Dialect) (*mfaSite, *sms.Recorder) {
	t.Helper()
	inst, logins := seededInstance(t, d)
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	s := &mfaSite{inst: inst, clock: &stepClock{t: time.Now()}, logins: logins}
	texts := &sms.Recorder{}
	s.store = &sessions.Store{Limits: sessions.DefaultLimits, Now: s.clock.now}
	factors := &mfa.Service{SMS: texts, Now: s.clock.now}
	s.h, _ = server.NewHandler(server.Deps{
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Instance: inst, Sessions: s.store, KEK: kek, Factors: factors,
	})
	return s, texts
}

// bearer sends a request with an access token instead of a cookie.
func (s *mfaSite) bearer(t *testing.T, method, path, body, token, from string) reply {
	t.Helper()
	req := httptest.NewRequest(method, "https://custodia.test"+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.RemoteAddr = from + ":40000"
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	r := reply{status: rec.Code, header: rec.Result().Header, body: rec.Body.String()}
	for _, c := range rec.Result().Cookies() {
		if c.Name == "__Host-custodia_session" {
			r.cookie = c.Value
		}
	}
	json.Unmarshal(rec.Body.Bytes(), &r.out)
	return r
}

// signIn signs role in with its password and returns the session cookie.
func (s *mfaSite) signIn(t *testing.T, role authz.Role, from string) string {
	t.Helper()
	l := s.logins[role]
	r := s.login(t, l, l.Password, from)
	if r.status != http.StatusOK || r.cookie == "" {
		t.Fatalf("sign in as %s: %d %s", role, r.status, r.body)
	}
	return r.cookie
}

// newToken makes an access token with the session cookie.
func (s *mfaSite) newToken(t *testing.T, cookie, from string, scopes ...string) (string, string) {
	t.Helper()
	r := s.do(t, "POST", "/api/v1/tokens", fmt.Sprintf(`{"name":"script","scopes":[%s],"expires_in_days":30}`, quoteAll(scopes)), cookie, from)
	if r.status != http.StatusCreated || r.str("token") == "" {
		t.Fatalf("create token: %d %s", r.status, r.body)
	}
	if r.cookie != "" {
		t.Errorf("creating a token set a cookie")
	}
	return r.str("token"), r.str("id")
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = `"` + s + `"`
	}
	return strings.Join(q, ",")
}

func studyCount(t *testing.T, s *mfaSite) int {
	t.Helper()
	var n int
	if err := s.inst.Clinical.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM studies`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAUTH10_ReadScopedTokenReadsButCannotWrite(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.20"
		cookie := s.signIn(t, authz.OrgAdmin, from)
		read, readID := s.newToken(t, cookie, from, "read")
		write, _ := s.newToken(t, cookie, from, "write")

		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", read, from); r.status != http.StatusOK || r.cookie != "" {
			t.Fatalf("read token GET: %d %s (cookie %q)", r.status, r.body, r.cookie)
		}
		before := studyCount(t, s)
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			r := s.bearer(t, m, "/api/v1/orgs/demo/studies", `{"kind":"study","name":"By a read token"}`, read, from)
			if r.status != http.StatusForbidden && r.status != http.StatusMethodNotAllowed {
				t.Errorf("read token %s: %d %s, want 403", m, r.status, r.body)
			}
		}
		if r := s.bearer(t, "POST", "/api/v1/orgs/demo/studies", `{"kind":"study","name":"By a read token"}`, read, from); r.status != http.StatusForbidden {
			t.Errorf("read token POST: %d, want 403", r.status)
		}
		if n := studyCount(t, s); n != before {
			t.Errorf("a read token's POST changed the studies: %d, want %d", n, before)
		}
		if r := s.bearer(t, "POST", "/api/v1/orgs/demo/studies", `{"kind":"study","name":"By a write token"}`, write, from); r.status != http.StatusCreated {
			t.Errorf("write token POST: %d %s, want 201", r.status, r.body)
		}

		// The trail names the token by id, never by value.
		var body string
		err := s.inst.Clinical.QueryRowContext(context.Background(),
			`SELECT body FROM audit_events WHERE action = 'study.list' AND body LIKE $1`, "%token:"+readID+"%").Scan(&body)
		if err != nil {
			t.Fatalf("no study.list event naming token %s: %v", readID, err)
		}
		var all string
		rows, _ := s.inst.Clinical.QueryContext(context.Background(), `SELECT body FROM audit_events`)
		for rows.Next() {
			var b string
			rows.Scan(&b)
			all += b
		}
		rows.Close()
		if strings.Contains(all, read) || strings.Contains(all, read[4:]) || strings.Contains(all, write[4:]) {
			t.Error("a token's value is on the audit trail")
		}

		// The list shows no secret.
		r := s.do(t, "GET", "/api/v1/tokens", "", cookie, from)
		if r.status != http.StatusOK || strings.Contains(r.body, read[4:]) || strings.Contains(r.body, write[4:]) || !strings.Contains(r.body, readID) {
			t.Errorf("token list: %d %s", r.status, r.body)
		}
	})
}

func TestAUTH10_TokenIsStoredHashedAndCannotMakeTokensOrReachTheBrowserShell(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.21"
		cookie := s.signIn(t, authz.Monitor, from)
		tok, id := s.newToken(t, cookie, from, "read", "write")

		var hash string
		if err := s.inst.Clinical.QueryRowContext(context.Background(),
			`SELECT token_hash FROM access_tokens WHERE id = $1`, id).Scan(&hash); err != nil {
			t.Fatal(err)
		}
		if hash != ids.Digest(tok) || strings.Contains(hash, tok[4:]) {
			t.Errorf("stored %q for the token; want its SHA-256 only", hash)
		}
		for _, p := range []struct{ method, path, body string }{
			{"POST", "/api/v1/tokens", `{"name":"child","scopes":["write"]}`},
			{"POST", "/api/v1/account/password", `{"current":"x","new":"y"}`},
			{"POST", "/api/v1/account/factors/totp", ``},
			{"POST", "/api/v1/auth/logout", ``},
		} {
			if r := s.bearer(t, p.method, p.path, p.body, tok, from); r.status != http.StatusForbidden {
				t.Errorf("token %s %s: %d %s, want 403", p.method, p.path, r.status, r.body)
			}
		}
		var n int
		s.inst.Clinical.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM access_tokens`).Scan(&n)
		if n != 1 {
			t.Errorf("%d tokens exist, want 1: a token made another", n)
		}
		// The browser shell knows no bearer tokens.
		if r := s.bearer(t, "GET", "/account", "", tok, from); r.status == http.StatusOK {
			t.Errorf("browser page with a bearer token: %d, want no page", r.status)
		}
	})
}

func TestAUTH10_ExpiredRevokedAndBadTokensAre401(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.22"
		cookie := s.signIn(t, authz.DataManager, from)
		short := s.do(t, "POST", "/api/v1/tokens", `{"name":"short","scopes":["read"],"expires_in_days":1}`, cookie, from)
		if short.status != http.StatusCreated {
			t.Fatalf("create: %d %s", short.status, short.body)
		}
		revoked, revokedID := s.newToken(t, cookie, from, "read")
		if r := s.do(t, "DELETE", "/api/v1/tokens/"+revokedID, "", cookie, from); r.status != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", revoked, from); r.status != http.StatusUnauthorized {
			t.Errorf("revoked token: %d, want 401", r.status)
		}
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", short.str("token"), from); r.status != http.StatusOK {
			t.Errorf("live token: %d, want 200", r.status)
		}
		// Another person's token is not found, like a missing one.
		other := s.signIn(t, authz.Monitor, from)
		_, mine := s.newToken(t, cookie, from, "read")
		if r := s.do(t, "DELETE", "/api/v1/tokens/"+mine, "", other, from); r.status != http.StatusNotFound {
			t.Errorf("revoking another's token: %d, want 404", r.status)
		}
		s.clock.add(24 * time.Hour)
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", short.str("token"), from); r.status != http.StatusUnauthorized {
			t.Errorf("expired token: %d, want 401", r.status)
		}
		for _, bad := range []string{"", "cst_", "nonsense", "cst_" + strings.Repeat("A", ids.SecretLen)} {
			if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", bad, from); r.status != http.StatusUnauthorized {
				t.Errorf("token %q: %d, want 401", bad, r.status)
			}
		}

		// Bad input changes nothing.
		cookie = s.signIn(t, authz.DataManager, from)
		for _, body := range []string{
			`{"name":"x","scopes":["read"],"expires_in_days":366}`,
			`{"name":"x","scopes":["admin"]}`,
			`{"name":"x","scopes":[]}`,
			`{"name":"","scopes":["read"]}`,
			`{"name":"x","scopes":["read"],"expires_in_days":-1}`,
		} {
			if r := s.do(t, "POST", "/api/v1/tokens", body, cookie, from); r.status != http.StatusBadRequest {
				t.Errorf("create %s: %d, want 400", body, r.status)
			}
		}
		var n int
		s.inst.Clinical.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM access_tokens`).Scan(&n)
		if n != 3 {
			t.Errorf("%d tokens, want 3", n)
		}
	})
}

func TestAUTH10_LockedAccountsTokensAreRefused(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.23"
		cookie := s.signIn(t, authz.SiteInvestigator, from)
		tok, _ := s.newToken(t, cookie, from, "read")
		l := s.logins[authz.SiteInvestigator]
		for i := range accounts.LockAfter {
			s.clock.add(time.Minute) // past the per-account limit of attempts
			if r := s.login(t, l, "wrong password", fmt.Sprintf("10.44.0.%d", i)); r.status != http.StatusUnauthorized {
				t.Fatalf("wrong password %d: %d", i, r.status)
			}
		}
		id, _ := accounts.KnownID(context.Background(), s.inst.Clinical, l.Email)
		if st, err := accounts.Lockout(context.Background(), s.inst.Clinical, id); err != nil || !st.Locked() {
			t.Fatalf("account not locked: %+v %v", st, err)
		}
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", tok, from); r.status != http.StatusUnauthorized {
			t.Errorf("locked account's token: %d %s, want 401", r.status, r.body)
		}
	})
}

func TestAUTH05_FailedBearerAttemptsAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const attacker, other = "203.0.113.30", "198.51.100.24"
		cookie := s.signIn(t, authz.Monitor, other)
		good, _ := s.newToken(t, cookie, other, "read")
		for i := range sessions.TokenFailuresPerMinute {
			guess := "cst_" + fmt.Sprintf("%043d", i)
			if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", guess, attacker); r.status != http.StatusUnauthorized {
				t.Fatalf("guess %d: %d, want 401", i, r.status)
			}
		}
		r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", "cst_"+fmt.Sprintf("%043d", 99), attacker)
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Errorf("guess past the limit: %d (Retry-After %q), want 429", r.status, r.header.Get("Retry-After"))
		}
		// Past the limit, even a right token is not checked from there.
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", good, attacker); r.status != http.StatusTooManyRequests {
			t.Errorf("right token from the limited address: %d, want 429", r.status)
		}
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", good, other); r.status != http.StatusOK {
			t.Errorf("right token from another address: %d, want 200", r.status)
		}
		s.clock.add(time.Minute)
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", good, attacker); r.status != http.StatusOK {
			t.Errorf("right token a minute later: %d, want 200", r.status)
		}
		var n int
		s.inst.Clinical.QueryRowContext(context.Background(),
			`SELECT COUNT(*) FROM audit_events WHERE action = 'auth.token' AND outcome <> 'success'`).Scan(&n)
		if n < sessions.TokenFailuresPerMinute+1 {
			t.Errorf("%d failed bearer attempts on the trail, want at least %d", n, sessions.TokenFailuresPerMinute+1)
		}
		// The address going past its limit raised an alert for the
		// operator (AUTH-12).
		s.inst.Clinical.QueryRowContext(context.Background(),
			`SELECT COUNT(*) FROM alerts WHERE kind = 'address.limited' AND subject = $1`, attacker).Scan(&n)
		if n != 1 {
			t.Errorf("%d address alerts for the guessing address, want 1", n)
		}
	})
}

// A password reset, which follows a lost or stolen password, revokes the
// account's access tokens with its sessions (AUTH-07).
func TestAUTH07_ResetRevokesTokens(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		ctx := context.Background()
		const from = "198.51.100.25"
		l := s.logins[authz.CareProvider]
		cookie := s.signIn(t, authz.CareProvider, from)
		tok, _ := s.newToken(t, cookie, from, "read")
		id, _ := accounts.KnownID(ctx, s.inst.Clinical, l.Email)
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", tok, from); r.status != http.StatusOK {
			t.Fatalf("token before the reset: %d, want 200", r.status)
		}
		var link string
		err := s.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			link, err = accounts.IssueLink(ctx, tx, id, accounts.PurposeReset, time.Hour)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := s.do(t, "POST", "/api/v1/auth/reset/confirm", fmt.Sprintf(`{"token":%q,"password":"Walnut orbit silver 6021"}`, link), "", from); r.status != http.StatusNoContent {
			t.Fatalf("reset: %d %s", r.status, r.body)
		}
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", tok, from); r.status != http.StatusUnauthorized {
			t.Errorf("token after a password reset: %d, want 401", r.status)
		}
	})
}

// An access token outlives the session that made it and needs no second
// factor, so (ASVS V7.4.3): making one needs a confirmation of the session
// within the step-up window, and every token of the account ends with a
// password change and with "sign out everywhere", as with a reset.
func TestAUTH10_TokensNeedAFreshConfirmationAndEndWithThePassword(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.25"
		l := s.logins[authz.DataManager]
		cookie := s.signIn(t, authz.DataManager, from)
		s.clock.add(gate.StepUpWindow + time.Second)
		r := s.do(t, "POST", "/api/v1/tokens", `{"name":"late","scopes":["read"]}`, cookie, from)
		if !stepUpRequired(r) {
			t.Fatalf("a token from a stale confirmation: %d %s, want 403 step_up_required", r.status, r.body)
		}
		var made, refused int
		s.inst.Clinical.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM access_tokens`).Scan(&made)
		s.inst.Clinical.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM audit_events
			WHERE action = 'token.create' AND outcome = 'denied' AND security = $1`, true).Scan(&refused)
		if made != 0 || refused != 1 {
			t.Errorf("after the refusal: %d tokens, %d denied token.create events; want 0 and 1", made, refused)
		}
		cookie = s.confirmPassword(t, l, cookie, from)
		tok, _ := s.newToken(t, cookie, from, "read")
		alive := func() bool {
			t.Helper()
			return s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", tok, from).status == http.StatusOK
		}
		if !alive() {
			t.Fatal("the new token does not work")
		}

		// A password change ends it.
		const next = "a fresh and longer passphrase 7"
		r = s.do(t, "POST", "/api/v1/account/password", jsonBody(t, map[string]string{"current": l.Password, "new": next}), cookie, from)
		if r.status != http.StatusOK {
			t.Fatalf("change password: %d %s", r.status, r.body)
		}
		if alive() {
			t.Error("a token made before a password change still works")
		}

		// "Sign out everywhere" ends the next one.
		cookie = r.cookie
		tok, _ = s.newToken(t, cookie, from, "read")
		if !alive() {
			t.Fatal("the token made after the change does not work")
		}
		if r := s.do(t, "POST", "/account/sessions/end-all", "", cookie, from); r.status != http.StatusSeeOther {
			t.Fatalf("sign out everywhere: %d %s", r.status, r.body)
		}
		if alive() {
			t.Error("a token survived signing out everywhere")
		}
	})
}

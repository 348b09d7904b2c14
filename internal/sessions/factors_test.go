package sessions_test

import (
	"context"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/policy/policytest"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mfaSite is the whole HTTP surface over a fresh instance with the demo
// organization and a local KEK, with a clock the test moves.
type mfaSite struct {
	h      http.Handler
	inst   *instance.Instance
	store  *sessions.Store
	clock  *stepClock
	logins map[authz.Role]demo.Login
}

func newMFASite(t *testing.T, d sqldb.Dialect) *mfaSite {
	t.Helper()
	inst, logins := seededInstance(t, d)
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	s := &mfaSite{inst: inst, clock: &stepClock{t: time.Now()}, logins: logins}
	s.store = &sessions.Store{Limits: sessions.DefaultLimits, Now: s.clock.now}
	factors := &mfa.Service{Now: s.clock.now}
	s.h, _ = server.NewHandler(server.Deps{
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Instance: inst, Sessions: s.store, KEK: kek, Factors: factors,
	})
	return s
}

type reply struct {
	status int
	header http.Header
	body   string
	cookie string // the session cookie set, if any
	out    map[string]any
}

func (r reply) str(key string) string {
	s, _ := r.out[key].(string)
	return s
}

// do sends a request from address from, with the session cookie if not "".
func (s *mfaSite) do(t *testing.T, method, path, body, cookie, from string) reply {
	t.Helper()
	req := httptest.NewRequest(method, "https://custodia.test"+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "__Host-custodia_session", Value: cookie})
	}
	req.RemoteAddr = from + ":40000"
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	r := reply{status: rec.Code, header: rec.Result().Header, body: rec.Body.String()}
	for _, c := range rec.Result().Cookies() {
		if c.Name == "__Host-custodia_session" && c.Value != "" {
			r.cookie = c.Value
		}
	}
	json.Unmarshal(rec.Body.Bytes(), &r.out)
	return r
}

func jsonBody(t *testing.T, v map[string]string) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (s *mfaSite) login(t *testing.T, l demo.Login, password, from string) reply {
	t.Helper()
	return s.do(t, "POST", "/api/v1/auth/login", jsonBody(t, map[string]string{"email": l.Email, "password": password}), "", from)
}

func (s *mfaSite) secondFactor(t *testing.T, challenge, code, from string) reply {
	t.Helper()
	return s.do(t, "POST", "/api/v1/auth/second-factor", jsonBody(t, map[string]string{"challenge": challenge, "code": code}), "", from)
}

// signedIn reports whether cookie opens a session.
func (s *mfaSite) signedIn(t *testing.T, cookie, from string) bool {
	t.Helper()
	return s.do(t, "GET", "/api/v1/orgs/demo/studies", "", cookie, from).status == http.StatusOK
}

func (s *mfaSite) failures(t *testing.T, l demo.Login) int {
	t.Helper()
	id, err := accounts.KnownID(context.Background(), s.inst.Clinical, l.Email)
	if err != nil {
		t.Fatal(err)
	}
	st, err := accounts.Lockout(context.Background(), s.inst.Clinical, id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Failures
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// enrolled reads the secret from an enrolment answer and checks its shape.
func enrolled(t *testing.T, r reply, email string) []byte {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("begin enrolment: %d %s", r.status, r.body)
	}
	secret, err := b32.DecodeString(r.str("secret"))
	if err != nil || len(secret) != mfa.SecretSize {
		t.Fatalf("enrolment secret %q: %v", r.str("secret"), err)
	}
	if !strings.HasPrefix(r.str("uri"), "otpauth://totp/Custodia:"+email+"?") || !strings.Contains(r.str("uri"), "secret="+r.str("secret")) {
		t.Errorf("enrolment URI %q", r.str("uri"))
	}
	img, err := base64.StdEncoding.DecodeString(r.str("qr_png_base64"))
	if err != nil {
		t.Fatalf("QR code: %v", err)
	}
	if _, err := png.Decode(strings.NewReader(string(img))); err != nil {
		t.Errorf("QR code is not a PNG: %v", err)
	}
	return secret
}

func recoveryCodes(t *testing.T, r reply) []string {
	t.Helper()
	list, _ := r.out["recovery_codes"].([]any)
	var codes []string
	for _, c := range list {
		if s, ok := c.(string); ok {
			codes = append(codes, s)
		}
	}
	if len(codes) != mfa.RecoveryCodes {
		t.Fatalf("%d recovery codes in %s, want %d", len(codes), r.body, mfa.RecoveryCodes)
	}
	return codes
}

// wrongCode is a six-digit code that is not secret's code within the drift
// window at now.
func wrongCode(secret []byte, now time.Time) string {
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		ok := true
		for off := int64(-2); off <= 2; off++ {
			ok = ok && mfa.Code(secret, mfa.Step(now)+off) != c
		}
		if ok {
			return c
		}
	}
	panic("no wrong code")
}

func TestAUTH08_LoginWithTOTPOverHTTP(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newMFASite(t, d)
		l := s.logins[authz.OrgAdmin]
		const from, elsewhere = "198.51.100.7", "203.0.113.50"
		code := func(secret []byte) string { return mfa.Code(secret, mfa.Step(s.clock.now())) }

		// Enrol through the API, signed in with the password alone.
		r := s.login(t, l, l.Password, from)
		if r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("password-only login: %d %s", r.status, r.body)
		}
		cookie := r.cookie
		secret := enrolled(t, s.do(t, "POST", "/api/v1/account/factors/totp", "", cookie, from), l.Email)
		if r := s.do(t, "POST", "/api/v1/account/factors/totp/confirm", `{"code":"`+wrongCode(secret, s.clock.now())+`"}`, cookie, from); r.status != http.StatusForbidden {
			t.Fatalf("confirm with a wrong code: %d %s", r.status, r.body)
		}
		r = s.do(t, "POST", "/api/v1/account/factors/totp/confirm", `{"code":"`+code(secret)+`"}`, cookie, from)
		if r.status != http.StatusOK {
			t.Fatalf("confirm: %d %s", r.status, r.body)
		}
		recovery := recoveryCodes(t, r)

		// The password now earns a challenge, not a session.
		s.clock.add(mfa.Period)
		r = s.login(t, l, l.Password, from)
		if r.status != http.StatusOK || r.out["second_factor_required"] != true || r.cookie != "" || r.header.Get("Set-Cookie") != "" {
			t.Fatalf("login with a factor: %d %v %s", r.status, r.header, r.body)
		}
		if methods, _ := json.Marshal(r.out["methods"]); string(methods) != `["totp","recovery"]` {
			t.Errorf("methods %s", methods)
		}
		challenge := r.str("challenge")
		if len(challenge) < 40 || s.signedIn(t, challenge, from) {
			t.Fatalf("challenge %q is not a bearer secret, or opens a session", challenge)
		}

		// A wrong password is the plain 401, with or without a factor.
		failed := s.login(t, l, "not the password at all", from)
		plain := s.login(t, s.logins[authz.Monitor], "not the password at all", from)
		if failed.status != http.StatusUnauthorized || failed.body != plain.body {
			t.Errorf("wrong password with a factor: %d %s; without: %s", failed.status, failed.body, plain.body)
		}

		// A wrong code is 401, sets no cookie and counts towards the lockout.
		before := s.failures(t, l)
		bad := s.secondFactor(t, challenge, wrongCode(secret, s.clock.now()), from)
		if bad.status != http.StatusUnauthorized || bad.cookie != "" {
			t.Fatalf("wrong code: %d %s", bad.status, bad.body)
		}
		if got := s.failures(t, l); got != before+1 {
			t.Errorf("failures after a wrong code: %d, want %d", got, before+1)
		}
		// The right code gives the session cookie, as a password-only login
		// does, and clears the failures.
		spent := code(secret)
		r = s.secondFactor(t, challenge, spent, from)
		if r.status != http.StatusOK || r.cookie == "" || r.out["account"] == nil || r.str("expires_at") == "" {
			t.Fatalf("right code: %d %s", r.status, r.body)
		}
		if !s.signedIn(t, r.cookie, from) {
			t.Fatal("the second step's cookie opens no session")
		}
		if got := s.failures(t, l); got != 0 {
			t.Errorf("failures after sign-in: %d, want 0", got)
		}

		// Every failure of the second step is one answer: a reused
		// challenge, a replayed code, another address, an expired or an
		// unknown challenge.
		refused := func(what string, r reply) {
			t.Helper()
			if r.status != http.StatusUnauthorized || r.cookie != "" || r.body != bad.body {
				t.Errorf("%s: %d %s, want the one 401 %s", what, r.status, r.body, bad.body)
			}
		}
		s.clock.add(mfa.Period)
		refused("reused challenge", s.secondFactor(t, challenge, code(secret), from))
		second := s.login(t, l, l.Password, from).str("challenge")
		refused("replayed code", s.secondFactor(t, second, spent, from))
		refused("challenge from another address", s.secondFactor(t, second, code(secret), elsewhere))
		refused("unknown challenge", s.secondFactor(t, strings.Repeat("A", len(second)), code(secret), from))
		refused("malformed challenge", s.secondFactor(t, "x", code(secret), from))
		s.clock.add(mfa.ChallengeTTL + time.Second)
		refused("expired challenge", s.secondFactor(t, second, code(secret), from))

		// A recovery code works once.
		third := s.login(t, l, l.Password, from).str("challenge")
		if r := s.secondFactor(t, third, strings.ToLower(recovery[0]), from); r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("recovery code: %d %s", r.status, r.body)
		}
		fourth := s.login(t, l, l.Password, from).str("challenge")
		refused("used recovery code", s.secondFactor(t, fourth, recovery[0], from))

		// Wrong codes lock the account like wrong passwords.
		for i := s.failures(t, l); i < accounts.LockAfter; i++ {
			if i%3 == 0 {
				s.clock.add(time.Minute)
				fourth = s.login(t, l, l.Password, from).str("challenge")
			}
			refused("wrong code towards the lockout", s.secondFactor(t, fourth, wrongCode(secret, s.clock.now()), from))
		}
		if st := s.login(t, l, l.Password, from); st.status != http.StatusUnauthorized || st.body != failed.body {
			t.Errorf("right password of an account locked by wrong codes: %d %s", st.status, st.body)
		}

		// The trail holds every step, and neither a challenge nor a code.
		var body string
		rows, err := s.inst.Clinical.QueryContext(context.Background(), `SELECT body FROM audit_events`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b string
			rows.Scan(&b)
			body += b + "\n"
		}
		rows.Close()
		for _, want := range []string{`"action":"auth.challenge"`, `"action":"auth.second-factor","outcome":"failure"`, `"factor":"totp"`, `"factor":"recovery"`, `"action":"mfa.recovery.use"`, `"action":"account.lock"`} {
			if !strings.Contains(body, want) {
				t.Errorf("audit trail lacks %s", want)
			}
		}
		for _, secretText := range append([]string{challenge, second, third, fourth, b32.EncodeToString(secret)}, recovery...) {
			if strings.Contains(body, secretText) || strings.Contains(body, strings.ReplaceAll(secretText, "-", "")) {
				t.Errorf("audit trail holds %q", secretText)
			}
		}
	})
}

func TestAUTH05_SecondFactorIsRateLimitedPerChallenge(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newMFASite(t, d)
		l := s.logins[authz.OrgManager]
		const from = "198.51.100.8"
		cookie := s.login(t, l, l.Password, from).cookie
		secret := enrolled(t, s.do(t, "POST", "/api/v1/account/factors/totp", "", cookie, from), l.Email)
		if r := s.do(t, "POST", "/api/v1/account/factors/totp/confirm", `{"code":"`+mfa.Code(secret, mfa.Step(s.clock.now()))+`"}`, cookie, from); r.status != http.StatusOK {
			t.Fatalf("confirm: %d %s", r.status, r.body)
		}
		challenge := s.login(t, l, l.Password, from).str("challenge")
		wrong := wrongCode(secret, s.clock.now())
		for i := range sessions.ChallengeAttempts {
			if r := s.secondFactor(t, challenge, wrong, from); r.status != http.StatusUnauthorized {
				t.Fatalf("attempt %d: %d %s", i+1, r.status, r.body)
			}
		}
		r := s.secondFactor(t, challenge, mfa.Code(secret, mfa.Step(s.clock.now())+1), from)
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Fatalf("attempt past the challenge's limit: %d %v %s", r.status, r.header, r.body)
		}
	})
}

func TestAUTH08_SignInWithoutSecondStepGetsNoSession(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s := newMFASite(t, d)
		l := s.logins[authz.OrgAdmin]
		const from = "198.51.100.9"
		cookie := s.login(t, l, l.Password, from).cookie
		secret := enrolled(t, s.do(t, "POST", "/api/v1/account/factors/totp", "", cookie, from), l.Email)
		if r := s.do(t, "POST", "/api/v1/account/factors/totp/confirm", `{"code":"`+mfa.Code(secret, mfa.Step(s.clock.now()))+`"}`, cookie, from); r.status != http.StatusOK {
			t.Fatalf("confirm: %d %s", r.status, r.body)
		}
		var before, after int
		s.inst.Clinical.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions`).Scan(&before)
		token, _, err := s.store.SignIn(ctx, l.Email, l.Password, from, "test")
		if !errors.Is(err, sessions.ErrSecondStepRequired) || token != "" {
			t.Fatalf("SignIn of an account with a factor: %q, %v", token, err)
		}
		s.inst.Clinical.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions`).Scan(&after)
		if after != before {
			t.Errorf("SignIn started a session for an account with a factor")
		}
	})
}

func TestAUTH09_PolicyForcesEnrolmentAtNextLogin(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s := newMFASite(t, d)
		l := s.logins[authz.DataManager]
		const from = "198.51.100.10"
		existing := s.login(t, l, l.Password, from).cookie
		if existing == "" {
			t.Fatal("no session before the policy")
		}
		org, err := orgs.OrganizationBySlug(ctx, s.inst.Clinical, demo.Slug)
		if err != nil {
			t.Fatal(err)
		}
		if err := gate.New(gate.Config{Clinical: s.inst.Clinical}).Operate(ctx, "org.policy.set", func(o *gate.OpTx) error {
			return policytest.RequireSecondFactor(ctx, o, org.ID, true)
		}); err != nil {
			t.Fatal(err)
		}
		// Sessions that exist continue; the policy applies at the next login.
		if !s.signedIn(t, existing, from) {
			t.Error("the policy ended an existing session")
		}
		r := s.login(t, l, l.Password, from)
		if r.status != http.StatusOK || r.out["enrolment_required"] != true || r.out["second_factor_required"] != nil || r.cookie != "" {
			t.Fatalf("login under the policy: %d %s", r.status, r.body)
		}
		challenge := r.str("challenge")

		// The enrolment challenge opens nothing but enrolment.
		if s.signedIn(t, challenge, from) {
			t.Error("the enrolment challenge works as a session cookie")
		}
		if r := s.do(t, "POST", "/api/v1/account/factors/totp", "", challenge, from); r.status != http.StatusUnauthorized {
			t.Errorf("signed-in enrolment with the challenge as cookie: %d", r.status)
		}
		if r := s.secondFactor(t, challenge, "123456", from); r.status != http.StatusUnauthorized {
			t.Errorf("second factor with an enrolment challenge: %d", r.status)
		}
		enrol := func(path string, v map[string]string, addr string) reply {
			return s.do(t, "POST", "/api/v1/auth/enrolment/totp"+path, jsonBody(t, v), "", addr)
		}
		if r := enrol("", map[string]string{"challenge": challenge}, "203.0.113.60"); r.status != http.StatusUnauthorized {
			t.Errorf("enrolment from another address: %d %s", r.status, r.body)
		}
		secret := enrolled(t, enrol("", map[string]string{"challenge": challenge}, from), l.Email)
		if r := enrol("/confirm", map[string]string{"challenge": challenge, "code": wrongCode(secret, s.clock.now())}, from); r.status != http.StatusUnauthorized || r.cookie != "" {
			t.Fatalf("confirm with a wrong code: %d %s", r.status, r.body)
		}
		r = enrol("/confirm", map[string]string{"challenge": challenge, "code": mfa.Code(secret, mfa.Step(s.clock.now()))}, from)
		if r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("confirm: %d %s", r.status, r.body)
		}
		recoveryCodes(t, r)
		if !s.signedIn(t, r.cookie, from) {
			t.Fatal("the enrolment's cookie opens no session")
		}
		s.clock.add(mfa.Period)
		if r := enrol("/confirm", map[string]string{"challenge": challenge, "code": mfa.Code(secret, mfa.Step(s.clock.now()))}, from); r.status != http.StatusUnauthorized {
			t.Errorf("enrolment challenge used twice: %d %s", r.status, r.body)
		}
		if r := enrol("", map[string]string{"challenge": challenge}, from); r.status != http.StatusUnauthorized {
			t.Errorf("enrolment begun with a spent challenge: %d %s", r.status, r.body)
		}

		// From now on the login asks for the code.
		r = s.login(t, l, l.Password, from)
		if r.out["second_factor_required"] != true {
			t.Fatalf("login after enrolment: %d %s", r.status, r.body)
		}
		if r := s.secondFactor(t, r.str("challenge"), mfa.Code(secret, mfa.Step(s.clock.now())), from); r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("second factor after enrolment: %d %s", r.status, r.body)
		}
		// Someone in no organization with the policy still signs in with
		// the password alone.
		other := s.logins[authz.Monitor]
		if err := s.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM role_assignments WHERE account_id = (SELECT id FROM accounts WHERE email = $1)`, other.Email)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if r := s.login(t, other, other.Password, from); r.status != http.StatusOK || r.cookie == "" {
			t.Errorf("login outside the policy: %d %s", r.status, r.body)
		}
	})
}

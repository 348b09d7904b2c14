package sessions_test

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/policy"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const newPassword = "Saffron kettle meridian 2207"

func TestAUTH10_PasswordChangeRenewsTheSessionAndEndsOthers(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.40"
		l := s.logins[authz.Monitor]
		cookie := s.signIn(t, authz.Monitor, from)
		laptop := s.signIn(t, authz.Monitor, "198.51.100.41")
		before := s.failures(t, l)

		// A wrong current password is refused, counted, and changes nothing.
		r := s.do(t, "POST", "/api/v1/account/password", jsonBody(t, map[string]string{"current": "not it", "new": newPassword}), cookie, from)
		if r.status != http.StatusForbidden {
			t.Errorf("wrong current password: %d %s, want 403", r.status, r.body)
		}
		if s.failures(t, l) != before+1 {
			t.Errorf("a wrong current password did not count towards the lockout")
		}
		// A new password that breaks the rules is refused, nothing changed.
		for _, weak := range []string{"short", l.Password, "password1234"} {
			r := s.do(t, "POST", "/api/v1/account/password", jsonBody(t, map[string]string{"current": l.Password, "new": weak}), cookie, from)
			if r.status != http.StatusBadRequest || r.cookie != "" {
				t.Errorf("new password %q: %d %s, want 400 and no cookie", weak, r.status, r.body)
			}
		}
		if !s.signedIn(t, cookie, from) || !s.signedIn(t, laptop, from) {
			t.Fatal("a refused change ended a session")
		}

		r = s.do(t, "POST", "/api/v1/account/password", jsonBody(t, map[string]string{"current": l.Password, "new": newPassword}), cookie, from)
		if r.status != http.StatusOK || r.cookie == "" || r.cookie == cookie {
			t.Fatalf("change: %d %s (cookie renewed: %v)", r.status, r.body, r.cookie != cookie)
		}
		if s.signedIn(t, cookie, from) {
			t.Error("the old session token still works after the password change")
		}
		if s.signedIn(t, laptop, from) {
			t.Error("another session survived the password change")
		}
		if !s.signedIn(t, r.cookie, from) {
			t.Error("the renewed session does not work")
		}
		if got := s.login(t, l, newPassword, from); got.status != http.StatusOK {
			t.Errorf("sign in with the new password: %d", got.status)
		}
		var n int
		s.inst.Clinical.QueryRowContext(context.Background(),
			`SELECT COUNT(*) FROM audit_events WHERE action = 'account.password.change' AND outcome = 'success' AND security = $1`, true).Scan(&n)
		if n == 0 {
			t.Error("no account.password.change security event")
		}
	})
}

func TestAUTH10_RoleChangeGivesTheSessionANewID(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.42"
		victim := s.signIn(t, authz.DataManager, from)
		admin := s.signIn(t, authz.OrgAdmin, from)
		if !s.signedIn(t, victim, from) {
			t.Fatal("session does not work")
		}
		// The administrator gives the data manager another role.
		r := s.do(t, "POST", "/api/v1/orgs/demo/invitations",
			jsonBody(t, map[string]string{"email": s.logins[authz.DataManager].Email, "role": "org-manager"}), admin, from)
		if r.status != http.StatusAccepted {
			t.Fatalf("invite: %d %s", r.status, r.body)
		}
		r = s.do(t, "GET", "/api/v1/orgs/demo/studies", "", victim, from)
		if r.status != http.StatusOK || r.cookie == "" || r.cookie == victim {
			t.Fatalf("first request after the role change: %d, new cookie %v", r.status, r.cookie != "" && r.cookie != victim)
		}
		if s.signedIn(t, victim, from) {
			t.Error("the session token from before the role change still works")
		}
		if !s.signedIn(t, r.cookie, from) {
			t.Error("the renewed session does not work")
		}
		// The administrator's own session is untouched.
		if r := s.do(t, "GET", "/api/v1/orgs/demo/studies", "", admin, from); r.status != http.StatusOK || r.cookie != "" {
			t.Errorf("admin: %d, renewed %v", r.status, r.cookie != "")
		}
	})
}

func TestAUTH10_SecondFactorGivesTheSessionANewID(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.43"
		l := s.logins[authz.StudyAdmin]
		cookie := s.signIn(t, authz.StudyAdmin, from)
		secret := enrolled(t, s.do(t, "POST", "/api/v1/account/factors/totp", "", cookie, from), l.Email)
		r := s.do(t, "POST", "/api/v1/account/factors/totp/confirm",
			jsonBody(t, map[string]string{"code": mfa.Code(secret, mfa.Step(s.clock.now()))}), cookie, from)
		if r.status != http.StatusOK || r.cookie == "" || r.cookie == cookie {
			t.Fatalf("confirm: %d %s, renewed %v", r.status, r.body, r.cookie != "" && r.cookie != cookie)
		}
		if s.signedIn(t, cookie, from) {
			t.Error("the session token from before the second factor still works")
		}
		if !s.signedIn(t, r.cookie, from) {
			t.Error("the renewed session does not work")
		}
	})
}

func TestAUTH10_FixedPreLoginTokenCannotRideIntoTheSession(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.44"
		// The attacker plants a cookie: a value of their choosing, and a
		// live session of their own.
		planted, _ := ids.NewSecret()
		own := s.signIn(t, authz.Participant, from)
		victim := s.logins[authz.OrgAdmin]
		for _, fixed := range []string{planted, own} {
			r := s.do(t, "POST", "/api/v1/auth/login", jsonBody(t, map[string]string{"email": victim.Email, "password": victim.Password}), fixed, from)
			if r.status != http.StatusOK || r.cookie == "" || r.cookie == fixed {
				t.Fatalf("sign-in with a planted cookie: %d, new cookie %v", r.status, r.cookie != fixed)
			}
			if s.signedIn(t, fixed, from) && fixed == planted {
				t.Error("the planted value opens a session")
			}
			// The planted session is still the attacker's own, never the
			// victim's: it cannot reach what only the admin can.
			if got := s.do(t, "POST", "/api/v1/orgs/demo/studies", `{"kind":"study","name":"Fixed"}`, fixed, from); got.status == http.StatusCreated {
				t.Error("the planted cookie acts as the victim")
			}
		}
		// With a second factor, the challenge is not a session either, and
		// the session after the second step is a new token.
		cookie := s.signIn(t, authz.OrgAdmin, from)
		secret := enrolled(t, s.do(t, "POST", "/api/v1/account/factors/totp", "", cookie, from), victim.Email)
		if r := s.do(t, "POST", "/api/v1/account/factors/totp/confirm",
			jsonBody(t, map[string]string{"code": mfa.Code(secret, mfa.Step(s.clock.now()))}), cookie, from); r.status != http.StatusOK {
			t.Fatal(r.body)
		}
		s.clock.add(time.Minute)
		r := s.login(t, victim, victim.Password, from)
		challenge := r.str("challenge")
		if challenge == "" || r.cookie != "" {
			t.Fatalf("login with a factor: %d %s", r.status, r.body)
		}
		if s.signedIn(t, challenge, from) {
			t.Error("the challenge opens a session")
		}
		r = s.secondFactor(t, challenge, mfa.Code(secret, mfa.Step(s.clock.now())), from)
		if r.status != http.StatusOK || r.cookie == "" || r.cookie == challenge {
			t.Fatalf("second factor: %d %s", r.status, r.body)
		}
	})
}

// setPolicy stores a policy for the demo organization directly.
func setPolicy(t *testing.T, s *mfaSite, p policy.Security) {
	t.Helper()
	ctx := context.Background()
	var orgID string
	if err := s.inst.Clinical.QueryRowContext(ctx, `SELECT id FROM organizations WHERE slug = 'demo'`).Scan(&orgID); err != nil {
		t.Fatal(err)
	}
	if err := s.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		_, err := policy.Set(ctx, tx, orgID, p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestAUTH09_RotationExpiredPasswordCanOnlyBeChanged(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.45"
		l := s.logins[authz.SiteInvestigator]
		p := policy.Default()
		p.PasswordRotationDays = 30
		setPolicy(t, s, p)
		cookie := s.signIn(t, authz.SiteInvestigator, from)
		tok, _ := s.newToken(t, cookie, from, "read")
		if !s.signedIn(t, cookie, from) {
			t.Fatal("fresh password refused")
		}
		// The password was set 31 days ago: it has expired, and a sign-in
		// only lets the person change it.
		if _, err := s.inst.Clinical.ExecContext(context.Background(),
			`UPDATE accounts SET password_changed_at = password_changed_at - $1 WHERE email = $2`,
			(31 * 24 * time.Hour).Microseconds(), l.Email); err != nil {
			t.Fatal(err)
		}
		cookie = s.signIn(t, authz.SiteInvestigator, from)
		if r := s.do(t, "GET", "/api/v1/orgs/demo/studies", "", cookie, from); r.status != http.StatusForbidden || !strings.Contains(r.body, "expired") {
			t.Errorf("expired password, GET studies: %d %s, want 403", r.status, r.body)
		}
		if r := s.do(t, "POST", "/api/v1/tokens", `{"name":"x","scopes":["read"]}`, cookie, from); r.status != http.StatusForbidden {
			t.Errorf("expired password, new token: %d, want 403", r.status)
		}
		if r := s.bearer(t, "GET", "/api/v1/orgs/demo/studies", "", tok, from); r.status != http.StatusUnauthorized {
			t.Errorf("token of an account with an expired password: %d, want 401", r.status)
		}
		r := s.do(t, "POST", "/api/v1/account/password", jsonBody(t, map[string]string{"current": l.Password, "new": newPassword}), cookie, from)
		if r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("change the expired password: %d %s", r.status, r.body)
		}
		if !s.signedIn(t, r.cookie, from) {
			t.Error("after the change the session is still held to it")
		}
		if s.signedIn(t, cookie, from) {
			t.Error("the restricted session's token still works")
		}
	})
}

func TestAUTH10_SessionLimitsFollowTheOrganizationPolicy(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		const from = "198.51.100.46"
		cookie := s.signIn(t, authz.Monitor, from)
		p := policy.Default()
		p.SessionIdleMinutes, p.SessionAbsoluteHours = 5, 1
		setPolicy(t, s, p)
		s.clock.add(4 * time.Minute)
		if !s.signedIn(t, cookie, from) {
			t.Fatal("session ended within the idle limit")
		}
		s.clock.add(5 * time.Minute)
		if s.signedIn(t, cookie, from) {
			t.Error("session outlived a five-minute idle limit (tightened while it ran)")
		}
		// Absolute: busy for an hour, then out.
		cookie = s.signIn(t, authz.Monitor, from)
		for range 14 {
			s.clock.add(4 * time.Minute)
			if !s.signedIn(t, cookie, from) {
				t.Fatal("busy session ended early")
			}
		}
		s.clock.add(4 * time.Minute)
		if s.signedIn(t, cookie, from) {
			t.Error("session outlived a one-hour absolute limit")
		}
	})
}

func TestAUTH09_PolicyIsSetByAdminsOnlyAndAudited(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		ctx := context.Background()
		const from = "198.51.100.47"
		strict := `{"password_min_length":16,"password_require_mixed":true,"password_rotation_days":90,
			"session_idle_minutes":10,"session_absolute_hours":8,"require_second_factor":false}`
		for _, role := range []authz.Role{authz.OrgManager, authz.StudyAdmin, authz.Participant} {
			c := s.signIn(t, role, from)
			if r := s.do(t, "PUT", "/api/v1/orgs/demo/security-policy", strict, c, from); r.status != http.StatusNotFound {
				t.Errorf("PUT as %s: %d, want 404", role, r.status)
			}
			if r := s.do(t, "GET", "/api/v1/orgs/demo/security-policy", "", c, from); r.status != http.StatusNotFound {
				t.Errorf("GET as %s: %d, want 404", role, r.status)
			}
		}
		var rows int
		s.inst.Clinical.QueryRowContext(ctx, `SELECT COUNT(*) FROM org_policies`).Scan(&rows)
		if rows != 0 {
			t.Fatalf("a refused PUT stored a policy")
		}
		admin := s.signIn(t, authz.OrgAdmin, from)
		for _, bad := range []string{
			`{"session_idle_minutes":4}`, `{"session_idle_minutes":61}`, `{"session_absolute_hours":25}`,
			`{"session_absolute_hours":0}`, `{"password_min_length":7}`, `{"password_rotation_days":-1}`, `{"colour":"red"}`,
		} {
			if r := s.do(t, "PUT", "/api/v1/orgs/demo/security-policy", bad, admin, from); r.status != http.StatusBadRequest {
				t.Errorf("PUT %s: %d %s, want 400", bad, r.status, r.body)
			}
		}
		s.inst.Clinical.QueryRowContext(ctx, `SELECT COUNT(*) FROM org_policies`).Scan(&rows)
		if rows != 0 {
			t.Fatalf("a bad PUT stored a policy")
		}
		if r := s.do(t, "PUT", "/api/v1/orgs/demo/security-policy", strict, admin, from); r.status != http.StatusOK {
			t.Fatalf("PUT as admin: %d %s", r.status, r.body)
		}
		r := s.do(t, "GET", "/api/v1/orgs/demo/security-policy", "", admin, from)
		pol, _ := r.out["policy"].(map[string]any)
		if r.status != http.StatusOK || pol["password_min_length"] != float64(16) || pol["session_idle_minutes"] != float64(10) {
			t.Errorf("GET after PUT: %d %s", r.status, r.body)
		}
		if fields, _ := r.out["fields"].([]any); len(fields) != len(policy.Fields()) {
			t.Errorf("GET lists %d fields, want %d", len(fields), len(policy.Fields()))
		}
		var body string
		err := s.inst.Clinical.QueryRowContext(ctx,
			`SELECT body FROM audit_events WHERE action = 'org.policy.set' AND outcome = 'success' AND security = $1`, true).Scan(&body)
		if err != nil {
			t.Fatalf("no org.policy.set security event: %v", err)
		}
		if !strings.Contains(body, "password_min_length=12") || !strings.Contains(body, "password_min_length=16") {
			t.Errorf("org.policy.set does not hold the old and new values: %s", body)
		}
		// The new rules hold where a password is set.
		l := s.logins[authz.Monitor]
		c := s.signIn(t, authz.Monitor, from)
		if r := s.do(t, "POST", "/api/v1/account/password", jsonBody(t, map[string]string{"current": l.Password, "new": "saffron kettle meridian"}), c, from); r.status != http.StatusBadRequest {
			t.Errorf("password without digit and capital under the new rules: %d, want 400", r.status)
		}
	})
}

func TestAUTH08_SignInWithATextedCode(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, texts := newTextSite(t, d)
		const from, phone = "198.51.100.48", "+31612345678"
		l := s.logins[authz.DataManager]
		cookie := s.signIn(t, authz.DataManager, from)
		r := s.do(t, "POST", "/api/v1/account/factors/sms", `{"phone":"+31 6 1234 5678"}`, cookie, from)
		if r.status != http.StatusOK || strings.Contains(r.body, "12345678") {
			t.Fatalf("begin: %d %s", r.status, r.body)
		}
		code := textedCode(t, texts, phone)
		if r := s.do(t, "POST", "/api/v1/account/factors/sms/confirm", jsonBody(t, map[string]string{"code": wrongSix(code)}), cookie, from); r.status != http.StatusForbidden {
			t.Errorf("wrong enrolment code: %d, want 403", r.status)
		}
		r = s.do(t, "POST", "/api/v1/account/factors/sms/confirm", jsonBody(t, map[string]string{"code": code}), cookie, from)
		if r.status != http.StatusOK || r.cookie == "" || r.cookie == cookie {
			t.Fatalf("confirm: %d %s", r.status, r.body)
		}
		recoveryCodes(t, r)

		s.clock.add(time.Minute)
		r = s.login(t, l, l.Password, from)
		challenge := r.str("challenge")
		if challenge == "" || !strings.Contains(r.body, `"sms"`) {
			t.Fatalf("login: %d %s", r.status, r.body)
		}
		if r := s.do(t, "POST", "/api/v1/auth/second-factor/sms", jsonBody(t, map[string]string{"challenge": challenge}), "", from); r.status != http.StatusAccepted {
			t.Fatalf("send: %d %s", r.status, r.body)
		}
		code = textedCode(t, texts, phone)
		if r := s.secondFactor(t, challenge, wrongSix(code), from); r.status != http.StatusUnauthorized {
			t.Errorf("wrong code: %d, want 401", r.status)
		}
		r = s.secondFactor(t, challenge, code, from)
		if r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("second factor: %d %s", r.status, r.body)
		}
		// The code is spent: a second sign-in cannot use it again.
		r = s.login(t, l, l.Password, from)
		if r := s.secondFactor(t, r.str("challenge"), code, from); r.status != http.StatusUnauthorized {
			t.Errorf("reused texted code: %d, want 401", r.status)
		}
		// A code older than five minutes is refused.
		r = s.login(t, l, l.Password, from)
		challenge = r.str("challenge")
		s.do(t, "POST", "/api/v1/auth/second-factor/sms", jsonBody(t, map[string]string{"challenge": challenge}), "", from)
		code = textedCode(t, texts, phone)
		s.clock.add(mfa.SMSCodeTTL)
		if r := s.secondFactor(t, challenge, code, from); r.status != http.StatusUnauthorized {
			t.Errorf("expired texted code: %d, want 401", r.status)
		}
		// No code reaches the audit trail.
		rows, err := s.inst.Clinical.QueryContext(context.Background(), `SELECT body FROM audit_events`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var b string
			rows.Scan(&b)
			if strings.Contains(b, code) || strings.Contains(b, "12345678") {
				t.Errorf("audit event holds a code or the phone number: %s", b)
			}
		}
	})
}

// textedCode reads the code from the latest text to phone.
func textedCode(t *testing.T, texts *sms.Recorder, phone string) string {
	t.Helper()
	m, ok := texts.Last(phone)
	if !ok {
		t.Fatalf("no text to %s", phone)
	}
	for _, f := range strings.Fields(m.Text) {
		f = strings.TrimSuffix(f, ".")
		if len(f) == 6 && strings.Trim(f, "0123456789") == "" {
			return f
		}
	}
	t.Fatalf("no code in %q", m.Text)
	return ""
}

func wrongSix(code string) string {
	if code == "000000" {
		return "000001"
	}
	return "000000"
}

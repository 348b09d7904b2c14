package sessions_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/mfa/passkeytest"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// passkeyOrigin is the public URL of newPasskeySite, as mfaSite.do
// reaches it.
const passkeyOrigin = "https://custodia.test"

// newPasskeySite is newMFASite for a server whose public URL names a host,
// so passkeys are available.
func newPasskeySite(t *testing.T, d sqldb.Dialect) *mfaSite {
	t.Helper()
	s, _ := newPasskeyTextSite(t, d)
	return s
}

// newPasskeyTextSite is newPasskeySite whose text messages the returned
// recorder receives.
func newPasskeyTextSite(t *testing.T, d sqldb.Dialect) (*mfaSite, *sms.Recorder) {
	t.Helper()
	inst, logins := seededInstance(t, d)
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	s := &mfaSite{inst: inst, clock: &stepClock{t: time.Now()}, logins: logins}
	texts := &sms.Recorder{}
	s.store = &sessions.Store{Limits: sessions.DefaultLimits, Now: s.clock.now}
	s.h, _ = server.NewHandler(server.Deps{
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Instance: inst, Sessions: s.store, KEK: kek,
		Factors: &mfa.Service{SMS: texts, Now: s.clock.now}, BaseURL: passkeyOrigin,
	})
	return s, texts
}

// passkeySignIn signs l in with the password and key, and returns the
// session cookie.
func (s *mfaSite) passkeySignIn(t *testing.T, l demo.Login, key *passkeytest.Authenticator, from string) string {
	t.Helper()
	r := s.login(t, l, l.Password, from)
	if r.str("challenge") == "" {
		t.Fatalf("password of a passkey account: %d %s", r.status, r.body)
	}
	r = s.passkeyStep(t, key, r.str("challenge"), from)
	if r.status != http.StatusOK || r.cookie == "" {
		t.Fatalf("sign in with the passkey: %d %s", r.status, r.body)
	}
	return r.cookie
}

func credentialBody(t *testing.T, fields map[string]any, cred []byte) string {
	t.Helper()
	fields["credential"] = json.RawMessage(cred)
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// registerPasskey signs l in with the password, registers a software
// authenticator's passkey and returns it.
func (s *mfaSite) registerPasskey(t *testing.T, l demo.Login, from string) *passkeytest.Authenticator {
	t.Helper()
	cookie := s.login(t, l, l.Password, from).cookie
	r := s.do(t, "POST", "/api/v1/account/factors/webauthn", "", cookie, from)
	if r.status != http.StatusOK {
		t.Fatalf("begin registration: %d %s", r.status, r.body)
	}
	key := passkeytest.New(passkeyOrigin)
	cred, err := key.Create([]byte(r.body))
	if err != nil {
		t.Fatal(err)
	}
	r = s.do(t, "POST", "/api/v1/account/factors/webauthn/confirm", credentialBody(t, map[string]any{"name": "Phone"}, cred), cookie, from)
	if r.status != http.StatusCreated {
		t.Fatalf("confirm registration: %d %s", r.status, r.body)
	}
	codes, _ := r.out["recovery_codes"].([]any)
	if len(codes) != mfa.RecoveryCodes {
		t.Errorf("first factor: %d recovery codes", len(codes))
	}
	// The session now stands on two factors: it continues under a new id.
	if r.cookie == "" || r.cookie == cookie || s.signedIn(t, cookie, from) || !s.signedIn(t, r.cookie, from) {
		t.Errorf("session after registering a passkey: not renewed")
	}
	return key
}

// passkeyStep asks for the options of challenge and answers them with key.
func (s *mfaSite) passkeyStep(t *testing.T, key *passkeytest.Authenticator, challenge, from string) reply {
	t.Helper()
	r := s.do(t, "POST", "/api/v1/auth/second-factor/webauthn/options", jsonBody(t, map[string]string{"challenge": challenge}), "", from)
	if r.status != http.StatusOK {
		return r
	}
	cred, err := key.Get([]byte(r.body))
	if err != nil {
		t.Fatal(err)
	}
	return s.do(t, "POST", "/api/v1/auth/second-factor/webauthn", credentialBody(t, map[string]any{"challenge": challenge}, cred), "", from)
}

func TestAUTH08_PasskeySecondStepCountsLikeACode(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newPasskeySite(t, d)
		l := s.logins[authz.OrgManager]
		const from = "198.51.100.21"
		key := s.registerPasskey(t, l, from)

		r := s.login(t, l, l.Password, from)
		challenge := r.str("challenge")
		methods, _ := r.out["methods"].([]any)
		if challenge == "" || r.cookie != "" || !slices.Contains(methods, any("webauthn")) {
			t.Fatalf("password of a passkey account: %d %s", r.status, r.body)
		}

		// An assertion without user verification is a wrong answer: 401,
		// counted towards the lockout, on the record.
		key.NoUserVerification = true
		if r := s.passkeyStep(t, key, challenge, from); r.status != http.StatusUnauthorized || r.cookie != "" {
			t.Fatalf("assertion without user verification: %d %s", r.status, r.body)
		}
		key.NoUserVerification = false
		if n := s.failures(t, l); n != 1 {
			t.Errorf("failures after a refused assertion: %d, want 1", n)
		}
		// The challenge is bound to its source address.
		if r := s.passkeyStep(t, key, challenge, "198.51.100.22"); r.status != http.StatusUnauthorized {
			t.Errorf("challenge from another address: %d %s", r.status, r.body)
		}

		r = s.passkeyStep(t, key, challenge, from)
		if r.status != http.StatusOK || r.cookie == "" || !s.signedIn(t, r.cookie, from) {
			t.Fatalf("second step with the passkey: %d %s", r.status, r.body)
		}
		if n := s.failures(t, l); n != 0 {
			t.Errorf("failures after signing in: %d, want 0", n)
		}
		// The challenge is spent with the session.
		if r := s.passkeyStep(t, key, challenge, from); r.status != http.StatusUnauthorized {
			t.Errorf("spent challenge: %d %s", r.status, r.body)
		}

		ctx := context.Background()
		var logins, failures int
		s.inst.Clinical.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'success' AND body LIKE $1`, "%webauthn%").Scan(&logins)
		s.inst.Clinical.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM audit_events WHERE action = 'auth.second-factor' AND outcome = 'failure' AND body LIKE $1`, "%wrong_code%").Scan(&failures)
		if logins != 1 || failures != 1 {
			t.Errorf("audit: %d passkey sign-ins, %d wrong answers; want 1 and 1", logins, failures)
		}
	})
}

func TestAUTH05_PasskeyStepIsRateLimitedPerChallenge(t *testing.T) {
	t.Parallel()
	s := newPasskeySite(t, sqldb.SQLite)
	l := s.logins[authz.Monitor]
	const from = "198.51.100.31"
	key := s.registerPasskey(t, l, from)
	challenge := s.login(t, l, l.Password, from).str("challenge")
	for i := range sessions.ChallengeAttempts {
		r := s.do(t, "POST", "/api/v1/auth/second-factor/webauthn/options", jsonBody(t, map[string]string{"challenge": challenge}), "", from)
		if r.status != http.StatusOK {
			t.Fatalf("options %d: %d %s", i+1, r.status, r.body)
		}
	}
	r := s.passkeyStep(t, key, challenge, from)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("past the challenge's limit: %d %v %s", r.status, r.header, r.body)
	}
}

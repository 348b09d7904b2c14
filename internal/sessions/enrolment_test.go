package sessions_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/policy/policytest"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/mfa/passkeytest"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// requireSecondFactor sets the demo organization's policy so that its
// members must enrol a second factor at their next sign-in (AUTH-09).
func (s *mfaSite) requireSecondFactor(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	org := s.demoOrgID(t)
	if err := gate.New(gate.Config{Clinical: s.inst.Clinical}).Operate(ctx, "org.policy.set", func(o *gate.OpTx) error {
		return policytest.RequireSecondFactor(ctx, o, org, true)
	}); err != nil {
		t.Fatal(err)
	}
}

// enrolmentChallenge signs l in with the password under the policy and
// returns the enrolment challenge, and the methods the answer offers.
func (s *mfaSite) enrolmentChallenge(t *testing.T, l demo.Login, from string) string {
	t.Helper()
	c, _ := s.enrolmentOffer(t, l, from)
	return c
}

func (s *mfaSite) enrolmentOffer(t *testing.T, l demo.Login, from string) (string, []any) {
	t.Helper()
	r := s.login(t, l, l.Password, from)
	if r.status != http.StatusOK || r.out["enrolment_required"] != true || r.cookie != "" {
		t.Fatalf("login under the policy: %d %s", r.status, r.body)
	}
	methods, _ := r.out["methods"].([]any)
	return r.str("challenge"), methods
}

// enrolPasskey asks for the creation options of an enrolment challenge
// and, if given, answers them with a new credential of key.
func (s *mfaSite) enrolPasskey(t *testing.T, key *passkeytest.Authenticator, challenge, from string) (options, confirm reply) {
	t.Helper()
	options = s.do(t, "POST", "/api/v1/auth/enrolment/webauthn", jsonBody(t, map[string]string{"challenge": challenge}), "", from)
	if options.status != http.StatusOK {
		return options, reply{}
	}
	cred, err := key.Create([]byte(options.body))
	if err != nil {
		t.Fatal(err)
	}
	return options, s.do(t, "POST", "/api/v1/auth/enrolment/webauthn/confirm",
		credentialBody(t, map[string]any{"challenge": challenge, "name": "Laptop"}, cred), "", from)
}

// A member whom the organization's policy makes enrol sets up a passkey
// instead of an authenticator app: the enrolment challenge, from its own
// address, within its lifetime and once, gives the creation options and
// then, with the new passkey, the session and the recovery codes.
func TestAUTH08_ForcedEnrolmentWithAPasskey(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s := newPasskeySite(t, d)
		s.requireSecondFactor(t)
		l := s.logins[authz.DataManager]
		const from, elsewhere = "198.51.100.71", "203.0.113.71"
		challenge, methods := s.enrolmentOffer(t, l, from)
		if !slices.Equal(methods, []any{"totp", "webauthn"}) {
			t.Errorf("methods offered with passkeys: %v, want [totp webauthn]", methods)
		}

		// The enrolment challenge is bound to its address and to its
		// purpose: no passkey sign-in step with it.
		if r, _ := s.enrolPasskey(t, passkeytest.New(passkeyOrigin), challenge, elsewhere); r.status != http.StatusUnauthorized {
			t.Errorf("enrolment from another address: %d %s", r.status, r.body)
		}
		if r := s.do(t, "POST", "/api/v1/auth/second-factor/webauthn/options", jsonBody(t, map[string]string{"challenge": challenge}), "", from); r.status != http.StatusUnauthorized {
			t.Errorf("sign-in options for an enrolment challenge: %d %s", r.status, r.body)
		}

		// A passkey made for another site is refused, does not count
		// against the account and leaves the challenge usable.
		foreign := passkeytest.New("https://evil.example")
		if _, r := s.enrolPasskey(t, foreign, challenge, from); r.status != http.StatusBadRequest || r.cookie != "" {
			t.Fatalf("a passkey of another origin: %d %s, want 400", r.status, r.body)
		}
		if n := s.failures(t, l); n != 0 {
			t.Errorf("failures after an unusable registration: %d, want 0", n)
		}

		// The options of one enrolment challenge (of a second sign-in)
		// are answered with that challenge only.
		second := s.enrolmentChallenge(t, l, from)
		theirs := s.do(t, "POST", "/api/v1/auth/enrolment/webauthn", jsonBody(t, map[string]string{"challenge": second}), "", from)
		if theirs.status != http.StatusOK {
			t.Fatalf("options of a second challenge: %d %s", theirs.status, theirs.body)
		}
		cred, err := passkeytest.New(passkeyOrigin).Create([]byte(theirs.body))
		if err != nil {
			t.Fatal(err)
		}
		if r := s.do(t, "POST", "/api/v1/auth/enrolment/webauthn/confirm", credentialBody(t, map[string]any{"challenge": challenge}, cred), "", from); r.status != http.StatusBadRequest || r.cookie != "" {
			t.Fatalf("answer to another challenge's options: %d %s, want 400", r.status, r.body)
		}

		key := passkeytest.New(passkeyOrigin)
		options, r := s.enrolPasskey(t, key, challenge, from)
		if r.status != http.StatusOK || r.cookie == "" || !s.signedIn(t, r.cookie, from) {
			t.Fatalf("enrol a passkey: options %d, confirm %d %s", options.status, r.status, r.body)
		}
		codes := recoveryCodes(t, r)

		// The challenge is spent with the session: neither step again.
		cred, err = key.Clone().Create([]byte(options.body))
		if err != nil {
			t.Fatal(err)
		}
		if r := s.do(t, "POST", "/api/v1/auth/enrolment/webauthn/confirm", credentialBody(t, map[string]any{"challenge": challenge}, cred), "", from); r.status != http.StatusUnauthorized || r.cookie != "" {
			t.Errorf("second enrolment with a spent challenge: %d %s", r.status, r.body)
		}
		if r, _ := s.enrolPasskey(t, key.Clone(), challenge, from); r.status != http.StatusUnauthorized {
			t.Errorf("options for a spent challenge: %d %s", r.status, r.body)
		}
		if r := s.do(t, "POST", "/api/v1/auth/enrolment/totp", jsonBody(t, map[string]string{"challenge": challenge}), "", from); r.status != http.StatusUnauthorized {
			t.Errorf("an app with a spent challenge: %d %s", r.status, r.body)
		}

		// From now on the passkey, or a recovery code, is the second step.
		r = s.login(t, l, l.Password, from)
		if methods, _ := r.out["methods"].([]any); r.out["second_factor_required"] != true || !slices.Contains(methods, any("webauthn")) {
			t.Fatalf("login after enrolling a passkey: %d %s", r.status, r.body)
		}
		if r := s.passkeyStep(t, key, r.str("challenge"), from); r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("second step with the enrolled passkey: %d %s", r.status, r.body)
		}
		r = s.login(t, l, l.Password, from)
		if r := s.secondFactor(t, r.str("challenge"), codes[0], from); r.status != http.StatusOK {
			t.Fatalf("recovery code of the passkey enrolment: %d %s", r.status, r.body)
		}

		var enrolled, registered int
		s.inst.Clinical.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'success' AND body LIKE $1 AND body LIKE $2`,
			`%"enrolled":"true"%`, `%"factor":"webauthn"%`).Scan(&enrolled)
		s.inst.Clinical.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM audit_events WHERE action = 'mfa.webauthn.register' AND outcome = 'success' AND security = $1`, true).Scan(&registered)
		if enrolled != 1 || registered != 1 {
			t.Errorf("audit: %d enrolment sign-ins with a passkey, %d registrations; want 1 and 1", enrolled, registered)
		}
	})
}

// The passkey enrolment keeps the enrolment challenge's rules: it expires
// with the challenge, and the options and the answer count against the
// challenge's limit together with the app's steps.
func TestAUTH05_PasskeyEnrolmentKeepsTheChallengeRules(t *testing.T) {
	t.Parallel()
	s := newPasskeySite(t, sqldb.SQLite)
	s.requireSecondFactor(t)
	l := s.logins[authz.Monitor]
	const from = "198.51.100.72"

	// Options asked for within the lifetime, answered after it.
	challenge := s.enrolmentChallenge(t, l, from)
	options := s.do(t, "POST", "/api/v1/auth/enrolment/webauthn", jsonBody(t, map[string]string{"challenge": challenge}), "", from)
	if options.status != http.StatusOK {
		t.Fatalf("options: %d %s", options.status, options.body)
	}
	cred, err := passkeytest.New(passkeyOrigin).Create([]byte(options.body))
	if err != nil {
		t.Fatal(err)
	}
	s.clock.add(mfa.ChallengeTTL + time.Second)
	if r := s.do(t, "POST", "/api/v1/auth/enrolment/webauthn/confirm", credentialBody(t, map[string]any{"challenge": challenge}, cred), "", from); r.status != http.StatusUnauthorized || r.cookie != "" {
		t.Fatalf("answer after the challenge expired: %d %s", r.status, r.body)
	}

	// The app's steps and the passkey's share the challenge's attempts.
	s.clock.add(time.Hour)
	challenge = s.enrolmentChallenge(t, l, from)
	for i := range sessions.ChallengeAttempts - 1 {
		path := "/api/v1/auth/enrolment/webauthn"
		if i%2 == 0 {
			path = "/api/v1/auth/enrolment/totp"
		}
		if r := s.do(t, "POST", path, jsonBody(t, map[string]string{"challenge": challenge}), "", from); r.status != http.StatusOK {
			t.Fatalf("attempt %d (%s): %d %s", i+1, path, r.status, r.body)
		}
	}
	options, r := s.enrolPasskey(t, passkeytest.New(passkeyOrigin), challenge, from)
	if options.status != http.StatusOK || r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.cookie != "" {
		t.Fatalf("past the challenge's limit: options %d, answer %d %v %s", options.status, r.status, r.header, r.body)
	}
}

// Without a relying party (a server on an IP address) the passkey is not
// offered at enrolment, and the app still is.
func TestAUTH08_ForcedEnrolmentOffersNoPasskeyWithoutAHostName(t *testing.T) {
	t.Parallel()
	s := newMFASite(t, sqldb.SQLite)
	s.requireSecondFactor(t)
	l := s.logins[authz.DataManager]
	const from = "198.51.100.73"
	challenge, methods := s.enrolmentOffer(t, l, from)
	if !slices.Equal(methods, []any{"totp"}) {
		t.Errorf("methods offered without passkeys: %v, want [totp]", methods)
	}
	r := s.do(t, "POST", "/api/v1/auth/enrolment/webauthn", jsonBody(t, map[string]string{"challenge": challenge}), "", from)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "public URL") {
		t.Errorf("passkey enrolment without a relying party: %d %s, want 503", r.status, r.body)
	}
	if r := s.do(t, "POST", "/api/v1/auth/enrolment/totp", jsonBody(t, map[string]string{"challenge": challenge}), "", from); r.status != http.StatusOK {
		t.Errorf("the app after a refused passkey: %d %s", r.status, r.body)
	}
}

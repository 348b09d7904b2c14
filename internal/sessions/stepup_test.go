package sessions_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa/passkeytest"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// confirmOptions asks for the step-up's request options of the session of
// cookie.
func (s *mfaSite) confirmOptions(t *testing.T, cookie, from string) []byte {
	t.Helper()
	r := s.do(t, "POST", "/api/v1/auth/confirm/webauthn/options", "", cookie, from)
	if r.status != http.StatusOK {
		t.Fatalf("step-up options: %d %s", r.status, r.body)
	}
	return []byte(r.body)
}

// assertion is key's answer to options.
func assertion(t *testing.T, key *passkeytest.Authenticator, options []byte) []byte {
	t.Helper()
	cred, err := key.Get(options)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func (s *mfaSite) confirmWithPasskey(t *testing.T, cred []byte, cookie, from string) reply {
	t.Helper()
	return s.do(t, "POST", "/api/v1/auth/confirm/webauthn", credentialBody(t, map[string]any{}, cred), cookie, from)
}

// A passkey renews a session's confirmation (ACL-09) like the password or
// a code. Attacks: an assertion of another account's passkey, a replayed
// assertion and one made for another session's options are refused, count
// towards the lockout like wrong codes and are on the audit trail.
func TestACL09_PasskeyConfirmsAStepUp(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s := newPasskeySite(t, d)
		l := s.logins[authz.DataManager]
		const from = "198.51.100.81"
		key := s.registerPasskey(t, l, from)
		// A synced passkey keeps no counter: only the single use of the
		// options stops a replayed assertion.
		key.ZeroCounter = true
		other := s.registerPasskey(t, s.logins[authz.Monitor], from)
		a := s.passkeySignIn(t, l, key, from)
		b := s.passkeySignIn(t, l, key, from)

		// Adding a second passkey needs a fresh confirmation: the probe of
		// each session's step-up.
		confirmed := func(cookie string) bool {
			t.Helper()
			r := s.do(t, "POST", "/api/v1/account/factors/webauthn", "", cookie, from)
			if r.status != http.StatusOK && !stepUpRequired(r) {
				t.Fatalf("probe: %d %s", r.status, r.body)
			}
			return r.status == http.StatusOK
		}
		s.clock.add(gate.StepUpWindow + time.Second)
		if confirmed(a) || confirmed(b) {
			t.Fatal("a confirmation outlived its window")
		}

		// The passkey confirms session a, and a only.
		spent := assertion(t, key, s.confirmOptions(t, a, from))
		r := s.confirmWithPasskey(t, spent, a, from)
		if r.status != http.StatusOK || r.str("valid_until") == "" || r.cookie == "" || r.cookie == a {
			t.Fatalf("confirm with the passkey: %d %s, new session %v", r.status, r.body, r.cookie != "" && r.cookie != a)
		}
		a = r.cookie
		if !confirmed(a) || confirmed(b) {
			t.Errorf("after a's confirmation: a %v, b %v; want true, false", confirmed(a), confirmed(b))
		}
		refused := func(what string, r reply, failures int) {
			t.Helper()
			if r.status != http.StatusForbidden {
				t.Errorf("%s: %d %s, want 403", what, r.status, r.body)
			}
			if n := s.failures(t, l); n != failures {
				t.Errorf("%s: %d failures, want %d", what, n, failures)
			}
		}

		// Replayed: the options were answered once.
		refused("replayed assertion", s.confirmWithPasskey(t, spent, a, from), 1)

		// Another session's options: b's assertion is no answer for a,
		// neither without options of a's own nor against them.
		forB := assertion(t, key, s.confirmOptions(t, b, from))
		refused("assertion for another session, none begun", s.confirmWithPasskey(t, forB, a, from), 2)
		s.confirmOptions(t, a, from)
		refused("assertion for another session's options", s.confirmWithPasskey(t, forB, a, from), 3)
		if confirmed(b) {
			t.Error("b is confirmed without answering its options")
		}

		// Another account's passkey answering a's options.
		refused("another account's passkey", s.confirmWithPasskey(t, assertion(t, other, s.confirmOptions(t, a, from)), a, from), 4)

		// b's own answer to b's options still confirms b.
		if r := s.confirmWithPasskey(t, forB, b, from); r.status != http.StatusOK || r.cookie == "" || !confirmed(r.cookie) {
			t.Errorf("b's own assertion: %d %s", r.status, r.body)
		}
		if n := s.failures(t, l); n != 4 {
			t.Errorf("failures after b's confirmation: %d, want 4", n)
		}

		// An account without passkeys has no options to ask for.
		plain := s.signIn(t, authz.OrgManager, from)
		if r := s.do(t, "POST", "/api/v1/auth/confirm/webauthn/options", "", plain, from); r.status != http.StatusNotFound {
			t.Errorf("options of an account without passkeys: %d %s, want 404", r.status, r.body)
		}

		// The trail: each proof as auth.confirm, with its proof, and no
		// assertion in it.
		var ok, failed int
		s.inst.Clinical.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM audit_events WHERE action = 'auth.confirm' AND outcome = 'success' AND security = $1 AND body LIKE $2`,
			true, `%"proof":"webauthn"%`).Scan(&ok)
		s.inst.Clinical.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM audit_events WHERE action = 'auth.confirm' AND outcome = 'failure' AND body LIKE $1`,
			`%"proof":"webauthn"%`).Scan(&failed)
		if ok != 2 || failed != 4 {
			t.Errorf("audit: %d passkey confirmations, %d refused; want 2 and 4", ok, failed)
		}
		var leaked int
		s.inst.Clinical.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events WHERE body LIKE $1 OR body LIKE $2`,
			`%signature%`, `%clientDataJSON%`).Scan(&leaked)
		if leaked != 0 {
			t.Errorf("%d audit events hold an assertion", leaked)
		}
		if strings.Contains(r.body, "signature") {
			t.Errorf("the answer echoes the assertion: %s", r.body)
		}
	})
}

// A step-up gives the session a new token (V7.2.4, ACL-09): the token held
// before the proof stops working at once, the new one carries the
// confirmation, and the renewal is on the trail beside the proof.
func TestACL09_StepUpGivesTheSessionANewToken(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _ := newTextSite(t, d)
		l := s.logins[authz.OrgManager]
		const from = "198.51.100.83"
		before := s.signIn(t, authz.OrgManager, from)
		after := s.confirmPassword(t, l, before, from)
		if s.signedIn(t, before, from) {
			t.Error("the token from before the step-up still works")
		}
		if !s.signedIn(t, after, from) {
			t.Fatal("the new token does not work")
		}
		var renewals int
		s.inst.Clinical.QueryRowContext(context.Background(), `SELECT count(*) FROM audit_events
			WHERE action = 'auth.session.renew' AND body LIKE '%step-up%'`).Scan(&renewals)
		if renewals != 1 {
			t.Errorf("%d step-up renewals on the trail, want 1", renewals)
		}
	})
}

// Signing out, through the API or the pages, tells the browser to forget
// what it kept of the signed-in pages: Clear-Site-Data (ASVS V14.3.1).
func TestAUTH10_SignOutClearsTheBrowsersData(t *testing.T) {
	t.Parallel()
	s, _ := newTextSite(t, sqldb.SQLite)
	const from = "198.51.100.84"
	for _, path := range []string{"/api/v1/auth/logout", "/logout"} {
		cookie := s.signIn(t, authz.Monitor, from)
		r := s.do(t, "POST", path, "", cookie, from)
		if r.status >= 400 {
			t.Fatalf("POST %s: %d %s", path, r.status, r.body)
		}
		got := r.header.Get("Clear-Site-Data")
		for _, want := range []string{`"cache"`, `"cookies"`, `"storage"`} {
			if !strings.Contains(got, want) {
				t.Errorf("POST %s: Clear-Site-Data %q lacks %s", path, got, want)
			}
		}
		if s.signedIn(t, cookie, from) {
			t.Errorf("POST %s: the session still works", path)
		}
	}
}

package sessions_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// renewRecoveryCodes asks for new recovery codes with body (no body, {} or
// {"code"}).
func (s *mfaSite) renewRecoveryCodes(t *testing.T, body, cookie, from string) reply {
	t.Helper()
	return s.do(t, "POST", "/api/v1/account/recovery-codes", body, cookie, from)
}

// confirmPassword confirms the session of cookie with l's password
// (ACL-09) and returns the cookie of the session that replaces it.
func (s *mfaSite) confirmPassword(t *testing.T, l demo.Login, cookie, from string) string {
	t.Helper()
	r := s.do(t, "POST", "/api/v1/auth/confirm", jsonBody(t, map[string]string{"password": l.Password}), cookie, from)
	if r.status != http.StatusOK || r.cookie == "" || r.cookie == cookie {
		t.Fatalf("confirm with the password: %d %s, new session %v", r.status, r.body, r.cookie != "" && r.cookie != cookie)
	}
	return r.cookie
}

// recoveryCodeSignsIn reports whether code completes a fresh sign-in of l.
func (s *mfaSite) recoveryCodeSignsIn(t *testing.T, l demo.Login, code, from string) bool {
	t.Helper()
	r := s.login(t, l, l.Password, from)
	if r.str("challenge") == "" {
		t.Fatalf("password of an account with a factor: %d %s", r.status, r.body)
	}
	r = s.secondFactor(t, r.str("challenge"), code, from)
	if r.status != http.StatusOK && r.status != http.StatusUnauthorized {
		t.Fatalf("second step with a recovery code: %d %s", r.status, r.body)
	}
	return r.status == http.StatusOK
}

// An account whose factors are passkeys only, or a phone only, has no
// authenticator app to give a code from: it makes new recovery codes after
// a fresh confirmation of its session (ACL-09), as other sensitive actions
// ask, and not without one (403 step_up_required, the codes it has
// unchanged). The old codes stop working; the new ones sign in. A code in
// the request still does, as before, without a confirmation; an account
// without a factor gets no codes. Each renewal is a security event.
func TestAUTH08_NewRecoveryCodesWithoutAnAppAfterAStepUp(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s, texts := newPasskeyTextSite(t, d)

		// stepUpThenRenew checks the refusal of a stale session and
		// renews after a confirmation, twice, and returns the hashes the
		// account held before and both sets of codes.
		stepUpThenRenew := func(t *testing.T, l demo.Login, cookie, from string) (before []string, first, second []string) {
			t.Helper()
			before = s.recoveryHashes(t, l)
			if len(before) != mfa.RecoveryCodes {
				t.Fatalf("%d recovery codes before", len(before))
			}
			s.clock.add(gate.StepUpWindow + time.Second)
			for _, body := range []string{"", "{}"} {
				if r := s.renewRecoveryCodes(t, body, cookie, from); !stepUpRequired(r) {
					t.Fatalf("new codes (body %q) without a fresh confirmation: %d %s, want 403 step_up_required", body, r.status, r.body)
				}
			}
			if got := s.recoveryHashes(t, l); !slices.Equal(got, before) {
				t.Fatal("a refused renewal changed the recovery codes")
			}
			accountID, err := accounts.KnownID(ctx, s.inst.Clinical, l.Email)
			if err != nil {
				t.Fatal(err)
			}
			var denied int
			if err := s.inst.Clinical.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events
				WHERE action = 'mfa.recovery.regenerate' AND outcome = 'denied' AND actor_account = $1`,
				accountID).Scan(&denied); err != nil {
				t.Fatal(err)
			}
			if denied < 2 {
				t.Errorf("%d denied renewals on the trail, want the 2 refused", denied)
			}
			cookie = s.confirmPassword(t, l, cookie, from)
			r := s.renewRecoveryCodes(t, "", cookie, from)
			if r.status != http.StatusOK {
				t.Fatalf("new codes after a confirmation: %d %s", r.status, r.body)
			}
			first = recoveryCodes(t, r)
			after := s.recoveryHashes(t, l)
			if len(after) != mfa.RecoveryCodes || slices.ContainsFunc(after, func(h string) bool { return slices.Contains(before, h) }) {
				t.Errorf("after the renewal: %d codes, some of the old ones kept", len(after))
			}
			r = s.renewRecoveryCodes(t, "{}", cookie, from)
			if r.status != http.StatusOK {
				t.Fatalf("new codes again within the window: %d %s", r.status, r.body)
			}
			return before, first, recoveryCodes(t, r)
		}

		t.Run("passkey only", func(t *testing.T) {
			const from = "198.51.100.91"
			l := s.logins[authz.DataManager]
			key := s.registerPasskey(t, l, from)
			cookie := s.passkeySignIn(t, l, key, from)
			_, first, second := stepUpThenRenew(t, l, cookie, from)
			if s.recoveryCodeSignsIn(t, l, first[0], from) {
				t.Error("a replaced recovery code still signs in")
			}
			if !s.recoveryCodeSignsIn(t, l, second[0], from) {
				t.Error("a new recovery code does not sign in")
			}
		})

		t.Run("phone only", func(t *testing.T) {
			const from, phone = "198.51.100.92", "+31612345679"
			l := s.logins[authz.Monitor]
			cookie := s.signIn(t, authz.Monitor, from)
			r := s.do(t, "POST", "/api/v1/account/factors/sms", jsonBody(t, map[string]string{"phone": phone}), cookie, from)
			// Where a phone is chosen, its risks are told (ASVS V6.6.1).
			if !strings.Contains(r.str("risks"), "SIM swap") {
				t.Errorf("setting up a phone tells no risks: %s", r.body)
			}
			if r.status != http.StatusOK {
				t.Fatalf("begin the phone: %d %s", r.status, r.body)
			}
			r = s.do(t, "POST", "/api/v1/account/factors/sms/confirm", jsonBody(t, map[string]string{"code": textedCode(t, texts, phone)}), cookie, from)
			if r.status != http.StatusOK || r.cookie == "" {
				t.Fatalf("confirm the phone: %d %s", r.status, r.body)
			}
			old := recoveryCodes(t, r)
			_, first, second := stepUpThenRenew(t, l, r.cookie, from)
			for _, code := range []string{old[0], first[0]} {
				if s.recoveryCodeSignsIn(t, l, code, from) {
					t.Errorf("a replaced recovery code %s still signs in", code)
				}
			}
			if !s.recoveryCodeSignsIn(t, l, second[0], from) {
				t.Error("a new recovery code does not sign in")
			}
		})

		t.Run("authenticator app, with a code", func(t *testing.T) {
			const from = "198.51.100.93"
			l := s.logins[authz.OrgManager]
			cookie := s.signIn(t, authz.OrgManager, from)
			secret := enrolled(t, s.do(t, "POST", "/api/v1/account/factors/totp", "", cookie, from), l.Email)
			r := s.do(t, "POST", "/api/v1/account/factors/totp/confirm", jsonBody(t, map[string]string{"code": mfa.Code(secret, mfa.Step(s.clock.now()))}), cookie, from)
			if r.status != http.StatusOK || r.cookie == "" {
				t.Fatalf("confirm the app: %d %s", r.status, r.body)
			}
			old, cookie := recoveryCodes(t, r), r.cookie
			// No confirmation within the window: the code is the proof.
			s.clock.add(gate.StepUpWindow + mfa.Period)
			if r := s.renewRecoveryCodes(t, jsonBody(t, map[string]string{"code": wrongCode(secret, s.clock.now())}), cookie, from); r.status != http.StatusForbidden || stepUpRequired(r) {
				t.Errorf("new codes with a wrong code: %d %s, want 403 for the code", r.status, r.body)
			}
			r = s.renewRecoveryCodes(t, jsonBody(t, map[string]string{"code": mfa.Code(secret, mfa.Step(s.clock.now()))}), cookie, from)
			if r.status != http.StatusOK {
				t.Fatalf("new codes with a code from the app: %d %s", r.status, r.body)
			}
			fresh := recoveryCodes(t, r)
			if s.recoveryCodeSignsIn(t, l, old[0], from) {
				t.Error("a replaced recovery code still signs in")
			}
			if !s.recoveryCodeSignsIn(t, l, fresh[0], from) {
				t.Error("a new recovery code does not sign in")
			}
		})

		t.Run("no factor", func(t *testing.T) {
			const from = "198.51.100.94"
			l := s.logins[authz.StudyAdmin]
			cookie := s.signIn(t, authz.StudyAdmin, from)
			cookie = s.confirmPassword(t, l, cookie, from)
			r := s.renewRecoveryCodes(t, "", cookie, from)
			if r.status != http.StatusConflict || r.out["recovery_codes"] != nil {
				t.Errorf("new codes without a factor: %d %s, want 409", r.status, r.body)
			}
			if got := s.recoveryHashes(t, l); len(got) != 0 {
				t.Errorf("%d recovery codes stored for an account without a factor", len(got))
			}
		})

		// Passkey: 2, phone: 2, app: 1; the refusals none.
		var n int
		if err := s.inst.Clinical.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM audit_events WHERE action = 'mfa.recovery.regenerate' AND outcome = 'success' AND security = $1 AND org_id = $2`,
			true, s.demoOrgID(t)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 5 {
			t.Errorf("%d mfa.recovery.regenerate security events, want 5", n)
		}
	})
}

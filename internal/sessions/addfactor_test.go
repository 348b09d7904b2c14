package sessions_test

import (
	"context"
	"encoding/json"
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
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// recoveryHashes lists the stored hashes of l's recovery codes.
func (s *mfaSite) recoveryHashes(t *testing.T, l demo.Login) []string {
	t.Helper()
	ctx := context.Background()
	id, err := accounts.KnownID(ctx, s.inst.Clinical, l.Email)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.inst.Clinical.QueryContext(ctx, `SELECT code_hash FROM recovery_codes WHERE account_id = $1 ORDER BY code_hash`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// stepUpRequired reports whether r is the refusal of an action that needs
// a fresh confirmation (ACL-09).
func stepUpRequired(r reply) bool {
	return r.status == http.StatusForbidden && strings.Contains(r.body, `"step_up_required"`)
}

// An account that began with a passkey adds an authenticator app, and
// later a phone instead of the app, exactly as it would add a second
// passkey: only after a fresh confirmation (ACL-09), as a security event,
// and keeping the recovery codes it has. A stale session gets neither
// factor in, and no text goes out for it.
func TestAUTH08_PasskeyAccountAddsAnAppOrAPhoneAfterAStepUp(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s, texts := newPasskeyTextSite(t, d)
		l := s.logins[authz.DataManager]
		const from, phone = "198.51.100.61", "+31612345678"
		key := s.registerPasskey(t, l, from)
		codes := s.recoveryHashes(t, l)
		if len(codes) != mfa.RecoveryCodes {
			t.Fatalf("%d recovery codes after the first passkey", len(codes))
		}
		cookie := s.passkeySignIn(t, l, key, from)
		confirm := func() {
			t.Helper()
			cookie = s.confirmPassword(t, l, cookie, from)
		}

		// A confirmation older than the window lets neither factor in.
		s.clock.add(gate.StepUpWindow + time.Second)
		if r := s.do(t, "POST", "/api/v1/account/factors/totp", "", cookie, from); !stepUpRequired(r) {
			t.Fatalf("authenticator app with a stale confirmation: %d %s, want 403 step_up_required", r.status, r.body)
		}
		if r := s.do(t, "POST", "/api/v1/account/factors/sms", jsonBody(t, map[string]string{"phone": phone}), cookie, from); !stepUpRequired(r) {
			t.Fatalf("phone with a stale confirmation: %d %s, want 403 step_up_required", r.status, r.body)
		}
		if _, sent := texts.Last(phone); sent {
			t.Error("a text went out for a refused phone")
		}

		// After a step-up the app is set up beside the passkey.
		confirm()
		secret := enrolled(t, s.do(t, "POST", "/api/v1/account/factors/totp", "", cookie, from), l.Email)
		// The confirmation has to hold until the code confirms the app.
		s.clock.add(gate.StepUpWindow + time.Second)
		if r := s.do(t, "POST", "/api/v1/account/factors/totp/confirm", jsonBody(t, map[string]string{"code": mfa.Code(secret, mfa.Step(s.clock.now()))}), cookie, from); !stepUpRequired(r) {
			t.Fatalf("confirming the app with a stale confirmation: %d %s, want 403 step_up_required", r.status, r.body)
		}
		confirm()
		r := s.do(t, "POST", "/api/v1/account/factors/totp/confirm", jsonBody(t, map[string]string{"code": mfa.Code(secret, mfa.Step(s.clock.now()))}), cookie, from)
		if r.status != http.StatusOK || r.cookie == "" || r.cookie == cookie {
			t.Fatalf("confirm the app: %d %s", r.status, r.body)
		}
		cookie = r.cookie
		// No second set of recovery codes: the first one stands.
		if _, ok := r.out["recovery_codes"]; ok {
			t.Errorf("the app beside a passkey brought recovery codes: %s", r.body)
		}
		if got := s.recoveryHashes(t, l); !slices.Equal(got, codes) {
			t.Error("the app beside a passkey replaced the recovery codes")
		}

		// Sign-in offers both, and either does.
		s.clock.add(mfa.Period)
		r = s.login(t, l, l.Password, from)
		if methods, _ := json.Marshal(r.out["methods"]); string(methods) != `["webauthn","totp","recovery"]` {
			t.Errorf("methods with a passkey and an app: %s", methods)
		}
		if r := s.secondFactor(t, r.str("challenge"), mfa.Code(secret, mfa.Step(s.clock.now())), from); r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("second step with the app: %d %s", r.status, r.body)
		}

		// One code factor at a time: a phone beside the app is refused
		// even after a step-up; once the app is gone, it needs a step-up
		// of its own.
		confirm()
		if r := s.do(t, "POST", "/api/v1/account/factors/sms", jsonBody(t, map[string]string{"phone": phone}), cookie, from); r.status != http.StatusConflict {
			t.Errorf("phone beside the app: %d %s, want 409", r.status, r.body)
		}
		if r := s.do(t, "DELETE", "/api/v1/account/factors/totp", jsonBody(t, map[string]string{"password": l.Password}), cookie, from); r.status != http.StatusNoContent {
			t.Fatalf("remove the app: %d %s", r.status, r.body)
		}
		s.clock.add(gate.StepUpWindow + time.Second)
		if r := s.do(t, "POST", "/api/v1/account/factors/sms", jsonBody(t, map[string]string{"phone": phone}), cookie, from); !stepUpRequired(r) {
			t.Fatalf("phone with a stale confirmation: %d %s, want 403 step_up_required", r.status, r.body)
		}
		confirm()
		if r := s.do(t, "POST", "/api/v1/account/factors/sms", jsonBody(t, map[string]string{"phone": phone}), cookie, from); r.status != http.StatusOK {
			t.Fatalf("phone after a step-up: %d %s", r.status, r.body)
		}
		r = s.do(t, "POST", "/api/v1/account/factors/sms/confirm", jsonBody(t, map[string]string{"code": textedCode(t, texts, phone)}), cookie, from)
		if r.status != http.StatusOK || r.cookie == "" {
			t.Fatalf("confirm the phone: %d %s", r.status, r.body)
		}
		if _, ok := r.out["recovery_codes"]; ok {
			t.Errorf("the phone beside a passkey brought recovery codes: %s", r.body)
		}
		if got := s.recoveryHashes(t, l); !slices.Equal(got, codes) {
			t.Error("the phone beside a passkey replaced the recovery codes")
		}
		r = s.login(t, l, l.Password, from)
		if methods, _ := json.Marshal(r.out["methods"]); string(methods) != `["webauthn","sms","recovery"]` {
			t.Errorf("methods with a passkey and a phone: %s", methods)
		}

		// Each new factor is a security event in the organization, as the
		// passkey's registration is; the stale attempts left none.
		org := s.demoOrgID(t)
		for _, action := range []string{"mfa.webauthn.register", "mfa.totp.enrol", "mfa.sms.enrol"} {
			var n int
			if err := s.inst.Clinical.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM audit_events WHERE action = $1 AND outcome = 'success' AND security = $2 AND org_id = $3`,
				action, true, org).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("%d %s security events, want 1", n, action)
			}
		}
		// The attempts from a stale session are on the trail as denied
		// security events, as the gate records its own step-up refusals.
		for _, action := range []string{"mfa.totp.enrol", "mfa.sms.enrol"} {
			var n int
			if err := s.inst.Clinical.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM audit_events WHERE action = $1 AND outcome = 'denied' AND security = $2 AND org_id = $3`,
				action, true, org).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("no denied %s event for the attempt from a stale session", action)
			}
		}
	})
}

func (s *mfaSite) demoOrgID(t *testing.T) string {
	t.Helper()
	org, err := orgs.OrganizationBySlug(context.Background(), s.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	return org.ID
}

package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/orgs"
)

// An export of the audit trail needs a confirmation of identity within the
// last five minutes (ACL-09): signing in is one, and POST /api/v1/auth/confirm
// with the password renews it.
func TestACL09_ExportNeedsARecentConfirmationOverHTTP(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	admin := ts.signIn(t, authz.OrgAdmin)
	export := ts.URL + "/api/v1/orgs/demo/audit/export?format=jsonl"

	if resp, body := do(t, admin, "GET", export, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("export just after signing in: %s %s", resp.Status, body)
	}

	// Six minutes later.
	age := func() {
		t.Helper()
		stale := time.Now().Add(-6 * time.Minute).UnixMicro()
		if _, err := ts.inst.Clinical.ExecContext(ctx, `UPDATE sessions SET confirmed_at = $1`, stale); err != nil {
			t.Fatal(err)
		}
	}
	age()
	resp, body := do(t, admin, "GET", export, "")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"step_up_required"`) {
		t.Fatalf("export with a stale confirmation: %s %s, want 403 step_up_required", resp.Status, body)
	}
	if strings.Contains(body, "audit.export") {
		t.Error("the refused export leaked events")
	}

	// A wrong password confirms nothing and counts as a failure.
	resp, body = do(t, admin, "POST", ts.URL+"/api/v1/auth/confirm", `{"password":"not the password at all"}`)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("confirm with a wrong password: %s %s, want 403", resp.Status, body)
	}
	if resp, _ := do(t, admin, "GET", export, ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("export after a failed confirmation: %s, want 403", resp.Status)
	}
	var failures int
	if err := ts.inst.Clinical.QueryRowContext(ctx, `SELECT failed_logins FROM accounts WHERE email = $1`,
		ts.logins[authz.OrgAdmin].Email).Scan(&failures); err != nil {
		t.Fatal(err)
	}
	if failures != 1 {
		t.Errorf("failed attempts = %d, want 1: a wrong confirmation counts towards the lockout", failures)
	}

	// Neither is given, or both: 400.
	for _, b := range []string{`{}`, `{"password":"x","code":"123456"}`} {
		if resp, body := do(t, admin, "POST", ts.URL+"/api/v1/auth/confirm", b); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("confirm with %s: %s %s, want 400", b, resp.Status, body)
		}
	}

	pw := ts.logins[authz.OrgAdmin].Password
	resp, body = do(t, admin, "POST", ts.URL+"/api/v1/auth/confirm", `{"password":`+quote(pw)+`}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "valid_until") {
		t.Fatalf("confirm with the password: %s %s", resp.Status, body)
	}
	if strings.Contains(body, pw) {
		t.Error("the answer echoes the password")
	}
	if resp, body := do(t, admin, "GET", export, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("export after confirming: %s %s", resp.Status, body)
	}

	// The trail: a denied export, a failed and a successful confirmation
	// (security events), and no password anywhere.
	evs, _, err := audit.Search(ctx, ts.inst.Clinical, audit.Filter{OrgID: orgID(t, ts), Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	// A failed confirmation is on the account's own trail, outside any
	// organization.
	var failed int
	if err := ts.inst.Clinical.QueryRowContext(ctx,
		`SELECT count(*) FROM audit_events WHERE action = 'auth.confirm' AND outcome = $1`, string(audit.Failure)).Scan(&failed); err != nil {
		t.Fatal(err)
	}
	refused := failed == 1
	var denied, confirmed bool
	for _, ev := range evs {
		switch {
		case ev.Action == "audit.export" && ev.Outcome == audit.Denied && ev.Details["reason"] == "step-up required":
			denied = true
		case ev.Action == "auth.confirm" && ev.Outcome == audit.Success && ev.Security && ev.Details["proof"] == "password":
			confirmed = true
		}
		for k, v := range ev.Details {
			if strings.Contains(v, pw) || strings.Contains(k, pw) {
				t.Errorf("event %s holds the password", ev.Action)
			}
		}
	}
	if !denied || !confirmed || !refused {
		t.Errorf("trail: denied export %v, confirmation %v, refused confirmation %v; want all", denied, confirmed, refused)
	}
}

// A confirmation renews only its own session: another session of the same
// person stays unconfirmed.
func TestACL09_ConfirmationBelongsToOneSession(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	first, second := ts.signIn(t, authz.OrgAdmin), ts.signIn(t, authz.OrgAdmin)
	export := ts.URL + "/api/v1/orgs/demo/audit/export?format=jsonl"
	stale := time.Now().Add(-6 * time.Minute).UnixMicro()
	if _, err := ts.inst.Clinical.ExecContext(ctx, `UPDATE sessions SET confirmed_at = $1`, stale); err != nil {
		t.Fatal(err)
	}
	pw := ts.logins[authz.OrgAdmin].Password
	if resp, body := do(t, first, "POST", ts.URL+"/api/v1/auth/confirm", `{"password":`+quote(pw)+`}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %s %s", resp.Status, body)
	}
	if resp, _ := do(t, first, "GET", export, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("confirmed session: %s, want 200", resp.Status)
	}
	if resp, _ := do(t, second, "GET", export, ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("other session: %s, want 403", resp.Status)
	}
}

// quote is s as a JSON string.
func quote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// The settings that weaken or widen protection need a recent confirmation
// too (ACL-09): the security policy, the network ranges of the
// organization and of a study, the alert rules, a decrypt grant and a key
// request. With a stale one each is refused with step_up_required, changes
// nothing and is recorded as denied; after POST /api/v1/auth/confirm it
// goes through.
func TestACL09_SecuritySettingsNeedAFreshConfirmation(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	admin := ts.signIn(t, authz.OrgAdmin)
	studies, err := orgs.Studies(ctx, ts.inst.Clinical, orgID(t, ts))
	if err != nil || len(studies) == 0 {
		t.Fatalf("studies: %v", err)
	}
	studyID := studies[0].ID
	acc, err := accounts.ByEmail(ctx, ts.inst.Clinical, ts.logins[authz.OrgAdmin].Email)
	if err != nil {
		t.Fatal(err)
	}
	adminAcc := acc.ID
	changes := []struct{ method, path, body, action, table string }{
		{"PUT", "/api/v1/orgs/demo/security-policy", `{"password_min_length":14,"password_require_mixed":false,"password_rotation_days":0,"session_idle_minutes":20,"session_absolute_hours":12,"require_second_factor":false}`, "org.policy.set", "org_policies"},
		{"PUT", "/api/v1/orgs/demo/network", `{"allowed":["127.0.0.0/8","::1/128","192.0.2.0/24"]}`, "network.set", "network_ranges"},
		{"PUT", "/api/v1/orgs/demo/studies/" + studyID + "/network", `{"allowed":["127.0.0.0/8","::1/128"]}`, "network.set", "network_ranges"},
		{"PUT", "/api/v1/orgs/demo/alert-rules", `{"rules":["role."]}`, "alert.rules.set", "alert_rules"},
		{"POST", "/api/v1/orgs/demo/studies/" + studyID + "/decrypt-grants", `{"account":"` + adminAcc + `","reason":"data cleaning"}`, "decrypt.grant", "decrypt_grants"},
		{"POST", "/api/v1/orgs/demo/key-requests", `{"kind":"rotate","data_keys":true}`, "key.request", "key_requests"},
	}
	count := func(table string) int {
		t.Helper()
		var n int
		if err := ts.inst.Clinical.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	stale := time.Now().Add(-6 * time.Minute).UnixMicro()
	if _, err := ts.inst.Clinical.ExecContext(ctx, `UPDATE sessions SET confirmed_at = $1`, stale); err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		before := count(c.table)
		resp, body := do(t, admin, c.method, ts.URL+c.path, c.body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"step_up_required"`) {
			t.Errorf("%s %s with a stale confirmation: %s %s, want 403 step_up_required", c.method, c.path, resp.Status, body)
		}
		if after := count(c.table); after != before {
			t.Errorf("%s %s refused, yet %s went from %d to %d rows", c.method, c.path, c.table, before, after)
		}
	}
	evs, _, err := audit.Search(ctx, ts.inst.Clinical, audit.Filter{OrgID: orgID(t, ts), Outcome: audit.Denied, Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	denied := map[string]int{}
	for _, ev := range evs {
		if ev.Details["reason"] == "step-up required" {
			denied[ev.Action]++
		}
	}
	for _, c := range changes {
		if denied[c.action] == 0 {
			t.Errorf("no denied %s event for the refused change", c.action)
		}
	}

	pw := ts.logins[authz.OrgAdmin].Password
	if resp, body := do(t, admin, "POST", ts.URL+"/api/v1/auth/confirm", `{"password":`+quote(pw)+`}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %s %s", resp.Status, body)
	}
	for _, c := range changes {
		if resp, body := do(t, admin, c.method, ts.URL+c.path, c.body); resp.StatusCode >= 300 {
			t.Errorf("%s %s after confirming: %s %s", c.method, c.path, resp.Status, body)
		}
	}
}

package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
)

func TestAUD05_AdministratorsSeeAlertsAndSetRulesOverHTTP(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	org := orgID(t, ts)
	var raised alerts.Alert
	err := gate.New(gate.Config{Clinical: ts.inst.Clinical}).Operate(ctx, "alert.test", func(tx *gate.OpTx) error {
		var err error
		raised, err = alerts.Raise(ctx, tx, alerts.Alert{OrgID: org, Kind: alerts.AccountLocked, Subject: "aaaaaaaaaaaaaaaaaaaaaaaaaa"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	admin := ts.signIn(t, authz.OrgAdmin)
	base := ts.URL + "/api/v1/orgs/demo"

	resp, body := do(t, admin, "GET", base+"/alerts", "")
	var list struct {
		Alerts []struct{ ID, Kind, ReadAt string } `json:"alerts"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Alerts) != 1 || list.Alerts[0].ID != raised.ID {
		t.Fatalf("alerts: %s %s", resp.Status, body)
	}
	if resp, body := do(t, admin, "POST", base+"/alerts/"+raised.ID+"/read", ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("mark read: %s %s", resp.Status, body)
	}
	if _, body := do(t, admin, "GET", base+"/alerts", ""); !strings.Contains(body, `"read_at"`) {
		t.Errorf("alert not read after marking: %s", body)
	}

	// Others of the organization see nothing of it.
	for _, role := range []authz.Role{authz.OrgManager, authz.Monitor, authz.SiteInvestigator} {
		c := ts.signIn(t, role)
		if resp, _ := do(t, c, "GET", base+"/alerts", ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s lists alerts: %s, want 404", role, resp.Status)
		}
		if resp, _ := do(t, c, "PUT", base+"/alert-rules", `{"rules":[""]}`); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s sets alert rules: %s, want 404", role, resp.Status)
		}
	}

	// Bad rules: 400, nothing changed.
	for _, bad := range []string{`{"rules":["Role."]}`, `{"rules":"mfa."}`, `{"rules":["a b"]}`, `{"rule":[]}`} {
		if resp, body := do(t, admin, "PUT", base+"/alert-rules", bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("rules %s: %s %s, want 400", bad, resp.Status, body)
		}
	}
	if _, body := do(t, admin, "GET", base+"/alert-rules", ""); !strings.Contains(body, `"default":true`) {
		t.Errorf("rules after bad requests: %s, want the default", body)
	}
	resp, body = do(t, admin, "PUT", base+"/alert-rules", `{"rules":["mfa.","role.","mfa."]}`)
	if resp.StatusCode != http.StatusOK || body != "{\"rules\":[\"mfa.\",\"role.\"]}\n" {
		t.Fatalf("set rules: %s %q", resp.Status, body)
	}
	evs, _, err := audit.Search(ctx, ts.inst.Clinical, audit.Filter{OrgID: org, Action: "alert.rules.set", Outcome: audit.Success, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || !evs[0].Security || evs[0].Details["old"] != "default" || evs[0].Details["new"] != `"mfa.","role."` {
		t.Errorf("rules change events = %+v, want one security event with old and new rules", evs)
	}
}

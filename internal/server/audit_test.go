package server

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/orgs"
)

type eventsPage struct {
	Events []struct {
		ID, Action, Outcome, Actor, Study string
	}
	Next string
}

func TestAUD04_AdminsSearchTheTrailMonitorsTheirStudy(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	admin := ts.signIn(t, authz.OrgAdmin)
	studies, _ := orgs.Studies(ctx, ts.inst.Clinical, orgID(t, ts))
	var demoStudy string
	for _, s := range studies {
		if s.Name == "Demo Study" {
			demoStudy = s.ID
		}
	}
	do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/studies/"+demoStudy, "")
	do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/studies/"+demoStudy+"/sites", "")
	do(t, admin, "POST", ts.URL+"/api/v1/orgs/demo/studies", `{"kind":"study","name":"Audited Trial"}`)

	resp, body := do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/audit/events?action=study.", "")
	var page eventsPage
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &page) != nil {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}
	actions := map[string]bool{}
	for _, e := range page.Events {
		actions[e.Action] = true
		if !strings.HasPrefix(e.Action, "study.") {
			t.Errorf("action filter let through %s", e.Action)
		}
	}
	if !actions["study.read"] || !actions["study.create"] {
		t.Errorf("search found %v, want study.read and study.create", actions)
	}

	// Paging: one event a page walks the whole result without repeats.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; pages < 50; pages++ {
		u := ts.URL + "/api/v1/orgs/demo/audit/events?limit=1&action=study."
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		_, body := do(t, admin, "GET", u, "")
		var p eventsPage
		json.Unmarshal([]byte(body), &p)
		for _, e := range p.Events {
			if seen[e.ID] {
				t.Fatalf("event %s on two pages", e.ID)
			}
			seen[e.ID] = true
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if len(seen) != len(page.Events) {
		t.Errorf("paging found %d events, one page %d", len(seen), len(page.Events))
	}

	monitor := ts.signIn(t, authz.Monitor)
	if resp, _ := do(t, monitor, "GET", ts.URL+"/api/v1/orgs/demo/audit/events", ""); resp.StatusCode != 404 {
		t.Errorf("study monitor reading the whole organization's trail: %d, want 404", resp.StatusCode)
	}
	if resp, body := do(t, monitor, "GET", ts.URL+"/api/v1/orgs/demo/audit/events?study="+demoStudy, ""); resp.StatusCode != 200 {
		t.Errorf("monitor reading their study's trail: %d %s", resp.StatusCode, body)
	}
	for _, role := range []authz.Role{authz.SiteInvestigator, authz.Participant, authz.DataManager, authz.OrgManager} {
		c := ts.signIn(t, role)
		if resp, _ := do(t, c, "GET", ts.URL+"/api/v1/orgs/demo/audit/events?study="+demoStudy, ""); resp.StatusCode != 404 {
			t.Errorf("%s reading the trail: %d, want 404", role, resp.StatusCode)
		}
	}
}

func TestAUD04_BadFiltersAreRefused(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	admin := ts.signIn(t, authz.OrgAdmin)
	for q, want := range map[string]string{
		"colour=red": "unknown filter",
		"from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z": "wrong way round",
		"limit=0":        "limit",
		"limit=5000":     "limit",
		"limit=ten":      "limit",
		"from=yesterday": "from must be a time",
		"outcome=maybe":  "outcome",
		"actor=robert%27)%3B%20DROP%20TABLE%20x%3B--": "identifier",
		"cursor=abc":        "cursor",
		"action=a&action=b": "more than once",
	} {
		resp, body := do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/audit/events?"+strings.ReplaceAll(q, " ", "%20"), "")
		if resp.StatusCode != 400 || !strings.Contains(body, want) || !strings.Contains(body, `"code":"invalid"`) {
			t.Errorf("%s: %d %s; want 400 mentioning %q", q, resp.StatusCode, body, want)
		}
	}
}

func TestAUD04_ExportAsJSONLinesAndSyslog(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	admin := ts.signIn(t, authz.OrgAdmin)
	do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/studies", "")
	resp, body := do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/audit/export?format=jsonl", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("jsonl export: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev["action"] == nil {
			t.Errorf("line %q is not an event", l)
		}
	}
	if !strings.Contains(body, `"action":"study.list"`) {
		t.Errorf("export lacks the study.list event:\n%s", body)
	}
	resp, body = do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/audit/export?format=syslog&action=study.list", "")
	if resp.StatusCode != 200 {
		t.Fatalf("syslog export: %d", resp.StatusCode)
	}
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		if !strings.HasPrefix(l, "<109>1 ") || !strings.Contains(l, " custodia - study.list [custodia@32473 ") {
			t.Errorf("not an RFC 5424 line: %q", l)
		}
	}
	if resp, _ := do(t, admin, "GET", ts.URL+"/api/v1/orgs/demo/audit/export?format=xml", ""); resp.StatusCode != 400 {
		t.Errorf("unknown format: %d, want 400", resp.StatusCode)
	}
}

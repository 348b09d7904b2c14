package web_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
)

// demoPlaces are the demo organization and its studies by name.
type demoPlaces struct {
	org     orgs.Organization
	studies map[string]orgs.Study
}

func places(t *testing.T, srv *browsertest.Server) demoPlaces {
	t.Helper()
	ctx := context.Background()
	org, err := orgs.OrganizationBySlug(ctx, srv.Instance.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	list, err := orgs.Studies(ctx, srv.Instance.Clinical, org.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := demoPlaces{org: org, studies: map[string]orgs.Study{}}
	for _, st := range list {
		p.studies[st.Name] = st
	}
	return p
}

// accountOf is the account id of a demo role.
func accountOf(t *testing.T, srv *browsertest.Server, role authz.Role) string {
	t.Helper()
	acc, err := accounts.ByEmail(context.Background(), srv.Instance.Clinical, srv.Logins[role].Email)
	if err != nil {
		t.Fatal(err)
	}
	return acc.ID
}

// appendEvents writes events to the trail as the work that did them would.
func appendEvents(t *testing.T, db *sqldb.DB, evs ...audit.Event) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		for _, ev := range evs {
			if _, err := audit.Append(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A monitor of the demo study reads that study's trail on the page, by
// default and by choice, and never an event of another study; naming
// another study answers as a page that does not exist, for the search and
// for the export (AUD-04, ACL-02).
func TestAUD04_MonitorPageShowsOnlyTheirStudy(t *testing.T) {
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		p := places(t, srv)
		mine, theirs := ids.New(), ids.New()
		appendEvents(t, srv.Instance.Clinical,
			audit.Event{OrgID: p.org.ID, StudyID: p.studies["Demo Study"].ID, Action: "site.read", Outcome: audit.Success, ObjectType: "site", ObjectID: mine},
			audit.Event{OrgID: p.org.ID, StudyID: p.studies["Demo Registry"].ID, Action: "site.read", Outcome: audit.Success, ObjectType: "site", ObjectID: theirs},
		)
		monitor := signInHTTP(t, srv, authz.Monitor)
		for _, path := range []string{"/orgs/demo/audit", "/orgs/demo/audit?study=" + p.studies["Demo Study"].ID + "&action=site."} {
			a := request(t, monitor, "GET", srv.URL+path, nil, nil)
			if a.status != http.StatusOK || !strings.Contains(a.body, mine) || strings.Contains(a.body, theirs) {
				t.Errorf("monitor GET %s: %d, shows own study's event %v, the registry's %v",
					path, a.status, strings.Contains(a.body, mine), strings.Contains(a.body, theirs))
			}
			if strings.Contains(a.body, "Every study") || strings.Contains(a.body, "Demo Registry") {
				t.Errorf("monitor GET %s offers studies that are not theirs", path)
			}
		}
		for _, path := range []string{
			"/orgs/demo/audit?study=" + p.studies["Demo Registry"].ID,
			"/orgs/demo/audit/export?study=" + p.studies["Demo Registry"].ID,
			"/orgs/other/audit",
		} {
			a := request(t, monitor, "GET", srv.URL+path, nil, nil)
			if a.status != http.StatusNotFound || strings.Contains(a.body, theirs) {
				t.Errorf("monitor GET %s: %d, want 404 and nothing of the registry", path, a.status)
			}
		}
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		a := request(t, admin, "GET", srv.URL+"/orgs/demo/audit?action=site.", nil, nil)
		if a.status != http.StatusOK || !strings.Contains(a.body, mine) || !strings.Contains(a.body, theirs) {
			t.Errorf("admin sees the whole organization's trail: %d", a.status)
		}
		for _, role := range []authz.Role{authz.OrgManager, authz.DataManager, authz.Participant} {
			c := signInHTTP(t, srv, role)
			if a := request(t, c, "GET", srv.URL+"/orgs/demo/audit", nil, nil); a.status != http.StatusNotFound {
				t.Errorf("%s reads the trail page: %d, want 404", role, a.status)
			}
		}
	})
}

// A filter the trail refuses shows the API's message, and nothing of the
// trail (AUD-04, WEB-05).
func TestAUD04_TrailPageShowsTheAPIsMessageForBadFilters(t *testing.T) {
	srv := browsertest.StartServer(t, browsertest.Options{})
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	cases := []struct {
		query url.Values
		msg   string
	}{
		{url.Values{"outcome": {"maybe"}}, "outcome must be success, failure or denied"},
		{url.Values{"actor": {"bob"}}, "actor must be an identifier (26 characters a-z, 2-7)"},
		{url.Values{"from": {"yesterday"}}, "from must be a time like 2026-01-31T12:00:00Z"},
		{url.Values{"from": {"2026-02-01T00:00"}, "to": {"2026-01-01T00:00"}}, "the time range is empty or the wrong way round (from must be before to)"},
		{url.Values{"limit": {"5000"}}, "limit must be between 1 and 1000"},
		{url.Values{"cursor": {"12-notours"}}, "cursor is not one this server gave out"},
		{url.Values{"action": {"<b>AUTH</b>"}}, "action must be 1-64 characters a-z, 0-9, &#39;.&#39;, &#39;_&#39; or &#39;-&#39;"},
	}
	for _, c := range cases {
		query, msg := c.query.Encode(), c.msg
		a := request(t, admin, "GET", srv.URL+"/orgs/demo/audit?"+query, nil, nil)
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, `id="error">`+msg+`<`) {
			t.Errorf("%s: %d, want 400 with %q\n%s", query, a.status, msg, a.body)
		}
		if strings.Contains(a.body, `id="trail"`) || strings.Contains(a.body, "export-jsonl") || strings.Contains(a.body, "<b>AUTH") {
			t.Errorf("%s: the page shows more than the message", query)
		}
	}
}

// Exporting the trail from the page needs a recent confirmation (ACL-09):
// a stale one leads to the confirmation page, which leads back to the
// trail page; then the download has the filtered events as JSON lines or
// syslog lines (AUD-04).
func TestAUD04_PageExportAsksForConfirmationThenDownloads(t *testing.T) {
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		p := places(t, srv)
		ctx := context.Background()
		for range 3 {
			appendEvents(t, srv.Instance.Clinical, audit.Event{OrgID: p.org.ID, StudyID: p.studies["Demo Study"].ID, Action: "site.read", Outcome: audit.Success})
		}
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		stale := time.Now().Add(-6 * time.Minute).UnixMicro()
		if _, err := srv.Instance.Clinical.ExecContext(ctx, `UPDATE sessions SET confirmed_at = $1`, stale); err != nil {
			t.Fatal(err)
		}
		page := request(t, admin, "GET", srv.URL+"/orgs/demo/audit?action=site.read", nil, nil)
		if page.status != 200 || !strings.Contains(page.body, "confirm it is you first") {
			t.Errorf("the trail page does not say the export asks for a confirmation: %d", page.status)
		}
		export := srv.URL + "/orgs/demo/audit/export?format=jsonl&action=site.read"
		if !strings.Contains(page.body, `href="/orgs/demo/audit/export?action=site.read&amp;format=jsonl"`) {
			t.Errorf("no export link for the search")
		}
		a := request(t, admin, "GET", export, nil, nil)
		if a.status != http.StatusForbidden || !strings.Contains(a.body, `name="next" value="/orgs/demo/audit"`) || strings.Contains(a.body, `"site.read"`) {
			t.Fatalf("stale export: %d\n%s", a.status, a.body)
		}
		a = request(t, admin, "POST", srv.URL+"/confirm",
			url.Values{"password": {srv.Logins[authz.OrgAdmin].Password}, "next": {"/orgs/demo/audit"}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/audit?done=confirmed" {
			t.Fatalf("confirm: %d %s", a.status, a.header.Get("Location"))
		}
		a = request(t, admin, "GET", export, nil, nil)
		if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("export after confirming: %d %v", a.status, a.header)
		}
		lines := strings.Split(strings.TrimSpace(a.body), "\n")
		if len(lines) != 3 {
			t.Fatalf("export has %d lines, want 3:\n%s", len(lines), a.body)
		}
		for _, l := range lines {
			var ev audit.Event
			if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Action != "site.read" {
				t.Errorf("export line %q: %v", l, err)
			}
		}
		a = request(t, admin, "GET", srv.URL+"/orgs/demo/audit/export?format=syslog&action=site.read", nil, nil)
		if a.status != 200 || strings.Count(a.body, "<109>1 ") != 3 {
			t.Errorf("syslog export: %d\n%s", a.status, a.body)
		}
		if a := request(t, admin, "GET", srv.URL+"/orgs/demo/audit/export?format=csv", nil, nil); a.status != http.StatusBadRequest {
			t.Errorf("export as csv: %d, want 400", a.status)
		}
		var n int
		if err := srv.Instance.Clinical.QueryRowContext(ctx,
			`SELECT count(*) FROM audit_events WHERE action = 'audit.export' AND outcome = 'denied'`).Scan(&n); err != nil || n != 1 {
			t.Errorf("refused exports on the trail: %d, %v; want 1", n, err)
		}
	})
}

// An administrator narrows the trail on the page to one action and a page
// size, pages forward by the cursor to the end and back to the newest, and
// narrows to one person from a row (AUD-04).
func TestAUD04_BrowserAdminFiltersTrailAndPagesForward(t *testing.T) {
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		b := browsertest.Start(t, browsertest.Options{Dialect: d})
		p := places(t, b.Server)
		monitorID := accountOf(t, b.Server, authz.Monitor)
		var evs []audit.Event
		for i := range 30 {
			actor := monitorID
			if i%3 == 0 {
				actor = accountOf(t, b.Server, authz.DataManager)
			}
			evs = append(evs, audit.Event{OrgID: p.org.ID, ActorAccount: actor, ActorRole: "monitor", RemoteAddr: "198.51.100.7",
				StudyID: p.studies["Demo Study"].ID, Action: "site.read", Outcome: audit.Success})
		}
		appendEvents(t, b.Server.Instance.Clinical, evs...)

		ctx := b.Ctx
		admin := b.Server.Logins[authz.OrgAdmin]
		signIn(t, ctx, b.BaseURL, admin.Email, admin.Password)
		do(t, ctx, click(`a[href="/orgs/demo/audit"]`))
		arrive(t, ctx, "#trail-filter")
		do(t, ctx, typeInto("#action", "site."), typeInto("#limit", "12"), click("#search"))
		arriveAt(t, ctx, "limit=12", "#trail")
		rows := func() int { return eval[int](t, ctx, `document.querySelectorAll("#trail tbody tr").length`) }
		if n := rows(); n != 12 {
			t.Fatalf("first page: %d rows, want 12", n)
		}
		if got := eval[string](t, ctx, `[...document.querySelectorAll("#trail .action")].map(a => a.textContent).filter(s => s !== "site.read").join()`); got != "" {
			t.Errorf("the filter let through %q", got)
		}
		if eval[string](t, ctx, `document.getElementById("action").value`) != "site." {
			t.Error("the form forgot the filter")
		}
		do(t, ctx, click("#next-page"))
		arriveAt(t, ctx, "cursor=", "#first-page")
		if n := rows(); n != 12 {
			t.Fatalf("second page: %d rows, want 12", n)
		}
		last := eval[string](t, ctx, `location.search`)
		do(t, ctx, click("#next-page"))
		arriveAway(t, ctx, last, "#first-page")
		if n := rows(); n != 6 {
			t.Fatalf("last page: %d rows, want 6", n)
		}
		if eval[int](t, ctx, `document.querySelectorAll("#next-page").length`) != 0 {
			t.Error("the last page offers a next page")
		}
		do(t, ctx, click("#first-page"))
		arriveAway(t, ctx, "cursor=", "#next-page")
		if n := rows(); n != 12 {
			t.Errorf("back at the newest: %d rows, want 12", n)
		}

		// One person's events: follow the name of a row's actor.
		do(t, ctx, click(`#trail a.actor[href*="actor=`+monitorID+`"]`))
		arriveAt(t, ctx, "actor=", "#trail")
		if got := eval[string](t, ctx, `document.getElementById("actor").value`); got != monitorID {
			t.Errorf("actor filter %q, want the monitor's id", got)
		}
		if got := eval[string](t, ctx, `[...new Set([...document.querySelectorAll("#trail .actor")].map(a => a.textContent))].join()`); got != "Demo monitor" {
			t.Errorf("people on the narrowed page: %q", got)
		}
		if n := rows(); n != 12 {
			t.Errorf("narrowed page: %d rows, want 12 of the monitor's 20", n)
		}
	})
}

// arriveAt waits for a page whose query holds part and which has one of
// the selectors: the page a link or form leads to, not the one it left.
func arriveAt(t *testing.T, ctx context.Context, part, selectors string) {
	t.Helper()
	waitFor(t, ctx, `location.search.includes(`+quote(part)+`)`, selectors)
}

// arriveAway waits for a page whose query no longer holds part.
func arriveAway(t *testing.T, ctx context.Context, part, selectors string) {
	t.Helper()
	waitFor(t, ctx, `!location.search.includes(`+quote(part)+`)`, selectors)
}

func waitFor(t *testing.T, ctx context.Context, cond, selectors string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond+` && document.readyState === "complete" && document.querySelector(`+quote(selectors)+`) !== null`))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			t.Fatalf("waiting for %s and %s at %s: %v", cond, selectors, loc, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

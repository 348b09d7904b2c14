package web_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
			if _, err := audit.Append(ctx, tx, nil, ev); err != nil {
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
	t.Parallel()
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
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	cases := []struct {
		query url.Values
		msg   string
	}{
		{url.Values{"outcome": {"maybe"}}, "outcome must be success, failure or denied"},
		{url.Values{"actor": {"bob"}}, "actor must be an e-mail address or an identifier (26 characters a-z, 2-7)"},
		{url.Values{"actor": {"bob@clinic.example"}}, "Search for a person by e-mail address with the form: an address in a link stays in browser histories and logs."},
		{url.Values{"from": {"yesterday"}}, "from must be a time like 2026-01-31T12:00:00Z"},
		{url.Values{"from": {"2026-02-01T00:00"}, "to": {"2026-01-01T00:00"}}, "the time range is empty or the wrong way round (from must be before to)"},
		{url.Values{"limit": {"5000"}}, "limit must be between 1 and 1000"},
		{url.Values{"cursor": {"12-notours"}}, "cursor is not one this server gave out"},
		{url.Values{"action": {"<b>AUTH</b>"}}, "action must be 1-64 characters a-z, 0-9, &#39;.&#39;, &#39;_&#39; or &#39;-&#39;"},
		{url.Values{"actr": {"x"}}, "unknown filter &#34;actr&#34; (known: actor, participant, study, action, outcome, security, from, to, limit, cursor)"},
		{url.Values{"action": {"auth.", "site."}}, "filter &#34;action&#34; given more than once"},
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
	t.Parallel()
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
		if a.status != http.StatusForbidden || !strings.Contains(a.body, `name="next" value="/orgs/demo/audit?action=site.read"`) || strings.Contains(a.body, `"site.read"`) {
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
	t.Parallel()
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

// enrolOutside gives another organization an account, which the demo
// organization never had a role for.
func enrolOutside(t *testing.T, srv *browsertest.Server, email string) accounts.Account {
	t.Helper()
	ctx := context.Background()
	var acc accounts.Account
	err := srv.Instance.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		o, err := orgs.CreateOrganization(ctx, tx, "Elsewhere Clinic", "elsewhere")
		if err != nil {
			return err
		}
		acc, _, err = accounts.Enrol(ctx, tx, email, "Elsewhere admin", authz.Assignment{OrgID: o.ID, Role: authz.OrgAdmin})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// idleLeft is the part of a page that changes from one second to the next.
var idleLeft = regexp.MustCompile(`data-idle-left="\d+"`)

// The person filter takes an e-mail address, in any case, as well as an
// account id: a member who holds a role, a former member, and anyone the
// trail names as having acted here (another organization's admin refused
// here) are found. The address of an account that never came near the
// organization finds nothing, and its page is the page of an address no
// account has. The trail records the account searched for, never the
// address (AUD-04).
func TestAUD04_TrailPersonFilterTakesAMembersEmail(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		p := places(t, srv)
		ctx := context.Background()
		monitorID, managerID := accountOf(t, srv, authz.Monitor), accountOf(t, srv, authz.DataManager)
		outsider := enrolOutside(t, srv, "visitor@elsewhere.example")
		var former, stranger accounts.Account
		if err := srv.Instance.Clinical.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if stranger, err = accounts.Create(ctx, tx, "stranger@elsewhere.example", "Stranger"); err != nil {
				return err
			}
			former, err = accounts.Create(ctx, tx, "former@demo.example", "Former monitor")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		study := p.studies["Demo Study"].ID
		mark := map[string]string{"monitor": ids.New(), "manager": ids.New(), "former": ids.New(), "outsider": ids.New(), "unlock": ids.New()}
		appendEvents(t, srv.Instance.Clinical,
			audit.Event{OrgID: p.org.ID, ActorAccount: monitorID, ActorRole: "monitor", StudyID: study, Action: "site.read", Outcome: audit.Success, ObjectType: "site", ObjectID: mark["monitor"]},
			audit.Event{OrgID: p.org.ID, ActorAccount: managerID, ActorRole: "data_manager", StudyID: study, Action: "site.read", Outcome: audit.Success, ObjectType: "site", ObjectID: mark["manager"]},
			// A monitor whose role was taken away since.
			audit.Event{OrgID: p.org.ID, ActorAccount: former.ID, ActorRole: "monitor", StudyID: study, Action: "site.read", Outcome: audit.Success, ObjectType: "site", ObjectID: mark["former"]},
			// Another organization's admin: refused here, and unlocking
			// an account that is in both organizations.
			audit.Event{OrgID: p.org.ID, ActorAccount: outsider.ID, StudyID: study, Action: "site.read", Outcome: audit.Denied, ObjectType: "site", ObjectID: mark["outsider"]},
			audit.Event{OrgID: p.org.ID, ActorAccount: outsider.ID, Action: "account.unlock", Outcome: audit.Success, Security: true, ObjectType: "account", ObjectID: mark["unlock"]},
		)
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		// The form posts the person, so an address stays out of the URL
		// (ASVS V14.2.1); an account id leads on to the page's address.
		search := func(actor string) answer {
			t.Helper()
			a := request(t, admin, "POST", srv.URL+"/orgs/demo/audit", url.Values{"actor": {actor}}, nil)
			if a.status == http.StatusSeeOther {
				if loc := a.header.Get("Location"); strings.Contains(actor, "@") || loc != "/orgs/demo/audit?actor="+actor {
					t.Errorf("actor=%s: on to %q", actor, loc)
				}
				a = request(t, admin, "GET", srv.URL+a.header.Get("Location"), nil, nil)
			}
			if strings.Contains(actor, "@") && a.status == http.StatusOK && strings.Contains(a.body, url.QueryEscape(actor)) {
				t.Errorf("actor=%s: a link of the page names the address", actor)
			}
			return a
		}
		shows := func(body string) []string {
			var out []string
			for who, id := range mark {
				if strings.Contains(body, id) {
					out = append(out, who)
				}
			}
			slices.Sort(out)
			return out
		}
		for _, c := range []struct {
			actor string
			want  []string
		}{
			{strings.ToUpper(srv.Logins[authz.Monitor].Email), []string{"monitor"}},
			{srv.Logins[authz.DataManager].Email, []string{"manager"}},
			{monitorID, []string{"monitor"}},
			{"Former@Demo.example", []string{"former"}},
			{outsider.Email, []string{"outsider", "unlock"}},
			{stranger.Email, nil},
			{"nobody@elsewhere.example", nil},
		} {
			a := search(c.actor)
			if got := shows(a.body); a.status != http.StatusOK || !slices.Equal(got, c.want) {
				t.Errorf("actor=%s: %d, shows the events of %v, want %v", c.actor, a.status, got, c.want)
			}
			if !strings.Contains(a.body, `id="actor" name="actor" type="text" maxlength="254" value="`+c.actor+`"`) {
				t.Errorf("actor=%s: the form forgot the person", c.actor)
			}
		}
		a := search(srv.Logins[authz.Monitor].Email)
		if !strings.Contains(a.body, `href="/orgs/demo/audit?actor=`+monitorID+`" class="actor"`) {
			t.Errorf("the monitor's name does not link to the filter by account id")
		}

		// A stranger and an unknown address: the same page, but for the
		// address typed.
		normal := func(a answer, email string) string {
			body := idleLeft.ReplaceAllString(a.body, "")
			return strings.NewReplacer(email, "ADDRESS", url.QueryEscape(email), "ADDRESS").Replace(body)
		}
		outside, unknown := search(stranger.Email), search("nobody@elsewhere.example")
		if o, u := normal(outside, stranger.Email), normal(unknown, "nobody@elsewhere.example"); o != u || !strings.Contains(o, `id="no-events"`) {
			t.Errorf("an address of an account from elsewhere and one of none answer differently:\n%s\n----\n%s", o, u)
		}

		// The API's search takes the same person, in the body; in a URL an
		// address is refused.
		if a := request(t, admin, "GET", srv.URL+"/api/v1/orgs/demo/audit/events?"+url.Values{"actor": {outsider.Email}}.Encode(), nil, nil); a.status != http.StatusBadRequest ||
			!strings.Contains(a.body, "does not go in a URL") {
			t.Errorf("API search with an address in the URL: %d %s", a.status, a.body)
		}
		if a := request(t, admin, "GET", srv.URL+"/orgs/demo/audit?"+url.Values{"actor": {outsider.Email}}.Encode(), nil, nil); a.status != http.StatusBadRequest || strings.Contains(a.body, mark["outsider"]) {
			t.Errorf("page with an address in the URL: %d", a.status)
		}
		for actor, want := range map[string]int{srv.Logins[authz.Monitor].Email: 1, outsider.Email: 1, stranger.Email: 0, "nobody@elsewhere.example": 0} {
			a := postJSON(t, admin, srv.URL+"/api/v1/orgs/demo/audit/search", map[string]string{"actor": actor, "action": "site.read"})
			var got struct{ Events []audit.Event }
			if err := json.Unmarshal([]byte(a.body), &got); a.status != http.StatusOK || err != nil || len(got.Events) != want {
				t.Errorf("API actor=%s: %d, %d events, want %d: %v\n%s", actor, a.status, len(got.Events), want, err, a.body)
			}
		}

		var bodies []string
		rows, err := srv.Instance.Clinical.QueryContext(ctx, `SELECT body FROM audit_events WHERE action LIKE 'audit.%'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b string
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, b)
		}
		rows.Close()
		all := strings.ToLower(strings.Join(bodies, "\n"))
		for _, email := range []string{srv.Logins[authz.Monitor].Email, outsider.Email, stranger.Email, "nobody@elsewhere.example", "former@demo.example"} {
			if strings.Contains(all, strings.ToLower(email)) {
				t.Errorf("the trail's searches record the address %s", email)
			}
		}
		if strings.Contains(all, stranger.ID) {
			t.Errorf("the trail's searches record an account that never came near the organization")
		}
		if !strings.Contains(all, "actor="+monitorID) {
			t.Errorf("the trail's searches do not record the member searched for")
		}
	})
}

// A filtered search keeps its filter through the confirmation an export
// asks for (ACL-09): the export links carry it, the confirmation page
// returns to the same search, and the download then holds only the
// filtered events (AUD-04).
func TestAUD04_TrailFilterSurvivesConfirmationIntoExport(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		p := places(t, srv)
		ctx := context.Background()
		monitorID, managerID := accountOf(t, srv, authz.Monitor), accountOf(t, srv, authz.DataManager)
		study := p.studies["Demo Study"].ID
		var evs []audit.Event
		for i := range 9 {
			ev := audit.Event{OrgID: p.org.ID, ActorAccount: monitorID, ActorRole: "monitor", StudyID: study, Action: "site.read", Outcome: audit.Success}
			switch i % 3 {
			case 1:
				ev.ActorAccount, ev.ActorRole = managerID, "data_manager"
			case 2:
				ev.Action = "study.read"
			}
			evs = append(evs, ev)
		}
		appendEvents(t, srv.Instance.Clinical, evs...)
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		stale := time.Now().Add(-6 * time.Minute).UnixMicro()
		if _, err := srv.Instance.Clinical.ExecContext(ctx, `UPDATE sessions SET confirmed_at = $1`, stale); err != nil {
			t.Fatal(err)
		}
		email := srv.Logins[authz.Monitor].Email
		// The form posts the address; the page's links name the account.
		posted := url.Values{"actor": {email}, "action": {"site.read"}, "study": {study}}
		filter := with(posted, "actor", monitorID)
		search := "/orgs/demo/audit?" + filter.Encode()
		exportLink := regexp.MustCompile(`href="(/orgs/demo/audit/export\?[^"]*format=jsonl[^"]*)" id="export-jsonl"`)

		page := request(t, admin, "POST", srv.URL+"/orgs/demo/audit", posted, nil)
		m := exportLink.FindStringSubmatch(page.body)
		if page.status != http.StatusOK || m == nil || !strings.Contains(page.body, "confirm it is you first") {
			t.Fatalf("search page: %d, export link %q", page.status, m)
		}
		export := html.UnescapeString(m[1])
		if u, _ := url.Parse(export); !sameQuery(u.Query(), with(filter, "format", "jsonl")) {
			t.Fatalf("export link %s does not carry the filter %v", export, filter)
		}
		a := request(t, admin, "GET", srv.URL+export, nil, nil)
		next := regexp.MustCompile(`name="next" value="([^"]*)"`).FindStringSubmatch(a.body)
		if a.status != http.StatusForbidden || next == nil || strings.Contains(a.body, `"site.read"`) {
			t.Fatalf("stale export: %d, next %q", a.status, next)
		}
		back := html.UnescapeString(next[1])
		if u, err := url.Parse(back); err != nil || u.Path != "/orgs/demo/audit" || u.Host != "" || u.Scheme != "" || !sameQuery(u.Query(), filter) {
			t.Fatalf("the confirmation leads back to %q, want the search %s", back, search)
		}

		a = request(t, admin, "POST", srv.URL+"/confirm", url.Values{"password": {srv.Logins[authz.OrgAdmin].Password}, "next": {back}}, nil)
		if a.status != http.StatusSeeOther {
			t.Fatalf("confirm: %d %s", a.status, a.header.Get("Location"))
		}
		returned := a.header.Get("Location")
		if u, err := url.Parse(returned); err != nil || u.Path != "/orgs/demo/audit" || u.Host != "" || !sameQuery(without(u.Query(), "done"), filter) {
			t.Fatalf("after confirming: back at %q, want the search %s", returned, search)
		}
		page = request(t, admin, "GET", srv.URL+returned, nil, nil)
		m = exportLink.FindStringSubmatch(page.body)
		if page.status != http.StatusOK || m == nil || strings.Contains(page.body, "confirm it is you first") {
			t.Fatalf("back on the search: %d, export link %q", page.status, m)
		}
		a = request(t, admin, "GET", srv.URL+html.UnescapeString(m[1]), nil, nil)
		lines := strings.Split(strings.TrimSpace(a.body), "\n")
		if a.status != http.StatusOK || len(lines) != 3 {
			t.Fatalf("export after confirming: %d, %d lines, want the monitor's 3 reads:\n%s", a.status, len(lines), a.body)
		}
		for _, l := range lines {
			var ev audit.Event
			if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.ActorAccount != monitorID || ev.Action != "site.read" {
				t.Errorf("exported %q (%v), want only the monitor's site.read", l, err)
			}
		}
	})
}

func sameQuery(a, b url.Values) bool { return a.Encode() == b.Encode() }

// with returns q with k set to v; without, with k removed.
func with(q url.Values, k, v string) url.Values {
	out := url.Values{}
	for key, vs := range q {
		out[key] = slices.Clone(vs)
	}
	out.Set(k, v)
	return out
}

func without(q url.Values, k string) url.Values {
	out := with(q, k, "")
	out.Del(k)
	return out
}

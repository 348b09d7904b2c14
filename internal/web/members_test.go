package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
)

// demoOrg is the demo organization of a test server, with the sites of its
// study.
type demoOrg struct {
	srv          *browsertest.Server
	org          orgs.Organization
	study        orgs.Study
	north, south orgs.Site
	registry     orgs.Study
}

func demoOf(t *testing.T, srv *browsertest.Server) demoOrg {
	t.Helper()
	ctx := context.Background()
	db := srv.Instance.Clinical
	o, err := orgs.OrganizationBySlug(ctx, db, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	f := demoOrg{srv: srv, org: o}
	studies, err := orgs.Studies(ctx, db, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range studies {
		switch st.Name {
		case "Demo Study":
			f.study = st
		case "Demo Registry":
			f.registry = st
		}
	}
	sites, err := orgs.Sites(ctx, db, o.ID, f.study.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sites {
		switch s.Name {
		case "North Clinic":
			f.north = s
		case "South Clinic":
			f.south = s
		}
	}
	if f.study.ID == "" || f.registry.ID == "" || f.north.ID == "" || f.south.ID == "" {
		t.Fatalf("demo organization lacks its study, registry or sites: %+v", f)
	}
	return f
}

func (f demoOrg) account(t *testing.T, role authz.Role) accounts.Account {
	t.Helper()
	acc, err := accounts.ByEmail(context.Background(), f.srv.Instance.Clinical, f.srv.Logins[role].Email)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// holdings are the roles an account holds in the demo organization, as
// "role@level" with the scope's id, in a stable order.
func (f demoOrg) holdings(t *testing.T, accountID string) []authz.Assignment {
	t.Helper()
	as, err := authz.AssignmentsOf(context.Background(), f.srv.Instance.Clinical, f.org.ID, accountID)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func holds(as []authz.Assignment, role authz.Role, siteID string) (authz.Assignment, bool) {
	i := slices.IndexFunc(as, func(a authz.Assignment) bool { return a.Role == role && a.SiteID == siteID })
	if i < 0 {
		return authz.Assignment{}, false
	}
	return as[i], true
}

// ageConfirmations makes every session's last confirmation of identity
// older than the step-up window (ACL-09), as six minutes would.
func ageConfirmations(t *testing.T, db *sqldb.DB) {
	t.Helper()
	stale := time.Now().Add(-6 * time.Minute).UnixMicro()
	if _, err := db.ExecContext(context.Background(), `UPDATE sessions SET confirmed_at = $1`, stale); err != nil {
		t.Fatal(err)
	}
}

var optionPattern = regexp.MustCompile(`<option value="([^"]*)"`)

// selectOptions lists the values of the options of the select with id.
func selectOptions(body, id string) []string {
	_, rest, ok := strings.Cut(body, `<select id="`+id+`"`)
	if !ok {
		return nil
	}
	rest, _, _ = strings.Cut(rest, "</select>")
	var out []string
	for _, m := range optionPattern.FindAllStringSubmatch(rest, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

// An organization admin sees the people of the organization with their
// roles and where they hold them, and gives and takes away roles at
// organization, study and site level (ACL-02); a refused change shows the
// service's message and changes nothing.
func TestACL02_MembersPageAssignsAndRevokesRoles(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		f := demoOf(t, srv)
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		member := f.account(t, authz.Participant)
		page := srv.URL + "/orgs/demo/members"

		a := request(t, admin, "GET", page, nil, nil)
		if a.status != http.StatusOK {
			t.Fatalf("members page: %d", a.status)
		}
		for role, login := range srv.Logins {
			if !strings.Contains(a.body, login.Email) || !strings.Contains(a.body, `data-role="`+string(role)+`"`) {
				t.Errorf("members page lacks %s (%s)", login.Email, role)
			}
		}
		for _, where := range []string{"the organization", "study Demo Study", "site North Clinic (Demo Study)", "site Community Team (Demo Care Program)"} {
			if !strings.Contains(a.body, where) {
				t.Errorf("members page does not name the scope %q", where)
			}
		}
		// An admin may give every role, anywhere.
		if got := selectOptions(a.body, "role"); len(got) != len(authz.BuiltinRoles()) {
			t.Errorf("admin's role choice %v, want every built-in role", got)
		}
		if got := selectOptions(a.body, "scope"); !slices.Contains(got, "site:"+f.south.ID) || !slices.Contains(got, "study:"+f.registry.ID) || !slices.Contains(got, "") {
			t.Errorf("admin's scope choice %v lacks the organization, a study or a site", got)
		}

		// Give monitor at South Clinic: back on the page with a notice,
		// and held from now on.
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/members/assign",
			url.Values{"account": {member.ID}, "role": {"monitor"}, "scope": {"site:" + f.south.ID}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/members?done=role-assigned" {
			t.Fatalf("assign: %d %q\n%s", a.status, a.header.Get("Location"), a.body)
		}
		given, ok := holds(f.holdings(t, member.ID), authz.Monitor, f.south.ID)
		if !ok {
			t.Fatal("the assignment was not made")
		}
		a = request(t, admin, "GET", page+"?done=role-assigned", nil, nil)
		if !strings.Contains(a.body, "site South Clinic (Demo Study)") || !strings.Contains(a.body, `id="revoke-`+given.ID+`"`) || !strings.Contains(a.body, `id="notice"`) {
			t.Errorf("the page does not show the new assignment with its revoke button and the notice")
		}

		// Refusals: each answered with its message; nothing changes.
		before := f.holdings(t, member.ID)
		for _, c := range []struct {
			form   url.Values
			status int
			says   string
		}{
			{url.Values{"account": {member.ID}, "role": {""}}, 400, "choose a role"},
			{url.Values{"account": {member.ID}, "role": {"monitor"}, "scope": {"planet:mars"}}, 400, "choose where the role applies"},
			{url.Values{"account": {member.ID}, "role": {"org-admin"}, "scope": {"site:" + f.north.ID}}, 400, "held at organization level"},
			{url.Values{"account": {member.ID}, "role": {"no-such-role"}}, 400, "no-such-role"},
			{url.Values{"account": {member.ID}, "role": {"monitor"}, "scope": {"site:" + f.south.ID}}, 409, "holds this role at this scope already"},
		} {
			a := request(t, admin, "POST", srv.URL+"/orgs/demo/members/assign", c.form, nil)
			if a.status != c.status || !strings.Contains(a.body, `id="error"`) || !strings.Contains(html.UnescapeString(a.body), c.says) {
				t.Errorf("assign %v: %d, want %d saying %q\n%s", c.form, a.status, c.status, c.says, errorLine(a.body))
			}
		}
		// A site of another organization, a person who is not a member:
		// not found.
		for _, form := range []url.Values{
			{"account": {member.ID}, "role": {"monitor"}, "scope": {"site:aaaaaaaaaaaaaaaaaaaaaaaaaa"}},
			{"account": {"aaaaaaaaaaaaaaaaaaaaaaaaaa"}, "role": {"monitor"}, "scope": {"site:" + f.south.ID}},
		} {
			if a := request(t, admin, "POST", srv.URL+"/orgs/demo/members/assign", form, nil); a.status != http.StatusNotFound {
				t.Errorf("assign %v: %d, want 404", form, a.status)
			}
		}
		if after := f.holdings(t, member.ID); len(after) != len(before) {
			t.Errorf("refused assignments changed the member's roles: %d before, %d after", len(before), len(after))
		}

		// The last administrator stays.
		self := f.account(t, authz.OrgAdmin)
		own, _ := holds(f.holdings(t, self.ID), authz.OrgAdmin, "")
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/members/"+self.ID+"/roles/"+own.ID+"/revoke", url.Values{}, nil)
		if a.status != http.StatusConflict || !strings.Contains(a.body, "last organization admin") {
			t.Errorf("revoke the last admin: %d %s", a.status, errorLine(a.body))
		}
		if _, ok := holds(f.holdings(t, self.ID), authz.OrgAdmin, ""); !ok {
			t.Fatal("the last organization admin was removed")
		}

		// Take the new role away again.
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/members/"+member.ID+"/roles/"+given.ID+"/revoke", url.Values{}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/members?done=role-revoked" {
			t.Fatalf("revoke: %d %q %s", a.status, a.header.Get("Location"), errorLine(a.body))
		}
		if _, ok := holds(f.holdings(t, member.ID), authz.Monitor, f.south.ID); ok {
			t.Error("the revoked assignment is still held")
		}
		// An assignment id of another member is not found.
		part, _ := holds(f.holdings(t, member.ID), authz.Participant, f.north.ID)
		other := f.account(t, authz.Monitor)
		if a := request(t, admin, "POST", srv.URL+"/orgs/demo/members/"+other.ID+"/roles/"+part.ID+"/revoke", url.Values{}, nil); a.status != http.StatusNotFound {
			t.Errorf("revoke another member's assignment under this one: %d, want 404", a.status)
		}
	})
}

// errorLine is the error paragraph of a page, for a failure message.
func errorLine(body string) string {
	if _, rest, ok := strings.Cut(body, `id="error">`); ok {
		line, _, _ := strings.Cut(rest, "</p>")
		return html.UnescapeString(line)
	}
	return "(no error shown)"
}

// An organization manager sees the people and may give and take only the
// roles whose permissions they hold (authz.CanGrant): the page offers no
// more, and the service refuses the rest with its message (ACL-02, ACL-06).
// Study admins, monitors and another organization's admin find no page
// (404).
func TestACL02_MembersPageOffersOnlyWhatTheSubsetRuleAllows(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	f := demoOf(t, srv)
	manager := signInHTTP(t, srv, authz.OrgManager)
	page := srv.URL + "/orgs/demo/members"

	a := request(t, manager, "GET", page, nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("manager's members page: %d", a.status)
	}
	if got, want := selectOptions(a.body, "role"), []string{"org-manager"}; !slices.Equal(got, want) {
		t.Errorf("manager may give %v, want %v", got, want)
	}
	// Revoke buttons only for what the manager could have given: the
	// organization manager's own role, no other.
	buttons := regexp.MustCompile(`id="revoke-([^"]+)"`).FindAllStringSubmatch(a.body, -1)
	mgr, _ := holds(f.holdings(t, f.account(t, authz.OrgManager).ID), authz.OrgManager, "")
	if len(buttons) != 1 || buttons[0][1] != mgr.ID {
		t.Errorf("manager is offered revoke buttons %v, want only %s", buttons, mgr.ID)
	}

	// What the page does not offer, the service refuses.
	member := f.account(t, authz.Participant)
	before := f.holdings(t, member.ID)
	a = request(t, manager, "POST", srv.URL+"/orgs/demo/members/assign",
		url.Values{"account": {member.ID}, "role": {"monitor"}, "scope": {"site:" + f.north.ID}}, nil)
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "you cannot grant the role monitor here") {
		t.Errorf("manager gives monitor: %d %s", a.status, errorLine(a.body))
	}
	part, _ := holds(before, authz.Participant, f.north.ID)
	a = request(t, manager, "POST", srv.URL+"/orgs/demo/members/"+member.ID+"/roles/"+part.ID+"/revoke", url.Values{}, nil)
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "you cannot remove the role participant here") {
		t.Errorf("manager takes participant: %d %s", a.status, errorLine(a.body))
	}
	if after := f.holdings(t, member.ID); len(after) != len(before) {
		t.Fatalf("refused changes changed the roles: %v → %v", before, after)
	}
	// What it offers goes through.
	carer := f.account(t, authz.CareProvider)
	a = request(t, manager, "POST", srv.URL+"/orgs/demo/members/assign",
		url.Values{"account": {carer.ID}, "role": {"org-manager"}, "scope": {""}}, nil)
	if _, ok := holds(f.holdings(t, carer.ID), authz.OrgManager, ""); a.status != http.StatusSeeOther || !ok {
		t.Errorf("manager gives org-manager: %d %s", a.status, errorLine(a.body))
	}

	// No page for the others.
	for _, role := range []authz.Role{authz.StudyAdmin, authz.Monitor, authz.DataManager, authz.Participant} {
		c := signInHTTP(t, srv, role)
		if a := request(t, c, "GET", page, nil, nil); a.status != http.StatusNotFound {
			t.Errorf("%s GET members: %d, want 404", role, a.status)
		}
		if a := request(t, c, "POST", srv.URL+"/orgs/demo/members/assign",
			url.Values{"account": {member.ID}, "role": {"monitor"}, "scope": {"site:" + f.north.ID}}, nil); a.status != http.StatusNotFound {
			t.Errorf("%s assigns: %d, want 404", role, a.status)
		}
	}
	other := adminOfOtherOrg(t, srv)
	if a := request(t, other, "GET", page, nil, nil); a.status != http.StatusNotFound || strings.Contains(a.body, member.Email) {
		t.Errorf("another organization's admin GET demo members: %d, want 404 without names", a.status)
	}
	if a := request(t, other, "POST", srv.URL+"/orgs/demo/members/"+member.ID+"/roles/"+part.ID+"/revoke", url.Values{}, nil); a.status != http.StatusNotFound {
		t.Errorf("another organization's admin revokes: %d, want 404", a.status)
	}
	if _, ok := holds(f.holdings(t, member.ID), authz.Participant, f.north.ID); !ok {
		t.Fatal("a refused revoke took the role")
	}
}

// A role change without a recent confirmation (ACL-09) leads to the
// confirmation page, which leads back to the page the change came from,
// and to no other site; after it the change goes through.
func TestACL09_MembersPageStepUpReturnsToThePage(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	f := demoOf(t, srv)
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	member := f.account(t, authz.Participant)
	ageConfirmations(t, srv.Instance.Clinical)
	assign := url.Values{"account": {member.ID}, "role": {"monitor"}, "scope": {"site:" + f.south.ID}, "next": {"/orgs/demo/members"}}

	a := request(t, admin, "POST", srv.URL+"/orgs/demo/members/assign", assign, nil)
	if a.status != http.StatusForbidden || !strings.Contains(a.body, `action="/confirm"`) || !strings.Contains(a.body, `name="next" value="/orgs/demo/members"`) {
		t.Fatalf("stale assign: %d, want the confirmation page leading back\n%s", a.status, a.body)
	}
	if _, ok := holds(f.holdings(t, member.ID), authz.Monitor, f.south.ID); ok {
		t.Fatal("an unconfirmed role change was made")
	}
	// A return path to another site is not followed.
	for _, evil := range []string{"https://evil.example/x", "//evil.example/x", "/\\evil.example"} {
		bad := url.Values{"account": {member.ID}, "role": {"monitor"}, "scope": {"site:" + f.south.ID}, "next": {evil}}
		a := request(t, admin, "POST", srv.URL+"/orgs/demo/members/assign", bad, nil)
		if !strings.Contains(a.body, `name="next" value="/"`) {
			t.Errorf("next %q: the confirmation page does not lead to the start page", evil)
		}
	}
	a = request(t, admin, "POST", srv.URL+"/confirm", url.Values{"password": {srv.Logins[authz.OrgAdmin].Password}, "next": {"/orgs/demo/members"}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/members?done=confirmed" {
		t.Fatalf("confirm: %d %q", a.status, a.header.Get("Location"))
	}
	a = request(t, admin, "POST", srv.URL+"/orgs/demo/members/assign", assign, nil)
	if a.status != http.StatusSeeOther {
		t.Fatalf("assign after confirming: %d %s", a.status, errorLine(a.body))
	}
	if _, ok := holds(f.holdings(t, member.ID), authz.Monitor, f.south.ID); !ok {
		t.Fatal("the confirmed role change was not made")
	}
}

// The administration pages' forms are refused from another site (WEB-03),
// and the refusal changes nothing.
func TestWEB03_AdminPagesRefuseCrossSitePosts(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	f := demoOf(t, srv)
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	member := f.account(t, authz.Participant)
	part, _ := holds(f.holdings(t, member.ID), authz.Participant, f.north.ID)
	posts := []struct {
		path string
		form url.Values
	}{
		{"/orgs/demo/members/assign", url.Values{"account": {member.ID}, "role": {"org-admin"}}},
		{"/orgs/demo/members/" + member.ID + "/roles/" + part.ID + "/revoke", url.Values{}},
		{"/orgs/demo/roles", url.Values{"name": {"mallory"}, "level": {"organization"}, "permission": {"audit.read"}}},
		{"/orgs/demo/network", url.Values{"ranges": {"127.0.0.1"}}},
		{"/orgs/demo/network/studies/" + f.study.ID, url.Values{"ranges": {"127.0.0.1"}}},
	}
	for _, p := range posts {
		for _, h := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}} {
			if a := request(t, admin, "POST", srv.URL+p.path, p.form, h); a.status != http.StatusForbidden {
				t.Errorf("cross-site POST %s with %v: %d, want 403", p.path, h, a.status)
			}
		}
	}
	ctx := context.Background()
	if as := f.holdings(t, member.ID); len(as) != 1 || as[0].ID != part.ID {
		t.Errorf("the member's roles changed: %v", as)
	}
	if custom, err := authz.CustomRoles(ctx, srv.Instance.Clinical, f.org.ID); err != nil || len(custom) != 0 {
		t.Errorf("custom roles after the attacks: %v, %v", custom, err)
	}
	a := request(t, admin, "GET", srv.URL+"/orgs/demo/network", nil, nil)
	if strings.Contains(a.body, "127.0.0.1/32") {
		t.Error("a cross-site POST set network ranges")
	}
}

// Names on the members page are text, never markup (WEB-02).
func TestWEB02_MembersPageEscapesNames(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	evil := `"><script>alert(1)</script>`
	if a := request(t, admin, "POST", srv.URL+"/account/name", url.Values{"name": {evil}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("rename: %d", a.status)
	}
	for _, path := range []string{"/orgs/demo/members", "/orgs/demo/roles", "/orgs/demo/network"} {
		a := request(t, admin, "GET", srv.URL+path, nil, nil)
		if a.status != http.StatusOK || strings.Contains(a.body, "<script>alert(1)") {
			t.Errorf("%s: %d, carries the name as markup", path, a.status)
		}
	}
	if a := request(t, admin, "GET", srv.URL+"/orgs/demo/members", nil, nil); !strings.Contains(a.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the members page does not show the name as text")
	}
}

// The members' access page (ASVS V7.4.2, V7.4.5): an administrator sees
// the members, disables one after confirming it is them (the confirmation
// page leads back), which ends the member's session at once, and enables
// them again; an org-manager has no such page.
func TestAUTH10_AccessPageDisablesAndEnablesAMember(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	f := demoOf(t, srv)
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	monitor := signInHTTP(t, srv, authz.Monitor)
	member := f.account(t, authz.Monitor)
	page := request(t, admin, "GET", srv.URL+"/orgs/demo/access", nil, nil)
	if page.status != http.StatusOK || !strings.Contains(page.body, member.Email) ||
		!strings.Contains(page.body, `action="/orgs/demo/access/`+member.ID+`/disable"`) {
		t.Fatalf("access page: %d\n%s", page.status, page.body)
	}
	if a := request(t, signInHTTP(t, srv, authz.OrgManager), "GET", srv.URL+"/orgs/demo/access", nil, nil); a.status == http.StatusOK {
		t.Errorf("an org-manager sees the access page: %d", a.status)
	}
	works := func(c *http.Client) bool {
		t.Helper()
		return request(t, c, "GET", srv.URL+"/account", nil, nil).status == http.StatusOK
	}
	if !works(monitor) {
		t.Fatal("the member's session does not work to begin with")
	}
	ageConfirmations(t, srv.Instance.Clinical)
	disable := url.Values{"next": {"/orgs/demo/access"}}
	a := request(t, admin, "POST", srv.URL+"/orgs/demo/access/"+member.ID+"/disable", disable, nil)
	if a.status != http.StatusForbidden || !strings.Contains(a.body, `action="/confirm"`) {
		t.Fatalf("disable with a stale confirmation: %d, want the confirmation page", a.status)
	}
	if !works(monitor) {
		t.Fatal("an unconfirmed disabling ended the member's session")
	}
	a = request(t, admin, "POST", srv.URL+"/confirm", url.Values{"password": {srv.Logins[authz.OrgAdmin].Password}, "next": {"/orgs/demo/access"}}, nil)
	if a.status != http.StatusSeeOther || !strings.HasPrefix(a.header.Get("Location"), "/orgs/demo/access") {
		t.Fatalf("confirm: %d %q, want back to the access page", a.status, a.header.Get("Location"))
	}
	if a = request(t, admin, "POST", srv.URL+"/orgs/demo/access/"+member.ID+"/disable", disable, nil); a.status != http.StatusSeeOther {
		t.Fatalf("disable after confirming: %d %s", a.status, errorLine(a.body))
	}
	if works(monitor) {
		t.Error("the disabled member's session still works")
	}
	if a = request(t, admin, "POST", srv.URL+"/orgs/demo/access/"+member.ID+"/enable", disable, nil); a.status != http.StatusSeeOther {
		t.Fatalf("enable: %d %s", a.status, errorLine(a.body))
	}
	if !works(signInHTTP(t, srv, authz.Monitor)) {
		t.Error("the enabled member cannot sign in again")
	}
}

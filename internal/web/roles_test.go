package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/sqldb"
)

// An organization admin defines a custom role from the known permissions
// and levels, gives it like any role, and deletes it once no one holds it
// (ACL-03); a bad definition and a role in use are refused with the
// service's message and change nothing.
func TestACL03_RolesPageDefinesAndDeletesCustomRoles(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		f := demoOf(t, srv)
		ctx := context.Background()
		db := srv.Instance.Clinical
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		custom := func() []authz.CustomRole {
			t.Helper()
			rs, err := authz.CustomRoles(ctx, db, f.org.ID)
			if err != nil {
				t.Fatal(err)
			}
			return rs
		}

		a := request(t, admin, "GET", srv.URL+"/orgs/demo/roles", nil, nil)
		if a.status != http.StatusOK || !strings.Contains(a.body, `id="create-role"`) {
			t.Fatalf("roles page: %d, with the form: %v", a.status, strings.Contains(a.body, `id="create-role"`))
		}
		for _, r := range authz.BuiltinRoles() {
			if !strings.Contains(a.body, "<strong>"+string(r)+"</strong>") {
				t.Errorf("roles page lacks the built-in role %s", r)
			}
		}
		for _, act := range authz.Actions() {
			if !strings.Contains(a.body, `name="permission" value="`+string(act)+`"`) {
				t.Errorf("roles page offers no checkbox for %s", act)
			}
		}

		// Bad definitions: refused with the message, the form kept.
		for _, c := range []struct {
			form url.Values
			says string
		}{
			{url.Values{"name": {"Bad Name"}, "level": {"site"}, "permission": {"site.read"}}, "lower-case letters"},
			{url.Values{"name": {"monitor"}, "level": {"site"}, "permission": {"site.read"}}, "name of a built-in role"},
			{url.Values{"name": {"reader"}, "permission": {"site.read"}}, "at least one level"},
			{url.Values{"name": {"reader"}, "level": {"site"}}, "at least one permission"},
			{url.Values{"name": {"reader"}, "level": {"galaxy"}, "permission": {"site.read"}}, "unknown level"},
			{url.Values{"name": {"reader"}, "level": {"site"}, "permission": {"site.read", "root.everything"}}, "unknown permission"},
		} {
			a := request(t, admin, "POST", srv.URL+"/orgs/demo/roles", c.form, nil)
			if a.status != http.StatusBadRequest || !strings.Contains(errorLine(a.body), c.says) {
				t.Errorf("create %v: %d %q, want 400 saying %q", c.form, a.status, errorLine(a.body), c.says)
			}
			if lv := c.form.Get("level"); lv == "site" && !strings.Contains(a.body, `id="level-site" checked`) {
				t.Errorf("create %v: the refused form lost its level", c.form)
			}
		}
		if rs := custom(); len(rs) != 0 {
			t.Fatalf("refused definitions stored roles: %v", rs)
		}

		// A good one.
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/roles",
			url.Values{"name": {"site-reader"}, "level": {"study", "site"}, "permission": {"site.read", "study.read"}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/roles?done=role-created" {
			t.Fatalf("create: %d %q %s", a.status, a.header.Get("Location"), errorLine(a.body))
		}
		rs := custom()
		if len(rs) != 1 || rs[0].Name != "site-reader" || !slices.Equal(rs[0].Permissions, []authz.Action{authz.SiteRead, authz.StudyRead}) {
			t.Fatalf("stored roles %+v", rs)
		}
		role := rs[0]
		a = request(t, admin, "GET", srv.URL+"/orgs/demo/roles?done=role-created", nil, nil)
		if !strings.Contains(a.body, `data-role="site-reader"`) || !strings.Contains(a.body, `id="delete-site-reader"`) {
			t.Error("the roles page does not list the new role with its delete button")
		}
		if a := request(t, admin, "POST", srv.URL+"/orgs/demo/roles", url.Values{"name": {"site-reader"}, "level": {"site"}, "permission": {"site.read"}}, nil); a.status != http.StatusConflict {
			t.Errorf("the same name again: %d %s, want 409", a.status, errorLine(a.body))
		}

		// The people page offers it; given, it cannot be deleted.
		a = request(t, admin, "GET", srv.URL+"/orgs/demo/members", nil, nil)
		if !slices.Contains(selectOptions(a.body, "role"), "site-reader") {
			t.Fatal("the members page does not offer the custom role")
		}
		member := f.account(t, authz.Participant)
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/members/assign",
			url.Values{"account": {member.ID}, "role": {"site-reader"}, "scope": {"site:" + f.south.ID}}, nil)
		if a.status != http.StatusSeeOther {
			t.Fatalf("give the custom role: %d %s", a.status, errorLine(a.body))
		}
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/roles/"+role.ID+"/delete", url.Values{}, nil)
		if a.status != http.StatusConflict || !strings.Contains(html.UnescapeString(a.body), "held by 1 assignment(s)") {
			t.Errorf("delete a role in use: %d %q, want 409 saying it is held", a.status, errorLine(a.body))
		}
		if len(custom()) != 1 {
			t.Fatal("a role in use was deleted")
		}
		given, _ := holds(f.holdings(t, member.ID), "site-reader", f.south.ID)
		if a := request(t, admin, "POST", srv.URL+"/orgs/demo/members/"+member.ID+"/roles/"+given.ID+"/revoke", url.Values{}, nil); a.status != http.StatusSeeOther {
			t.Fatalf("revoke the custom role: %d %s", a.status, errorLine(a.body))
		}
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/roles/"+role.ID+"/delete", url.Values{}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/roles?done=role-deleted" {
			t.Fatalf("delete: %d %q %s", a.status, a.header.Get("Location"), errorLine(a.body))
		}
		if rs := custom(); len(rs) != 0 {
			t.Errorf("roles after the delete: %v", rs)
		}
		if a := request(t, admin, "POST", srv.URL+"/orgs/demo/roles/"+role.ID+"/delete", url.Values{}, nil); a.status != http.StatusNotFound {
			t.Errorf("delete it again: %d, want 404", a.status)
		}
	})
}

// An organization manager reads the roles but defines and deletes none:
// the page offers no form, and the service answers a forged one as for a
// page that does not exist. Other roles and another organization's admin
// find no page.
func TestACL03_RolesPageIsReadOnlyForManagersAndClosedToOthers(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	f := demoOf(t, srv)
	ctx := context.Background()
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	if a := request(t, admin, "POST", srv.URL+"/orgs/demo/roles",
		url.Values{"name": {"kept"}, "level": {"site"}, "permission": {"site.read"}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("create: %d %s", a.status, errorLine(a.body))
	}
	rs, err := authz.CustomRoles(ctx, srv.Instance.Clinical, f.org.ID)
	if err != nil || len(rs) != 1 {
		t.Fatalf("custom roles %v, %v", rs, err)
	}

	manager := signInHTTP(t, srv, authz.OrgManager)
	a := request(t, manager, "GET", srv.URL+"/orgs/demo/roles", nil, nil)
	if a.status != http.StatusOK || !strings.Contains(a.body, `data-role="kept"`) {
		t.Fatalf("manager's roles page: %d, lists the custom role: %v", a.status, strings.Contains(a.body, `data-role="kept"`))
	}
	if strings.Contains(a.body, `id="create-role"`) || strings.Contains(a.body, `id="delete-kept"`) {
		t.Error("the manager is offered to define or delete roles")
	}
	if a := request(t, manager, "POST", srv.URL+"/orgs/demo/roles",
		url.Values{"name": {"sneaky"}, "level": {"organization"}, "permission": {"audit.read"}}, nil); a.status != http.StatusNotFound {
		t.Errorf("manager defines a role: %d, want 404", a.status)
	}
	if a := request(t, manager, "POST", srv.URL+"/orgs/demo/roles/"+rs[0].ID+"/delete", url.Values{}, nil); a.status != http.StatusNotFound {
		t.Errorf("manager deletes a role: %d, want 404", a.status)
	}

	for _, role := range []authz.Role{authz.StudyAdmin, authz.Monitor} {
		c := signInHTTP(t, srv, role)
		if a := request(t, c, "GET", srv.URL+"/orgs/demo/roles", nil, nil); a.status != http.StatusNotFound {
			t.Errorf("%s GET roles: %d, want 404", role, a.status)
		}
		if a := request(t, c, "POST", srv.URL+"/orgs/demo/roles/"+rs[0].ID+"/delete", url.Values{}, nil); a.status != http.StatusNotFound {
			t.Errorf("%s deletes a role: %d, want 404", role, a.status)
		}
	}
	other := adminOfOtherOrg(t, srv)
	if a := request(t, other, "GET", srv.URL+"/orgs/demo/roles", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("another organization's admin GET demo roles: %d, want 404", a.status)
	}
	if a := request(t, other, "POST", srv.URL+"/orgs/other/roles/"+rs[0].ID+"/delete", url.Values{}, nil); a.status != http.StatusNotFound {
		t.Errorf("another organization's admin deletes a demo role through their own: %d, want 404", a.status)
	}
	after, err := authz.CustomRoles(ctx, srv.Instance.Clinical, f.org.ID)
	if err != nil || len(after) != 1 || after[0].ID != rs[0].ID {
		t.Errorf("custom roles after the refusals: %v, %v", after, err)
	}
}

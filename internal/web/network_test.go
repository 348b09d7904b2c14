package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/sqldb"
)

// An organization admin sets the organization's and a study's network
// ranges on one page, one range a line (ACL-07). A range that cannot be
// read, and a list that would shut the admin out, are refused with the
// service's message, shown with the text as typed; nothing changes.
func TestACL07_NetworkPageSetsRangesAndRefusesBadOnes(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		f := demoOf(t, srv)
		ctx := context.Background()
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		policy := func() netpolicy.Policy {
			t.Helper()
			p, err := netpolicy.Load(ctx, srv.Instance.Clinical, f.org.ID)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		page := srv.URL + "/orgs/demo/network"

		a := request(t, admin, "GET", page, nil, nil)
		if a.status != http.StatusOK {
			t.Fatalf("network page: %d", a.status)
		}
		for _, id := range []string{`id="ranges-org"`, `id="ranges-` + f.study.ID + `"`, `id="ranges-` + f.registry.ID + `"`, `id="own-address"`} {
			if !strings.Contains(a.body, id) {
				t.Errorf("network page lacks %s", id)
			}
		}
		if !strings.Contains(a.body, "<code>127.0.0.1</code>") {
			t.Error("the page does not tell the admin their own address")
		}

		for _, c := range []struct {
			path, text, says string
		}{
			{"/orgs/demo/network", "127.0.0.0/8\n10.1.2.3/8", `range 2 ("10.1.2.3/8")`},
			{"/orgs/demo/network", "127.0.0.0/8\nnot-a-range", `range 2 ("not-a-range")`},
			{"/orgs/demo/network", "10.0.0.0/8", "would shut you out"},
			{"/orgs/demo/network/studies/" + f.study.ID, "192.0.2.0/24", "would shut you out"},
		} {
			a := request(t, admin, "POST", srv.URL+c.path, url.Values{"ranges": {c.text}}, nil)
			body := html.UnescapeString(a.body)
			if a.status != http.StatusBadRequest || !strings.Contains(errorLine(a.body), c.says) || !strings.Contains(body, ">"+c.text+"</textarea>") {
				t.Errorf("POST %s %q: %d %q, want 400 saying %q with the text kept", c.path, c.text, a.status, errorLine(a.body), c.says)
			}
		}
		if p := policy(); len(p.Organization()) != 0 || len(p.Study(f.study.ID)) != 0 {
			t.Fatalf("refused ranges were stored: %v, %v", p.Organization(), p.Study(f.study.ID))
		}

		// Good lists, blank lines and spaces aside.
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/network", url.Values{"ranges": {" 10.0.0.0/8\r\n\r\n127.0.0.0/8 \n::1\n"}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/network?done=network-saved" {
			t.Fatalf("save organization ranges: %d %q %s", a.status, a.header.Get("Location"), errorLine(a.body))
		}
		a = request(t, admin, "POST", srv.URL+"/orgs/demo/network/studies/"+f.study.ID, url.Values{"ranges": {"127.0.0.1"}}, nil)
		if a.status != http.StatusSeeOther {
			t.Fatalf("save study ranges: %d %s", a.status, errorLine(a.body))
		}
		p := policy()
		if got := netpolicy.Describe(p.Organization()); got != "10.0.0.0/8 127.0.0.0/8 ::1/128" {
			t.Errorf("organization ranges %q", got)
		}
		if got := netpolicy.Describe(p.Study(f.study.ID)); got != "127.0.0.1/32" {
			t.Errorf("study ranges %q", got)
		}
		a = request(t, admin, "GET", page+"?done=network-saved", nil, nil)
		if !strings.Contains(a.body, "10.0.0.0/8\n127.0.0.0/8\n::1/128</textarea>") || !strings.Contains(a.body, ">127.0.0.1/32</textarea>") {
			t.Errorf("the page does not show the saved ranges\n%s", a.body)
		}
		// A study of another organization, or none: not found.
		if a := request(t, admin, "POST", srv.URL+"/orgs/demo/network/studies/aaaaaaaaaaaaaaaaaaaaaaaaaa", url.Values{"ranges": {""}}, nil); a.status != http.StatusNotFound {
			t.Errorf("ranges of an unknown study: %d, want 404", a.status)
		}
		// An empty list lifts the study's restriction.
		if a := request(t, admin, "POST", srv.URL+"/orgs/demo/network/studies/"+f.study.ID, url.Values{"ranges": {"\n"}}, nil); a.status != http.StatusSeeOther {
			t.Fatalf("lift study ranges: %d %s", a.status, errorLine(a.body))
		}
		if got := policy().Study(f.study.ID); len(got) != 0 {
			t.Errorf("study ranges after lifting: %v", got)
		}
	})
}

// A study admin sets their own study's ranges and sees nothing else of the
// page: not the organization's ranges, not another study's. Managers,
// monitors and another organization's admin find no page (ACL-07, ACL-08).
func TestACL07_NetworkPageShowsOnlyTheScopesOneManages(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	f := demoOf(t, srv)
	ctx := context.Background()
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	if a := request(t, admin, "POST", srv.URL+"/orgs/demo/network", url.Values{"ranges": {"127.0.0.0/8\n198.51.100.0/24"}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("save organization ranges: %d %s", a.status, errorLine(a.body))
	}

	sa := signInHTTP(t, srv, authz.StudyAdmin)
	a := request(t, sa, "GET", srv.URL+"/orgs/demo/network", nil, nil)
	if a.status != http.StatusOK || !strings.Contains(a.body, `id="ranges-`+f.study.ID+`"`) {
		t.Fatalf("study admin's network page: %d", a.status)
	}
	if strings.Contains(a.body, `id="ranges-org"`) || strings.Contains(a.body, "198.51.100.0/24") || strings.Contains(a.body, `id="ranges-`+f.registry.ID+`"`) {
		t.Error("the study admin sees ranges they do not manage")
	}
	if a := request(t, sa, "POST", srv.URL+"/orgs/demo/network/studies/"+f.study.ID, url.Values{"ranges": {"127.0.0.0/8"}}, nil); a.status != http.StatusSeeOther {
		t.Errorf("study admin sets their study's ranges: %d %s", a.status, errorLine(a.body))
	}
	for path, text := range map[string]string{
		"/orgs/demo/network":                          "0.0.0.0/0",
		"/orgs/demo/network/studies/" + f.registry.ID: "127.0.0.0/8",
	} {
		if a := request(t, sa, "POST", srv.URL+path, url.Values{"ranges": {text}}, nil); a.status != http.StatusNotFound {
			t.Errorf("study admin POST %s: %d, want 404", path, a.status)
		}
	}

	for _, role := range []authz.Role{authz.OrgManager, authz.Monitor, authz.DataManager} {
		c := signInHTTP(t, srv, role)
		if a := request(t, c, "GET", srv.URL+"/orgs/demo/network", nil, nil); a.status != http.StatusNotFound {
			t.Errorf("%s GET network: %d, want 404", role, a.status)
		}
		if a := request(t, c, "POST", srv.URL+"/orgs/demo/network", url.Values{"ranges": {""}}, nil); a.status != http.StatusNotFound {
			t.Errorf("%s lifts the organization's ranges: %d, want 404", role, a.status)
		}
	}
	other := adminOfOtherOrg(t, srv)
	if a := request(t, other, "GET", srv.URL+"/orgs/demo/network", nil, nil); a.status != http.StatusNotFound || strings.Contains(a.body, "198.51.100.0/24") {
		t.Errorf("another organization's admin GET demo network: %d, want 404", a.status)
	}
	if a := request(t, other, "POST", srv.URL+"/orgs/demo/network", url.Values{"ranges": {""}}, nil); a.status != http.StatusNotFound {
		t.Errorf("another organization's admin lifts demo's ranges: %d, want 404", a.status)
	}

	p, err := netpolicy.Load(ctx, srv.Instance.Clinical, f.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := netpolicy.Describe(p.Organization()); got != "127.0.0.0/8 198.51.100.0/24" {
		t.Errorf("organization ranges after the refusals: %q", got)
	}
	if got := netpolicy.Describe(p.Study(f.registry.ID)); got != "unrestricted" {
		t.Errorf("registry ranges after the refusals: %q", got)
	}
}

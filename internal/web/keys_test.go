package web_test

import (
	"context"
	"database/sql"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/keys/keyadmin"
	"github.com/custodia/custodia/internal/sqldb"
)

// keyRequests are the organization's key requests as stored.
func (f demoOrg) keyRequests(t *testing.T) []keyadmin.Request {
	t.Helper()
	list, err := keyadmin.List(context.Background(), f.srv.Instance.Clinical, f.org.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// secondOrgAdmin gives the demo organization another administrator,
// signed in through the sign-in form on a client of its own.
func secondOrgAdmin(t *testing.T, f demoOrg) (*http.Client, accounts.Account) {
	t.Helper()
	ctx := context.Background()
	const email, pw = "second-admin@demo.example", "Harbour lantern quiet 4242"
	var acc accounts.Account
	err := f.srv.Instance.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		acc, _, err = accounts.Enrol(ctx, tx, email, "Second Admin", authz.Assignment{OrgID: f.org.ID, Role: authz.OrgAdmin})
		if err != nil {
			return err
		}
		return accounts.SetPassword(ctx, tx, acc, pw, accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, f.srv)
	if a := request(t, c, "POST", f.srv.URL+"/login", url.Values{"email": {email}, "password": {pw}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("sign in the second admin: %d", a.status)
	}
	return c, acc
}

// keyRow is the table row of request id on the keys page, "" if there is
// none.
func keyRow(body, id string) string {
	_, rest, ok := strings.Cut(body, `id="request-`+id+`"`)
	if !ok {
		return ""
	}
	row, _, _ := strings.Cut(rest, "</tr>")
	return html.UnescapeString(row)
}

// formNext is the hidden "next" field of the form posting to action.
func formNext(body, action string) string {
	_, rest, ok := strings.Cut(body, `action="`+action+`"`)
	if !ok {
		return ""
	}
	rest, _, _ = strings.Cut(rest, "</form>")
	_, rest, ok = strings.Cut(rest, `name="next" value="`)
	if !ok {
		return ""
	}
	next, _, _ := strings.Cut(rest, `"`)
	return html.UnescapeString(next)
}

// An organization admin requests a key operation on the keys page; the
// page lists it as pending and offers the requester no approval, which
// the service refuses anyway with its message. A second admin sees the
// Approve button and approves; the page then shows the request approved
// with the ID to give the operator (CRY-08). Bad choices are refused with
// a message; organization managers find no page, and another
// organization's admin may not touch the key-encryption key.
func TestCRY08_KeysPageRequestsAndApprovesWithTwoAdministrators(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		f := demoOf(t, srv)
		admin := signInHTTP(t, srv, authz.OrgAdmin)
		self := f.account(t, authz.OrgAdmin)
		page := srv.URL + "/orgs/demo/keys"

		// The start page leads there.
		if a := request(t, admin, "GET", srv.URL+"/", nil, nil); !strings.Contains(a.body, `href="/orgs/demo/keys"`) {
			t.Error("the admin's start page has no link to the keys page")
		}
		a := request(t, admin, "GET", page, nil, nil)
		if a.status != http.StatusOK || !strings.Contains(a.body, `id="request-key-operation"`) || !strings.Contains(a.body, `id="no-key-requests"`) {
			t.Fatalf("keys page: %d, want the request form and no requests\n%s", a.status, a.body)
		}
		if got := strings.Join(selectOptions(a.body, "provider"), " "); got != "local pkcs11 vault" {
			t.Errorf("provider choice %q", got)
		}
		if !strings.Contains(a.body, "custodia keys rotate --request ID") {
			t.Error("the page does not say how the operator carries a request out")
		}

		// Bad choices: refused with a message, nothing recorded.
		for _, c := range []struct {
			form url.Values
			says string
		}{
			{url.Values{"operation": {"shred-everything"}}, "choose a key operation"},
			{url.Values{}, "choose a key operation"},
			{url.Values{"operation": {"provider-change"}, "provider": {"floppy"}}, `unknown provider "floppy"`},
		} {
			a := request(t, admin, "POST", page, c.form, nil)
			if a.status != http.StatusBadRequest || !strings.Contains(errorLine(a.body), c.says) {
				t.Errorf("request %v: %d %q, want 400 saying %q", c.form, a.status, errorLine(a.body), c.says)
			}
		}
		if list := f.keyRequests(t); len(list) != 0 {
			t.Fatalf("refused requests were recorded: %v", list)
		}

		// The admin requests a rotation of both keys.
		a = request(t, admin, "POST", page, url.Values{"operation": {"rotate-both"}, "next": {"/orgs/demo/keys"}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/keys?done=key-requested" {
			t.Fatalf("request: %d %q %s", a.status, a.header.Get("Location"), errorLine(a.body))
		}
		list := f.keyRequests(t)
		if len(list) != 1 || list[0].Kind != keyadmin.Rotate || !list[0].Params.KEK || !list[0].Params.DataKeys || list[0].RequestedBy != self.ID {
			t.Fatalf("recorded requests %+v, want one rotation of both keys by the admin", list)
		}
		id := list[0].ID
		a = request(t, admin, "GET", page+"?done=key-requested", nil, nil)
		row := keyRow(a.body, id)
		if !strings.Contains(row, "Rotate the key-encryption key and the data keys") || !strings.Contains(row, `class="status">pending<`) ||
			!strings.Contains(row, self.Email) || !strings.Contains(a.body, `id="notice"`) {
			t.Errorf("the page does not list the request as pending with its requester and the notice:\n%s", row)
		}
		if strings.Contains(a.body, `id="approve-`+id+`"`) {
			t.Error("the requester is offered to approve their own request")
		}

		// The requester's approval is refused with the service's message.
		approve := page + "/" + id + "/approve"
		a = request(t, admin, "POST", approve, url.Values{"next": {"/orgs/demo/keys"}}, nil)
		if a.status != http.StatusForbidden || !strings.Contains(errorLine(a.body), "the requester cannot approve it") {
			t.Errorf("own approval: %d %q, want 403 with the message", a.status, errorLine(a.body))
		}
		if f.keyRequests(t)[0].ApprovedBy != "" {
			t.Fatal("the requester's approval was recorded")
		}

		// Those who are not key administrators find no page.
		manager := signInHTTP(t, srv, authz.OrgManager)
		other := adminOfOtherOrg(t, srv)
		for who, c := range map[string]*http.Client{"org-manager": manager, "another organization's admin": other} {
			if a := request(t, c, "GET", page, nil, nil); a.status != http.StatusNotFound || strings.Contains(a.body, id) {
				t.Errorf("%s GET keys: %d, want 404", who, a.status)
			}
			if a := request(t, c, "POST", page, url.Values{"operation": {"rotate-data-keys"}}, nil); a.status != http.StatusNotFound {
				t.Errorf("%s requests: %d, want 404", who, a.status)
			}
			if a := request(t, c, "POST", approve, url.Values{}, nil); a.status != http.StatusNotFound {
				t.Errorf("%s approves: %d, want 404", who, a.status)
			}
		}
		if list := f.keyRequests(t); len(list) != 1 || list[0].ApprovedBy != "" {
			t.Fatalf("refused requests or approvals were recorded: %+v", list)
		}
		// The other organization may rotate its own data keys, not the
		// key-encryption key.
		a = request(t, other, "POST", srv.URL+"/orgs/other/keys", url.Values{"operation": {"rotate-kek"}}, nil)
		if a.status != http.StatusForbidden || !strings.Contains(errorLine(a.body), "the organization that operates it") {
			t.Errorf("another organization rotates the key-encryption key: %d %q, want 403", a.status, errorLine(a.body))
		}
		if a := request(t, other, "POST", srv.URL+"/orgs/other/keys", url.Values{"operation": {"rotate-data-keys"}}, nil); a.status != http.StatusSeeOther {
			t.Errorf("another organization rotates its data keys: %d %s", a.status, errorLine(a.body))
		}

		// A second admin sees the Approve button and approves, once.
		second, secondAcc := secondOrgAdmin(t, f)
		a = request(t, second, "GET", page, nil, nil)
		if a.status != http.StatusOK || !strings.Contains(a.body, `id="approve-`+id+`"`) {
			t.Fatalf("second admin's keys page: %d, want the Approve button", a.status)
		}
		a = request(t, second, "POST", approve, url.Values{"next": {"/orgs/demo/keys"}}, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/keys?done=key-approved" {
			t.Fatalf("approval: %d %q %s", a.status, a.header.Get("Location"), errorLine(a.body))
		}
		if got := f.keyRequests(t)[0]; got.ApprovedBy != secondAcc.ID {
			t.Fatalf("approved by %q, want the second admin %s", got.ApprovedBy, secondAcc.ID)
		}
		a = request(t, second, "GET", page+"?done=key-approved", nil, nil)
		row = keyRow(a.body, id)
		if !strings.Contains(row, `class="status">approved<`) || !strings.Contains(row, "Second Admin ("+secondAcc.Email+")") ||
			!strings.Contains(row, `id="operator-`+id+`">`+id+`<`) || !strings.Contains(row, "custodia keys rotate --request "+id) {
			t.Errorf("the page does not show the request approved with the ID for the operator:\n%s", row)
		}
		if strings.Contains(a.body, `id="approve-`+id+`"`) {
			t.Error("an approved request is still offered for approval")
		}
		if a := request(t, second, "POST", approve, url.Values{}, nil); a.status != http.StatusConflict || !strings.Contains(errorLine(a.body), "not waiting for approval") {
			t.Errorf("second approval: %d %q, want 409", a.status, errorLine(a.body))
		}
	})
}

// A key request or approval without a recent confirmation (ACL-09) leads
// to the confirmation page, which leads back to the keys page; nothing is
// recorded until then.
func TestACL09_KeysPageStepUpReturnsToThePage(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	f := demoOf(t, srv)
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	second, _ := secondOrgAdmin(t, f)
	page := srv.URL + "/orgs/demo/keys"
	rotate := url.Values{"operation": {"rotate-data-keys"}, "next": {"/orgs/demo/keys"}}
	if a := request(t, second, "POST", page, rotate, nil); a.status != http.StatusSeeOther {
		t.Fatalf("second admin's request: %d %s", a.status, errorLine(a.body))
	}
	id := f.keyRequests(t)[0].ID
	// Both forms of the page name it as the page to come back to.
	a := request(t, admin, "GET", page, nil, nil)
	for _, action := range []string{"/orgs/demo/keys", "/orgs/demo/keys/" + id + "/approve"} {
		if got := formNext(a.body, action); got != "/orgs/demo/keys" {
			t.Errorf("the form to %s leads back to %q, want the keys page", action, got)
		}
	}
	ageConfirmations(t, srv.Instance.Clinical)

	for what, path := range map[string]string{"request": page, "approval": page + "/" + id + "/approve"} {
		a := request(t, admin, "POST", path, rotate, nil)
		if a.status != http.StatusForbidden || !strings.Contains(a.body, `action="/confirm"`) || !strings.Contains(a.body, `name="next" value="/orgs/demo/keys"`) {
			t.Errorf("stale %s: %d, want the confirmation page leading back\n%s", what, a.status, a.body)
		}
	}
	if list := f.keyRequests(t); len(list) != 1 || list[0].ApprovedBy != "" {
		t.Fatalf("an unconfirmed request or approval was recorded: %+v", list)
	}
	a = request(t, admin, "POST", srv.URL+"/confirm", url.Values{"password": {srv.Logins[authz.OrgAdmin].Password}, "next": {"/orgs/demo/keys"}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/keys?done=confirmed" {
		t.Fatalf("confirm: %d %q", a.status, a.header.Get("Location"))
	}
	if a := request(t, admin, "POST", page+"/"+id+"/approve", rotate, nil); a.status != http.StatusSeeOther {
		t.Fatalf("approval after confirming: %d %s", a.status, errorLine(a.body))
	}
	if list := f.keyRequests(t); list[0].ApprovedBy == "" {
		t.Fatal("the confirmed approval was not recorded")
	}
}

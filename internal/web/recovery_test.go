package web_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/mfa"
)

// The factor recovery through the pages (ASVS V6.4.4): an administrator
// starts it on the members' access page, the person confirms with their
// password on the e-mailed link's page (a wrong one is refused), and a
// second administrator approves it there; the first may not.
func TestAUTH08_FactorRecoveryThroughThePages(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	ctx := context.Background()
	db := srv.Instance.Clinical
	lost := srv.Logins[authz.DataManager]
	lostID := accountOf(t, srv, authz.DataManager)
	if _, err := db.ExecContext(ctx, `INSERT INTO account_factors (id, account_id, kind, kek_id, wrapped, last_step, created_at, confirmed_at)
		VALUES ('cccccccccccccccccccccccccc', $1, 'totp', 'local:x', $2, 0, 1, 1)`, lostID, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	const secondPassword = "Copper lantern over tides 4711"
	org := places(t, srv).org.ID
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		acc, _, err := accounts.Enrol(ctx, tx, "second-admin@demo.example", "Second Admin", authz.Assignment{OrgID: org, Role: authz.OrgAdmin})
		if err != nil {
			return err
		}
		return accounts.SetPassword(ctx, tx, acc, secondPassword, accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}

	admin := signInHTTP(t, srv, authz.OrgAdmin)
	a := request(t, admin, "POST", srv.URL+"/orgs/demo/access/"+lostID+"/factor-recovery", url.Values{}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/access?done=recovery-started" {
		t.Fatalf("start: %d %s", a.status, a.header.Get("Location"))
	}
	page := request(t, admin, "GET", srv.URL+"/orgs/demo/access", nil, nil)
	id := regexp.MustCompile(`class="recovery" data-recovery="([a-z2-7]{26})"`).FindStringSubmatch(page.body)
	if id == nil || strings.Contains(page.body, `id="approve-`) {
		t.Fatalf("the starter's page: recovery %v, and an approve button for the starter: %v", id, strings.Contains(page.body, `id="approve-`))
	}
	if a := request(t, admin, "POST", srv.URL+"/orgs/demo/factor-recoveries/"+id[1]+"/approve", url.Values{}, nil); a.status != http.StatusConflict {
		t.Fatalf("the starter approving: %d", a.status)
	}

	link := srv.LastLink(t, lost.Email, "/recover/")
	anon := client(t, srv)
	if a := request(t, anon, "GET", link, nil, nil); a.status != http.StatusOK || !strings.Contains(a.body, `id="prove"`) {
		t.Fatalf("the link's page: %d", a.status)
	}
	if a := request(t, anon, "POST", link, url.Values{"password": {"not my password at all"}}, nil); a.status != http.StatusUnauthorized || !strings.Contains(a.body, "That is not your password.") {
		t.Fatalf("a wrong password: %d", a.status)
	}
	if a := request(t, anon, "POST", link, url.Values{"password": {lost.Password}}, nil); a.status != http.StatusOK || !strings.Contains(a.body, `id="proved"`) {
		t.Fatalf("the right password: %d", a.status)
	}
	if a := request(t, anon, "GET", link, nil, nil); a.status != http.StatusNotFound {
		t.Fatalf("the link after its use: %d", a.status)
	}

	second := client(t, srv)
	if a := request(t, second, "POST", srv.URL+"/login", url.Values{"email": {"second-admin@demo.example"}, "password": {secondPassword}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("second admin's sign-in: %d", a.status)
	}
	page = request(t, second, "GET", srv.URL+"/orgs/demo/access", nil, nil)
	if !strings.Contains(page.body, `id="approve-`+id[1]+`"`) {
		t.Fatal("the second administrator's page has no approve button")
	}
	a = request(t, second, "POST", srv.URL+"/orgs/demo/factor-recoveries/"+id[1]+"/approve", url.Values{}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/orgs/demo/access?done=recovery-done" {
		t.Fatalf("approve: %d %s", a.status, a.header.Get("Location"))
	}
	if has, err := mfa.HasFactor(ctx, db, lostID); err != nil || has {
		t.Fatalf("the person still has a factor: %v %v", has, err)
	}
}

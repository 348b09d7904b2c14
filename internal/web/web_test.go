package web

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/links"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func setupLink(t *testing.T) (*httptest.Server, *sqldb.DB, string) {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	var token string
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		acc, err := accounts.Create(ctx, tx, "new@clinic.example", "<script>alert(1)</script>")
		if err != nil {
			return err
		}
		token, err = accounts.IssueLink(ctx, tx, acc.ID, accounts.PurposeSetup, time.Hour)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Routes(Deps{
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Links:      &links.Service{Gate: gate.New(gate.Config{Clinical: db}), Mail: &mail.Outbox{Dir: t.TempDir()}, BaseURL: "https://x.example"},
		ClientAddr: func(r *http.Request) string { return r.RemoteAddr },
	}))
	t.Cleanup(srv.Close)
	return srv, db, token
}

func get(t *testing.T, u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, u string, form url.Values) (int, string) {
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSetupPageSetsPasswordOnce(t *testing.T) {
	t.Parallel()
	srv, db, token := setupLink(t)
	code, body := get(t, srv.URL+"/setup/"+token)
	if code != 200 || !strings.Contains(body, `<form method="post"`) {
		t.Fatalf("setup form: %d", code)
	}
	code, body = post(t, srv.URL+"/setup/"+token, url.Values{"password": {"a sound passphrase"}, "confirm": {"a different one!!"}})
	if code != 400 || !strings.Contains(body, "differ") {
		t.Errorf("mismatched confirmation: %d", code)
	}
	code, body = post(t, srv.URL+"/setup/"+token, url.Values{"password": {"short"}, "confirm": {"short"}})
	if code != 400 || !strings.Contains(body, "at least 12") {
		t.Errorf("weak password: %d %s", code, body)
	}
	code, _ = post(t, srv.URL+"/setup/"+token, url.Values{"password": {"a sound passphrase"}, "confirm": {"a sound passphrase"}})
	if code != 200 {
		t.Fatalf("setup: %d", code)
	}
	if _, err := accounts.Authenticate(context.Background(), db, "new@clinic.example", "a sound passphrase"); err != nil {
		t.Errorf("password not set: %v", err)
	}
	code, body = get(t, srv.URL+"/setup/"+token)
	if code != 404 || !strings.Contains(body, "invalid, used or expired") {
		t.Errorf("used link: %d", code)
	}
	code, _ = post(t, srv.URL+"/setup/"+token, url.Values{"password": {"another passphrase"}, "confirm": {"another passphrase"}})
	if code != 404 {
		t.Errorf("reused link accepted: %d", code)
	}
}

func TestWEB02_PagesHaveNoInlineScriptAndEscapeInput(t *testing.T) {
	t.Parallel()
	srv, _, _ := setupLink(t)
	evil := url.PathEscape(`"><script>alert(1)</script>`)
	for _, path := range []string{"/", "/setup/" + evil, "/nowhere"} {
		_, body := get(t, srv.URL+path)
		if regexp.MustCompile(`(?i)<script|\son[a-z]+=|javascript:`).MatchString(body) {
			t.Errorf("%s: page holds script or an unescaped value:\n%s", path, body)
		}
	}
}

// The page of an organization's invitation says who invites and to what,
// accepts with the password of the account the address has, and declines
// (ACL-02).
func TestACL02_InvitationPageAcceptsOrDeclines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	g := gate.New(gate.Config{Clinical: db})
	lk := &links.Service{Gate: g, Mail: &mail.Outbox{Dir: t.TempDir()}, BaseURL: "https://x.example"}
	var admin, user accounts.Account
	var org orgs.Organization
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if org, err = orgs.CreateOrganization(ctx, tx, "North <Hospital>", "north"); err != nil {
			return err
		}
		if admin, _, err = accounts.Enrol(ctx, tx, "admin@north.example", "", authz.Assignment{OrgID: org.ID, Role: authz.OrgAdmin}); err != nil {
			return err
		}
		if user, err = accounts.Create(ctx, tx, "user@north.example", ""); err != nil {
			return err
		}
		return accounts.SetPassword(ctx, tx, user, "an old but sturdy passphrase", accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Routes(Deps{
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Links: lk,
		ClientAddr: func(r *http.Request) string { return r.RemoteAddr },
	}))
	t.Cleanup(srv.Close)
	invite := func() string {
		t.Helper()
		var token string
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			inv, err := accounts.Invite(ctx, tx, "user@north.example", authz.Assignment{OrgID: org.ID, Role: authz.OrgManager}, admin.ID, time.Hour)
			token = inv.Link
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return token
	}

	token := invite()
	code, body := get(t, srv.URL+"/setup/"+token)
	if code != 200 || !strings.Contains(body, "North &lt;Hospital&gt;") || !strings.Contains(body, "org-manager") ||
		!strings.Contains(body, `action="/setup/`+token+`/decline"`) || !strings.Contains(body, "current-password") {
		t.Fatalf("invitation page: %d\n%s", code, body)
	}
	code, _ = post(t, srv.URL+"/setup/"+token, url.Values{"password": {"an old but sturdy passphrase"}})
	if as, _ := authz.AssignmentsOf(ctx, db, org.ID, user.ID); code != 200 || len(as) != 1 {
		t.Fatalf("accept: %d, roles %+v", code, as)
	}

	// A second invitation, to another role, is declined on its page.
	if err := db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM role_assignments WHERE account_id = $1`, user.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	token = invite()
	code, body = post(t, srv.URL+"/setup/"+token+"/decline", url.Values{})
	if code != 200 || !strings.Contains(body, "declined") {
		t.Fatalf("decline: %d\n%s", code, body)
	}
	if as, _ := authz.AssignmentsOf(ctx, db, org.ID, user.ID); len(as) != 0 {
		t.Errorf("a declined invitation granted %+v", as)
	}
	if code, _ := get(t, srv.URL+"/setup/"+token); code != 404 {
		t.Errorf("the declined link's page: %d, want 404", code)
	}
}

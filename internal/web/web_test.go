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
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/links"
	"github.com/custodia/custodia/internal/mail"
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
	srv, _, _ := setupLink(t)
	evil := url.PathEscape(`"><script>alert(1)</script>`)
	for _, path := range []string{"/", "/setup/" + evil, "/nowhere"} {
		_, body := get(t, srv.URL+path)
		if regexp.MustCompile(`(?i)<script|\son[a-z]+=|javascript:`).MatchString(body) {
			t.Errorf("%s: page holds script or an unescaped value:\n%s", path, body)
		}
	}
}

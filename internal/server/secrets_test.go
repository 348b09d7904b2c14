package server

import (
	"context"
	"database/sql"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
)

// allAuditText returns every stored audit event body.
func allAuditText(t *testing.T, ts *testServer) string {
	t.Helper()
	rows, err := ts.inst.Clinical.QueryContext(context.Background(), `SELECT body FROM audit_events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		rows.Scan(&s)
		b.WriteString(s + "\n")
	}
	return b.String()
}

func TestAUTH11_EverySignInAttemptIsRecorded(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	c := ts.client()
	l := ts.logins[authz.DataManager]
	do(t, c, "POST", ts.URL+"/api/v1/auth/login", `{"email":"`+l.Email+`","password":"not the password"}`)
	do(t, c, "POST", ts.URL+"/api/v1/auth/login", `{"email":"ghost@demo.example","password":"not the password"}`)
	ts.signIn(t, authz.DataManager)
	acc, err := accounts.ByEmail(context.Background(), ts.inst.Clinical, l.Email)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ts.inst.Clinical.QueryContext(context.Background(),
		`SELECT COALESCE(actor_account, ''), outcome, at FROM audit_events WHERE action = 'auth.login' ORDER BY at`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var actor, outcome string
		var at int64
		rows.Scan(&actor, &outcome, &at)
		if time.Since(time.UnixMicro(at)) > time.Minute {
			t.Errorf("attempt time %v is not now", time.UnixMicro(at))
		}
		got = append(got, actor+"/"+outcome)
	}
	want := []string{acc.ID + "/failure", "/failure", acc.ID + "/success"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("sign-in events = %v, want %v", got, want)
	}
	if !strings.Contains(allAuditText(t, ts), `"addr":"127.0.0.1"`) {
		t.Error("sign-in events lack the source address")
	}
}

func TestAUD03_NoPasswordTokenOrCookieInAnyEvent(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	secrets := []string{"not the password at all"}
	for _, l := range ts.logins {
		secrets = append(secrets, l.Password)
	}
	// Sign in, fail to sign in, use the API, sign out.
	var cookies []*http.Cookie
	for role := range ts.logins {
		c := ts.signIn(t, role)
		do(t, c, "GET", ts.URL+"/api/v1/orgs/demo/studies", "")
		cookies = append(cookies, c.Jar.Cookies(mustURL(t, ts.URL))...)
		do(t, c, "POST", ts.URL+"/api/v1/auth/logout", "")
	}
	do(t, ts.client(), "POST", ts.URL+"/api/v1/auth/login", `{"email":"org-admin@demo.example","password":"not the password at all"}`)
	// A one-time link, used.
	var token string
	ts.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		acc, err := accounts.Create(ctx, tx, "fresh@demo.example", "")
		if err != nil {
			return err
		}
		token, err = accounts.IssueLink(ctx, tx, acc.ID, accounts.PurposeSetup, time.Hour)
		return err
	})
	if _, err := accounts.CompleteSetup(ctx, gate.New(gate.Config{Clinical: ts.inst.Clinical}), token, "quiet harbour lantern 7"); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, token, "quiet harbour lantern 7")
	for _, c := range cookies {
		secrets = append(secrets, c.Value)
	}
	trail := allAuditText(t, ts)
	if len(trail) < 1000 {
		t.Fatalf("the trail is suspiciously short:\n%s", trail)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(trail, s) {
			t.Errorf("the audit trail contains the secret %q", s)
		}
	}
	if regexp.MustCompile(`(?i)"(password|token|secret)"`).MatchString(trail) {
		t.Error("the audit trail has a field named like a secret")
	}
}

package accountadmin_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/accounts/accountadmin"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// fixture is a fresh instance with the demo organization and an "other"
// organization, the service, a session store and the whole HTTP surface.
type fixture struct {
	db      *sqldb.DB
	svc     *accountadmin.Service
	store   *sessions.Store
	h       http.Handler
	logins  map[authz.Role]string // role → e-mail address
	ids     map[authz.Role]string // role → account id
	other   orgs.Organization
	boss    string // the other organization's only admin
	pwd     map[authz.Role]string
	bossPwd string
}

const from = "192.0.2.44"

func setup(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	cfg := instance.Config{DataDir: t.TempDir()}
	if d == sqldb.Postgres {
		cfg.Database, cfg.IdentityDatabase = sqldbtest.URL(t, d), sqldbtest.URL(t, d)
	}
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	g := gate.New(gate.Config{Clinical: inst.Clinical})
	logins, err := demo.Seed(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: inst.Clinical, svc: &accountadmin.Service{Gate: g}, store: &sessions.Store{Gate: g, Limits: sessions.DefaultLimits},
		logins: map[authz.Role]string{}, ids: map[authz.Role]string{}, pwd: map[authz.Role]string{}, bossPwd: "Marigold canyon ferry 9001"}
	f.h, _ = server.NewHandler(server.Deps{Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Instance: inst, KEK: kek})
	for _, l := range logins {
		acc, err := accounts.ByEmail(ctx, inst.Clinical, l.Email)
		if err != nil {
			t.Fatal(err)
		}
		f.logins[l.Role], f.ids[l.Role], f.pwd[l.Role] = l.Email, acc.ID, l.Password
	}
	// The care provider is an organization manager of another
	// organization too, whose only admin is boss.
	err = inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if f.other, err = orgs.CreateOrganization(ctx, tx, "Other", "other"); err != nil {
			return err
		}
		boss, _, err := accounts.Enrol(ctx, tx, "boss@other.example", "", authz.Assignment{OrgID: f.other.ID, Role: authz.OrgAdmin})
		if err != nil {
			return err
		}
		f.boss = boss.ID
		if err := accounts.SetPassword(ctx, tx, boss, f.bossPwd, accounts.DefaultPolicy); err != nil {
			return err
		}
		_, err = authz.Assign(ctx, tx, authz.Assignment{OrgID: f.other.ID, AccountID: f.ids[authz.CareProvider], Role: authz.OrgManager})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// as is role acting with a fresh confirmation of its identity.
func (f *fixture) as(role authz.Role) gate.Actor {
	return gate.Actor{AccountID: f.ids[role], RemoteAddr: from, UserAgent: "test", ConfirmedAt: time.Now()}
}

func (f *fixture) signIn(t *testing.T, role authz.Role) (string, sessions.Session) {
	t.Helper()
	tok, sess, err := f.store.SignIn(context.Background(), f.logins[role], f.pwd[role], from, "test")
	if err != nil {
		t.Fatalf("sign in as %s: %v", role, err)
	}
	return tok, sess
}

func (f *fixture) live(tok string) bool {
	_, err := f.store.Lookup(context.Background(), tok)
	return err == nil
}

func (f *fixture) events(t *testing.T, action, outcome string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRowContext(context.Background(),
		`SELECT COUNT(*) FROM audit_events WHERE action = $1 AND security = $2 AND outcome = $3`, action, true, outcome).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) disabled(t *testing.T, id string) bool {
	t.Helper()
	at, err := accounts.DisabledAt(context.Background(), f.db, id)
	if err != nil {
		t.Fatal(err)
	}
	return !at.IsZero()
}

// An administrator disables a member (ASVS V7.4.2): at once every session
// and access token of the account ends, its sign-in fails with the answer
// of a wrong password (AUTH-06), and the change is a security event in
// each of its organizations. Enabling it lets it sign in again; what
// ended stays ended.
func TestAUTH10_DisabledAccountLosesItsSessionsAndTokensAndCannotSignIn(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		victim := authz.CareProvider
		tok, sess := f.signIn(t, victim)
		tok2, _ := f.signIn(t, victim)
		bearer, _, err := f.store.CreateToken(ctx, sess, gate.Actor{AccountID: sess.AccountID, SessionID: sess.ID, RemoteAddr: from},
			"script", []string{"read"}, 30)
		if err != nil {
			t.Fatal(err)
		}

		ended, err := f.svc.Disable(ctx, f.as(authz.OrgAdmin), demo.Slug, f.ids[victim])
		if err != nil || ended != (accountadmin.Ended{Changed: true, Members: 1, Sessions: 2, Tokens: 1}) {
			t.Fatalf("disable: %+v, %v", ended, err)
		}
		if f.live(tok) || f.live(tok2) {
			t.Error("a disabled account's session lives on")
		}
		if _, err := f.store.LookupToken(ctx, bearer, from, "test"); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("a disabled account's token: %v, want unauthenticated", err)
		}
		_, _, right := f.store.SignIn(ctx, f.logins[victim], f.pwd[victim], from, "test")
		_, _, wrong := f.store.SignIn(ctx, f.logins[victim], "not the password at all", from, "test")
		if !errors.Is(right, accounts.ErrBadCredentials) || !errors.Is(wrong, accounts.ErrBadCredentials) {
			t.Errorf("sign-in of a disabled account: %v (right password), %v (wrong), want both %v", right, wrong, accounts.ErrBadCredentials)
		}
		// Recorded in the demo organization and, naming it, in the other.
		if n := f.events(t, "account.disable", "success"); n != 2 {
			t.Errorf("%d account.disable security events, want 2 (one per organization)", n)
		}

		again, err := f.svc.Disable(ctx, f.as(authz.OrgAdmin), demo.Slug, f.ids[victim])
		if err != nil || again.Changed {
			t.Errorf("second disable: %+v, %v; want unchanged", again, err)
		}
		on, err := f.svc.Enable(ctx, f.as(authz.OrgAdmin), demo.Slug, f.ids[victim])
		if err != nil || !on.Changed || f.disabled(t, f.ids[victim]) {
			t.Fatalf("enable: %+v, %v", on, err)
		}
		if f.live(tok) {
			t.Error("enabling brought an ended session back")
		}
		if _, err := f.store.LookupToken(ctx, bearer, from, "test"); err == nil {
			t.Error("enabling brought an ended token back")
		}
		f.signIn(t, victim)
		if n := f.events(t, "account.enable", "success"); n != 2 {
			t.Errorf("%d account.enable security events, want 2", n)
		}
	})
}

// The attacks (ACL-08, ACL-09): an account that holds no role in the
// organization, an organization the requester does not administer, a
// requester without security.manage and one without a fresh confirmation
// are all refused, and nothing changes.
func TestACL08_MembersAccessIsRefusedOutsideTheAdministratorsOrganization(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		tok, _ := f.signIn(t, authz.Monitor)
		monitor := f.ids[authz.Monitor]
		boss := gate.Actor{AccountID: f.boss, RemoteAddr: from, ConfirmedAt: time.Now()}
		stale := f.as(authz.OrgAdmin)
		stale.ConfirmedAt = time.Now().Add(-gate.StepUpWindow - time.Minute)
		type call func(a gate.Actor, slug, account string) error
		calls := map[string]call{
			"disable": func(a gate.Actor, slug, account string) error {
				_, err := f.svc.Disable(ctx, a, slug, account)
				return err
			},
			"enable": func(a gate.Actor, slug, account string) error {
				_, err := f.svc.Enable(ctx, a, slug, account)
				return err
			},
			"sign-out": func(a gate.Actor, slug, account string) error {
				_, err := f.svc.SignOut(ctx, a, slug, account)
				return err
			},
		}
		for name, c := range calls {
			for _, tc := range []struct {
				who           string
				a             gate.Actor
				slug, account string
			}{
				{"other organization's admin, its own organization", boss, "other", monitor},
				{"other organization's admin, the member's", boss, demo.Slug, monitor},
				{"admin, an account of the other organization only", f.as(authz.OrgAdmin), demo.Slug, f.boss},
				{"admin, the other organization", f.as(authz.OrgAdmin), "other", f.ids[authz.CareProvider]},
				{"admin, no such account", f.as(authz.OrgAdmin), demo.Slug, "aaaaaaaaaaaaaaaaaaaaaaaaaa"},
				{"admin, a malformed id", f.as(authz.OrgAdmin), demo.Slug, "../../x"},
				{"organization manager", f.as(authz.OrgManager), demo.Slug, monitor},
				{"study admin", f.as(authz.StudyAdmin), demo.Slug, monitor},
				{"participant", f.as(authz.Participant), demo.Slug, monitor},
			} {
				if err := c(tc.a, tc.slug, tc.account); !gate.IsDenied(err) {
					t.Errorf("%s by %s: %v, want not found", name, tc.who, err)
				}
			}
			if err := c(stale, demo.Slug, monitor); !errs.Is(err, errs.StepUpRequired) {
				t.Errorf("%s without a fresh confirmation: %v, want step-up required", name, err)
			}
		}
		if _, err := f.svc.SignOutAll(ctx, stale, demo.Slug); !errs.Is(err, errs.StepUpRequired) {
			t.Errorf("sign-out of every member without a fresh confirmation: %v", err)
		}
		for _, a := range []gate.Actor{boss, f.as(authz.OrgManager)} {
			if _, err := f.svc.SignOutAll(ctx, a, demo.Slug); !gate.IsDenied(err) {
				t.Errorf("sign-out of every member by %s: %v, want not found", a.AccountID, err)
			}
		}
		if !f.live(tok) || f.disabled(t, monitor) {
			t.Fatal("a refused call changed the member's access")
		}
		if n := f.events(t, "account.disable", "denied"); n == 0 {
			t.Error("refused attempts are not on the trail")
		}
	})
}

// An administrator cannot disable their own account, nor an account that
// is the last organization admin who can sign in of any organization (of
// another one, with an answer that does not say so); a
// disabled admin does not count as one when an admin role is taken away,
// and two admins disabling each other at once leave one (ASVS V7.4.2).
func TestACL02_LastAdminAndOneselfCannotBeDisabled(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		admin := f.ids[authz.OrgAdmin]
		if _, err := f.svc.Disable(ctx, f.as(authz.OrgAdmin), demo.Slug, admin); !errors.Is(err, accountadmin.ErrSelf) {
			t.Errorf("admin disables themself: %v, want %v", err, accountadmin.ErrSelf)
		}
		// boss, the other organization's only admin, becomes a member here.
		var second authz.Assignment
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			demoOrg, err := orgs.OrganizationBySlug(ctx, tx, demo.Slug)
			if err != nil {
				return err
			}
			if _, err = authz.Assign(ctx, tx, authz.Assignment{OrgID: demoOrg.ID, AccountID: f.boss, Role: authz.OrgManager}); err != nil {
				return err
			}
			second, err = authz.Assign(ctx, tx, authz.Assignment{OrgID: demoOrg.ID, AccountID: f.ids[authz.Monitor], Role: authz.OrgAdmin})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// Refused without telling this organization what boss is elsewhere.
		_, err = f.svc.Disable(ctx, f.as(authz.OrgAdmin), demo.Slug, f.boss)
		if !errors.Is(err, accountadmin.ErrNeededElsewhere) || strings.Contains(errs.SafeMessage(err), "admin") {
			t.Errorf("disable the other organization's last admin: %v, want %v", err, accountadmin.ErrNeededElsewhere)
		}
		if f.disabled(t, f.boss) || f.disabled(t, admin) {
			t.Fatal("a refused disable disabled")
		}

		// The second admin disabled, the first cannot give up the role.
		if _, err := f.svc.Disable(ctx, f.as(authz.OrgAdmin), demo.Slug, second.AccountID); err != nil {
			t.Fatal(err)
		}
		own, err := authz.AssignmentsOf(ctx, f.db, second.OrgID, admin)
		if err != nil || len(own) != 1 {
			t.Fatalf("admin's roles: %v, %v", own, err)
		}
		err = f.db.InTx(ctx, func(tx *sql.Tx) error { return authz.Unassign(ctx, tx, d, own[0]) })
		if !errs.Is(err, errs.Conflict) {
			t.Errorf("the only enabled admin removes their admin role: %v, want conflict", err)
		}
		if _, err := f.svc.Enable(ctx, f.as(authz.OrgAdmin), demo.Slug, second.AccountID); err != nil {
			t.Fatal(err)
		}

		// Each disables the other at once: one of them stays.
		var wg sync.WaitGroup
		results := make([]error, 2)
		pairs := [][2]string{{admin, second.AccountID}, {second.AccountID, admin}}
		for i, p := range pairs {
			wg.Go(func() {
				_, results[i] = f.svc.Disable(ctx, gate.Actor{AccountID: p[0], RemoteAddr: from, ConfirmedAt: time.Now()}, demo.Slug, p[1])
			})
		}
		wg.Wait()
		n := 0
		for _, err := range results {
			switch {
			case err == nil:
				n++
			case !errors.Is(err, accounts.ErrLastAdmin):
				t.Errorf("concurrent disable: %v", err)
			}
		}
		if n != 1 || f.disabled(t, admin) == f.disabled(t, second.AccountID) {
			t.Errorf("%d of two concurrent disables succeeded (admin disabled %v, second %v); want exactly one",
				n, f.disabled(t, admin), f.disabled(t, second.AccountID))
		}
	})
}

// An administrator ends the sessions and tokens of one member, who may
// sign in again at once, or of every member but their own asking session
// (ASVS V7.4.5); each is a security event.
func TestAUTH10_AdministratorEndsOneMembersOrEveryMembersSessions(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		victim, _ := f.signIn(t, authz.CareProvider)
		bystander, _ := f.signIn(t, authz.Monitor)
		asking, sess := f.signIn(t, authz.OrgAdmin)
		otherAdmin, _ := f.signIn(t, authz.OrgAdmin)
		a := f.as(authz.OrgAdmin)
		a.SessionID = sess.ID

		ended, err := f.svc.SignOut(ctx, a, demo.Slug, f.ids[authz.CareProvider])
		if err != nil || ended.Sessions != 1 {
			t.Fatalf("sign out one member: %+v, %v", ended, err)
		}
		if f.live(victim) || !f.live(bystander) || !f.live(asking) {
			t.Error("signing out one member ended the wrong sessions")
		}
		victim, _ = f.signIn(t, authz.CareProvider)
		if n := f.events(t, "account.sessions.end", "success"); n != 2 {
			t.Errorf("%d account.sessions.end security events, want 2 (one per organization of the member)", n)
		}

		ended, err = f.svc.SignOutAll(ctx, a, demo.Slug)
		if err != nil || ended.Sessions != 3 || ended.Members < 8 {
			t.Fatalf("sign out every member: %+v, %v", ended, err)
		}
		if f.live(victim) || f.live(bystander) || f.live(otherAdmin) || !f.live(asking) {
			t.Error("signing out every member ended the wrong sessions")
		}
		if n := f.events(t, "org.sessions.end", "success"); n != 1 {
			t.Errorf("%d org.sessions.end security events, want 1", n)
		}
	})
}

// Over HTTP (ASVS V7.4.2, ACL-09): a request made with an access token
// carries no confirmation and is answered 403 step_up_required; a fresh
// session disables; the disabled member's cookie and token are then 401,
// and its sign-in gets the very answer of a wrong password (AUTH-06);
// another organization's member is 404.
func TestACL09_DisablingOverTheAPINeedsAStepUpAndShutsTheMemberOut(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		adminCookie := f.login(t, f.logins[authz.OrgAdmin], f.pwd[authz.OrgAdmin]).cookie
		adminToken := f.do(t, "POST", "/api/v1/tokens", `{"name":"script","scopes":["write"]}`, adminCookie, "").out["token"].(string)
		victim := f.login(t, f.logins[authz.CareProvider], f.pwd[authz.CareProvider])
		victimToken := f.do(t, "POST", "/api/v1/tokens", `{"name":"script","scopes":["read"]}`, victim.cookie, "").out["token"].(string)
		path := "/api/v1/orgs/demo/members/" + f.ids[authz.CareProvider] + "/disable"

		if r := f.do(t, "POST", path, "", "", adminToken); r.status != http.StatusForbidden || !strings.Contains(r.body, `"step_up_required"`) {
			t.Errorf("disable with a token: %d %s, want 403 step_up_required", r.status, r.body)
		}
		if r := f.do(t, "POST", "/api/v1/orgs/other/members/"+f.ids[authz.CareProvider]+"/disable", "", adminCookie, ""); r.status != http.StatusNotFound {
			t.Errorf("disable in an organization one does not administer: %d %s, want 404", r.status, r.body)
		}
		if r := f.do(t, "POST", "/api/v1/orgs/demo/members/"+f.boss+"/disable", "", adminCookie, ""); r.status != http.StatusNotFound {
			t.Errorf("disable an account of another organization: %d %s, want 404", r.status, r.body)
		}
		if r := f.do(t, "GET", "/api/v1/orgs/demo/studies", "", victim.cookie, ""); r.status != http.StatusOK {
			t.Fatalf("refused disables shut the member out: %d", r.status)
		}
		r := f.do(t, "POST", path, "", adminCookie, "")
		if r.status != http.StatusOK || r.out["disabled"] != true || r.out["changed"] != true || r.out["sessions_ended"] != 1.0 || r.out["tokens_ended"] != 1.0 {
			t.Fatalf("disable: %d %s", r.status, r.body)
		}
		if r := f.do(t, "GET", "/api/v1/orgs/demo/studies", "", victim.cookie, ""); r.status != http.StatusUnauthorized {
			t.Errorf("disabled member's session: %d, want 401", r.status)
		}
		if r := f.do(t, "GET", "/api/v1/orgs/demo/studies", "", "", victimToken); r.status != http.StatusUnauthorized {
			t.Errorf("disabled member's token: %d, want 401", r.status)
		}
		right := f.login(t, f.logins[authz.CareProvider], f.pwd[authz.CareProvider])
		wrong := f.login(t, f.logins[authz.CareProvider], "not the password at all")
		if right.status != http.StatusUnauthorized || right.body != wrong.body || right.cookie != "" {
			t.Errorf("disabled member's sign-in: %d %s; a wrong password: %d %s", right.status, right.body, wrong.status, wrong.body)
		}
		if r := f.do(t, "POST", "/api/v1/orgs/demo/members/"+f.ids[authz.CareProvider]+"/enable", "", adminCookie, ""); r.status != http.StatusOK || r.out["changed"] != true {
			t.Fatalf("enable: %d %s", r.status, r.body)
		}
		if r := f.login(t, f.logins[authz.CareProvider], f.pwd[authz.CareProvider]); r.status != http.StatusOK {
			t.Errorf("sign-in after enable: %d %s", r.status, r.body)
		}
		if r := f.do(t, "POST", "/api/v1/orgs/demo/members/sign-out", "", adminCookie, ""); r.status != http.StatusOK || r.out["members"] == nil {
			t.Errorf("sign out every member: %d %s", r.status, r.body)
		}
		if r := f.do(t, "GET", "/api/v1/orgs/demo/studies", "", adminCookie, ""); r.status != http.StatusOK {
			t.Errorf("the asking session after signing out every member: %d, want 200", r.status)
		}
	})
}

type reply struct {
	status int
	body   string
	cookie string
	out    map[string]any
}

// do sends a request with the session cookie or the bearer token, if any.
func (f *fixture) do(t *testing.T, method, path, body, cookie, token string) reply {
	t.Helper()
	req := httptest.NewRequest(method, "https://custodia.test"+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "__Host-custodia_session", Value: cookie})
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.RemoteAddr = from + ":40000"
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	r := reply{status: rec.Code, body: rec.Body.String()}
	for _, c := range rec.Result().Cookies() {
		if c.Name == "__Host-custodia_session" && c.Value != "" {
			r.cookie = c.Value
		}
	}
	json.Unmarshal(rec.Body.Bytes(), &r.out)
	return r
}

func (f *fixture) login(t *testing.T, email, password string) reply {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return f.do(t, "POST", "/api/v1/auth/login", string(b), "", "")
}

package sessions_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
	"github.com/custodia/custodia/internal/sso"
	"github.com/custodia/custodia/internal/sso/oidcrp"
	"github.com/custodia/custodia/internal/sso/ssoadmin"
	"github.com/custodia/custodia/internal/sso/ssotest"
)

const ssoCallback = "https://custodia.test/login/sso/callback"

// ssoSite is an instance with the demo organization, a real OpenID
// Connect provider on loopback, and the single sign-on of one server node.
type ssoSite struct {
	inst   *instance.Instance
	idp    *ssotest.Provider
	clock  *clock
	kek    keys.KEK
	so     *sessions.SingleSignOn
	admin  *ssoadmin.Service
	org    orgs.Organization
	study  string
	logins map[authz.Role]demo.Login
	// addr is the browser's address of the latest flow: each flow comes
	// from one of its own, so that no test meets the limits per address.
	addr  string
	addrs int
}

// The provider's people: the demo monitor (an account of the demo
// organization alone), and one without an account.
var (
	monitorUser = ssotest.User{Subject: "sub-monitor", Username: "monitor", Password: "monitor's password at the provider",
		Email: "monitor@demo.example", EmailVerified: true, Name: "Mona Itor"}
	newcomerUser = ssotest.User{Subject: "sub-newcomer", Username: "newcomer", Password: "newcomer's password",
		Email: "newcomer@demo.example", EmailVerified: true, Name: "New Comer"}
)

func newSSOSite(t *testing.T, d sqldb.Dialect) *ssoSite {
	t.Helper()
	inst, logins := seededInstance(t, d)
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	s := &ssoSite{inst: inst, idp: ssotest.Start(t), clock: &clock{t: time.Now()}, kek: kek, logins: logins}
	s.idp.AllowRedirect(ssoCallback)
	s.idp.AddUser(monitorUser)
	s.idp.AddUser(newcomerUser)
	s.so = s.node()
	s.admin = &ssoadmin.Service{Gate: s.so.Store.Gate, Issuers: []string{s.idp.Issuer}, RedirectURL: ssoCallback, Now: s.clock.now}
	ctx := context.Background()
	if s.org, err = orgs.OrganizationBySlug(ctx, inst.Clinical, demo.Slug); err != nil {
		t.Fatal(err)
	}
	studies, err := orgs.Studies(ctx, inst.Clinical, s.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range studies {
		if st.Name == "Demo Study" {
			s.study = st.ID // the demo monitor's study
		}
	}
	return s
}

// node is the single sign-on of a server node of the site: a gate and a
// relying party of its own, sharing only the databases.
func (s *ssoSite) node() *sessions.SingleSignOn {
	store := &sessions.Store{Gate: server.NewGate(s.inst, s.kek), Limits: sessions.DefaultLimits, Now: s.clock.now}
	return &sessions.SingleSignOn{Store: store, RP: oidcrp.New(), RedirectURL: ssoCallback, Issuers: []string{s.idp.Issuer}}
}

func (s *ssoSite) accountID(t *testing.T, email string) string {
	t.Helper()
	acc, err := accounts.ByEmail(context.Background(), s.inst.Clinical, email)
	if err != nil {
		t.Fatal(err)
	}
	return acc.ID
}

// adminActor is the demo organization's admin, freshly confirmed.
func (s *ssoSite) adminActor(t *testing.T) gate.Actor {
	return gate.Actor{AccountID: s.accountID(t, s.logins[authz.OrgAdmin].Email), SessionID: "admin-session",
		RemoteAddr: "192.0.2.1", UserAgent: "test", ConfirmedAt: s.clock.now()}
}

// configure sets the demo organization's provider to the test provider,
// with change applied to the settings first.
func (s *ssoSite) configure(t *testing.T, change func(p *sso.Provider)) {
	t.Helper()
	p := sso.Default()
	p.Issuer, p.ClientID, p.AllowedDomains = s.idp.Issuer, s.idp.ClientID, []string{"demo.example"}
	if change != nil {
		change(&p)
	}
	if err := s.admin.SetProvider(context.Background(), s.adminActor(t), demo.Slug, p, s.idp.ClientSecret); err != nil {
		t.Fatal(err)
	}
}

// begin starts a sign-in as a browser at addr would, signs in at the
// provider as user, and returns the provider's answer as the browser
// brings it back.
func (s *ssoSite) begin(t *testing.T, so *sessions.SingleSignOn, u ssotest.User) sessions.Answer {
	t.Helper()
	s.addrs++
	s.addr = fmt.Sprintf("198.51.%d.%d", 100+s.addrs/250, s.addrs%250+1)
	st, err := so.Begin(context.Background(), demo.Slug, "/orgs/demo/studies", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	back, err := url.Parse(s.idp.SignIn(t, st.URL, u.Username, u.Password))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(back.String(), ssoCallback) {
		t.Fatalf("the provider sent the browser to %s", back)
	}
	q := back.Query()
	return sessions.Answer{State: q.Get("state"), Code: q.Get("code"), Error: q.Get("error"), Issuer: q.Get("iss"), Binding: st.Binding}
}

func (s *ssoSite) finish(so *sessions.SingleSignOn, a sessions.Answer) (sessions.Step, string, error) {
	return so.Finish(context.Background(), a, s.addr, "test browser")
}

func (s *ssoSite) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.inst.Clinical.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// event is an audit event as the tests read it.
type event struct {
	Action, Outcome, Org, Account string
	Security                      bool
	Body                          string
	Details                       map[string]string
}

func (s *ssoSite) events(t *testing.T, action string) []event {
	t.Helper()
	rows, err := s.inst.Clinical.QueryContext(context.Background(),
		`SELECT action, outcome, COALESCE(org_id, ''), COALESCE(actor_account, ''), security, body FROM audit_events WHERE action = $1 ORDER BY at, id`, action)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []event
	for rows.Next() {
		var e event
		if err := rows.Scan(&e.Action, &e.Outcome, &e.Org, &e.Account, &e.Security, &e.Body); err != nil {
			t.Fatal(err)
		}
		var body struct {
			Details map[string]string `json:"details"`
		}
		json.Unmarshal([]byte(e.Body), &body)
		e.Details = body.Details
		out = append(out, e)
	}
	return out
}

func (s *ssoSite) roles(t *testing.T, accountID string) []string {
	t.Helper()
	as, err := authz.AssignmentsOf(context.Background(), s.inst.Clinical, s.org.ID, accountID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, string(a.Role))
	}
	slices.Sort(out)
	return out
}

// A person signs in through their organization's provider: the flow goes
// to the provider with PKCE and a nonce, the answer comes back to the
// callback, and the demo monitor, linked by their verified e-mail address,
// has a session; the sign-in is on the organization's trail as auth.login
// by single sign-on, with neither code nor state.
func TestAUTH13_SignInThroughTheOrganizationsProvider(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newSSOSite(t, d)
		s.configure(t, nil)
		a := s.begin(t, s.so, monitorUser)
		st, next, err := s.finish(s.so, a)
		if err != nil {
			t.Fatal(err)
		}
		if st.Token == "" || st.Challenge.Token != "" || next != "/orgs/demo/studies" {
			t.Fatalf("step %+v, next %q", st, next)
		}
		sess, err := s.so.Store.Lookup(context.Background(), st.Token)
		if err != nil {
			t.Fatal(err)
		}
		monitor := s.accountID(t, monitorUser.Email)
		if sess.AccountID != monitor {
			t.Errorf("session of %s, want the monitor %s", sess.AccountID, monitor)
		}
		logins := s.events(t, "auth.login")
		last := logins[len(logins)-1]
		if last.Org != s.org.ID || last.Account != monitor || last.Details["method"] != "sso" || last.Details["account_link"] != sso.ByEmail {
			t.Errorf("sign-in recorded as %+v", last)
		}
		for _, secret := range []string{a.Code, a.State, a.Binding, st.Token, s.idp.ClientSecret} {
			if strings.Contains(last.Body, secret) {
				t.Errorf("the event holds a secret of the flow: %s", last.Body)
			}
		}
		// The next sign-in finds the account by its link to the subject.
		st, _, err = s.finish(s.so, s.begin(t, s.so, monitorUser))
		if err != nil || st.Token == "" {
			t.Fatalf("second sign-in: %+v %v", st, err)
		}
		logins = s.events(t, "auth.login")
		if got := logins[len(logins)-1].Details["account_link"]; got != sso.Linked {
			t.Errorf("second sign-in linked by %q, want %q", got, sso.Linked)
		}
	})
}

// Every wrong answer of the provider, and every answer that does not
// belong to a live flow of the same browser, is refused with one line
// (Unauthenticated): no session begins, no account or role changes, and the
// refusal is a failed security event in the organization's trail naming
// what failed.
func TestAUTH13_WrongAnswersAreRefusedRecordedAndChangeNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newSSOSite(t, d)
		s.configure(t, func(p *sso.Provider) {
			p.CreateAccounts = true
			p.Roles = []sso.GroupRole{{Group: "staff", Role: authz.Monitor, StudyID: s.study}}
		})
		s.idp.AddUser(ssotest.User{Subject: "sub-grace", Username: "grace", Password: "grace's password",
			Email: "grace@demo.example", EmailVerified: true, Groups: []string{"staff"}})
		grace := ssotest.User{Username: "grace", Password: "grace's password"}
		reset := func() { s.idp.Tamper(nil); s.idp.SignWithForeignKey(false); s.idp.DropVerifier(false) }
		cases := []struct {
			name   string
			answer func(t *testing.T) sessions.Answer
			reason string
		}{
			{"wrong issuer", func(t *testing.T) sessions.Answer {
				s.idp.Tamper(func(c map[string]any) { c["iss"] = "https://login.evil.example" })
				return s.begin(t, s.so, grace)
			}, sso.ReasonIssuer},
			{"wrong audience", func(t *testing.T) sessions.Answer {
				s.idp.Tamper(func(c map[string]any) { c["aud"] = "another-client" })
				return s.begin(t, s.so, grace)
			}, sso.ReasonAudience},
			{"wrong nonce", func(t *testing.T) sessions.Answer {
				s.idp.Tamper(func(c map[string]any) { c["nonce"] = "a nonce of another flow" })
				return s.begin(t, s.so, grace)
			}, sso.ReasonNonce},
			{"bad signature", func(t *testing.T) sessions.Answer {
				s.idp.SignWithForeignKey(true)
				return s.begin(t, s.so, grace)
			}, sso.ReasonSignature},
			{"missing PKCE verifier", func(t *testing.T) sessions.Answer {
				s.idp.DropVerifier(true)
				return s.begin(t, s.so, grace)
			}, sso.ReasonExchange},
			{"another issuer's response (mix-up)", func(t *testing.T) sessions.Answer {
				a := s.begin(t, s.so, grace)
				a.Issuer = "https://login.evil.example"
				return a
			}, sso.ReasonIssuer},
			{"another browser", func(t *testing.T) sessions.Answer {
				a := s.begin(t, s.so, grace)
				other, _ := s.so.Begin(context.Background(), demo.Slug, "/", s.addr)
				a.Binding = other.Binding
				return a
			}, sso.ReasonState},
			{"no binding cookie, so no verifier", func(t *testing.T) sessions.Answer {
				a := s.begin(t, s.so, grace)
				a.Binding = ""
				return a
			}, sso.ReasonState},
			{"expired state", func(t *testing.T) sessions.Answer {
				a := s.begin(t, s.so, grace)
				s.clock.t = s.clock.t.Add(sso.FlowTTL + time.Second)
				return a
			}, sso.ReasonState},
			{"provider error", func(t *testing.T) sessions.Answer {
				a := s.begin(t, s.so, grace)
				a.Code, a.Error = "", "access_denied"
				return a
			}, sso.ReasonProvider},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				defer reset()
				a := tc.answer(t)
				sessionsBefore := s.count(t, `SELECT COUNT(*) FROM sessions`)
				failuresBefore := len(s.events(t, "auth.sso"))
				_, _, err := s.finish(s.so, a)
				if !errs.Is(err, errs.Unauthenticated) || sso.ReasonOf(err) != tc.reason {
					t.Fatalf("refused with %v (reason %q), want Unauthenticated for %q", err, sso.ReasonOf(err), tc.reason)
				}
				if msg := errs.SafeMessage(err); strings.Contains(msg, "\n") || strings.Contains(msg, tc.reason) && tc.reason != sso.ReasonState {
					t.Errorf("the person is told %q", msg)
				}
				if n := s.count(t, `SELECT COUNT(*) FROM sessions`); n != sessionsBefore {
					t.Errorf("%d sessions after the refusal, %d before", n, sessionsBefore)
				}
				if n := s.count(t, `SELECT COUNT(*) FROM accounts WHERE email = $1`, "grace@demo.example"); n != 0 {
					t.Error("a refused answer created the account")
				}
				failures := s.events(t, "auth.sso")
				if len(failures) != failuresBefore+1 {
					t.Fatalf("%d refusals recorded, want %d", len(failures), failuresBefore+1)
				}
				f := failures[len(failures)-1]
				if f.Outcome != "failure" || !f.Security || f.Details["reason"] != tc.reason || f.Org != s.org.ID && tc.reason != sso.ReasonState {
					t.Errorf("refusal recorded as %+v", f)
				}
				for _, secret := range []string{a.Code, a.State, a.Binding, s.idp.ClientSecret} {
					if secret != "" && strings.Contains(f.Body, secret) {
						t.Errorf("the refusal's event holds a secret of the flow: %s", f.Body)
					}
				}
			})
		}
		// After all of it, the same person signs in.
		s.clock.t = time.Now()
		if st, _, err := s.finish(s.so, s.begin(t, s.so, grace)); err != nil || st.Token == "" {
			t.Fatalf("a right answer after the wrong ones: %v", err)
		}
	})
}

// The state of an answer is spent by the answer: the same answer again,
// whether its code is fresh or spent, is refused, on any node.
func TestAUTH13_ReplayedStateIsRefused(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newSSOSite(t, d)
		s.configure(t, nil)
		a := s.begin(t, s.so, monitorUser)
		if _, _, err := s.finish(s.so, a); err != nil {
			t.Fatal(err)
		}
		tokens := s.idp.Tokens()
		for _, so := range []*sessions.SingleSignOn{s.so, s.node()} {
			_, _, err := s.finish(so, a)
			if !errs.Is(err, errs.Unauthenticated) || sso.ReasonOf(err) != sso.ReasonState {
				t.Errorf("a replayed state: %v", err)
			}
		}
		if s.idp.Tokens() != tokens {
			t.Error("a replayed state reached the provider's token endpoint")
		}
	})
}

// A flow begun on one node ends on another: it lives in the database, not
// in the memory of the node that began it.
func TestAUTH13_FlowBegunOnOneNodeEndsOnAnother(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newSSOSite(t, d)
		s.configure(t, nil)
		st, _, err := s.finish(s.node(), s.begin(t, s.so, monitorUser))
		if err != nil || st.Token == "" {
			t.Fatalf("%+v %v", st, err)
		}
	})
}

// Groups give roles: at each sign-in the roles a group gives are given
// while the person is in the group and taken away when they leave it;
// roles an administrator gave are left alone. An account made for a person
// with no role at all is not made.
func TestAUTH13_GroupsGiveAndTakeRoles(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newSSOSite(t, d)
		s.configure(t, func(p *sso.Provider) {
			p.CreateAccounts = true
			p.Roles = []sso.GroupRole{
				{Group: "CN=Data,OU=Groups,DC=demo,DC=example", Role: authz.DataManager, StudyID: s.study},
				{Group: "monitors", Role: authz.Monitor, StudyID: s.study},
			}
		})
		monitor := s.accountID(t, monitorUser.Email)
		u := monitorUser
		u.Groups = []string{"CN=Data,OU=Groups,DC=demo,DC=example", "monitors", "unmapped"}
		s.idp.AddUser(u)
		if _, _, err := s.finish(s.so, s.begin(t, s.so, u)); err != nil {
			t.Fatal(err)
		}
		// The monitor role was the administrator's; the group gave data-manager.
		if got := s.roles(t, monitor); !slices.Equal(got, []string{"data-manager", "monitor"}) {
			t.Errorf("roles in the groups: %v", got)
		}
		last := s.events(t, "auth.login")
		if e := last[len(last)-1]; !e.Security || e.Details["roles_added"] != "data-manager@"+s.study {
			t.Errorf("role change recorded as %+v", e)
		}
		u.Groups = nil
		s.idp.AddUser(u)
		if _, _, err := s.finish(s.so, s.begin(t, s.so, u)); err != nil {
			t.Fatal(err)
		}
		if got := s.roles(t, monitor); !slices.Equal(got, []string{"monitor"}) {
			t.Errorf("roles out of the groups: %v (the administrator's monitor role stays, the group's role goes)", got)
		}

		// A newcomer in a group gets an account and the group's role; one
		// in no group gets neither.
		n := newcomerUser
		n.Groups = []string{"monitors"}
		s.idp.AddUser(n)
		st, _, err := s.finish(s.so, s.begin(t, s.so, n))
		if err != nil || st.Token == "" {
			t.Fatalf("newcomer: %v", err)
		}
		if got := s.roles(t, s.accountID(t, n.Email)); !slices.Equal(got, []string{"monitor"}) {
			t.Errorf("newcomer's roles: %v", got)
		}
		nobody := ssotest.User{Subject: "sub-nobody", Username: "nobody", Password: "nobody's password", Email: "nobody@demo.example", EmailVerified: true}
		s.idp.AddUser(nobody)
		if _, _, err := s.finish(s.so, s.begin(t, s.so, nobody)); sso.ReasonOf(err) != sso.ReasonNoRole {
			t.Errorf("a person without a role: %v", err)
		}
		if n := s.count(t, `SELECT COUNT(*) FROM accounts WHERE email = $1`, nobody.Email); n != 0 {
			t.Error("an account was made for a person without a role")
		}
	})
}

// The organization's second-factor policy still applies after the
// provider: a person whose organization requires a second factor gets its
// challenge, not a session, unless the organization accepts the provider's
// own second factor and the provider's answer proves one (amr).
func TestAUTH13_SecondFactorPolicyStillApplies(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newSSOSite(t, d)
		ctx := context.Background()
		err := s.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
			p := policy.Default()
			p.RequireSecondFactor = true
			_, err := policy.Set(ctx, s.inst.Clinical.In(tx), s.org.ID, p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		withMFA := monitorUser
		withMFA.AMR = []string{"pwd", "otp", "mfa"}
		s.idp.AddUser(withMFA)

		// Not accepted: the provider's second factor does not count.
		s.configure(t, nil)
		st, _, err := s.finish(s.so, s.begin(t, s.so, withMFA))
		if err != nil {
			t.Fatal(err)
		}
		if st.Token != "" || st.Challenge.Purpose != mfa.PurposeEnrolment {
			t.Fatalf("without acceptance: %+v, want the enrolment challenge and no session", st)
		}

		// Accepted, and proven: a session.
		s.configure(t, func(p *sso.Provider) { p.AcceptProviderMFA, p.MFAAMR = true, []string{"mfa"} })
		st, _, err = s.finish(s.so, s.begin(t, s.so, withMFA))
		if err != nil || st.Token == "" {
			t.Fatalf("accepted and proven: %+v %v", st, err)
		}
		logins := s.events(t, "auth.login")
		if got := logins[len(logins)-1].Details["second_factor"]; got != "provider" {
			t.Errorf("second factor recorded as %q", got)
		}

		// Accepted, but not proven (a password alone at the provider).
		s.idp.AddUser(monitorUser)
		st, _, err = s.finish(s.so, s.begin(t, s.so, monitorUser))
		if err != nil {
			t.Fatal(err)
		}
		if st.Token != "" || st.Challenge.Token == "" {
			t.Fatalf("accepted, not proven: %+v, want a challenge and no session", st)
		}
	})
}

// A provider signs in only accounts of its organization alone: the account
// of a person another organization shares, an address the provider does
// not vouch for, one outside the allowed domains and one without an
// account are refused, and nothing is linked or made.
func TestAUTH13_ProviderReachesOnlyItsOwnVerifiedPeople(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newSSOSite(t, d)
		s.configure(t, nil)
		ctx := context.Background()
		monitor := s.accountID(t, monitorUser.Email)
		err := s.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
			other, err := orgs.CreateOrganization(ctx, s.inst.Clinical.In(tx), "Other Hospital", "other")
			if err != nil {
				return err
			}
			_, err = authz.Assign(ctx, s.inst.Clinical.In(tx), authz.Assignment{OrgID: other.ID, AccountID: monitor, Role: authz.OrgManager})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		unverified := ssotest.User{Subject: "sub-u", Username: "unverified", Password: "p", Email: "data-manager@demo.example"}
		foreign := ssotest.User{Subject: "sub-f", Username: "foreign", Password: "p", Email: "someone@elsewhere.example", EmailVerified: true}
		for _, u := range []ssotest.User{unverified, foreign} {
			s.idp.AddUser(u)
		}
		for _, tc := range []struct {
			u      ssotest.User
			reason string
		}{
			{monitorUser, sso.ReasonShared},
			{unverified, sso.ReasonEmail},
			{foreign, sso.ReasonDomain},
			{newcomerUser, sso.ReasonNoAccount},
		} {
			_, _, err := s.finish(s.so, s.begin(t, s.so, tc.u))
			if !errs.Is(err, errs.Unauthenticated) || sso.ReasonOf(err) != tc.reason {
				t.Errorf("%s: %v, want the refusal %q", tc.u.Username, err, tc.reason)
			}
		}
		if n := s.count(t, `SELECT COUNT(*) FROM sso_identities`); n != 0 {
			t.Errorf("%d subjects linked by refused sign-ins", n)
		}
		if n := s.count(t, `SELECT COUNT(*) FROM accounts WHERE email = $1`, newcomerUser.Email); n != 0 {
			t.Error("an account was made without the provider's leave")
		}
	})
}

// The provider's settings are an administrator's, with a fresh
// confirmation; a provider the operator did not allow, a group that gives
// a participant's role, and a first setting without a secret are refused;
// the client secret is stored only wrapped and never on the trail.
func TestAUTH13_OnlyAdministratorsSetTheProvider(t *testing.T) {
	s := newSSOSite(t, sqldb.SQLite)
	ctx := context.Background()
	p := sso.Default()
	p.Issuer, p.ClientID = s.idp.Issuer, s.idp.ClientID
	secret := s.idp.ClientSecret

	monitor := gate.Actor{AccountID: s.accountID(t, s.logins[authz.Monitor].Email), SessionID: "m", RemoteAddr: "192.0.2.2", ConfirmedAt: s.clock.now()}
	if err := s.admin.SetProvider(ctx, monitor, demo.Slug, p, secret); !errs.Is(err, errs.NotFound) {
		t.Errorf("a monitor sets the provider: %v", err)
	}
	stale := s.adminActor(t)
	stale.ConfirmedAt = s.clock.now().Add(-time.Hour)
	if err := s.admin.SetProvider(ctx, stale, demo.Slug, p, secret); !errs.Is(err, errs.StepUpRequired) {
		t.Errorf("without a fresh confirmation: %v", err)
	}
	elsewhere := p
	elsewhere.Issuer = "https://login.elsewhere.example/tenant"
	participant := p
	participant.Roles = []sso.GroupRole{{Group: "patients", Role: authz.Participant, StudyID: s.study}}
	for name, tc := range map[string]struct {
		p      sso.Provider
		secret string
	}{"issuer not allowed": {elsewhere, secret}, "participant role": {participant, secret}, "no secret": {p, ""}} {
		if err := s.admin.SetProvider(ctx, s.adminActor(t), demo.Slug, tc.p, tc.secret); !errs.Is(err, errs.Invalid) {
			t.Errorf("%s: %v, want Invalid", name, err)
		}
	}
	if n := s.count(t, `SELECT COUNT(*) FROM sso_providers`); n != 0 {
		t.Fatalf("refused settings stored %d providers", n)
	}
	if err := s.admin.SetProvider(ctx, s.adminActor(t), demo.Slug, p, secret); err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := s.inst.Clinical.QueryRowContext(ctx, `SELECT client_secret FROM sso_providers`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if len(stored) == 0 || strings.Contains(string(stored), secret) {
		t.Error("the client secret is stored in clear")
	}
	sets := s.events(t, "org.sso.set")
	if len(sets) == 0 {
		t.Fatal("no org.sso.set event")
	}
	for _, e := range sets {
		if strings.Contains(e.Body, secret) {
			t.Errorf("the trail holds the client secret: %s", e.Body)
		}
	}
	if last := sets[len(sets)-1]; !last.Security || last.Outcome != "success" || last.Details["client_auth"] != "new secret" {
		t.Errorf("the setting recorded as %+v", last)
	}
	// The secret cannot follow the provider to another issuer or client.
	moved := p
	moved.ClientID = "another-client"
	if err := s.admin.SetProvider(ctx, s.adminActor(t), demo.Slug, moved, ""); !errs.Is(err, errs.Invalid) {
		t.Errorf("a kept secret for another client: %v", err)
	}
	_, got, configured, err := s.admin.Provider(ctx, s.adminActor(t), demo.Slug)
	if err != nil || !configured || !got.HasSecret || got.ClientID != p.ClientID {
		t.Errorf("read back: %+v %v %v", got, configured, err)
	}
	if err := s.admin.RemoveProvider(ctx, s.adminActor(t), demo.Slug); err != nil {
		t.Fatal(err)
	}
	if _, err := s.so.Begin(ctx, demo.Slug, "/", "198.51.100.7"); !errs.Is(err, errs.NotFound) {
		t.Errorf("a sign-in after the provider was removed: %v", err)
	}
}

// The provider's client secret follows a rotation of the key-encryption
// key (CRY-07): the rotation re-wraps it, and sign-in still opens it.
func TestAUTH13_ClientSecretIsRewrappedByAKEKRotation(t *testing.T) {
	s := newSSOSite(t, sqldb.SQLite)
	s.configure(t, nil)
	ctx := context.Background()
	store := sso.Secrets(s.so.Store.Gate)
	use, err := store.KEKUse(ctx)
	if err != nil || len(use) != 1 {
		t.Fatalf("kek use %v %v", use, err)
	}
	if n, err := store.Count(ctx); err != nil || n != 1 {
		t.Fatalf("count %d %v", n, err)
	}
	local := s.kek.(*keys.LocalKEK)
	before := local.ID()
	if _, err := local.RotateKEK(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := store.Rewrap(ctx, local, "", 10)
	if err != nil || b.Visited != 1 || b.Rewrapped != 1 || b.Failed != 0 {
		t.Fatalf("rewrap %+v %v", b, err)
	}
	if use, err := store.KEKUse(ctx); err != nil || use[local.ID()] != 1 || local.ID() == before {
		t.Fatalf("after the rotation: %v %v", use, err)
	}
	if err := local.RetireKEK(ctx, before); err != nil {
		t.Fatal(err)
	}
	if st, _, err := s.finish(s.so, s.begin(t, s.so, monitorUser)); err != nil || st.Token == "" {
		t.Fatalf("sign-in after the rotation: %v", err)
	}
}

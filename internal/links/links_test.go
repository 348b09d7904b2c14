package links

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/authz/authzadmin"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/policy/policytest"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type fixture struct {
	db             *sqldb.DB
	svc            *Service
	outbox         string
	org            orgs.Organization
	admin, manager gate.Actor
	sess           *sessions.Store
}

const userPassword = "an old but sturdy passphrase"

func setup(t *testing.T, d sqldb.Dialect) fixture {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	g := gate.New(gate.Config{Clinical: db})
	f := fixture{db: db, outbox: filepath.Join(t.TempDir(), "outbox"), sess: &sessions.Store{Gate: g, Limits: sessions.DefaultLimits}}
	f.svc = &Service{Gate: g, Mail: &mail.Outbox{Dir: f.outbox, From: "custodia@clinic.example"}, BaseURL: "https://custodia.clinic.example/"}
	// Mail goes out after the request; the outbox's folder is removed only
	// once the last is written.
	t.Cleanup(f.svc.Wait)
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if f.org, err = orgs.CreateOrganization(ctx, tx, "Clinic", ""); err != nil {
			return err
		}
		a, _, err := accounts.Enrol(ctx, tx, "admin@clinic.example", "", authz.Assignment{OrgID: f.org.ID, Role: authz.OrgAdmin})
		if err != nil {
			return err
		}
		m, _, err := accounts.Enrol(ctx, tx, "manager@clinic.example", "", authz.Assignment{OrgID: f.org.ID, Role: authz.OrgManager})
		if err != nil {
			return err
		}
		f.admin, f.manager = gate.Actor{AccountID: a.ID}, gate.Actor{AccountID: m.ID}
		u, err := accounts.Create(ctx, tx, "user@clinic.example", "Una User")
		if err != nil {
			return err
		}
		return accounts.SetPassword(ctx, tx, u, userPassword, accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mails returns the texts of the messages in the outbox addressed to to.
func (f fixture) mails(t *testing.T, to string) []string {
	t.Helper()
	f.svc.Wait()
	files, _ := filepath.Glob(filepath.Join(f.outbox, "*.eml"))
	var out []string
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\r\nTo: "+to+"\r\n") {
			out = append(out, string(b))
		}
	}
	return out
}

var linkPattern = regexp.MustCompile(`https://custodia\.clinic\.example/(reset|setup)/([A-Za-z0-9_-]{43})`)

func TestAUTH07_ResetLinkIsSingleUseAndEndsEverySession(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		stolen, _, err := f.sess.SignIn(ctx, "user@clinic.example", userPassword, "198.51.100.7", "thief")
		if err != nil {
			t.Fatal(err)
		}
		if err := f.svc.RequestReset(ctx, "User@Clinic.example", gate.Actor{RemoteAddr: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
		msgs := f.mails(t, "user@clinic.example")
		if len(msgs) != 1 {
			t.Fatalf("%d reset mails, want 1", len(msgs))
		}
		m := linkPattern.FindStringSubmatch(msgs[0])
		if m == nil || m[1] != "reset" {
			t.Fatalf("no reset link in:\n%s", msgs[0])
		}
		token := m[2]
		if err := f.svc.ConfirmReset(ctx, token, "short", gate.Actor{}); !errs.Is(err, errs.Invalid) {
			t.Errorf("weak new password: %v", err)
		}
		if err := f.svc.ConfirmReset(ctx, token, "a brand new passphrase", gate.Actor{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.sess.Lookup(ctx, stolen); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("a session from before the reset still works: %v", err)
		}
		if err := f.svc.ConfirmReset(ctx, token, "yet another passphrase", gate.Actor{}); !errs.Is(err, errs.NotFound) {
			t.Errorf("reused reset link: %v, want NotFound", err)
		}
		if _, err := accounts.Authenticate(ctx, f.db, "user@clinic.example", "a brand new passphrase"); err != nil {
			t.Errorf("new password: %v", err)
		}
		if _, err := accounts.Authenticate(ctx, f.db, "user@clinic.example", userPassword); err == nil {
			t.Error("old password still works")
		}
	})
}

func TestAUTH07_ResetLinkExpiresAfterThirtyMinutes(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	f.svc.RequestReset(ctx, "user@clinic.example", gate.Actor{})
	token := linkPattern.FindStringSubmatch(f.mails(t, "user@clinic.example")[0])[2]
	var expires, created int64
	f.db.QueryRowContext(ctx, `SELECT expires_at, created_at FROM account_tokens WHERE purpose = 'reset'`).Scan(&expires, &created)
	if got := time.Duration(expires-created) * time.Microsecond; got != 30*time.Minute {
		t.Errorf("reset link lives %s, want 30m", got)
	}
	// Age the link past its end, as the clock would.
	f.db.ExecContext(ctx, `UPDATE account_tokens SET expires_at = $1 WHERE purpose = 'reset'`, time.Now().Add(-time.Second).UnixMicro())
	if err := f.svc.ConfirmReset(ctx, token, "a brand new passphrase", gate.Actor{}); !errs.Is(err, errs.NotFound) {
		t.Errorf("expired link: %v, want NotFound", err)
	}
}

func TestAUTH06_ResetAnswersAlikeForUnknownAddress(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	for _, email := range []string{"user@clinic.example", "nobody@clinic.example"} {
		start := time.Now()
		err := f.svc.RequestReset(ctx, email, gate.Actor{})
		if err != nil {
			t.Errorf("%s: %v", email, err)
		}
		if time.Since(start) < answerTime {
			t.Errorf("%s answered in %s, before the padded time", email, time.Since(start))
		}
	}
	if n := len(f.mails(t, "nobody@clinic.example")); n != 0 {
		t.Errorf("mail sent to an address without account")
	}
}

func TestWEB07_EmailsCarryNoConfidentialData(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	f.svc.RequestReset(ctx, "user@clinic.example", gate.Actor{})
	if err := f.svc.Invite(ctx, f.admin, f.org.Slug, Invitation{Email: "new@clinic.example", Role: authz.OrgManager}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"user@clinic.example", "new@clinic.example"} {
		for _, m := range f.mails(t, to) {
			for _, secret := range []string{userPassword, f.org.ID, "Una User"} {
				if strings.Contains(m, secret) {
					t.Errorf("mail to %s contains %q", to, secret)
				}
			}
			if !linkPattern.MatchString(m) {
				t.Errorf("mail to %s has no link into the application", to)
			}
		}
	}
}

// An invitation grants nothing until the person accepts it (ACL-02): the
// inviting organization sees the address it typed and that it is invited,
// the same whether or not the address has an account; its policy binds no
// one yet; the person accepts with the password they choose, or with the
// one their account has, or declines; each answer is on the trail of the
// organization and of the account.
func TestACL02_InvitationGrantsOnlyWhenAccepted(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		roster := &authzadmin.Service{Gate: f.svc.Gate}
		user, err := accounts.ByEmail(ctx, f.db, "user@clinic.example")
		if err != nil {
			t.Fatal(err)
		}
		err = f.svc.Gate.Operate(ctx, "org.policy.set", func(o *gate.OpTx) error {
			return policytest.RequireSecondFactor(ctx, o, f.org.ID, true)
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range []string{"new@clinic.example", "User@Clinic.example"} {
			if err := f.svc.Invite(ctx, f.admin, f.org.Slug, Invitation{Email: to, Role: authz.OrgManager}); err != nil {
				t.Fatalf("invite %s: %v", to, err)
			}
		}
		members, invited, err := roster.Members(ctx, f.admin, f.org.Slug)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if m.Account.ID == user.ID || m.Account.Email == "new@clinic.example" {
				t.Errorf("%s is a member before accepting", m.Account.Email)
			}
		}
		if len(invited) != 2 {
			t.Fatalf("%d invitations listed, want 2", len(invited))
		}
		if p, _ := policy.Effective(ctx, f.db, user.ID); p.RequireSecondFactor {
			t.Error("the inviting organization's policy binds the invited account before it accepts")
		}
		// The trail tells the inviter no more than the answer: both events
		// name an invitation, neither an account.
		var invites, named int
		f.db.QueryRowContext(ctx, `SELECT count(*), count(CASE WHEN object_type = 'invitation' THEN 1 END)
			FROM audit_events WHERE action = 'member.invite' AND org_id = $1`, f.org.ID).Scan(&invites, &named)
		if invites != 2 || named != 2 {
			t.Errorf("member.invite events: %d, %d naming an invitation; want 2 and 2", invites, named)
		}
		link := func(to string) string {
			t.Helper()
			msgs := f.mails(t, to)
			if len(msgs) != 1 {
				t.Fatalf("%d mails to %s, want 1", len(msgs), to)
			}
			m := linkPattern.FindStringSubmatch(msgs[0])
			if m == nil || m[1] != "setup" {
				t.Fatalf("no invitation link in %s", msgs[0])
			}
			return m[2]
		}

		// The existing account accepts with its own password, not a new one.
		tok := link("user@clinic.example")
		if l, err := f.svc.PeekSetup(ctx, tok); err != nil || !l.KeepPassword || !l.Invitation || l.OrgName != f.org.Name {
			t.Fatalf("PeekSetup: %+v, %v; an invitation to accept with the account's password", l, err)
		}
		if err := f.svc.CompleteSetup(ctx, tok, "a password of my choosing", gate.Actor{}); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("accept with another password: %v, want Unauthenticated", err)
		}
		if as, _ := authz.AssignmentsOf(ctx, f.db, f.org.ID, user.ID); len(as) != 0 {
			t.Fatalf("a failed acceptance granted %+v", as)
		}
		if err := f.svc.CompleteSetup(ctx, tok, userPassword, gate.Actor{}); err != nil {
			t.Fatal(err)
		}
		if as, _ := authz.AssignmentsOf(ctx, f.db, f.org.ID, user.ID); len(as) != 1 || as[0].Role != authz.OrgManager {
			t.Errorf("roles after accepting: %+v", as)
		}
		if p, _ := policy.Effective(ctx, f.db, user.ID); !p.RequireSecondFactor {
			t.Error("the organization's policy does not bind the account that accepted")
		}
		var inOrg, inAccount int
		f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'member.accept'
			AND org_id = $1 AND actor_account = $2 AND security = $3`, f.org.ID, user.ID, true).Scan(&inOrg)
		f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'account.accept'
			AND org_id IS NULL AND actor_account = $1`, user.ID).Scan(&inAccount)
		if inOrg != 1 || inAccount != 1 {
			t.Errorf("acceptance recorded %d times in the organization and %d in the account's trail, want 1 and 1", inOrg, inAccount)
		}
		if err := f.svc.CompleteSetup(ctx, tok, userPassword, gate.Actor{}); !errs.Is(err, errs.NotFound) {
			t.Errorf("the link accepted twice: %v", err)
		}

		// The new address declines: no role, no password, the link spent.
		tok = link("new@clinic.example")
		if l, err := f.svc.PeekSetup(ctx, tok); err != nil || l.KeepPassword || !l.Invitation {
			t.Fatalf("PeekSetup: %+v, %v; an invitation with a password to choose", l, err)
		}
		if err := f.svc.DeclineInvitation(ctx, tok, gate.Actor{}); err != nil {
			t.Fatal(err)
		}
		fresh, err := accounts.ByEmail(ctx, f.db, "new@clinic.example")
		if err != nil || fresh.HasPassword {
			t.Fatalf("declined address: %+v, %v", fresh, err)
		}
		if as, _ := authz.AssignmentsOf(ctx, f.db, f.org.ID, fresh.ID); len(as) != 0 {
			t.Errorf("a declined invitation granted %+v", as)
		}
		if err := f.svc.CompleteSetup(ctx, tok, "my own fine passphrase", gate.Actor{}); !errs.Is(err, errs.NotFound) {
			t.Errorf("a declined invitation's link still sets a password: %v", err)
		}
		if err := f.svc.DeclineInvitation(ctx, tok, gate.Actor{}); !errs.Is(err, errs.NotFound) {
			t.Errorf("declined twice: %v", err)
		}
		var declined int
		f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'member.decline' AND org_id = $1`, f.org.ID).Scan(&declined)
		if declined != 1 {
			t.Errorf("%d member.decline events in the organization, want 1", declined)
		}
		if _, invited, _ := roster.Members(ctx, f.admin, f.org.Slug); len(invited) != 0 {
			t.Errorf("answered invitations still listed: %+v", invited)
		}
	})
}

// A new address chooses its password through the invitation's link, which
// accepts it; an existing member is given the role at once, with a notice.
func TestACL02_NewAddressAcceptsByChoosingAPassword(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		if err := f.svc.Invite(ctx, f.admin, f.org.Slug, Invitation{Email: "new@clinic.example", Role: authz.OrgManager}); err != nil {
			t.Fatal(err)
		}
		m := linkPattern.FindStringSubmatch(f.mails(t, "new@clinic.example")[0])
		if m == nil || m[1] != "setup" {
			t.Fatal("no setup link")
		}
		if err := f.svc.CompleteSetup(ctx, m[2], "my own fine passphrase", gate.Actor{}); err != nil {
			t.Fatal(err)
		}
		acc, err := accounts.Authenticate(ctx, f.db, "new@clinic.example", "my own fine passphrase")
		if err != nil {
			t.Fatal(err)
		}
		as, _ := authz.AssignmentsOf(ctx, f.db, f.org.ID, acc.ID)
		if len(as) != 1 || as[0].Role != authz.OrgManager {
			t.Errorf("roles = %+v", as)
		}
		// Now a member of staff: another role comes at once, with a notice.
		if err := f.svc.Invite(ctx, f.admin, f.org.Slug, Invitation{Email: "new@clinic.example", Role: authz.OrgAdmin}); err != nil {
			t.Fatal(err)
		}
		if as, _ := authz.AssignmentsOf(ctx, f.db, f.org.ID, acc.ID); len(as) != 2 {
			t.Errorf("a member's new role: %+v", as)
		}
		notice := f.mails(t, "new@clinic.example")
		if len(notice) != 2 || strings.Contains(notice[1], "/setup/") {
			t.Errorf("member's notice: %v; want a sign-in link and no setup link", notice)
		}
	})
}

func TestACL_InvitationCannotGrantMoreThanTheInviterHolds(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	err := f.svc.Invite(ctx, f.manager, f.org.Slug, Invitation{Email: "boss@clinic.example", Role: authz.OrgAdmin})
	if !errs.Is(err, errs.Forbidden) {
		t.Errorf("manager granting org-admin: %v, want Forbidden", err)
	}
	if _, err := accounts.ByEmail(ctx, f.db, "boss@clinic.example"); err == nil {
		t.Error("the refused invitation created an account")
	}
	if err := f.svc.Invite(ctx, f.manager, f.org.Slug, Invitation{Email: "peer@clinic.example", Role: authz.OrgManager}); err != nil {
		t.Errorf("manager inviting a manager: %v", err)
	}
	outsider := gate.Actor{AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaa"}
	if err := f.svc.Invite(ctx, outsider, f.org.Slug, Invitation{Email: "x@clinic.example", Role: authz.Participant}); !errs.Is(err, errs.NotFound) {
		t.Errorf("outsider inviting: %v, want NotFound", err)
	}
	if err := f.svc.Invite(ctx, f.admin, f.org.Slug, Invitation{Email: "x@clinic.example", Role: "wizard"}); !errs.Is(err, errs.Invalid) {
		t.Errorf("unknown role: %v, want Invalid", err)
	}
}

func TestAUTH04_PasswordResetLiftsLockout(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	for range accounts.LockAfter {
		f.sess.SignIn(ctx, "user@clinic.example", "a wrong guess entirely", "192.0.2.9", "t")
	}
	if _, err := accounts.Authenticate(ctx, f.db, "user@clinic.example", userPassword); err == nil {
		t.Fatal("locked account signed in")
	}
	f.svc.RequestReset(ctx, "user@clinic.example", gate.Actor{RemoteAddr: "192.0.2.11"})
	token := linkPattern.FindStringSubmatch(f.mails(t, "user@clinic.example")[0])[2]
	if err := f.svc.ConfirmReset(ctx, token, "a brand new passphrase", gate.Actor{RemoteAddr: "192.0.2.11"}); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Authenticate(ctx, f.db, "user@clinic.example", "a brand new passphrase"); err != nil {
		t.Errorf("sign-in after reset: %v", err)
	}
}

func TestAUTH05_ResetRequestsAreRateLimited(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		err = f.svc.RequestReset(ctx, "nobody@clinic.example", gate.Actor{RemoteAddr: "203.0.113.5"})
	}
	if !errs.Is(err, errs.RateLimited) {
		t.Errorf("repeated reset requests for one address: %v, want RateLimited", err)
	}
}

// Guessing links costs: every failed attempt at a link (a made-up token) is
// on the record with the budget it spent, and past the limit of the source
// address the next attempt is refused, also on the record, whatever it
// carries.
func TestAUTH05_GuessedLinksSpendTheirBudgetOnTheRecord(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		a := gate.Actor{RemoteAddr: "192.0.2.44", UserAgent: "guesser"}
		for i := range confirmPerAddress.Limit {
			guess := strings.Repeat(string(rune('a'+i%26)), 43)
			if err := f.svc.ConfirmReset(ctx, guess, "a brand new passphrase", a); !errs.Is(err, errs.NotFound) {
				t.Fatalf("guess %d: %v, want NotFound", i+1, err)
			}
		}
		if err := f.svc.CompleteSetup(ctx, strings.Repeat("z", 43), "a brand new passphrase", a); !errs.Is(err, errs.RateLimited) {
			t.Errorf("attempt past the limit: %v, want RateLimited", err)
		}
		count := func(action, outcome string) int {
			var n int
			if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = $1 AND outcome = $2 AND body LIKE $3`,
				action, outcome, "%"+a.RemoteAddr+"%").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := count("auth.reset", "failure"); n != confirmPerAddress.Limit {
			t.Errorf("%d failed resets on the record, want %d", n, confirmPerAddress.Limit)
		}
		if n := count("account.setup", "denied"); n != 1 {
			t.Errorf("%d refused setups on the record, want 1", n)
		}
	})
}

// A disabled account is sent no reset link (ASVS V7.4.2): a new password
// would open nothing, and the answer is that of any other address.
func TestAUTH07_DisabledAccountGetsNoResetLink(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		user, err := accounts.ByEmail(ctx, f.db, "user@clinic.example")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.ExecContext(ctx, `UPDATE accounts SET disabled_at = $1 WHERE id = $2`, sqldb.Now(), user.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.RequestReset(ctx, "user@clinic.example", gate.Actor{RemoteAddr: "192.0.2.1"}); err != nil {
			t.Fatalf("reset of a disabled account: %v, want the same answer as any", err)
		}
		if msgs := f.mails(t, "user@clinic.example"); len(msgs) != 0 {
			t.Errorf("a disabled account was sent %d reset mails", len(msgs))
		}
	})
}

// Invitations send e-mail, so they are paced (ASVS V2.4.1, V15.2.2): at
// most ratelimit.InvitesPerAddressPerDay to one address a day, whether or
// not it has an account; past it the answer is RateLimited, no mail goes
// and nothing is granted or stored, and the refusal is on the trail.
func TestWEB07_InvitationsArePacedPerAddress(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		for _, to := range []string{"new@clinic.example", "user@clinic.example"} {
			for i := range ratelimit.InvitesPerAddressPerDay {
				if err := f.svc.Invite(ctx, f.admin, f.org.Slug, Invitation{Email: to, Role: authz.OrgManager}); err != nil {
					t.Fatalf("invitation %d to %s: %v", i+1, to, err)
				}
			}
			sent := len(f.mails(t, to))
			err := f.svc.Invite(ctx, f.admin, f.org.Slug, Invitation{Email: to, Role: authz.OrgManager})
			if !errs.Is(err, errs.RateLimited) {
				t.Fatalf("invitation %d to %s in a day: %v, want RateLimited", ratelimit.InvitesPerAddressPerDay+1, to, err)
			}
			if n := len(f.mails(t, to)); n != sent {
				t.Errorf("a refused invitation sent %d mails to %s", n-sent, to)
			}
		}
		var refused, invitations int
		f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'member.invite' AND outcome = 'failure'`).Scan(&refused)
		f.db.QueryRowContext(ctx, `SELECT count(*) FROM member_invitations`).Scan(&invitations)
		if refused != 2 {
			t.Errorf("%d refused invitations on the trail, want 2", refused)
		}
		if want := 2 * ratelimit.InvitesPerAddressPerDay; invitations > want {
			t.Errorf("%d invitations stored, want at most %d", invitations, want)
		}
		// Another address is not held back.
		if err := f.svc.Invite(ctx, f.admin, f.org.Slug, Invitation{Email: "third@clinic.example", Role: authz.OrgManager}); err != nil {
			t.Fatalf("invitation to another address: %v", err)
		}
	})
}

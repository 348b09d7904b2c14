package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// The operator disables and enables a member's account and ends the
// sessions of one member or of every member from the command line (ASVS
// V7.4.2, V7.4.5): a disabled account's session ends and its sign-in fails
// as a wrong password does; the last administrator is refused; a stranger
// to the organization is not found; each change is the operator's
// security event.
func TestAUTH10_OperatorDisablesEnablesAndSignsOutFromTheCommandLine(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		cfg := instance.Config{DataDir: t.TempDir()}
		flags := []string{"--data", cfg.DataDir}
		if d == sqldb.Postgres {
			cfg.Database, cfg.IdentityDatabase = sqldbtest.URL(t, d), sqldbtest.URL(t, d)
			flags = append(flags, "--database", cfg.Database, "--identity-database", cfg.IdentityDatabase)
		} else {
			migratedSQLite(t, cfg.DataDir)
		}
		cmd := func(stdin string, args ...string) result { return run(t, nil, stdin, append(args, flags...)...) }
		for _, org := range []string{"Clinic", "Other"} {
			if r := cmd(goodPassword, "init", "--org", org, "--admin-email", strings.ToLower(org)+"@x.example", "--password-stdin"); r.code != 0 {
				t.Fatalf("init %s: %s", org, r.stderr)
			}
		}
		const member = "member@x.example"
		if r := cmd(goodPassword, "user", "add", "--org", "clinic", "--email", member, "--role", "org-manager", "--password-stdin"); r.code != 0 {
			t.Fatalf("user add: %s", r.stderr)
		}
		inst, err := instance.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		store := &sessions.Store{Gate: gate.New(gate.Config{Clinical: inst.Clinical}), Limits: sessions.DefaultLimits}
		signIn := func(email string) (string, error) {
			tok, _, err := store.SignIn(ctx, email, goodPassword, "192.0.2.9", "test")
			return tok, err
		}
		live := func(tok string) bool { _, err := store.Lookup(ctx, tok); return err == nil }
		memberTok, err := signIn(member)
		if err != nil {
			t.Fatal(err)
		}
		adminTok, err := signIn("clinic@x.example")
		if err != nil {
			t.Fatal(err)
		}

		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"user", "disable", "--org", "clinic"}, "required"},
			{[]string{"user", "disable", "--org", "clinic", "--email", "not an address"}, "not a valid e-mail"},
			{[]string{"user", "disable", "--org", "nope", "--email", member}, "no organization"},
			{[]string{"user", "disable", "--org", "clinic", "--email", "ghost@x.example"}, "has no account in clinic"},
			{[]string{"user", "disable", "--org", "other", "--email", member}, "has no account in other"},
			{[]string{"user", "disable", "--org", "clinic", "--email", "clinic@x.example"}, "last organization admin"},
			{[]string{"user", "enable", "--org", "other", "--email", member}, "has no account in other"},
			{[]string{"user", "sign-out", "--org", "clinic"}, "one of --email and --all"},
			{[]string{"user", "sign-out", "--org", "clinic", "--email", member, "--all"}, "one of --email and --all"},
			{[]string{"user", "sign-out", "--org", "other", "--email", member}, "has no account in other"},
		} {
			checkOneLineError(t, cmd("", tc.args...), tc.want)
		}
		if !live(memberTok) || !live(adminTok) {
			t.Fatal("a refused command ended a session")
		}

		r := cmd("", "user", "disable", "--org", "clinic", "--email", "Member@X.example")
		if r.code != 0 || !strings.Contains(r.stdout, "Disabled the account member@x.example") || !strings.Contains(r.stdout, "1 sessions") {
			t.Fatalf("user disable: %d %q %q", r.code, r.stdout, r.stderr)
		}
		if live(memberTok) {
			t.Error("the disabled account's session lives on")
		}
		if _, err := signIn(member); !errors.Is(err, accounts.ErrBadCredentials) {
			t.Errorf("disabled account signs in: %v, want the wrong-password answer", err)
		}
		var body string
		var security bool
		if err := inst.Clinical.QueryRowContext(ctx,
			`SELECT body, security FROM audit_events WHERE action = 'account.disable'`).Scan(&body, &security); err != nil || !security {
			t.Fatalf("account.disable event: %v, security %v", err, security)
		}
		for _, want := range []string{`"role":"operator"`, `"via":"cli"`, `"sessions_ended_count":"1"`} {
			if !strings.Contains(body, want) {
				t.Errorf("account.disable event lacks %s: %s", want, body)
			}
		}
		if r := cmd("", "user", "disable", "--org", "clinic", "--email", member); r.code != 0 || !strings.Contains(r.stdout, "disabled already") {
			t.Errorf("second disable: %d %q %q", r.code, r.stdout, r.stderr)
		}

		if r := cmd("", "user", "enable", "--org", "clinic", "--email", member); r.code != 0 || !strings.Contains(r.stdout, "Enabled the account") {
			t.Fatalf("user enable: %d %q %q", r.code, r.stdout, r.stderr)
		}
		if live(memberTok) {
			t.Error("enabling brought the ended session back")
		}
		if memberTok, err = signIn(member); err != nil {
			t.Fatalf("sign-in after enable: %v", err)
		}
		if r := cmd("", "user", "enable", "--org", "clinic", "--email", member); r.code != 0 || !strings.Contains(r.stdout, "not disabled") {
			t.Errorf("second enable: %d %q %q", r.code, r.stdout, r.stderr)
		}

		if r := cmd("", "user", "sign-out", "--org", "clinic", "--email", member); r.code != 0 || !strings.Contains(r.stdout, "Signed out member@x.example: 1 sessions") {
			t.Fatalf("user sign-out: %d %q %q", r.code, r.stdout, r.stderr)
		}
		if live(memberTok) || !live(adminTok) {
			t.Error("sign-out of one member ended the wrong sessions")
		}
		if memberTok, err = signIn(member); err != nil {
			t.Fatalf("sign-in after sign-out: %v", err)
		}
		otherTok, err := signIn("other@x.example")
		if err != nil {
			t.Fatal(err)
		}
		if r := cmd("", "user", "sign-out", "--org", "clinic", "--all"); r.code != 0 || !strings.Contains(r.stdout, "Signed out the 2 members of clinic: 2 sessions") {
			t.Fatalf("user sign-out --all: %d %q %q", r.code, r.stdout, r.stderr)
		}
		if live(memberTok) || live(adminTok) || !live(otherTok) {
			t.Error("sign-out --all ended the wrong sessions")
		}
		var n int
		inst.Clinical.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM audit_events WHERE action IN ('account.disable', 'account.enable', 'account.sessions.end', 'org.sessions.end') AND security = $1`,
			true).Scan(&n)
		if n != 5 {
			t.Errorf("%d security events of the access commands, want 5 (disable twice, enable, two sign-outs)", n)
		}
		if r := run(t, nil, "", "user", "sign-out", "--help"); r.code != 0 || !strings.Contains(r.stdout, "user sign-out --org SLUG (--email EMAIL | --all)") {
			t.Errorf("user sign-out --help: %d %q", r.code, r.stdout)
		}
	})
}

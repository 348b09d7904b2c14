package cli

import (
	"bytes"
	"context"
	"database/sql"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code := Run(context.Background(), append([]string{"custodia"}, args...), getenv, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// checkOneLineError asserts the CLI's failure contract: non-zero exit, one
// line "custodia: …" on stderr, no Go internals.
func checkOneLineError(t *testing.T, r result, want string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want failure (stdout %q)", r.stdout)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "custodia: ") {
		t.Errorf("stderr = %q, want one line starting custodia: ", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr = %q, want it to mention %q", r.stderr, want)
	}
	for _, leak := range []string{"goroutine", "panic", "*errs.Error", "0x"} {
		if strings.Contains(r.stderr, leak) {
			t.Errorf("stderr leaks %q: %q", leak, r.stderr)
		}
	}
}

const goodPassword = "plenty-long passphrase 42"

func TestInitCreatesOrganizationAndAdmin(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		data := t.TempDir()
		dbFlags := []string{"--data", data}
		if d == sqldb.Postgres {
			dbFlags = append(dbFlags, "--database", sqldbtest.URL(t, d), "--identity-database", sqldbtest.URL(t, d))
		}
		r := run(t, nil, goodPassword+"\n", append([]string{"init", "--org", "St. Elsewhere Hospital", "--admin-email", "Admin@Elsewhere.example", "--password-stdin"}, dbFlags...)...)
		if r.code != 0 {
			t.Fatalf("init: %d %s", r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, "st-elsewhere-hospital") {
			t.Errorf("stdout %q lacks the slug", r.stdout)
		}
		cfg := instance.Config{DataDir: data}
		if d == sqldb.Postgres {
			cfg.Database, cfg.IdentityDatabase = dbFlags[3], dbFlags[5]
		}
		inst, err := instance.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		acc, err := accounts.Authenticate(context.Background(), inst.Clinical, "admin@elsewhere.example", goodPassword)
		if err != nil {
			t.Fatalf("admin cannot sign in with the stdin password: %v", err)
		}
		org, err := orgs.OrganizationBySlug(context.Background(), inst.Clinical, "st-elsewhere-hospital")
		if err != nil {
			t.Fatal(err)
		}
		as, err := authz.AssignmentsOf(context.Background(), inst.Clinical, org.ID, acc.ID)
		if err != nil || len(as) != 1 || as[0].Role != authz.OrgAdmin {
			t.Errorf("admin's roles = %+v, %v", as, err)
		}
	})
}

func TestInitWithoutPasswordPrintsOneTimeLink(t *testing.T) {
	data := t.TempDir()
	r := run(t, nil, "", "init", "--org", "Clinic", "--admin-email", "a@clinic.example", "--data", data, "--url", "https://custodia.clinic.example")
	if r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	m := regexp.MustCompile(`https://custodia\.clinic\.example/setup/([A-Za-z0-9_-]{43})`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no setup link in %q", r.stdout)
	}
	inst, err := instance.Open(context.Background(), instance.Config{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if _, err := accounts.CompleteSetup(context.Background(), gate.New(gate.Config{Clinical: inst.Clinical}), m[1], goodPassword); err != nil {
		t.Fatalf("link does not work: %v", err)
	}
	if _, err := accounts.CompleteSetup(context.Background(), gate.New(gate.Config{Clinical: inst.Clinical}), m[1], goodPassword+"x"); err == nil {
		t.Fatal("link worked twice")
	}
}

func TestUserAddAssignsScopedRoles(t *testing.T) {
	data := migratedSQLite(t, t.TempDir())
	if r := run(t, nil, goodPassword, "init", "--org", "Clinic", "--admin-email", "a@clinic.example", "--data", data, "--password-stdin"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	inst, err := instance.Open(context.Background(), instance.Config{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	org, _ := orgs.OrganizationBySlug(context.Background(), inst.Clinical, "clinic")
	var study orgs.Study
	var site orgs.Site
	inst.Clinical.InTx(context.Background(), func(tx *sql.Tx) error {
		study, _ = orgs.CreateStudy(context.Background(), tx, org.ID, orgs.KindStudy, "Trial")
		site, err = orgs.CreateSite(context.Background(), tx, org.ID, study.ID, "North")
		return err
	})
	inst.Close()

	env := map[string]string{"CUSTODIA_DATA": data} // flags from the environment
	r := run(t, env, goodPassword, "user", "add", "--org", "clinic", "--email", "inv@clinic.example", "--role", "site-investigator", "--site", site.ID, "--password-stdin")
	if r.code != 0 {
		t.Fatalf("user add: %s", r.stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--org", "clinic", "--email", "x@clinic.example", "--role", "wizard"}, "unknown role"},
		{[]string{"--org", "nope", "--email", "x@clinic.example", "--role", "monitor", "--study", study.ID}, "no organization"},
		{[]string{"--org", "clinic", "--email", "not-an-email", "--role", "monitor", "--study", study.ID}, "not a valid e-mail"},
		{[]string{"--org", "clinic", "--email", "x@clinic.example", "--role", "site-investigator"}, "site level"},
		{[]string{"--org", "clinic", "--email", "x@clinic.example", "--role", "monitor", "--study", "aaaaaaaaaaaaaaaaaaaaaaaaaa"}, "study not found"},
		{[]string{"--org", "clinic", "--email", "inv@clinic.example", "--role", "site-investigator", "--site", site.ID}, "holds this role"},
		{[]string{"--org", "clinic", "--email", "y@clinic.example", "--role", "monitor", "--study", study.ID, "--password-stdin"}, "at least 12"},
		{[]string{"--org", "clinic", "--email", "x@clinic.example"}, "required"},
	} {
		stdin := ""
		if strings.Contains(strings.Join(tc.args, " "), "password-stdin") {
			stdin = "short"
		}
		r := run(t, env, stdin, append([]string{"user", "add"}, tc.args...)...)
		checkOneLineError(t, r, tc.want)
	}
	// None of the refused commands left an account behind.
	inst, _ = instance.Open(context.Background(), instance.Config{DataDir: data})
	defer inst.Close()
	for _, e := range []string{"x@clinic.example", "y@clinic.example"} {
		if _, err := accounts.ByEmail(context.Background(), inst.Clinical, e); err == nil {
			t.Errorf("refused command created %s", e)
		}
	}
	// What init and user add did is on the trail, as the operator's, from
	// the command line, and what was refused left no event.
	rows, err := inst.Clinical.QueryContext(context.Background(), `SELECT action, body FROM audit_events ORDER BY action`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	actions := map[string]int{}
	for rows.Next() {
		var action, body string
		if err := rows.Scan(&action, &body); err != nil {
			t.Fatal(err)
		}
		actions[action]++
		if !strings.Contains(body, `"role":"operator"`) || !strings.Contains(body, `"via":"cli"`) {
			t.Errorf("%s event not the operator's from the command line: %s", action, body)
		}
	}
	if want := map[string]int{"org.create": 1, "account.create": 2, "role.assign": 2}; !maps.Equal(actions, want) {
		t.Errorf("events %v, want %v", actions, want)
	}
}

func TestBadInputFailsWithOneLineAndWritesNothing(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	fresh := filepath.Join(tmp, "fresh")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--bogus"}, "flag provided but not defined"},
		{[]string{"migrate", "--data", fresh, "--database", "mysql://x/y"}, "unsupported database URL"},
		{[]string{"migrate", "--data", fresh, "--database", "postgres://u:hunter2@h:notaport/db"}, "malformed PostgreSQL URL"},
		{[]string{"migrate", "--data", fresh, "--identity-database", "sqlite:" + fresh + "/clinical.db"}, "separate"},
		{[]string{"migrate", "--data", filepath.Join(file, "data")}, "not usable"},
		{[]string{"serve", "--data", fresh, "--env", "staging"}, "unknown environment"},
		{[]string{"serve", "--data", fresh, "--tls-cert", "x.pem"}, "go together"},
		{[]string{"serve", "--data", fresh, "--env", "production"}, "self-signed"},
		{[]string{"serve", "--data", fresh, "--env", "production", "--tls-cert", file, "--tls-key", file, "--allow-local-kek", "--public-url", "https://c.example", "--sso-issuer", "http://127.0.0.1:5556/"}, "over https only"},
		{[]string{"serve", "--data", fresh, "--metrics-addr", "0.0.0.0:9464"}, "not loopback"},
		{[]string{"serve", "--data", fresh, "--backup-to", filepath.Join(fresh, "none")}, "does not exist or is not a folder"},
		{[]string{"serve", "--data", fresh, "--backup-to", t.TempDir()}, "needs --backup-recipient"},
		{[]string{"serve", "--data", fresh, "--backup-to", t.TempDir(), "--backup-recipient", "age1bogus"}, "not a public backup key"},
		{[]string{"serve", "--data", fresh, "--backup-to", t.TempDir(), "--backup-recipient", "age1bogus", "--backup-every", "1m"}, "10m to 168h"},
		{[]string{"serve", "--data", fresh, "--metrics-addr", "127.0.0.1:9464", "--metrics-token-file", file}, "at least 16 characters"},
		{[]string{"init", "--data", fresh, "--org", "X"}, "required"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"version", "extra"}, "unexpected argument"},
	} {
		r := run(t, nil, "", tc.args...)
		checkOneLineError(t, r, tc.want)
		if strings.Contains(r.stderr, "hunter2") {
			t.Errorf("%v: error shows the database password", tc.args)
		}
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("refused commands created %s", fresh)
	}
}

func TestEnvironmentVariablesSetFlags(t *testing.T) {
	r := run(t, map[string]string{"CUSTODIA_ENV": "nowhere"}, "", "serve")
	checkOneLineError(t, r, `unknown environment "nowhere"`)
	r = run(t, map[string]string{"CUSTODIA_DEMO": "maybe"}, "", "serve")
	checkOneLineError(t, r, "CUSTODIA_DEMO")
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commands() {
		args := []string{c.name, "--help"}
		r := run(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: custodia "+c.name) {
			t.Errorf("%s --help: exit %d, stdout %q", c.name, r.code, r.stdout)
		}
	}
	r := run(t, nil, "", "user", "add", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "--role") && !strings.Contains(r.stdout, "-role") {
		t.Errorf("user add --help: %d %q", r.code, r.stdout)
	}
	r = run(t, nil, "", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "serve") {
		t.Errorf("--help: %d %q", r.code, r.stdout)
	}
}

func TestMigrateReportsCurrentSchema(t *testing.T) {
	data := t.TempDir()
	r := run(t, nil, "", "migrate", "--data", data)
	if r.code != 0 || !strings.Contains(r.stdout, "clinical database") || !strings.Contains(r.stdout, "identity database") {
		t.Fatalf("migrate: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("data folder mode: %v %v", fi.Mode(), err)
	}
}

package cli

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit/audittest"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestAUTH04_OperatorUnlocksAnAccountFromTheCommandLine(t *testing.T) {
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
		for _, org := range []string{"Clinic", "Other"} {
			r := run(t, nil, goodPassword, append([]string{"init", "--org", org, "--admin-email", strings.ToLower(org) + "@x.example", "--password-stdin"}, flags...)...)
			if r.code != 0 {
				t.Fatalf("init %s: %s", org, r.stderr)
			}
		}
		inst, err := instance.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		acc, err := accounts.ByEmail(ctx, inst.Clinical, "clinic@x.example")
		if err != nil {
			t.Fatal(err)
		}
		for range accounts.LockAfter {
			inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
				_, err := accounts.RecordFailure(ctx, audittest.Appending{Tx: tx}, acc.ID, "192.0.2.1", time.Now())
				return err
			})
		}
		if _, err := accounts.Authenticate(ctx, inst.Clinical, acc.Email, goodPassword); err != accounts.ErrBadCredentials {
			t.Fatalf("locked account signs in: %v", err)
		}

		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--org", "clinic"}, "required"},
			{[]string{"--org", "clinic", "--email", "not an address"}, "not a valid e-mail"},
			{[]string{"--org", "nope", "--email", acc.Email}, "no organization"},
			{[]string{"--org", "clinic", "--email", "ghost@x.example"}, "has no account in clinic"},
			{[]string{"--org", "other", "--email", acc.Email}, "has no account in other"},
		} {
			checkOneLineError(t, run(t, nil, "", append(append([]string{"user", "unlock"}, tc.args...), flags...)...), tc.want)
		}
		if st, _ := accounts.Lockout(ctx, inst.Clinical, acc.ID); !st.Locked() {
			t.Fatal("a refused unlock unlocked the account")
		}

		r := run(t, nil, "", append([]string{"user", "unlock", "--org", "clinic", "--email", "Clinic@X.example"}, flags...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "Unlocked the account clinic@x.example") {
			t.Fatalf("user unlock: %d %q %q", r.code, r.stdout, r.stderr)
		}
		if _, err := accounts.Authenticate(ctx, inst.Clinical, acc.Email, goodPassword); err != nil {
			t.Errorf("sign-in after unlock: %v", err)
		}
		var body string
		var security bool
		err = inst.Clinical.QueryRowContext(ctx,
			`SELECT body, security FROM audit_events WHERE action = 'account.unlock'`).Scan(&body, &security)
		if err != nil || !security {
			t.Fatalf("account.unlock event: %v, security %v", err, security)
		}
		for _, want := range []string{`"role":"operator"`, `"via":"cli"`, `"object":"` + acc.ID + `"`} {
			if !strings.Contains(body, want) {
				t.Errorf("account.unlock event lacks %s: %s", want, body)
			}
		}

		r = run(t, nil, "", append([]string{"user", "unlock", "--org", "clinic", "--email", acc.Email}, flags...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "not locked") {
			t.Errorf("second unlock: %d %q %q", r.code, r.stdout, r.stderr)
		}
		var n int
		inst.Clinical.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'account.unlock'`).Scan(&n)
		if n != 1 {
			t.Errorf("%d account.unlock events after unlocking once, want 1", n)
		}
		if r := run(t, nil, "", "user", "unlock", "--help"); r.code != 0 || !strings.Contains(r.stdout, "user unlock --org SLUG --email EMAIL") {
			t.Errorf("user unlock --help: %d %q", r.code, r.stdout)
		}
	})
}

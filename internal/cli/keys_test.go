package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

var requestID = regexp.MustCompile(`request ([A-Za-z0-9_-]+)\)`)

// keysInstance makes an instance with organization "lab" and two of its
// administrators, first@ and second@, both with goodPassword, plus a
// member who is not an administrator.
func keysInstance(t *testing.T, d sqldb.Dialect) []string {
	t.Helper()
	flags := []string{"--data", t.TempDir()}
	if d == sqldb.Postgres {
		flags = append(flags, "--database", sqldbtest.URL(t, d), "--identity-database", sqldbtest.URL(t, d))
	} else {
		migratedSQLite(t, flags[1])
	}
	steps := [][]string{
		{"init", "--org", "Lab", "--slug", "lab", "--admin-email", "first@lab.example", "--password-stdin"},
		{"user", "add", "--org", "lab", "--email", "second@lab.example", "--role", "org-admin", "--password-stdin"},
		{"user", "add", "--org", "lab", "--email", "manager@lab.example", "--role", "org-manager", "--password-stdin"},
	}
	for _, s := range steps {
		if r := run(t, nil, goodPassword+"\n", append(s, flags...)...); r.code != 0 {
			t.Fatalf("%v: %s", s, r.stderr)
		}
	}
	return flags
}

func keyRequest(t *testing.T, flags []string, args ...string) string {
	t.Helper()
	r := run(t, nil, goodPassword+"\n", append(append([]string{"keys"}, args...), flags...)...)
	if r.code != 0 {
		t.Fatalf("keys %v: %s", args, r.stderr)
	}
	m := requestID.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no request id in %q", r.stdout)
	}
	return m[1]
}

func TestCRY08_KeyOperationsFromTheCommandLineNeedTwoAdministrators(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		flags := keysInstance(t, d)
		id := keyRequest(t, flags, "rotate", "--org", "lab", "--as", "first@lab.example", "--kek-version", "--data-keys")

		// Not yet approved: nothing happens.
		r := run(t, nil, "", append([]string{"keys", "rotate", "--request", id}, flags...)...)
		checkOneLineError(t, r, "not been approved")

		// The requester cannot approve; neither can a non-administrator,
		// nor anyone with a wrong password.
		r = run(t, nil, goodPassword+"\n", append([]string{"keys", "approve", id, "--as", "first@lab.example"}, flags...)...)
		checkOneLineError(t, r, "requester cannot approve")
		r = run(t, nil, goodPassword+"\n", append([]string{"keys", "approve", id, "--as", "manager@lab.example"}, flags...)...)
		checkOneLineError(t, r, "only an administrator")
		r = run(t, nil, "wrong password 12345\n", append([]string{"keys", "approve", id, "--as", "second@lab.example"}, flags...)...)
		checkOneLineError(t, r, "wrong e-mail address or password")
		r = run(t, nil, goodPassword+"\n", append([]string{"keys", "approve", id, "--as", "nobody@lab.example"}, flags...)...)
		checkOneLineError(t, r, "wrong e-mail address or password")
		r = run(t, nil, "", append([]string{"keys", "rotate", "--request", id}, flags...)...)
		checkOneLineError(t, r, "not been approved")

		// The second administrator approves, once.
		r = run(t, nil, goodPassword+"\n", append([]string{"keys", "approve", id, "--as", "second@lab.example"}, flags...)...)
		if r.code != 0 {
			t.Fatalf("approve: %s", r.stderr)
		}
		r = run(t, nil, goodPassword+"\n", append([]string{"keys", "approve", id, "--as", "second@lab.example"}, flags...)...)
		checkOneLineError(t, r, "not waiting for approval")

		// An export cannot ride on a rotation's approval.
		r = run(t, nil, "a long enough recovery passphrase\n", append([]string{"keys", "export-recovery", "--request", id, "--out", filepath.Join(t.TempDir(), "r.json")}, flags...)...)
		checkOneLineError(t, r, "is for rotate")

		r = run(t, nil, "", append([]string{"keys", "rotate", "--request", id, "--batch", "2"}, flags...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "finished") || !strings.Contains(r.stdout, "re-encryption: identity values") {
			t.Fatalf("rotate: %d %s %s", r.code, r.stdout, r.stderr)
		}
		// One request, one operation.
		r = run(t, nil, "", append([]string{"keys", "rotate", "--request", id}, flags...)...)
		checkOneLineError(t, r, "finished already")

		r = run(t, nil, "", append([]string{"keys", "status"}, flags...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "Key-encryption key: local") || !strings.Contains(r.stdout, id) ||
			!strings.Contains(r.stdout, "phase done") {
			t.Fatalf("status: %d %s %s", r.code, r.stdout, r.stderr)
		}
		for _, leak := range []string{goodPassword} {
			if strings.Contains(r.stdout, leak) {
				t.Fatal("status prints a password")
			}
		}
	})
}

func TestCRY08_RecoveryExportNeedsApprovalAndRestores(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		flags := keysInstance(t, d)
		out := filepath.Join(t.TempDir(), "recovery.json")
		const passphrase = "correct horse battery staple 7"
		id := keyRequest(t, flags, "export-recovery", "--org", "lab", "--as", "second@lab.example")
		r := run(t, nil, passphrase+"\n", append([]string{"keys", "export-recovery", "--request", id, "--out", out}, flags...)...)
		checkOneLineError(t, r, "not been approved")
		if _, err := os.Stat(out); err == nil {
			t.Fatal("material written without approval")
		}
		if r := run(t, nil, goodPassword+"\n", append([]string{"keys", "approve", id, "--as", "first@lab.example"}, flags...)...); r.code != 0 {
			t.Fatalf("approve: %s", r.stderr)
		}
		r = run(t, nil, "short\n", append([]string{"keys", "export-recovery", "--request", id, "--out", out}, flags...)...)
		checkOneLineError(t, r, "at least")
		r = run(t, nil, passphrase+"\n", append([]string{"keys", "export-recovery", "--request", id, "--out", out}, flags...)...)
		if r.code != 0 {
			t.Fatalf("export: %s", r.stderr)
		}
		material, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		kek, err := keys.OpenLocalKEK(flags[1])
		if err != nil {
			t.Fatal(err)
		}
		keyFile, err := os.ReadFile(filepath.Join(flags[1], keys.LocalKEKFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(material), strings.TrimSpace(string(keyFile))) {
			t.Fatal("the recovery material holds the key in clear")
		}
		// Used once: a second export needs a new request.
		r = run(t, nil, passphrase+"\n", append([]string{"keys", "export-recovery", "--request", id, "--out", out + "2"}, flags...)...)
		checkOneLineError(t, r, "carried out already")

		restored := t.TempDir()
		r = run(t, nil, "the wrong passphrase entirely\n", "keys", "restore-recovery", "--in", out, "--data", restored)
		checkOneLineError(t, r, "does not open")
		r = run(t, nil, passphrase+"\n", "keys", "restore-recovery", "--in", out, "--data", restored)
		if r.code != 0 || !strings.Contains(r.stdout, kek.ID()) {
			t.Fatalf("restore: %d %s %s", r.code, r.stdout, r.stderr)
		}

		// The export is on the audit trail, as a security event.
		cfg := instance.Config{DataDir: flags[1]}
		if d == sqldb.Postgres {
			cfg.Database, cfg.IdentityDatabase = flags[3], flags[5]
		}
		inst, err := instance.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		var n int
		if err := inst.Clinical.QueryRowContext(context.Background(),
			`SELECT COUNT(*) FROM audit_events WHERE action = 'key.recovery.export' AND security = TRUE AND object_id = $1`, id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("export events: %d, %v", n, err)
		}
	})
}

package main

import (
	"bytes"
	"context"
	"database/sql"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// runStdin runs the binary to its end with stdin and returns its exit
// code and output.
func runStdin(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("custodia %v: %v", args, err)
	}
	return code, out.String()
}

var (
	keyRequestRE  = regexp.MustCompile(`request ([A-Za-z0-9_-]+)\)`)
	rewrapLineRE  = regexp.MustCompile(`(?m)^rewrap clinical data keys: (\d+)/(\d+) \(`)
	rotationKeyRE = regexp.MustCompile(`every key is wrapped by (\S+)\.`)
)

// A rotation killed with SIGKILL in the middle of re-wrapping is finished
// by running the same command again, and afterwards every data key is
// wrapped by the new key-encryption key version and opens (CRY-07).
func TestCRY07_RotationKilledHalfwayFinishesOnRestart(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		data := t.TempDir()
		flags := []string{"--data", data}
		cfg := instance.Config{DataDir: data}
		if d == sqldb.Postgres {
			cfg.Database, cfg.IdentityDatabase = sqldbtest.URL(t, d), sqldbtest.URL(t, d)
			flags = append(flags, "--database", cfg.Database, "--identity-database", cfg.IdentityDatabase)
		}
		const password = "Saffron lattice orbit 2291"
		for _, s := range [][]string{
			{"init", "--org", "Lab", "--slug", "lab", "--admin-email", "first@lab.example", "--password-stdin"},
			{"user", "add", "--org", "lab", "--email", "second@lab.example", "--role", "org-admin", "--password-stdin"},
		} {
			if code, out := runStdin(t, password+"\n", append(s, flags...)...); code != 0 {
				t.Fatalf("%v: %s", s, out)
			}
		}

		// Enough data keys that re-wrapping them in batches of five takes
		// seconds: the kill lands in the middle.
		const n = 4000
		inst, err := instance.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		kek, err := keys.OpenLocalKEK(data)
		if err != nil {
			t.Fatal(err)
		}
		org, err := orgs.OrganizationBySlug(ctx, inst.Clinical, "lab")
		if err != nil {
			t.Fatal(err)
		}
		ring := &keys.Keyring{DB: inst.Clinical, KEK: kek}
		var scopes []keys.Scope
		err = inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
			for range n {
				s := keys.StudyScope(org.ID, ids.New())
				if _, err := ring.Current(ctx, tx, s); err != nil {
					return err
				}
				scopes = append(scopes, s)
			}
			return nil
		})
		inst.Close()
		if err != nil {
			t.Fatal(err)
		}

		code, out := runStdin(t, password+"\n", append([]string{"keys", "rotate", "--org", "lab", "--as", "first@lab.example", "--kek-version"}, flags...)...)
		m := keyRequestRE.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("request: %d %s", code, out)
		}
		id := m[1]
		if code, out := runStdin(t, password+"\n", append([]string{"keys", "approve", id, "--as", "second@lab.example"}, flags...)...); code != 0 {
			t.Fatalf("approve: %s", out)
		}

		rotate := append([]string{"keys", "rotate", "--request", id, "--batch", "5"}, flags...)
		p := start(t, "", nil, rotate...)
		p.waitStdout(t, rewrapLineRE, 60*time.Second)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if c := p.wait(t, 10*time.Second); c != -1 {
			t.Fatalf("the rotation ended by itself (exit %d) before it was killed; seed more keys\n%s", c, p.describe())
		}
		if strings.Contains(p.stdout.String(), "finished") {
			t.Fatalf("the rotation finished before the kill\n%s", p.describe())
		}
		if code, out := runStdin(t, "", append([]string{"keys", "status"}, flags...)...); code != 0 || strings.Contains(out, "phase done") {
			t.Fatalf("status after the kill: %d\n%s", code, out)
		}

		code, out = runStdin(t, "", rotate...)
		m = rotationKeyRE.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("resumed rotation: %d\n%s", code, out)
		}
		target := m[1]

		// Every key opens, and every wrapped key names the new version.
		inst, err = instance.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		kek, err = keys.OpenLocalKEK(data)
		if err != nil {
			t.Fatal(err)
		}
		ring = &keys.Keyring{DB: inst.Clinical, KEK: kek}
		for _, s := range scopes {
			if _, err := ring.Current(ctx, inst.Clinical, s); err != nil {
				t.Fatalf("%s after the rotation: %v", s, err)
			}
		}
		var stale int
		if err := inst.Clinical.QueryRowContext(ctx,
			`SELECT count(*) FROM data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1`, target).Scan(&stale); err != nil {
			t.Fatal(err)
		}
		if stale != 0 {
			t.Errorf("%d data keys are still wrapped by an older key-encryption key version (target %s)", stale, target)
		}
	})
}

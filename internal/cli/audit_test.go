package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/sqldb"
)

// TestAUD02_VerifyRefusesAnEmptiedTrail: custodia audit verify does not
// pass the empty trail of an instance whose other records exist (a
// clinical database emptied and made anew, or a trail deleted beside its
// organizations), and it says how many events wait to be sequenced.
func TestAUD02_VerifyRefusesAnEmptiedTrail(t *testing.T) {
	ctx := context.Background()
	flags := keysInstance(t, sqldb.SQLite)
	data := flags[1]
	if r := run(t, nil, "", append([]string{"audit", "checkpoint"}, flags...)...); r.code != 0 {
		t.Fatalf("audit checkpoint: %s", r.stderr)
	}
	r := run(t, nil, goodPassword+"\n", append([]string{"user", "add", "--org", "lab", "--email", "third@lab.example", "--role", "org-manager", "--password-stdin"}, flags...)...)
	if r.code != 0 {
		t.Fatalf("user add: %s", r.stderr)
	}
	r = run(t, nil, "", append([]string{"audit", "verify"}, flags...)...)
	if r.code != 0 || !regexp.MustCompile(`(?m)^audit trail verified: [1-9]\d* events`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^[1-9]\d* events wait to be sequenced`).MatchString(r.stdout) {
		t.Fatalf("verify of the intact trail with events waiting: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// The trail deleted beside the organizations and accounts it records.
	clinical := filepath.Join(data, "clinical.db")
	saved, err := os.ReadFile(clinical)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqldb.Open(ctx, "sqlite:"+clinical)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DROP TRIGGER audit_events_no_delete`, `DELETE FROM audit_queue`, `DELETE FROM audit_events`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, table := range []string{"audit_log", "audit_hashes", "audit_checkpoints"} {
		if _, err := db.ExecContext(ctx, `DROP TABLE `+table); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE audit_log (seq BIGINT, leaf TEXT, event_id TEXT);
		CREATE TABLE audit_hashes (idx BIGINT, hash TEXT); CREATE TABLE audit_checkpoints (size BIGINT, root TEXT, note TEXT)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r = run(t, nil, "", append([]string{"audit", "verify"}, flags...)...)
	checkOneLineError(t, r, "does not verify")
	if !strings.Contains(r.stdout, "the trail holds no event, but the clinical database holds organizations and accounts") {
		t.Errorf("verify of a deleted trail names no reason:\n%s", r.stdout)
	}

	// The clinical database emptied and made anew (migrated, no instance).
	for _, f := range []string{clinical, clinical + "-wal", clinical + "-shm"} {
		os.Remove(f)
	}
	db, err = sqldb.Open(ctx, "sqlite:"+clinical)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx, sqldb.Clinical); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r = run(t, nil, "", append([]string{"audit", "verify"}, flags...)...)
	checkOneLineError(t, r, "records no instance")

	// Emptied to 0 bytes: refused, and left as it is.
	if err := os.Truncate(clinical, 0); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "", append([]string{"audit", "verify"}, flags...)...)
	checkOneLineError(t, r, "is missing or empty")
	if fi, err := os.Stat(clinical); err != nil || fi.Size() != 0 {
		t.Errorf("verify wrote to the emptied database (%v)", err)
	}

	// The database restored from its copy verifies again.
	os.Remove(clinical + "-wal")
	os.Remove(clinical + "-shm")
	if err := os.WriteFile(clinical, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(t, nil, "", append([]string{"audit", "verify"}, flags...)...); r.code != 0 {
		t.Errorf("verify after restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

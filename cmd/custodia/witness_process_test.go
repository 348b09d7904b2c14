package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/sqldb"
)

// TestAUD02_ServedCheckpointsAreWitnessedAndACutTrailIsRefused runs the
// built server with --audit-witness-file: its checkpoints reach the file,
// `audit verify --witness-file` passes, then fails once the trail's tail is
// cut from every table (which the database alone cannot show), and the
// server started again on the cut trail answers /readyz with 503.
func TestAUD02_ServedCheckpointsAreWitnessedAndACutTrailIsRefused(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	witnessFile := filepath.Join(dir, "witness", "audit.log")
	flags := []string{"--data", data, "--audit-witness-file", witnessFile}
	if err := os.MkdirAll(filepath.Dir(witnessFile), 0o700); err != nil {
		t.Fatal(err)
	}
	demoTrail(t, nil, 3, flags...)
	verifier, err := audit.ReadVerifier(filepath.Join(data, "audit", "verifier.pub"))
	if err != nil {
		t.Fatal(err)
	}
	cps, err := audit.ReadWitnessFile(witnessFile, verifier)
	if err != nil || len(cps) == 0 {
		t.Fatalf("the witness file holds %d checkpoints (%v), want the server's", len(cps), err)
	}
	events, _ := verifyOK(t, "--data", data, "--witness-file", witnessFile)
	if last := cps[len(cps)-1].Size; last != events {
		t.Errorf("the witness file's last checkpoint covers %d events, the trail holds %d", last, events)
	}

	// Cut the last batch of events from every audit table, checkpoints
	// included: at a batch's edge, the database alone cannot tell.
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(data, "clinical.db"))
	if err != nil {
		t.Fatal(err)
	}
	var cut int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints WHERE size < $1`, events).Scan(&cut); err != nil || cut == 0 {
		t.Fatalf("no checkpoint before the last: %d, %v", cut, err)
	}
	for _, q := range []string{
		"DROP TRIGGER audit_events_no_delete", "DROP TRIGGER audit_log_no_delete",
		"DROP TRIGGER audit_hashes_no_delete", "DROP TRIGGER audit_checkpoints_no_delete",
		"DELETE FROM audit_events WHERE id IN (SELECT event_id FROM audit_log WHERE seq >= $1)",
		"DELETE FROM audit_log WHERE seq >= $1",
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, cut)
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{"DELETE FROM audit_hashes WHERE idx >= $1", "DELETE FROM audit_checkpoints WHERE size > $1"} {
		arg := cut
		if strings.Contains(q, "hashes") {
			arg = tlog.StoredHashCount(cut)
		}
		if _, err := db.ExecContext(ctx, q, arg); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	verifyOK(t, "--data", data) // consistent without the witness
	f := verifyFails(t, "--data", data, "--witness-file", witnessFile)
	if !strings.Contains(f.stderr, "first bad index") || !strings.Contains(f.stdout, "(events removed)") {
		t.Errorf("audit verify against the witness file:\n%s%s", f.stdout, f.stderr)
	}

	// The server on the cut trail refuses to present it.
	s := serve(t, "", nil, append([]string{"--addr", "127.0.0.1:0"}, flags...)...)
	c := newClient(s.url, s.fingerprint)
	var status int
	var body []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, b, err := c.do(ctx, http.MethodGet, "/readyz", nil)
		if err == nil {
			status, body = resp.StatusCode, b
			if status == http.StatusServiceUnavailable {
				break
			}
		}
	}
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "rolled back") {
		t.Errorf("/readyz on a trail the witness saw longer: %d %s, want 503 naming the rollback", status, body)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s.wait(t, 30*time.Second)
}

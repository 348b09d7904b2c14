package cli

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestAUD02_AuditVerifyChecksTheTrailAgainstItsWitnessFile: the instance's
// checkpoints go to a witness file outside the data folder; `audit verify
// --witness-file` passes on the trail and fails, naming the index, once its
// tail is cut from every table, which the database alone cannot show; and
// `audit checkpoint` and `audit prove` refuse to present the cut trail.
func TestAUD02_AuditVerifyChecksTheTrailAgainstItsWitnessFile(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		data := t.TempDir()
		flags := []string{"--data", data}
		cfg := instance.Config{DataDir: data}
		if d == sqldb.Postgres {
			cfg.Database, cfg.IdentityDatabase = sqldbtest.URL(t, d), sqldbtest.URL(t, d)
			flags = append(flags, "--database", cfg.Database)
		}
		inst, err := instance.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		path := filepath.Join(t.TempDir(), "witness.log")
		if err := audit.CheckWitnessPath(filepath.Join(data, "w.log"), data); err == nil {
			t.Fatal("a witness file in the data folder was accepted")
		}
		ws, err := auditWitnesses(nil, path, inst)
		if err != nil {
			t.Fatal(err)
		}
		trail, err := instanceLog(inst)
		if err != nil {
			t.Fatal(err)
		}
		trail.Witnesses = ws
		for i := range 6 {
			err := inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
				_, err := audit.Append(ctx, tx, inst.AuditKey, audit.Event{Action: "test.event", Outcome: audit.Success, ObjectID: string(rune('a' + i))})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := trail.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if err := trail.WitnessLatest(ctx); err != nil {
				t.Fatal(err)
			}
		}
		r := run(t, nil, "", append([]string{"audit", "verify", "--witness-file", path}, flags...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "audit trail verified: 6 events") {
			t.Fatalf("verify of the untouched trail: %d %s %s", r.code, r.stdout, r.stderr)
		}
		// The commands that present checkpoints hand them to the witness
		// file first, from the same settings (here the environment) as serve.
		wenv := map[string]string{"CUSTODIA_AUDIT_WITNESS_FILE": path}
		if r := run(t, wenv, "", append([]string{"audit", "checkpoint"}, flags...)...); r.code != 0 || !strings.Contains(r.stdout, "\n6\n") {
			t.Fatalf("audit checkpoint with the witness file: %d %s %s", r.code, r.stdout, r.stderr)
		}

		// Cut the last two events from every table, as the owner can.
		for _, q := range dropAuditTriggers(d) {
			if _, err := inst.Clinical.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		for _, q := range []string{
			`DELETE FROM audit_events WHERE id IN (SELECT event_id FROM audit_log WHERE seq >= 4)`,
			`DELETE FROM audit_log WHERE seq >= 4`,
			`DELETE FROM audit_hashes WHERE idx >= 7`, // tlog.StoredHashCount(4)
			`DELETE FROM audit_checkpoints WHERE size > 4`,
		} {
			if _, err := inst.Clinical.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if r := run(t, nil, "", append([]string{"audit", "verify"}, flags...)...); r.code != 0 {
			t.Fatalf("without the witness file the cut is consistent, yet: %s %s", r.stdout, r.stderr)
		}
		r = run(t, nil, "", append([]string{"audit", "verify", "--witness-file", path}, flags...)...)
		checkOneLineError(t, r, "the audit trail does not verify: first bad index 4")
		if !strings.Contains(r.stdout, "at size 6: the log holds only 4 events (events removed)") {
			t.Errorf("stdout %q does not name the removal", r.stdout)
		}
		// Nor does a command present the cut trail.
		for _, cmd := range [][]string{{"audit", "checkpoint"}, {"audit", "prove", "1"}} {
			r := run(t, wenv, "", append(cmd, flags...)...)
			checkOneLineError(t, r, "has seen 6 audit events but this trail holds 4")
			if r.stdout != "" {
				t.Errorf("%s presented the cut trail: %s", strings.Join(cmd, " "), r.stdout)
			}
		}
	})
}

// dropAuditTriggers returns the statements that take the append-only
// triggers away, as the tables' owner can.
func dropAuditTriggers(d sqldb.Dialect) []string {
	if d == sqldb.Postgres {
		var out []string
		for _, tbl := range []string{"audit_events", "audit_log", "audit_hashes", "audit_checkpoints"} {
			out = append(out, "ALTER TABLE "+tbl+" DISABLE TRIGGER USER")
		}
		return out
	}
	return []string{
		"DROP TRIGGER audit_events_no_delete", "DROP TRIGGER audit_log_no_delete",
		"DROP TRIGGER audit_hashes_no_delete", "DROP TRIGGER audit_checkpoints_no_delete",
	}
}

func TestAUD02_ServeRefusesBadWitnessSettings(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--audit-witness-file", filepath.Join(data, "audit", "w.log")}, "is inside the data folder"},
		{[]string{"--audit-witness", "http://127.0.0.1:7380"}, "want URL@KEY"},
		{[]string{"--audit-witness", "http://127.0.0.1:7380@nokey"}, "is not a verifier key"},
		{[]string{"--audit-witness-every", "500ms"}, "want 1s to 1h"},
		{[]string{"--audit-witness-every", "2h"}, "want 1s to 1h"},
		{[]string{"--audit-forward", "syslog+tcp://10.1.2.3:514"}, "allowed only to a collector on this machine"},
		{[]string{"--audit-forward", "udp://127.0.0.1:514"}, "unknown scheme"},
		{[]string{"--audit-forward-ca", "/etc/hostname"}, "goes with --audit-forward"},
	} {
		r := run(t, nil, "", append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0"}, c.args...)...)
		checkOneLineError(t, r, c.want)
	}
}

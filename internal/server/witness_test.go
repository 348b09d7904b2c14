package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/instance"
)

// TestAUD02_ReadyzReportsWitnessesAndRefusesARolledBackTrail: /readyz
// lists each audit witness with how far it is behind, stays ready while
// one cannot be reached, and answers 503 once a witness has seen a larger
// trail than the database holds.
func TestAUD02_ReadyzReportsWitnessesAndRefusesARolledBackTrail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	var trail *audit.Log
	ts := newServerWith(t, func(d *Deps) {
		trail = &audit.Log{DB: d.Instance.Clinical, Signer: d.Instance.AuditKey, Verifier: d.Instance.AuditVerifier,
			Origin: instance.AuditOrigin(d.Instance.ID), Witnesses: []audit.Witness{
				&audit.FileWitness{Path: filepath.Join(dir, "witness.log"), Verifier: d.Instance.AuditVerifier},
				&audit.FileWitness{Path: filepath.Join(dir, "missing", "witness.log"), Verifier: d.Instance.AuditVerifier},
			}}
		d.Trail = trail
	})
	cp, err := trail.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := trail.WitnessLatest(ctx); err != nil {
		t.Fatal(err)
	}
	c := ts.client()
	resp, body := do(t, c, "GET", ts.URL+"/readyz", "")
	var got struct {
		Status    string                `json:"status"`
		Witnesses []audit.WitnessStatus `json:"witnesses"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
	if got.Status != "ready, audit witness behind" || len(got.Witnesses) != 2 ||
		got.Witnesses[0].Size != cp.Size || got.Witnesses[0].Behind != 0 ||
		got.Witnesses[1].Size != -1 || got.Witnesses[1].Behind != cp.Size || got.Witnesses[1].Error == "" {
		t.Fatalf("readyz with one witness unreachable: %s", body)
	}

	// A witness that holds a checkpoint of a larger tree, signed by this
	// instance: the database was rolled back.
	ahead := filepath.Join(dir, "ahead.log")
	text := fmt.Sprintf("%s\n%d\n%s\n", trail.Origin, cp.Size+50, base64.StdEncoding.EncodeToString(make([]byte, 32)))
	signed, err := note.Sign(&note.Note{Text: text}, ts.inst.AuditKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ahead, append(signed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	trail.Witnesses = append(trail.Witnesses, &audit.FileWitness{Path: ahead, Verifier: ts.inst.AuditVerifier})
	if err := trail.WitnessLatest(ctx); err == nil {
		t.Fatal("WitnessLatest accepted a witness that saw a larger trail")
	}
	resp, body = do(t, c, "GET", ts.URL+"/readyz", "")
	if resp.StatusCode != 503 || !strings.Contains(body, "rolled back") {
		t.Fatalf("readyz after a witness saw a larger trail: %d %s, want 503 naming the rollback", resp.StatusCode, body)
	}
}

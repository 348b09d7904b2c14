package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The security statement (OPS-02) names every control of the brief, each
// with its status as docs/controls.md gives it, whether it is active on
// this instance, and the settings that decide it (the lockout threshold,
// the session limits, the key provider, FIPS mode, the newest checkpoint);
// as JSON for an auditor's tools, and as a table.
func TestOPS02_SecurityReportListsEveryControl(t *testing.T) {
	dir := migratedSQLite(t, t.TempDir())
	if r := run(t, nil, goodPassword, "init", "--org", "Clinic", "--admin-email", "admin@x.example", "--password-stdin", "--data", dir); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	r := run(t, nil, "", "security-report", "--json", "--data", dir)
	if r.code != 0 {
		t.Fatalf("security-report: %d %s", r.code, r.stderr)
	}
	var rep report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("the report is not JSON: %v\n%s", err, r.stdout)
	}
	b, err := os.ReadFile("testdata/control-ids.txt")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]reportControl{}
	for _, c := range rep.Controls {
		listed[c.ID] = c
	}
	n := 0
	for _, id := range strings.Split(string(b), "\n") {
		if id == "" || strings.HasPrefix(id, "#") {
			continue
		}
		n++
		c, ok := listed[id]
		switch {
		case !ok:
			t.Errorf("the report does not list %s", id)
		case c.Status == "":
			t.Errorf("%s has no status", id)
		case c.Active != !strings.HasPrefix(c.Status, "open"):
			t.Errorf("%s is %q, active %v", id, c.Status, c.Active)
		}
	}
	if n < 40 || len(rep.Controls) != n {
		t.Errorf("the brief has %d controls, the report %d", n, len(rep.Controls))
	}
	for id, want := range map[string]string{"AUTH-04": "after 10 consecutive", "AUTH-10": "idle 20m0s", "CRY-04": "provider: local",
		"CRY-11": "FIPS mode", "AUD-02": "newest checkpoint", "AVL-01": "backups: none recorded", "WEB-08": "database of 20", "AUTH-13": "0 organizations have a provider"} {
		if !strings.Contains(listed[id].Setting, want) {
			t.Errorf("%s's setting %q, want it to say %q", id, listed[id].Setting, want)
		}
	}
	if rep.Instance == "" || len(listed["AUTH-04"].Tests) == 0 {
		t.Errorf("the report: instance %q, AUTH-04's tests %v", rep.Instance, listed["AUTH-04"].Tests)
	}
	// A control whose row names four of its tests and links to the rest
	// is reported with all of them.
	if got := listed["AUTH-08"].Tests; len(got) < 40 || !slices.Contains(got, "TestAUTH08_TOTPMatchesRFC6238Vectors") {
		t.Errorf("the report names %d tests of AUTH-08: %v", len(got), got)
	}
	// With the witness file serve is given, the statement says how far
	// it has seen the trail.
	witnessFile := filepath.Join(t.TempDir(), "witness.log")
	if r := run(t, nil, "", "audit", "checkpoint", "--data", dir, "--audit-witness-file", witnessFile); r.code != 0 {
		t.Fatalf("checkpoint: %s", r.stderr)
	}
	r = run(t, nil, "", "security-report", "--json", "--data", dir, "--audit-witness-file", witnessFile)
	if r.code != 0 || !strings.Contains(r.stdout, "witness file "+witnessFile+" holds checkpoints up to ") {
		t.Errorf("the statement with a witness file: %d %s %s", r.code, r.stdout, r.stderr)
	}
	table := run(t, nil, "", "security-report", "--data", dir)
	if table.code != 0 || !strings.Contains(table.stdout, "AUTH-04") || !strings.Contains(table.stdout, "CONTROL") {
		t.Errorf("the table: %d %s", table.code, table.stdout)
	}
}

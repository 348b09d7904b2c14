package entries_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func export(t *testing.T, f *fixture, a gate.Actor, format string) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	a.ConfirmedAt = time.Now()
	err := f.svc.Export(context.Background(), a, "clinic", f.study.ID, format, func() (io.Writer, error) { return &buf, nil })
	return buf.Bytes(), err
}

// TestLIFE04_AnExportHoldsOnlyWhatTheRequesterMayRead exports a study's
// entries at two sites: an investigator gets their own site's participant
// only, without the field hidden from their role and without the
// sensitive value they hold no grant for (absent, not blank); a data
// manager gets both sites, and the sensitive value once a grant names it.
// An export needs a fresh confirmation, an organization manager gets
// nothing, and the trail holds the count and SHA-256 of what was sent.
func TestLIFE04_AnExportHoldsOnlyWhatTheRequesterMayRead(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		var south string
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.south.ID)
			south = p.Pseudonym
			if err != nil {
				return err
			}
			return authz.SetFieldRules(ctx, tx, f.org.ID, f.study.ID, authz.FieldRules{"vitals.smoker": {authz.SiteInvestigator}})
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Save(ctx, f.dataManager, "clinic", f.at("baseline", 1, "vitals"), good()); err != nil {
			t.Fatal(err)
		}
		southPlace := f.at("baseline", 1, "vitals")
		southPlace.SiteID, southPlace.Participant = f.south.ID, south
		if _, err := f.svc.Save(ctx, f.dataManager, "clinic", southPlace, good()); err != nil {
			t.Fatal(err)
		}
		lines := func(b []byte) [][]string {
			t.Helper()
			recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 || strings.Join(recs[0], ",") != strings.Join(entries.ExportColumns, ",") {
				t.Fatalf("export header %v", recs)
			}
			return recs[1:]
		}
		has := func(recs [][]string, participant, field string) bool {
			for _, r := range recs {
				if r[0] == participant && r[6] == field {
					return true
				}
			}
			return false
		}

		b, err := export(t, f, f.investigator, entries.FormatCSV)
		if err != nil {
			t.Fatal(err)
		}
		recs := lines(b)
		if has(recs, south, "weight") || !has(recs, f.p, "weight") || has(recs, f.p, "smoker") || has(recs, f.p, "status") {
			t.Errorf("the investigator's export:\n%s", b)
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Error("the investigator's export holds the sensitive value")
		}
		// 6 values a participant but smoker and status: weight, packs,
		// double, and two rows of meds (drug, dose, drug).
		if len(recs) != 6 {
			t.Errorf("%d values in the investigator's export, want 6:\n%s", len(recs), b)
		}
		sum := sha256.Sum256(b)
		var sent string
		if err := f.db.QueryRowContext(ctx, `SELECT body FROM audit_events WHERE action = 'entry.export.sent' ORDER BY at DESC LIMIT 1`).Scan(&sent); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(sent, hex.EncodeToString(sum[:])) || !strings.Contains(sent, `"values":"6"`) {
			t.Errorf("the trail records %s for what was sent (sha256 %x)", sent, sum)
		}

		b, err = export(t, f, f.dataManager, entries.FormatJSONL)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"participant":"`+south+`"`)) || !bytes.Contains(b, []byte(`"field":"smoker"`)) || bytes.Contains(b, []byte(secret)) {
			t.Errorf("the data manager's export:\n%s", b)
		}
		if _, err := f.db.ExecContext(ctx, `INSERT INTO decrypt_grants (id, org_id, study_id, account_id, fields, reason, granted_by, created_at)
			VALUES ($1, $2, $3, $4, 'vitals.status', 'analysis', $5, $6)`, ids.New(), f.org.ID, f.study.ID, f.dataManager.AccountID, f.admin.AccountID, sqldb.Now()); err != nil {
			t.Fatal(err)
		}
		if b, err = export(t, f, f.dataManager, entries.FormatCSV); err != nil || bytes.Count(b, []byte(secret)) != 2 {
			t.Errorf("the data manager's export under a grant: %v\n%s", err, b)
		}

		// A fresh confirmation is needed; a manager gets nothing.
		var buf bytes.Buffer
		begin := func() (io.Writer, error) { return &buf, nil }
		if err := f.svc.Export(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatCSV, begin); !errors.Is(err, gate.ErrStepUpRequired) {
			t.Errorf("an export without a fresh confirmation: %v", err)
		}
		manager := f.studyAdmin
		manager.ConfirmedAt = time.Now()
		if err := f.svc.Export(ctx, manager, "clinic", f.study.ID, entries.FormatCSV, begin); !errors.Is(err, gate.ErrDenied) {
			t.Errorf("a study admin exports entries: %v", err)
		}
		if buf.Len() != 0 {
			t.Errorf("refused exports sent %q", buf.String())
		}
	})
}

// xmllint finds xmllint, which CI installs; elsewhere its absence skips.
func xmllint(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("xmllint is not installed (Debian: libxml2-utils)")
		}
		t.Skip("xmllint is not installed (Debian: libxml2-utils)")
	}
	return path
}

// TestLIFE04_TheODMExportValidatesAgainstTheODM132Schema exports a study
// with repeating groups, code lists, a calculation, a unit, a sensitive
// value, a change with its reason and a removed row as CDISC ODM 1.3.2 and
// validates it with xmllint against the schema; the audit records name
// who, where, when and why, and a script payload stays text.
func TestLIFE04_TheODMExportValidatesAgainstTheODM132Schema(t *testing.T) {
	lint := xmllint(t)
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		baseline := f.at("baseline", 1, "vitals")
		first := good()
		first.Rows["meds"][0]["drug"] = `<script>alert("x")</script> & co`
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, first); err != nil {
			t.Fatal(err)
		}
		change := good()
		change.Revision, change.Reason = 1, "the second medication was stopped"
		change.Rows["meds"] = change.Rows["meds"][:1]
		if _, err := f.svc.Save(ctx, f.dataManager, "clinic", baseline, change); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", f.at("unscheduled", 2, "other"), entries.Save{Values: map[string]string{"note": "seen"}}); err != nil {
			t.Fatal(err)
		}
		b, err := export(t, f, f.dataManager, entries.FormatODM)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "export.xml")
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(lint, "--noout", "--nonet", "--schema", "testdata/odm-1.3.2/ODM1-3-2.xsd", file).CombinedOutput()
		if err != nil {
			t.Fatalf("xmllint: %v\n%s\n%s", err, out, b)
		}
		for _, want := range []string{
			`<ItemGroupData ItemGroupOID="IG.vitals.meds" ItemGroupRepeatKey="2"><ItemData ItemOID="I.vitals.drug" TransactionType="Remove">`,
			`<ReasonForChange>the second medication was stopped</ReasonForChange>`,
			`<CodeList OID="CL.vitals.smoker" Name="smoker" DataType="integer">`,
			`<StudyEventData StudyEventOID="SE.unscheduled" StudyEventRepeatKey="2">`,
			`&lt;script&gt;`,
			`<UserRef UserOID="U.` + f.dataManager.AccountID + `"/>`,
			`<MethodDef OID="M.vitals.double"`,
		} {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("the file lacks %s", want)
			}
		}
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte("<script>")) {
			t.Errorf("the file holds the sealed value or markup:\n%s", b)
		}
	})
}

// TestLIFE04_REDCapFlatRecordsMoveOutAndIn exports entries as REDCap's
// flat records (a column a field, a multiple choice a column a choice, a
// form's _complete), erases them, imports the file back and exports again:
// the same file. Sensitive fields without a grant, and repeating groups,
// are not in it.
func TestLIFE04_REDCapFlatRecordsMoveOutAndIn(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		baseline := f.at("baseline", 1, "vitals")
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", baseline, good()); err != nil {
			t.Fatal(err)
		}
		other := f.at("unscheduled", 2, "other")
		if _, err := f.svc.Save(ctx, f.investigator, "clinic", other, entries.Save{Values: map[string]string{"note": "seen, twice"}}); err != nil {
			t.Fatal(err)
		}
		first, err := export(t, f, f.dataManager, entries.FormatREDCap)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(first)), "\n")
		if len(lines) != 3 || lines[0] != "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,redcap_data_access_group,weight,smoker,packs,double,vitals_complete,note,other_complete" {
			t.Fatalf("the flat records:\n%s", first)
		}
		if !strings.Contains(lines[1], f.p+",baseline_arm_1,,,"+f.north.ID+",71.3,1,2,142.6,2,,") ||
			!strings.Contains(lines[2], ",unscheduled_arm_1,,2,"+f.north.ID+",,,,,,\"seen, twice\",0") {
			t.Errorf("the flat records:\n%s", first)
		}
		for _, p := range []entries.Place{baseline, other} {
			if err := f.svc.Delete(ctx, f.dataManager, "clinic", p, "moving the study"); err != nil {
				t.Fatal(err)
			}
		}
		f.svc.Now = func() time.Time { return time.Now().Add(entries.DefaultRetention + time.Second) }
		if n, err := f.svc.Purge(ctx); err != nil || n != 2 {
			t.Fatalf("purge: %d, %v", n, err)
		}
		f.svc.Now = nil
		got, err := f.svc.Import(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatCSV, bytes.NewReader(first))
		if err != nil || got.Entries != 2 {
			t.Fatalf("import: %+v, %v", got, err)
		}
		second, err := export(t, f, f.dataManager, entries.FormatREDCap)
		if err != nil {
			t.Fatal(err)
		}
		if string(second) != string(first) {
			t.Errorf("exported again:\n%s\nwant\n%s", second, first)
		}
	})
}

// A node runs a bounded number of exports at once (its service's
// MaxExports), one per account: one more is refused, not queued, and the
// bound is the node's service's, not the process's.
func TestLIFE04_ExportsAtOnceAreBoundedPerNode(t *testing.T) {
	ctx := context.Background()
	f := setup(t, sqldb.SQLite)
	if _, err := f.svc.Save(ctx, f.dataManager, "clinic", f.at("baseline", 1, "vitals"), good()); err != nil {
		t.Fatal(err)
	}
	node := &entries.Service{Gate: f.svc.Gate, MaxExports: 1}
	f.dataManager.ConfirmedAt, f.admin.ConfirmedAt = time.Now(), time.Now()
	started, release := make(chan struct{}), make(chan struct{})
	running := make(chan error, 1)
	go func() {
		running <- node.Export(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatCSV, func() (io.Writer, error) {
			close(started)
			<-release
			return io.Discard, nil
		})
	}()
	select {
	case <-started:
	case err := <-running:
		t.Fatalf("the first export ended before it began: %v", err)
	}
	export := func(svc *entries.Service, a gate.Actor) error {
		return svc.Export(ctx, a, "clinic", f.study.ID, entries.FormatCSV, func() (io.Writer, error) { return io.Discard, nil })
	}
	if err := export(node, f.dataManager); !errors.Is(err, entries.ErrExportRunning) {
		t.Errorf("a second export of one account: %v, want refused", err)
	}
	if err := export(node, f.admin); !errors.Is(err, entries.ErrExportRunning) {
		t.Errorf("an export beyond the node's bound: %v, want refused", err)
	}
	if err := export(f.svc, f.admin); err != nil {
		t.Errorf("an export on another node: %v", err)
	}
	close(release)
	if err := <-running; err != nil {
		t.Fatal(err)
	}
	if err := export(node, f.admin); err != nil {
		t.Errorf("an export once the node's one was done: %v", err)
	}
}

package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
)

// TestLIFE04_ExportFromTheCommandLine exports a study's entries with
// custodia export: to a file, written whole, with a progress line and the
// count; sensitive values left out; on the trail as the operator's export
// and what it sent. A study that does not exist is refused and writes no
// file.
func TestLIFE04_ExportFromTheCommandLine(t *testing.T) {
	ctx := context.Background()
	dir := migratedSQLite(t, t.TempDir())
	if r := run(t, nil, goodPassword, "init", "--org", "Clinic", "--admin-email", "admin@x.example", "--password-stdin", "--data", dir); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	inst, err := instance.Open(ctx, instance.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keys.LoadLocalKEK(dir)
	if err != nil {
		t.Fatal(err)
	}
	g := gate.New(gate.Config{Clinical: inst.Clinical, Keys: &keys.Keyring{DB: inst.Clinical, KEK: kek, EpochDir: filepath.Join(dir, keys.LocalEpochsDir)},
		Identity: inst.Identity, IdentityKeys: &keys.Keyring{DB: inst.Identity, KEK: kek, EpochDir: filepath.Join(dir, keys.LocalEpochsDir)}, AuditKey: inst.AuditKey})
	logins, err := demo.Seed(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	actor := func(role authz.Role) gate.Actor {
		for _, l := range logins {
			if l.Role == role {
				acc, err := accounts.ByEmail(ctx, inst.Clinical, l.Email)
				if err != nil {
					t.Fatal(err)
				}
				return gate.Actor{AccountID: acc.ID, SessionID: "s", RemoteAddr: "192.0.2.1"}
			}
		}
		t.Fatalf("no %s", role)
		return gate.Actor{}
	}
	org, err := orgs.OrganizationBySlug(ctx, inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	studies, err := orgs.Studies(ctx, inst.Clinical, org.ID)
	if err != nil {
		t.Fatal(err)
	}
	var study orgs.Study
	for _, s := range studies {
		if s.Name == "Demo Study" {
			study = s
		}
	}
	sites, err := orgs.Sites(ctx, inst.Clinical, org.ID, study.ID)
	if err != nil {
		t.Fatal(err)
	}
	design := &formadmin.Service{Gate: g}
	f := &forms.Form{Key: "vitals", Title: "Vitals", Fields: []forms.Field{
		{Name: "weight", Label: "Weight", Type: forms.Decimal},
		{Name: "hiv", Label: "HIV status", Type: forms.Text, Sensitive: true},
	}}
	v, err := design.Create(ctx, actor(authz.StudyAdmin), demo.Slug, study.ID, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := design.Publish(ctx, actor(authz.StudyAdmin), demo.Slug, study.ID, "vitals", v.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := design.SetSchedule(ctx, actor(authz.StudyAdmin), demo.Slug, study.ID, []forms.Visit{{Key: "baseline", Label: "Baseline", Forms: []string{"vitals"}}}); err != nil {
		t.Fatal(err)
	}
	site := sites[0]
	p, err := (&participants.Service{Gate: g}).Enrol(ctx, actor(authz.OrgAdmin), demo.Slug, study.ID, site.ID, participants.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&entries.Service{Gate: g}).Save(ctx, actor(authz.OrgAdmin), demo.Slug,
		entries.Place{StudyID: study.ID, SiteID: site.ID, Participant: p.Pseudonym, Visit: "baseline", Repeat: 1, Form: "vitals"},
		entries.Save{Values: map[string]string{"weight": "70.5", "hiv": "positive"}}); err != nil {
		t.Fatal(err)
	}
	inst.Close()

	out := filepath.Join(t.TempDir(), "study.csv")
	r := run(t, nil, "", "export", "--data", dir, "--study", study.ID, "--out", out)
	if r.code != 0 {
		t.Fatalf("export: %d %s", r.code, r.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), p.Pseudonym+","+site.ID+",baseline,1,vitals,1,weight,0,70.5\n") || strings.Contains(string(b), "positive") {
		t.Errorf("the file:\n%s", b)
	}
	if !strings.Contains(r.stderr, "exported 1 of 1 values (100%)") || !strings.Contains(r.stderr, "Wrote 1 values") {
		t.Errorf("the progress: %q", r.stderr)
	}
	r = run(t, nil, "", "export", "--data", dir, "--study", study.ID, "--format", "odm")
	if r.code != 0 || !strings.Contains(r.stdout, `<ItemData ItemOID="I.vitals.weight" TransactionType="Upsert" Value="70.5">`) {
		t.Errorf("odm to standard output: %d %s", r.code, r.stderr)
	}
	missing := filepath.Join(t.TempDir(), "none.csv")
	if r = run(t, nil, "", "export", "--data", dir, "--study", "aaaaaaaaaaaaaaaaaaaaaaaaaa", "--out", missing); r.code == 0 || !strings.Contains(r.stderr, "no study") {
		t.Errorf("a study that does not exist: %d %s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(filepath.Dir(missing)); len(entries) != 0 {
		t.Errorf("a refused export left %v", entries)
	}
	if r = run(t, nil, "", "export", "--data", dir, "--study", study.ID, "--format", "xml"); r.code != 2 {
		t.Errorf("--format xml: %d %s", r.code, r.stderr)
	}
	inst, err = instance.Open(ctx, instance.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	var n int
	if err := inst.Clinical.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action IN ('entry.export', 'entry.export.sent') AND body LIKE '%"via":"cli"%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("%d export events from the command line, want 4", n)
	}
}

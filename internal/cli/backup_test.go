package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// seeded is a demo organization with a study, a published form, its
// schedule and one participant with an identity and an entry.
type seeded struct {
	org      orgs.Organization
	study    orgs.Study
	site     orgs.Site
	pseudo   string
	logins   []demo.Login
	identity string // the participant's name
}

// instanceGate is the gate of an open instance, with the local
// key-encryption key of its data folder.
func instanceGate(t *testing.T, inst *instance.Instance, dataDir string) *gate.Gate {
	t.Helper()
	kek, err := keys.LoadLocalKEK(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	epochs := filepath.Join(dataDir, keys.LocalEpochsDir)
	return gate.New(gate.Config{Clinical: inst.Clinical, Keys: &keys.Keyring{DB: inst.Clinical, KEK: kek, EpochDir: epochs},
		Identity: inst.Identity, IdentityKeys: &keys.Keyring{DB: inst.Identity, KEK: kek, EpochDir: epochs}, AuditKey: inst.AuditKey})
}

// actorOf is the demo login of role, signed in and confirmed just now.
func actorOf(t *testing.T, inst *instance.Instance, logins []demo.Login, role authz.Role) gate.Actor {
	t.Helper()
	for _, l := range logins {
		if l.Role == role {
			acc, err := accounts.ByEmail(context.Background(), inst.Clinical, l.Email)
			if err != nil {
				t.Fatal(err)
			}
			return gate.Actor{AccountID: acc.ID, SessionID: "s", RemoteAddr: "192.0.2.1", ConfirmedAt: time.Now()}
		}
	}
	t.Fatalf("no %s", role)
	return gate.Actor{}
}

// seedStudy fills the instance of cfg with the demo organization, a form
// with a sensitive field, and one participant named name with an entry.
func seedStudy(t *testing.T, cfg instance.Config, name string) seeded {
	t.Helper()
	ctx := context.Background()
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	g := instanceGate(t, inst, cfg.DataDir)
	logins, err := demo.Seed(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	s := seeded{logins: logins, identity: name}
	if s.org, err = orgs.OrganizationBySlug(ctx, inst.Clinical, demo.Slug); err != nil {
		t.Fatal(err)
	}
	studies, err := orgs.Studies(ctx, inst.Clinical, s.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range studies {
		if st.Name == "Demo Study" {
			s.study = st
		}
	}
	sites, err := orgs.Sites(ctx, inst.Clinical, s.org.ID, s.study.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.site = sites[0]
	admin := actorOf(t, inst, logins, authz.StudyAdmin)
	design := &formadmin.Service{Gate: g}
	f := &forms.Form{Key: "vitals", Title: "Vitals", Fields: []forms.Field{
		{Name: "weight", Label: "Weight", Type: forms.Decimal},
		{Name: "hiv", Label: "HIV status", Type: forms.Text, Sensitive: true},
	}}
	v, err := design.Create(ctx, admin, demo.Slug, s.study.ID, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := design.Publish(ctx, admin, demo.Slug, s.study.ID, "vitals", v.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := design.SetSchedule(ctx, admin, demo.Slug, s.study.ID, []forms.Visit{{Key: "baseline", Label: "Baseline", Forms: []string{"vitals"}}}); err != nil {
		t.Fatal(err)
	}
	s.pseudo = enrolNamed(t, inst, g, s, name)
	if _, err := (&entries.Service{Gate: g}).Save(ctx, actorOf(t, inst, logins, authz.OrgAdmin), demo.Slug,
		entries.Place{StudyID: s.study.ID, SiteID: s.site.ID, Participant: s.pseudo, Visit: "baseline", Repeat: 1, Form: "vitals"},
		entries.Save{Values: map[string]string{"weight": "70.5", "hiv": "positive"}}); err != nil {
		t.Fatal(err)
	}
	return s
}

func enrolNamed(t *testing.T, inst *instance.Instance, g *gate.Gate, s seeded, name string) string {
	t.Helper()
	p, err := (&participants.Service{Gate: g}).Enrol(context.Background(), actorOf(t, inst, s.logins, authz.OrgAdmin), demo.Slug, s.study.ID, s.site.ID,
		participants.Identity{participants.Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return p.Pseudonym
}

// reveal reads participant pseudo's name in the instance of cfg.
func reveal(t *testing.T, cfg instance.Config, s seeded, pseudo string) (string, error) {
	t.Helper()
	ctx := context.Background()
	inst, err := instance.OpenExisting(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	rv, err := (&participants.Service{Gate: instanceGate(t, inst, cfg.DataDir)}).Reveal(ctx, actorOf(t, inst, s.logins, authz.OrgAdmin), demo.Slug, s.study.ID, s.site.ID, pseudo)
	return rv.Values[participants.Name], err
}

// fingerprints are both databases' table hashes.
func fingerprints(t *testing.T, cfg instance.Config) (clinical, identity map[string]string) {
	t.Helper()
	ctx := context.Background()
	inst, err := instance.OpenExisting(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if clinical, err = backup.Fingerprint(ctx, inst.Clinical); err != nil {
		t.Fatal(err)
	}
	if identity, err = backup.Fingerprint(ctx, inst.Identity); err != nil {
		t.Fatal(err)
	}
	return clinical, identity
}

// backupKey makes a backup key pair in dir: the secret key's file and the
// public key.
func backupKey(t *testing.T, dir string) (keyFile, public string) {
	t.Helper()
	keyFile = filepath.Join(dir, "backup.key")
	r := run(t, nil, "", "backup", "keygen", "--out", keyFile)
	if r.code != 0 {
		t.Fatalf("keygen: %s", r.stderr)
	}
	public = regexp.MustCompile(`age1pq1[0-9a-z]+`).FindString(r.stdout)
	if public == "" {
		t.Fatalf("keygen printed no public key: %q", r.stdout)
	}
	return keyFile, public
}

// takeBackup writes a backup of the instance of flags into a new folder
// and returns its file.
func takeBackup(t *testing.T, flags []string, public string) string {
	t.Helper()
	dir := t.TempDir()
	r := run(t, nil, "", append([]string{"backup", "--to", dir, "--recipient", public}, flags...)...)
	if r.code != 0 {
		t.Fatalf("backup: %s", r.stderr)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+backup.Suffix))
	if len(files) != 1 || !strings.Contains(r.stdout, files[0]) {
		t.Fatalf("backup wrote %v, said %q", files, r.stdout)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.partial")); len(left) > 0 {
		t.Errorf("backup left %v", left)
	}
	return files[0]
}

// initLab makes the instance that flags name, with organization lab. On
// SQLite its databases are migrated first (migratedSQLite).
func initLab(t *testing.T, flags []string) {
	t.Helper()
	if cfg := configOf(flags); cfg.Database == "" {
		migratedSQLite(t, cfg.DataDir)
	}
	if r := run(t, nil, goodPassword, append([]string{"init", "--org", "Lab", "--slug", "lab", "--admin-email", "admin@lab.example", "--password-stdin"}, flags...)...); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
}

// freshFlags names an instance: its data folder and, on PostgreSQL,
// two fresh databases.
func freshFlags(t *testing.T, d sqldb.Dialect, dataDir string) []string {
	flags := []string{"--data", dataDir}
	if d == sqldb.Postgres {
		flags = append(flags, "--database", sqldbtest.URL(t, d), "--identity-database", sqldbtest.URL(t, d))
	}
	return flags
}

func configOf(flags []string) instance.Config {
	cfg := instance.Config{}
	for i := 0; i+1 < len(flags); i += 2 {
		switch flags[i] {
		case "--data":
			cfg.DataDir = flags[i+1]
		case "--database":
			cfg.Database = flags[i+1]
		case "--identity-database":
			cfg.IdentityDatabase = flags[i+1]
		}
	}
	return cfg
}

// wipe loses the instance's databases: the SQLite files are deleted; on
// PostgreSQL the flags name two new, empty databases.
func wipe(t *testing.T, d sqldb.Dialect, flags []string) []string {
	t.Helper()
	dataDir := flags[1]
	if d == sqldb.SQLite {
		for _, f := range []string{"clinical.db", "identity.db"} {
			removeSQLite(filepath.Join(dataDir, f))
		}
		return flags
	}
	return freshFlags(t, d, dataDir)
}

// TestAVL02_DisasterRecoveryDrill runs the drill: seed, back up, lose the
// databases, restore, verify. Every value of every table comes back, the
// audit trail verifies against the backup's checkpoint and the witness
// file and goes on with the restore's own event, and the participant's
// identity opens again. The SQLite backup also restores into PostgreSQL.
func TestAVL02_DisasterRecoveryDrill(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		dataDir := t.TempDir()
		flags := freshFlags(t, d, dataDir)
		initLab(t, flags)
		cfg := configOf(flags)
		s := seedStudy(t, cfg, "Adelheid Quorvanne")
		witnessFile := filepath.Join(t.TempDir(), "witness.log")
		if r := run(t, nil, "", append([]string{"audit", "checkpoint", "--audit-witness-file", witnessFile}, flags...)...); r.code != 0 {
			t.Fatalf("checkpoint: %s", r.stderr)
		}
		keyFile, public := backupKey(t, t.TempDir())
		clinicalBefore, identityBefore := fingerprints(t, cfg)
		file := takeBackup(t, flags, public)

		r := run(t, nil, "", "backup", "verify", file, "--data", dataDir)
		if r.code != 0 || !strings.Contains(r.stdout, "backup verified") {
			t.Fatalf("verify without the key: %d %s %s", r.code, r.stdout, r.stderr)
		}
		r = run(t, nil, "", "backup", "verify", file, "--data", dataDir, "--key", keyFile)
		if r.code != 0 || !strings.Contains(r.stdout, "every table matches its hash") {
			t.Fatalf("verify with the key: %d %s %s", r.code, r.stdout, r.stderr)
		}

		// The trail goes on after the backup, and the witness sees it.
		inst, err := instance.OpenExisting(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		enrolNamed(t, inst, instanceGate(t, inst, dataDir), s, "Gustav Ellerby")
		inst.Close()
		if r := run(t, nil, "", append([]string{"audit", "checkpoint", "--audit-witness-file", witnessFile}, flags...)...); r.code != 0 {
			t.Fatalf("checkpoint after the backup: %s", r.stderr)
		}

		flags = wipe(t, d, flags)
		cfg = configOf(flags)
		if r := run(t, nil, "", append([]string{"serve"}, flags...)...); r.code == 0 || !strings.Contains(r.stderr, "restore") {
			t.Fatalf("serve after the loss: %d %s", r.code, r.stderr)
		}
		r = run(t, nil, "", append([]string{"restore", "--from", file, "--key", keyFile, "--witness-file", witnessFile}, flags...)...)
		if r.code != 0 {
			t.Fatalf("restore: %s", r.stderr)
		}
		if !strings.Contains(r.stderr, "audit trail verified") || !strings.Contains(r.stderr, "1 witnessed") || !strings.Contains(r.stderr, "after the backup") {
			t.Errorf("restore's progress: %q", r.stderr)
		}
		checkRestored(t, cfg, clinicalBefore, identityBefore)
		if r := run(t, nil, "", append([]string{"audit", "verify"}, flags...)...); r.code != 0 {
			t.Errorf("audit verify after the restore: %s %s", r.stdout, r.stderr)
		}
		// The witness saw what the backup does not hold.
		if r := run(t, nil, "", append([]string{"audit", "verify", "--witness-file", witnessFile}, flags...)...); r.code == 0 {
			t.Errorf("audit verify against the witness that saw more: %s", r.stdout)
		}
		if name, err := reveal(t, cfg, s, s.pseudo); err != nil || name != s.identity {
			t.Errorf("the participant's name after the restore: %q, %v", name, err)
		}
		var restores int
		inst, err = instance.OpenExisting(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := inst.Clinical.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'backup.restore'`).Scan(&restores); err != nil {
			t.Fatal(err)
		}
		inst.Close()
		if restores != 1 {
			t.Errorf("%d backup.restore events, want 1", restores)
		}

		// The instance's own format: a backup of SQLite restores into
		// PostgreSQL.
		if d == sqldb.SQLite && os.Getenv("CUSTODIA_TEST_POSTGRES") != "" {
			pg := freshFlags(t, sqldb.Postgres, dataDir)
			if r := run(t, nil, "", append([]string{"restore", "--from", file, "--key", keyFile}, pg...)...); r.code != 0 {
				t.Fatalf("restore into PostgreSQL: %s", r.stderr)
			}
			checkRestored(t, configOf(pg), clinicalBefore, identityBefore)
		}
	})
}

// checkRestored compares the restored databases with the fingerprints
// taken before the backup: every table identical, but for the audit
// trail, which holds the restore's event beyond them (checked by audit
// verify), and the record of backups, which the backup's own is after.
func checkRestored(t *testing.T, cfg instance.Config, clinical, identity map[string]string) {
	t.Helper()
	c, i := fingerprints(t, cfg)
	for _, table := range []string{"audit_events", "audit_queue", "backups"} {
		delete(c, table)
	}
	want := maps.Clone(clinical)
	for _, table := range []string{"audit_events", "audit_queue", "backups"} {
		delete(want, table)
	}
	if len(want) < 30 || !maps.Equal(c, want) {
		for k, v := range want {
			if c[k] != v {
				t.Errorf("clinical table %s differs after the restore", k)
			}
		}
		t.Errorf("clinical database: %d tables restored of %d", len(c), len(want))
	}
	if len(identity) < 2 || !maps.Equal(i, identity) {
		t.Errorf("identity database differs after the restore: %v, want %v", i, identity)
	}
}

// TestLIFE03_RestoredBackupKeepsAnErasedParticipantUnreadable restores a
// backup taken before a participant's erasure: the participant's identity
// stays unreadable, since the epoch's key was destroyed in the data
// folder, which backups never hold. So do the identities of the other
// participants of that epoch, which the erasure moved to a fresh epoch in
// the live database only: a backup taken after the erasure opens them, and
// not the erased one.
func TestLIFE03_RestoredBackupKeepsAnErasedParticipantUnreadable(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		dataDir := t.TempDir()
		flags := freshFlags(t, d, dataDir)
		initLab(t, flags)
		cfg := configOf(flags)
		s := seedStudy(t, cfg, "Adelheid Quorvanne")
		inst, err := instance.OpenExisting(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		other := enrolNamed(t, inst, instanceGate(t, inst, dataDir), s, "Gustav Ellerby")
		inst.Close()
		keyFile, public := backupKey(t, t.TempDir())
		before := takeBackup(t, flags, public)
		if name, err := reveal(t, cfg, s, s.pseudo); err != nil || name != s.identity {
			t.Fatalf("before the erasure: %q, %v", name, err)
		}

		inst, err = instance.OpenExisting(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (&participants.Service{Gate: instanceGate(t, inst, dataDir)}).Erase(ctx, actorOf(t, inst, s.logins, authz.OrgAdmin), demo.Slug, s.study.ID, s.site.ID, s.pseudo); err != nil {
			t.Fatalf("erase: %v", err)
		}
		inst.Close()
		after := takeBackup(t, flags, public)

		for _, c := range []struct {
			file      string
			otherName string
		}{{before, ""}, {after, "Gustav Ellerby"}} {
			flags = wipe(t, d, flags)
			cfg = configOf(flags)
			if r := run(t, nil, "", append([]string{"restore", "--from", c.file, "--key", keyFile}, flags...)...); r.code != 0 {
				t.Fatalf("restore: %s", r.stderr)
			}
			if name, err := reveal(t, cfg, s, s.pseudo); name != "" || (c.file == before && !strings.Contains(fmt.Sprint(err), "destroyed")) {
				t.Errorf("the erased participant from %s: %q, %v; want no name", filepath.Base(c.file), name, err)
			}
			if name, err := reveal(t, cfg, s, other); name != c.otherName || (c.otherName != "" && err != nil) {
				t.Errorf("the other participant of the epoch from %s: %q, %v; want %q", filepath.Base(c.file), name, err, c.otherName)
			}
		}
	})
}

// TestCRY10_BackupsAreEncryptedToAKeyApartFromTheDataKeys: the backup file
// is encrypted to the backup key's public half, which the server holds
// without the secret one; decrypted, it holds neither a participant's
// identity nor a sensitive value in clear, nor the key-encryption key or
// an erasure epoch's key.
func TestCRY10_BackupsAreEncryptedToAKeyApartFromTheDataKeys(t *testing.T) {
	dataDir := t.TempDir()
	flags := []string{"--data", dataDir}
	initLab(t, flags)
	seedStudy(t, configOf(flags), "Adelheid Quorvanne")
	keyFile, public := backupKey(t, t.TempDir())
	file := takeBackup(t, flags, public)

	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("Demo Organization")) || bytes.Contains(raw, []byte("admin@lab.example")) {
		t.Error("the backup file holds clear text")
	}
	v, err := verifierOf("", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Open(file, v)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The server's data keys do not open it.
	if _, err := b.Plaintext(nil); err == nil {
		t.Error("the backup opened without its key")
	}
	b.Close()
	b, _ = backup.Open(file, v)
	ids, err := readBackupKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := b.Plaintext(ids)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(plain, []byte("Demo Organization")) {
		t.Fatal("the decrypted backup does not hold the organization: not the content")
	}
	secrets := map[string][]byte{"the participant's name": []byte("Adelheid Quorvanne"), "a sensitive value": []byte(`"positive"`)}
	kekFile, err := os.ReadFile(filepath.Join(dataDir, keys.LocalKEKFile))
	if err != nil {
		t.Fatal(err)
	}
	secrets["the key-encryption key file"] = kekFile
	epochs, _ := filepath.Glob(filepath.Join(dataDir, keys.LocalEpochsDir, "*"))
	if len(epochs) == 0 {
		t.Fatal("no erasure epoch in the data folder")
	}
	for _, f := range epochs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		secrets["epoch key "+filepath.Base(f)] = b
	}
	for what, secret := range secrets {
		for _, form := range [][]byte{secret, []byte(base64.StdEncoding.EncodeToString(secret)), []byte(hex.EncodeToString(secret))} {
			if len(form) >= 8 && bytes.Contains(plain, form) {
				t.Errorf("the decrypted backup holds %s", what)
			}
		}
	}
}

// TestAVL02_BadBackupsAreRefused: a backup truncated, changed in its
// content or its manifest, another instance's, opened with the wrong key,
// or restored onto databases that hold an instance, is refused with one
// line, and the restore writes nothing.
func TestAVL02_BadBackupsAreRefused(t *testing.T) {
	newInstance := func() []string {
		flags := []string{"--data", t.TempDir()}
		initLab(t, flags)
		return flags
	}
	flags := newInstance()
	dataDir := flags[1]
	keyFile, public := backupKey(t, t.TempDir())
	file := takeBackup(t, flags, public)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	manifestAt := bytes.Index(good, []byte(`"instance":`))
	dataAt := bytes.Index(good, []byte("age-encryption.org/"))
	if manifestAt < 0 || dataAt < 0 {
		t.Fatal("no manifest or content in the backup")
	}
	variant := func(name string, change func([]byte) []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, change(bytes.Clone(good)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flip := func(at int) func([]byte) []byte {
		return func(b []byte) []byte { b[at] ^= 0x01; return b }
	}
	otherFlags := newInstance()
	other := takeBackup(t, otherFlags, public)
	_, wrongPublic := backupKey(t, t.TempDir())
	wrongKeyFile, _ := backupKey(t, t.TempDir())
	_ = wrongPublic

	for _, c := range []struct {
		name, file, key string
		want            string
	}{
		{"truncated", variant("truncated", func(b []byte) []byte { return b[:len(b)/2] }), keyFile, "truncated"},
		{"content changed", variant("content", flip(len(good)-2000)), keyFile, "changed after it was written"},
		{"manifest changed", variant("manifest", flip(manifestAt+3)), keyFile, "does not verify"},
		{"another instance's", other, keyFile, "another instance's backup"},
		{"not a backup", variant("text", func([]byte) []byte { return []byte("hello\n") }), keyFile, "not a whole backup file"},
		{"wrong key", file, wrongKeyFile, "does not open the backup"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.key == keyFile {
				r := run(t, nil, "", "backup", "verify", c.file, "--data", dataDir)
				checkOneLineError(t, r, c.want)
			}
			target := t.TempDir()
			if err := os.CopyFS(target, os.DirFS(dataDir)); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"clinical.db", "identity.db"} {
				removeSQLite(filepath.Join(target, f))
			}
			r := run(t, nil, "", "restore", "--from", c.file, "--key", c.key, "--data", target)
			checkLastLineError(t, r, c.want)
			for _, f := range []string{"clinical.db", "identity.db", "clinical.db.restoring", "identity.db.restoring"} {
				if _, err := os.Stat(filepath.Join(target, f)); err == nil {
					t.Errorf("the refused restore left %s", f)
				}
			}
		})
	}
	// Restoring onto the instance itself, which holds its data, is refused
	// and changes nothing.
	before, _ := fingerprints(t, configOf(flags))
	r := run(t, nil, "", "restore", "--from", file, "--key", keyFile, "--data", dataDir)
	checkLastLineError(t, r, "not empty")
	if after, _ := fingerprints(t, configOf(flags)); !maps.Equal(before, after) {
		t.Error("a refused restore changed the instance")
	}
	if r := run(t, nil, "", "backup", "--to", t.TempDir(), "--recipient", "age1notakey", "--data", dataDir); r.code == 0 || !strings.Contains(r.stderr, "not a public backup key") {
		t.Errorf("a bad recipient: %d %s", r.code, r.stderr)
	}
	if r := run(t, nil, "", "backup", "--recipient", public, "--data", dataDir); r.code != 2 || !strings.Contains(r.stderr, "--to is required") {
		t.Errorf("no --to: %d %s", r.code, r.stderr)
	}
}

// checkLastLineError is checkOneLineError for a command that reports its
// progress on stderr before it fails: the failure is its last line.
func checkLastLineError(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	checkOneLineError(t, result{code: r.code, stdout: r.stdout, stderr: lines[len(lines)-1] + "\n"}, want)
}

// TestAVL01_ServeWritesBackupsOnItsSchedule: serve --backup-to writes a
// backup when none is due yet, which verifies, and records it on the trail
// as the schedule's.
func TestAVL01_ServeWritesBackupsOnItsSchedule(t *testing.T) {
	dataDir := t.TempDir()
	initLab(t, []string{"--data", dataDir})
	keyFile, public := backupKey(t, t.TempDir())
	to := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var out, errb bytes.Buffer
	go func() {
		done <- Run(ctx, []string{"custodia", "serve", "--data", dataDir, "--addr", "127.0.0.1:0", "--backup-to", to, "--backup-recipient", public},
			func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	}()
	var files []string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && len(files) == 0; time.Sleep(100 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(to, "*"+backup.Suffix))
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve: %d %s", code, errb.String())
	}
	if len(files) != 1 {
		t.Fatalf("serve wrote %v", files)
	}
	if r := run(t, nil, "", "backup", "verify", files[0], "--data", dataDir, "--key", keyFile); r.code != 0 {
		t.Fatalf("the scheduled backup: %s", r.stderr)
	}
	inst, err := instance.OpenExisting(context.Background(), instance.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	var n int
	if err := inst.Clinical.QueryRowContext(context.Background(), `SELECT count(*) FROM audit_events WHERE action = 'backup.create' AND security AND body LIKE '%"via":"schedule"%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d backup.create events of the schedule, want 1", n)
	}
	r := run(t, nil, "", "security-report", "--json", "--data", dataDir)
	if r.code != 0 || !strings.Contains(r.stdout, "backups: newest") {
		t.Errorf("the security statement does not name the backup: %s %s", r.stdout, r.stderr)
	}
}

package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/sqldb"
	"golang.org/x/mod/sumdb/note"
)

// restoreTarget is one database a backup is restored into. A SQLite file
// is written beside its place (".restoring") and put in place only once
// the restore verified, so a failed restore leaves nothing behind.
type restoreTarget struct {
	schema sqldb.Schema
	target sqldb.Target
	db     *sqldb.DB
	temp   string // SQLite: the file being written
}

func runRestore(ctx context.Context, env Env, args []string) (err error) {
	fs := newFlags(env, "restore", "restore --from FILE --key FILE [--data DIR | --database URL --identity-database URL] [--verifier FILE] [--witness-file FILE]…")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	from := fs.String("from", "", "the backup `file` to restore")
	keyFile := fs.String("key", "", "the secret backup key `file` (from backup keygen)")
	verifierFile := fs.String("verifier", "", "the audit verifier key `file` that checks the backup's signature and trail (default <data>/audit/verifier.pub)")
	var witnessFiles []string
	fs.Func("witness-file", "a witness `file` (serve --audit-witness-file): the restored trail must contain every checkpoint in it; repeatable", func(v string) error {
		witnessFiles = append(witnessFiles, strings.Fields(v)...)
		return nil
	})
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if *from == "" || *keyFile == "" {
		return usageError{"--from (the backup file) and --key (the secret backup key file) are required"}
	}
	c := cfg.WithDefaults()
	clinical, identity, err := c.Targets()
	if err != nil {
		return err
	}
	v, err := verifierOf(*verifierFile, c.DataDir)
	if err != nil {
		return err
	}
	ids, err := readBackupKey(*keyFile)
	if err != nil {
		return err
	}
	outside, err := witnessFileCheckpoints(witnessFiles, v)
	if err != nil {
		return err
	}
	b, err := backup.Open(*from, v)
	if err != nil {
		return err
	}
	defer b.Close()
	m := b.Manifest
	progress := func(line string) { fmt.Fprintln(env.Stderr, line) }

	targets := []*restoreTarget{{schema: sqldb.Clinical, target: clinical}, {schema: sqldb.Identity, target: identity}}
	defer func() {
		for _, t := range targets {
			if t.db != nil {
				t.db.Close()
			}
			if t.temp != "" {
				removeSQLite(t.temp)
			}
		}
	}()
	for _, t := range targets {
		if err := t.open(ctx); err != nil {
			return err
		}
	}
	if _, err := b.Restore(ctx, backup.Targets{Clinical: targets[0].db, Identity: targets[1].db}, ids, progress); err != nil {
		return err
	}
	// The restored trail must verify, and hold the checkpoint the backup
	// was signed with and every checkpoint the witnesses kept up to it;
	// what they saw beyond it was recorded after the backup, and is lost.
	outside, beyond, err := upToBackup(outside, m, v)
	if err != nil {
		return err
	}
	if beyond > 0 {
		progress(fmt.Sprintf("the witnesses saw the trail grow to %d events after the backup: the events and changes after it are not in the backup", beyond))
	}
	rep, err := audit.Verify(ctx, targets[0].db, audit.VerifyOptions{Verifier: v, Checkpoint: []byte(m.Checkpoint), Outside: outside})
	if err != nil {
		return err
	}
	if !rep.OK() {
		where := "nothing was restored"
		if clinical.Dialect == sqldb.Postgres {
			where = "the databases hold the restored data: drop them before using them"
		}
		return fmt.Errorf("the restored audit trail does not verify against the backup's checkpoint and the witnesses (%s); %s", strings.Join(rep.Problems, "; "), where)
	}
	progress(fmt.Sprintf("audit trail verified: %d events, %d signed checkpoints, %d witnessed", rep.Size, rep.Checkpoints, len(outside)))
	for _, t := range targets {
		if _, err := t.db.Migrate(ctx, t.schema); err != nil {
			return err
		}
	}
	// Put the SQLite files in place, the identity database first.
	for _, i := range []int{1, 0} {
		t := targets[i]
		if err := t.db.Close(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "close the restored "+t.schema.Name+" database")
		}
		t.db = nil
		if t.temp != "" {
			removeSQLite(t.target.Path)
			if err := os.Rename(t.temp, t.target.Path); err != nil {
				return errs.Wrap(errs.Unavailable, err, "put the restored "+t.schema.Name+" database in place")
			}
			t.temp = ""
			backup.SyncDir(filepath.Dir(t.target.Path))
		}
	}
	// Open the instance as serve would: the data folder's keys must fit
	// the restored databases. The restore goes on the restored trail.
	inst, err := openWriting(ctx, env, cfg, kc)
	if err != nil {
		return fmt.Errorf("the databases are restored, but the instance does not open with this data folder: %w", err)
	}
	defer inst.Close()
	err = gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey}).Operate(ctx, "backup.restore", func(o *gate.OpTx) error {
		o.Security()
		o.Object("backup", filepath.Base(*from))
		o.Detail("via", "cli")
		o.Detail("backup_created", m.Created.Format("2006-01-02T15:04:05Z"))
		o.Detail("sha256", m.SHA256)
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Restored the backup of instance %s taken %s into %s and %s.\n", m.Instance, m.Created.Format("2006-01-02 15:04:05Z"), where(clinical), where(identity))
	return nil
}

// upToBackup keeps the witnessed checkpoints that a trail restored from
// the backup of m must hold, and says how far the largest one beyond it
// went (0 if none).
func upToBackup(outside []audit.OutsideCheckpoint, m backup.Manifest, v note.Verifier) ([]audit.OutsideCheckpoint, int64, error) {
	var size int64
	if m.Checkpoint != "" {
		cp, err := audit.ParseCheckpoint([]byte(m.Checkpoint), v)
		if err != nil {
			return nil, 0, errs.E(errs.Invalid, "the backup's audit checkpoint: %s", errs.SafeMessage(err))
		}
		size = cp.Size
	}
	var kept []audit.OutsideCheckpoint
	var beyond int64
	for _, c := range outside {
		if c.Checkpoint.Size <= size {
			kept = append(kept, c)
		} else {
			beyond = max(beyond, c.Checkpoint.Size)
		}
	}
	return kept, beyond, nil
}

// open checks the target holds no instance and opens it for the restore.
func (t *restoreTarget) open(ctx context.Context) error {
	if t.target.Dialect == sqldb.SQLite {
		if fi, err := os.Stat(t.target.Path); err == nil && fi.Size() > 0 {
			db, err := sqldb.OpenTarget(ctx, t.target)
			if err != nil {
				return err
			}
			err = refuseFull(ctx, db, t.schema)
			db.Close()
			if err != nil {
				return err
			}
		}
		t.temp = t.target.Path + ".restoring"
		removeSQLite(t.temp)
		db, err := sqldb.Open(ctx, "sqlite:"+t.temp)
		if err != nil {
			return err
		}
		t.db = db
		return nil
	}
	db, err := sqldb.OpenTarget(ctx, t.target)
	if err != nil {
		return err
	}
	t.db = db
	return refuseFull(ctx, db, t.schema)
}

// refuseFull refuses a database that holds an instance or people.
func refuseFull(ctx context.Context, db *sqldb.DB, s sqldb.Schema) error {
	r, err := instance.ReadRecords(ctx, db, s)
	if err != nil {
		return err
	}
	if r.InstanceID != "" || r.People {
		return errs.E(errs.Invalid, "the %s database %s is not empty (it holds instance %s): a backup is restored only into empty databases; move it away or drop it first", s.Name, db.Location, cmp.Or(r.InstanceID, "none, but data"))
	}
	return nil
}

func where(t sqldb.Target) string {
	if t.Dialect == sqldb.SQLite {
		return t.Path
	}
	return sqldb.Redact(t.URL)
}

// removeSQLite removes a SQLite file and its journal files.
func removeSQLite(path string) {
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			continue
		}
	}
}

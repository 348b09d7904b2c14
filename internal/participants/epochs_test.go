package participants_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// backupIdentity copies the identity database as a backup would, and opens
// the copy: SQLite's file after a checkpoint; PostgreSQL's keys and sealed
// values, row for row, into a fresh identity database.
func backupIdentity(t *testing.T, f *fixture, d sqldb.Dialect) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	if d == sqldb.SQLite {
		if _, err := f.identity.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(f.identity.Location)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "identity-backup.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := sqldb.Open(ctx, "sqlite:"+path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	backup := sqldbtest.Open(t, d, sqldb.Identity)
	copyRows := func(table string, cols int) {
		rows, err := f.identity.QueryContext(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		names, _ := rows.Columns()
		if len(names) != cols {
			t.Fatalf("%s has %d columns, want %d", table, len(names), cols)
		}
		insert := `INSERT INTO ` + table + ` VALUES (`
		for i := range names {
			if i > 0 {
				insert += ", "
			}
			insert += "$" + strconv.Itoa(i+1)
		}
		insert += ")"
		for rows.Next() {
			vals := make([]any, len(names))
			ptrs := make([]any, len(names))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			if _, err := backup.ExecContext(ctx, insert, vals...); err != nil {
				t.Fatal(err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	copyRows("data_keys", 10)
	copyRows("identities", 11) // with the identifier document
	copyRows("key_epochs", 4)
	return backup
}

// backupName reads a participant's sealed name from a backup.
func backupName(t *testing.T, backup *sqldb.DB, p participants.Participant) []byte {
	t.Helper()
	var b []byte
	if err := backup.QueryRowContext(context.Background(), `SELECT name FROM identities WHERE participant_id = $1`, p.Pseudonym).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

func epochOf(t *testing.T, db *sqldb.DB, p participants.Participant) string {
	t.Helper()
	var e string
	if err := db.QueryRowContext(context.Background(), `SELECT DISTINCT epoch FROM data_keys
		WHERE scope_kind = 'participant' AND scope_id = $1`, p.Pseudonym).Scan(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestLIFE03_ErasureReachesBackupsTakenBefore takes a backup of the
// identity database with two participants of one erasure epoch, erases one,
// and shows that the backup, with the key folder as it is now, opens
// neither participant's key any more, while the other participant's
// identity opens from the live database.
func TestLIFE03_ErasureReachesBackupsTakenBefore(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		a := f.enrol(t, f.investigator, f.north, ada())
		b := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Gustav Ellerby"})
		epoch := epochOf(t, f.identity, a)
		if epoch == "" || epochOf(t, f.identity, b) != epoch {
			t.Fatalf("A and B are in epochs %q and %q, want one epoch", epoch, epochOf(t, f.identity, b))
		}

		backup := backupIdentity(t, f, d)
		fromBackup := &keys.Keyring{DB: backup, KEK: f.kek}
		// Before the erasure the backup opens A: it is a real backup.
		if pt, err := keys.Open(ctx, fromBackup, backupName(t, backup, a), nameAt(a)); err != nil || string(pt) != "Adelheid Quorvanne" {
			t.Fatalf("the backup before the erasure: %q, %v", pt, err)
		}

		if _, err := f.svc.Erase(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, f.north.ID, a.Pseudonym); err != nil {
			t.Fatalf("erase: %v", err)
		}

		// The backup, with the current key folder, no longer opens A.
		fromBackup = &keys.Keyring{DB: backup, KEK: f.kek} // empty cache
		if _, err := keys.Open(ctx, fromBackup, backupName(t, backup, a), nameAt(a)); !errors.Is(err, keys.ErrEpochDestroyed) {
			t.Errorf("A from the backup after the erasure: %v, want ErrEpochDestroyed", err)
		}
		id, version, err := keys.KeyIDOf(backupName(t, backup, a))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fromBackup.ByID(ctx, id, version); !errors.Is(err, keys.ErrEpochDestroyed) {
			t.Errorf("A's key from the backup: %v, want ErrEpochDestroyed", err)
		}
		// B's copy in the backup was under the same epoch: gone too.
		if _, err := keys.Open(ctx, fromBackup, backupName(t, backup, b), nameAt(b)); !errors.Is(err, keys.ErrEpochDestroyed) {
			t.Errorf("B from the backup after the erasure: %v, want ErrEpochDestroyed", err)
		}
		// B lives on in the live database, under a fresh epoch.
		if rv, err := f.reveal(f.confirmed(f.investigator), b); err != nil || rv.Values[participants.Name] != "Gustav Ellerby" {
			t.Errorf("B after the erasure: %+v, %v", rv, err)
		}
		fresh := &keys.Keyring{DB: f.identity, KEK: f.kek}
		if pt, err := keys.Open(ctx, fresh, sealedName(t, f, b), nameAt(b)); err != nil || string(pt) != "Gustav Ellerby" {
			t.Errorf("B on another node: %q, %v", pt, err)
		}
		if next := epochOf(t, f.identity, b); next == "" || next == epoch {
			t.Errorf("B is in epoch %q after the erasure, want a fresh one", next)
		}
		// The epoch is recorded destroyed, and its destruction audited as a
		// security event.
		if n := count(t, f.identity, `SELECT count(*) FROM key_epochs WHERE id = $1 AND retired_at IS NOT NULL AND destroyed_at IS NOT NULL`, epoch); n != 1 {
			t.Errorf("epoch rows retired and destroyed: %d, want 1", n)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'key.epoch_destroy' AND object_id = $1 AND security`, epoch); n != 1 {
			t.Errorf("%d key.epoch_destroy events, want 1", n)
		}
		// A participant enrolled now joins an open epoch, never the
		// destroyed one.
		c := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Hedda Corvin"})
		if e := epochOf(t, f.identity, c); e == "" || e == epoch {
			t.Errorf("a new participant joined epoch %q", e)
		}
		if rv, err := f.reveal(f.confirmed(f.investigator), c); err != nil || rv.Values[participants.Name] != "Hedda Corvin" {
			t.Errorf("a participant enrolled after the erasure: %+v, %v", rv, err)
		}
	})
}

// TestLIFE03_EpochDestructionInterruptedIsFinishedBySweep leaves an
// erasure as a crash between its commit and the destruction of the epoch
// would, shows that the backup still opens the participant then (the
// erasure is not complete), and that the sweep completes it.
func TestLIFE03_EpochDestructionInterruptedIsFinishedBySweep(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		a := f.enrol(t, f.investigator, f.north, ada())
		b := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Gustav Ellerby"})
		epoch := epochOf(t, f.identity, a)
		backup := backupIdentity(t, f, d)

		// The erasure's commits happen; then the process stops.
		if _, err := f.clinical.ExecContext(ctx, `UPDATE participants SET identity = 'erased', erased_at = $1 WHERE id = $2`, sqldb.Now(), a.Pseudonym); err != nil {
			t.Fatal(err)
		}
		err := f.identity.InTx(ctx, func(tx *sql.Tx) error {
			if err := f.g.IdentityKeys().Destroy(ctx, tx, keys.ParticipantScope(a.OrgID, a.Pseudonym)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM identities WHERE participant_id = $1`, a.Pseudonym)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM key_epochs WHERE id = $1 AND retired_at IS NOT NULL AND destroyed_at IS NULL`, epoch); n != 1 {
			t.Fatalf("pending epoch destructions: %d, want 1", n)
		}
		if pt, err := keys.Open(ctx, &keys.Keyring{DB: backup, KEK: f.kek}, backupName(t, backup, a), nameAt(a)); err != nil || string(pt) != "Adelheid Quorvanne" {
			t.Fatalf("before the sweep the backup still opens A (the erasure is incomplete): %q, %v", pt, err)
		}
		if rv, err := f.reveal(f.confirmed(f.investigator), b); err != nil || rv.Values[participants.Name] != "Gustav Ellerby" {
			t.Fatalf("B after the interrupted erasure: %+v, %v", rv, err)
		}

		if _, err := f.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		if _, err := keys.Open(ctx, &keys.Keyring{DB: backup, KEK: f.kek}, backupName(t, backup, a), nameAt(a)); !errors.Is(err, keys.ErrEpochDestroyed) {
			t.Errorf("A from the backup after the sweep: %v, want ErrEpochDestroyed", err)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM key_epochs WHERE retired_at IS NOT NULL AND destroyed_at IS NULL`); n != 0 {
			t.Errorf("pending epoch destructions after the sweep: %d", n)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'key.epoch_destroy' AND object_id = $1 AND security`, epoch); n != 1 {
			t.Errorf("%d key.epoch_destroy events, want 1", n)
		}
		if rv, err := f.reveal(f.confirmed(f.investigator), b); err != nil || rv.Values[participants.Name] != "Gustav Ellerby" {
			t.Errorf("B after the sweep: %+v, %v", rv, err)
		}
		// A second sweep finds nothing left to destroy.
		if _, err := f.svc.Sweep(ctx); err != nil {
			t.Fatalf("second sweep: %v", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'key.epoch_destroy'`); n != 1 {
			t.Errorf("%d key.epoch_destroy events after a second sweep, want 1", n)
		}
	})
}

// noEpochs is a key-encryption key whose provider keeps no erasure epochs
// (as PKCS#11 and Vault today).
type noEpochs struct{ keys.KEK }

// TestLIFE03_ErasureRefusesWithoutEpochs shows that a provider without
// erasure epochs makes the erasure refuse with a clear message, and change
// nothing, rather than leave the participant readable in old backups.
func TestLIFE03_ErasureRefusesWithoutEpochs(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		*f.g = *gate.New(gate.Config{Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: f.kek}, Identity: f.identity, IdentityKeys: &keys.Keyring{DB: f.identity, KEK: noEpochs{f.kek}}})
		p := f.enrol(t, f.investigator, f.north, ada())
		_, err := f.svc.Erase(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym)
		if !errors.Is(err, keys.ErrEpochsUnsupported) || !errs.Is(err, errs.Invalid) {
			t.Fatalf("erase without epochs: %v, want ErrEpochsUnsupported", err)
		}
		if msg := errs.SafeMessage(err); !strings.Contains(msg, "erasure epochs") || !strings.Contains(msg, "backups") {
			t.Errorf("the message says %q", msg)
		}
		if rv, err := f.reveal(f.confirmed(f.investigator), p); err != nil || rv.State != participants.IdentityRecorded || rv.Values[participants.Name] != "Adelheid Quorvanne" {
			t.Errorf("after the refused erasure: %+v, %v", rv, err)
		}
	})
}

// A provider without epochs of its own (PKCS#11, Vault) keeps them in the
// keyring's EpochDir: erasure works and reaches backups taken before it,
// and the epoch key never enters a database.
func TestLIFE03_ProviderWithoutEpochsKeepsThemInTheEpochFolder(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		dir := filepath.Join(t.TempDir(), "epochs")
		*f.g = *gate.New(gate.Config{Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: f.kek}, Identity: f.identity, IdentityKeys: &keys.Keyring{DB: f.identity, KEK: noEpochs{f.kek}, EpochDir: dir}})
		a := f.enrol(t, f.investigator, f.north, ada())
		b := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Gustav Ellerby"})
		epoch := epochOf(t, f.identity, a)
		if epoch == "" || epochOf(t, f.identity, b) != epoch {
			t.Fatalf("A and B are in epochs %q and %q, want one epoch", epoch, epochOf(t, f.identity, b))
		}
		epochFile := filepath.Join(dir, epoch+".key")
		if _, err := os.Stat(epochFile); err != nil {
			t.Fatalf("the epoch key is not in the epoch folder: %v", err)
		}
		backup := backupIdentity(t, f, d)
		fromBackup := &keys.Keyring{DB: backup, KEK: noEpochs{f.kek}, EpochDir: dir}
		if pt, err := keys.Open(ctx, fromBackup, backupName(t, backup, a), nameAt(a)); err != nil || string(pt) != "Adelheid Quorvanne" {
			t.Fatalf("the backup before the erasure: %q, %v", pt, err)
		}
		if _, err := f.svc.Erase(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, f.north.ID, a.Pseudonym); err != nil {
			t.Fatalf("erase: %v", err)
		}
		if _, err := os.Stat(epochFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the erased participant's epoch key is still there: %v", err)
		}
		fromBackup = &keys.Keyring{DB: backup, KEK: noEpochs{f.kek}, EpochDir: dir}
		if _, err := keys.Open(ctx, fromBackup, backupName(t, backup, a), nameAt(a)); !errors.Is(err, keys.ErrEpochDestroyed) {
			t.Errorf("A from the backup after the erasure: %v, want ErrEpochDestroyed", err)
		}
		if rv, err := f.reveal(f.confirmed(f.investigator), b); err != nil || rv.Values[participants.Name] != "Gustav Ellerby" {
			t.Errorf("B after A's erasure: %+v, %v", rv, err)
		}
	})
}

package participants_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// enrolBeforeEpochs enrols participants as an instance did before erasure
// epochs existed: with a key provider that keeps none and no epoch folder,
// their keys are wrapped by the key-encryption key alone (an empty epoch). It
// then gives the gate a keyring with epochs, as the upgraded instance has.
func enrolBeforeEpochs(t *testing.T, f *fixture, epochSize int, ids ...participants.Identity) []participants.Participant {
	t.Helper()
	*f.g = *gate.New(gate.Config{Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: f.kek}, Identity: f.identity, IdentityKeys: &keys.Keyring{DB: f.identity, KEK: noEpochs{f.kek}}})
	var out []participants.Participant
	for _, id := range ids {
		out = append(out, f.enrol(t, f.investigator, f.north, id))
	}
	if n := count(t, f.identity, `SELECT count(*) FROM data_keys WHERE scope_kind = 'participant' AND epoch <> ''`); n != 0 {
		t.Fatalf("%d participant keys in an epoch before epochs existed", n)
	}
	*f.g = *gate.New(gate.Config{Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: f.kek}, Identity: f.identity, IdentityKeys: &keys.Keyring{DB: f.identity, KEK: f.kek, EpochSize: epochSize}})
	return out
}

// adoptEvents lists the key.epoch_adopt events, which belong to no
// organization.
func adoptEvents(t *testing.T, f *fixture) []audit.Event {
	t.Helper()
	rows, err := f.clinical.QueryContext(context.Background(), `SELECT body FROM audit_events WHERE action = 'key.epoch_adopt'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var evs []audit.Event
	for rows.Next() {
		var body string
		var ev audit.Event
		if err := rows.Scan(&body); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestLIFE03_PreEpochKeysAreAdoptedIntoEpochs makes participant keys as
// before erasure epochs (one of them with a second version), and shows
// that the sweep puts every live version into an epoch, a participant's
// versions into one epoch and no more than EpochSize participants into
// any, that every value still opens, on this node and another, that the
// adoption is audited with its count and no key material, and that a
// second sweep adopts nothing.
func TestLIFE03_PreEpochKeysAreAdoptedIntoEpochs(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		ps := enrolBeforeEpochs(t, f, 2, ada(),
			participants.Identity{participants.Name: "Gustav Ellerby"},
			participants.Identity{participants.Name: "Hedda Corvin"})
		names := []string{"Adelheid Quorvanne", "Gustav Ellerby", "Hedda Corvin"}
		// A's key gets a second version, still without an epoch.
		err := f.identity.InTx(ctx, func(tx *sql.Tx) error {
			_, err := (&keys.Keyring{DB: f.identity, KEK: noEpochs{f.kek}}).Rotate(ctx, tx, keys.ParticipantScope(ps[0].OrgID, ps[0].Pseudonym))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM data_keys WHERE scope_kind = 'participant' AND epoch = '' AND wrapped IS NOT NULL`); n != 4 {
			t.Fatalf("%d participant key versions without an epoch, want 4", n)
		}

		if _, err := f.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}

		if n := count(t, f.identity, `SELECT count(*) FROM data_keys WHERE scope_kind = 'participant' AND epoch = ''`); n != 0 {
			t.Errorf("%d participant key versions without an epoch after the sweep, want 0", n)
		}
		for _, p := range ps {
			if n := count(t, f.identity, `SELECT count(DISTINCT epoch) FROM data_keys WHERE scope_kind = 'participant' AND scope_id = $1`, p.Pseudonym); n != 1 {
				t.Errorf("participant %s has versions in %d epochs, want 1", p.Pseudonym, n)
			}
		}
		if n := count(t, f.identity, `SELECT count(*) FROM key_epochs`); n != 2 {
			t.Errorf("%d epochs for 3 participants of at most 2 an epoch, want 2", n)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM (SELECT epoch FROM data_keys WHERE epoch <> '' GROUP BY epoch HAVING count(DISTINCT scope_id) > 2) full_epochs`); n != 0 {
			t.Errorf("%d epochs over the epoch size", n)
		}
		other := &keys.Keyring{DB: f.identity, KEK: f.kek} // another node, empty cache
		for i, p := range ps {
			if rv, err := f.reveal(f.confirmed(f.investigator), p); err != nil || rv.Values[participants.Name] != names[i] {
				t.Errorf("participant %d after the adoption: %+v, %v", i, rv, err)
			}
			if pt, err := keys.Open(ctx, other, sealedName(t, f, p), nameAt(p)); err != nil || string(pt) != names[i] {
				t.Errorf("participant %d on another node: %q, %v", i, pt, err)
			}
		}
		id, _, err := keys.KeyIDOf(sealedName(t, f, ps[0]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.ByID(ctx, id, 2); err != nil {
			t.Errorf("A's second key version after the adoption: %v", err)
		}

		evs := adoptEvents(t, f)
		if len(evs) != 1 {
			t.Fatalf("%d key.epoch_adopt events, want 1", len(evs))
		}
		if ev := evs[0]; !ev.Security || ev.Outcome != audit.Success || ev.OrgID != "" || len(ev.Details) != 1 || ev.Details["keys"] != "4" {
			t.Errorf("the adoption event: %+v", ev)
		}

		// A second sweep finds nothing to adopt.
		if _, err := f.svc.Sweep(ctx); err != nil {
			t.Fatalf("second sweep: %v", err)
		}
		if evs := adoptEvents(t, f); len(evs) != 1 {
			t.Errorf("%d key.epoch_adopt events after a second sweep, want 1", len(evs))
		}
		if n := count(t, f.identity, `SELECT count(*) FROM key_epochs`); n != 2 {
			t.Errorf("%d epochs after a second sweep, want 2", n)
		}
	})
}

// TestLIFE03_AdoptedKeyErasureReachesBackupsTakenAfterAdoption erases a
// participant whose key was made before erasure epochs and adopted by the
// sweep: a backup taken after the adoption no longer opens the
// participant, while one taken before the adoption, which holds the
// key-encryption key's wrapping only, still does (the documented limit).
func TestLIFE03_AdoptedKeyErasureReachesBackupsTakenAfterAdoption(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		ps := enrolBeforeEpochs(t, f, 0, ada(), participants.Identity{participants.Name: "Gustav Ellerby"})
		a, b := ps[0], ps[1]
		beforeAdoption := backupIdentity(t, f, d)

		if _, err := f.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		epoch := epochOf(t, f.identity, a)
		if epoch == "" {
			t.Fatal("A's key was not adopted into an epoch")
		}
		backup := backupIdentity(t, f, d)
		if pt, err := keys.Open(ctx, &keys.Keyring{DB: backup, KEK: f.kek}, backupName(t, backup, a), nameAt(a)); err != nil || string(pt) != "Adelheid Quorvanne" {
			t.Fatalf("the backup before the erasure: %q, %v", pt, err)
		}

		if _, err := f.svc.Erase(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, f.north.ID, a.Pseudonym); err != nil {
			t.Fatalf("erase: %v", err)
		}

		fromBackup := &keys.Keyring{DB: backup, KEK: f.kek}
		if _, err := keys.Open(ctx, fromBackup, backupName(t, backup, a), nameAt(a)); !errors.Is(err, keys.ErrEpochDestroyed) {
			t.Errorf("A from the backup taken after the adoption: %v, want ErrEpochDestroyed", err)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM key_epochs WHERE id = $1 AND destroyed_at IS NOT NULL`, epoch); n != 1 {
			t.Errorf("A's epoch destroyed: %d rows, want 1", n)
		}
		if rv, err := f.reveal(f.confirmed(f.investigator), b); err != nil || rv.Values[participants.Name] != "Gustav Ellerby" {
			t.Errorf("B after A's erasure: %+v, %v", rv, err)
		}
		// The limit: a backup from before the adoption holds A's key
		// wrapped by the key-encryption key alone.
		if pt, err := keys.Open(ctx, &keys.Keyring{DB: beforeAdoption, KEK: f.kek}, backupName(t, beforeAdoption, a), nameAt(a)); err != nil || string(pt) != "Adelheid Quorvanne" {
			t.Errorf("A from the backup taken before the adoption: %q, %v", pt, err)
		}
	})
}

// TestLIFE03_ErasureRacingAdoptionIsFinishedBySweep leaves the state of an
// erasure that read A's key before the sweep adopted it and destroyed the
// key after: the key is destroyed but its epoch, which the erasure did not
// see, is not retired, so a backup taken after the adoption still opens A.
// The next sweep retires and destroys that epoch.
func TestLIFE03_ErasureRacingAdoptionIsFinishedBySweep(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		ps := enrolBeforeEpochs(t, f, 0, ada(), participants.Identity{participants.Name: "Gustav Ellerby"})
		a, b := ps[0], ps[1]
		if _, err := f.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		epoch := epochOf(t, f.identity, a)
		backup := backupIdentity(t, f, d)

		// The erasure, as Destroy does it for a key it found without an epoch.
		if _, err := f.clinical.ExecContext(ctx, `UPDATE participants SET identity = 'erased', erased_at = $1 WHERE id = $2`, sqldb.Now(), a.Pseudonym); err != nil {
			t.Fatal(err)
		}
		err := f.identity.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE data_keys SET wrapped = NULL, destroyed_at = $2
				WHERE scope_kind = 'participant' AND scope_id = $1`, a.Pseudonym, sqldb.Now()); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM identities WHERE participant_id = $1`, a.Pseudonym)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := keys.Open(ctx, &keys.Keyring{DB: backup, KEK: f.kek}, backupName(t, backup, a), nameAt(a)); err != nil || string(pt) != "Adelheid Quorvanne" {
			t.Fatalf("before the sweep the backup still opens A: %q, %v", pt, err)
		}

		if _, err := f.svc.Sweep(ctx); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		if _, err := keys.Open(ctx, &keys.Keyring{DB: backup, KEK: f.kek}, backupName(t, backup, a), nameAt(a)); !errors.Is(err, keys.ErrEpochDestroyed) {
			t.Errorf("A from the backup after the sweep: %v, want ErrEpochDestroyed", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'key.epoch_destroy' AND object_id = $1 AND security`, epoch); n != 1 {
			t.Errorf("%d key.epoch_destroy events, want 1", n)
		}
		if rv, err := f.reveal(f.confirmed(f.investigator), b); err != nil || rv.Values[participants.Name] != "Gustav Ellerby" {
			t.Errorf("B after the sweep: %+v, %v", rv, err)
		}
		if next := epochOf(t, f.identity, b); next == "" || next == epoch {
			t.Errorf("B is in epoch %q after the sweep, want a fresh one", next)
		}
	})
}

package keys

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func epochOfScope(t *testing.T, k *Keyring, s Scope) string {
	t.Helper()
	var e string
	if err := k.DB.QueryRowContext(context.Background(), `SELECT epoch FROM data_keys
		WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3 ORDER BY version DESC LIMIT 1`,
		s.OrgID, string(s.Kind), s.ID).Scan(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestLIFE03_EpochsTakeUpToEpochSizeParticipantsAndLiveWithTheProvider
// fills epochs of two, shows that other scopes' keys have no epoch, that
// every epoch key is a 0600 file in the key folder and in no database row,
// and that destroying one participant's key retires and (after
// DestroyRetiredEpochs) removes only that participant's epoch, with the
// other member moved and still opening.
func TestLIFE03_EpochsTakeUpToEpochSizeParticipantsAndLiveWithTheProvider(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		k.EpochSize = 2
		local := k.KEK.(*LocalKEK)
		dir := filepath.Join(filepath.Dir(local.path), "epochs")
		ad := func(s Scope) Context { return Context{OrgID: s.OrgID, StudyID: "s1", RecordID: s.ID, Field: "name"} }
		var ps []Scope
		sealed := map[Scope][]byte{}
		for i := range 5 {
			s := ParticipantScope("org1", fmt.Sprintf("p%d", i))
			ps = append(ps, s)
			sealed[s] = mustSeal(t, current(t, k, s), []byte("name "+s.ID), ad(s))
		}
		current(t, k, OrgScope("org1"))
		if e := epochOfScope(t, k, OrgScope("org1")); e != "" {
			t.Errorf("an organization key is in epoch %q", e)
		}
		e0, e1, e2 := epochOfScope(t, k, ps[0]), epochOfScope(t, k, ps[2]), epochOfScope(t, k, ps[4])
		if e0 == "" || epochOfScope(t, k, ps[1]) != e0 || epochOfScope(t, k, ps[3]) != e1 || e0 == e1 || e1 == e2 || e0 == e2 {
			t.Fatalf("epochs %q %q %q %q %q, want pairs", e0, epochOfScope(t, k, ps[1]), e1, epochOfScope(t, k, ps[3]), e2)
		}
		// A new version of a participant's key stays in its epoch.
		rotate(t, k, ps[0])
		if e := epochOfScope(t, k, ps[0]); e != e0 {
			t.Errorf("version 2 of p0 is in epoch %q, want %q", e, e0)
		}
		// The epoch keys are files of the provider, 0600 in a 0700 folder,
		// and no database row holds them.
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("epoch folder: %v, %v", fi, err)
		}
		table := dumpTable(t, k.DB)
		for _, e := range []string{e0, e1, e2} {
			path := filepath.Join(dir, e+".key")
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("epoch key %s: %v, %v", e, fi, err)
			}
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
			if err != nil || len(raw) != 32 {
				t.Fatalf("epoch key file %s: %d bytes, %v", e, len(raw), err)
			}
			if bytes.Contains(table, raw) || bytes.Contains(table, bytes.TrimSpace(text)) {
				t.Errorf("the database holds epoch key %s", e)
			}
		}

		err := k.DB.InTx(ctx, func(tx *sql.Tx) error { return k.Destroy(ctx, tx, ps[0]) })
		if err != nil {
			t.Fatal(err)
		}
		// Retired but not destroyed yet: the file is still there.
		if _, err := os.Stat(filepath.Join(dir, e0+".key")); err != nil {
			t.Fatalf("the retired epoch is gone before DestroyRetiredEpochs: %v", err)
		}
		var audited []string
		done, err := k.DestroyRetiredEpochs(ctx, func(e string) error { audited = append(audited, e); return nil })
		if err != nil || len(done) != 1 || done[0] != e0 || len(audited) != 1 {
			t.Fatalf("DestroyRetiredEpochs = %v, %v (audited %v)", done, err, audited)
		}
		if _, err := os.Stat(filepath.Join(dir, e0+".key")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the destroyed epoch's file: %v", err)
		}
		for _, e := range []string{e1, e2} {
			if _, err := os.Stat(filepath.Join(dir, e+".key")); err != nil {
				t.Errorf("epoch %s was destroyed too: %v", e, err)
			}
		}
		if e := epochOfScope(t, k, ps[1]); e == e0 || e == "" {
			t.Errorf("p1 is in epoch %q after p0's erasure", e)
		}
		for _, s := range ps[1:] {
			mustOpen(t, otherNode(k), sealed[s], ad(s), "name "+s.ID)
		}
		if _, err := Open(ctx, otherNode(k), sealed[ps[0]], ad(ps[0])); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("p0 after its erasure: %v", err)
		}
		// Nothing is left to destroy.
		if done, err := k.DestroyRetiredEpochs(ctx, nil); err != nil || len(done) != 0 {
			t.Errorf("second DestroyRetiredEpochs = %v, %v", done, err)
		}
	})
}

// TestCRY07_KEKRotationKeepsEpochKeysOpening rotates the key-encryption key
// over participant keys in epochs, re-wraps them all, retires the old
// version, and shows they still open; the epoch keys themselves are not
// wrapped by the key-encryption key and are untouched.
func TestCRY07_KEKRotationKeepsEpochKeysOpening(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		local := k.KEK.(*LocalKEK)
		s := ParticipantScope("org1", "p1")
		ad := Context{OrgID: "org1", StudyID: "s1", RecordID: "p1", Field: "name"}
		v := mustSeal(t, current(t, k, s), []byte("Ada"), ad)
		epoch := epochOfScope(t, k, s)
		old := local.ID()
		next := mustRotate(t, local)
		store := &DataKeyStore{Label: "identity data keys", DB: k.DB}
		if b, err := store.Rewrap(ctx, local, "", 100); err != nil || b.Rewrapped != 1 {
			t.Fatalf("rewrap: %+v, %v", b, err)
		}
		if err := local.RetireKEK(ctx, old); err != nil {
			t.Fatal(err)
		}
		if use, err := store.KEKUse(ctx); err != nil || use[next] != 1 || len(use) != 1 {
			t.Fatalf("KEKUse = %v, %v", use, err)
		}
		mustOpen(t, otherNode(k), v, ad, "Ada")
		if e := epochOfScope(t, k, s); e != epoch {
			t.Errorf("rotation moved the key from epoch %q to %q", epoch, e)
		}
	})
}

// TestLIFE03_ConcurrentEnrolmentsShareTheirEpochOnPostgres: two
// transactions that each make a participant key join the same epoch
// without waiting for each other (a share lock, not a counter every
// enrolment updates), while retiring the epoch, as an erasure does, waits
// for both.
func TestLIFE03_ConcurrentEnrolmentsShareTheirEpochOnPostgres(t *testing.T) {
	sqldbtest.RequirePostgres(t)
	ctx := context.Background()
	k := newKeyring(t, sqldb.Postgres)
	current(t, k, ParticipantScope("org1", "p0")) // the epoch exists
	first, second := beginWaitingAtMost(t, k, "2s"), beginWaitingAtMost(t, k, "2s")
	if _, err := k.Current(ctx, first, ParticipantScope("org1", "p1")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Current(ctx, second, ParticipantScope("org1", "p2")); err != nil {
		t.Fatalf("a second enrolment waited for the first: %v", err)
	}
	retire := beginWaitingAtMost(t, k, "100ms")
	_, err := retire.ExecContext(ctx, `UPDATE key_epochs SET retired_at = 1 WHERE retired_at IS NULL`)
	if err == nil || !strings.Contains(err.Error(), "lock timeout") {
		t.Errorf("retiring the epoch while enrolments join it: %v, want it to wait for them", err)
	}
}

// beginWaitingAtMost begins a transaction on k's PostgreSQL database in
// which a wait for a lock fails the statement after timeout instead of
// hanging; the test's end rolls it back.
func beginWaitingAtMost(t *testing.T, k *Keyring, timeout string) *sql.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := k.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	if _, err := tx.ExecContext(ctx, `SELECT set_config('lock_timeout', $1, true)`, timeout); err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestLIFE03_AFreshEpochIsSeenByConcurrentEnrolmentsOnPostgres fills an
// epoch, then makes two participant keys in two transactions open at once,
// as the gate's lanes and other nodes do. The first finds the epoch full
// and makes a fresh one; the second, before the first commits, joins that
// same epoch instead of making one of its own.
func TestLIFE03_AFreshEpochIsSeenByConcurrentEnrolmentsOnPostgres(t *testing.T) {
	sqldbtest.RequirePostgres(t)
	ctx := context.Background()
	k := newKeyring(t, sqldb.Postgres)
	k.EpochSize = 1
	current(t, k, ParticipantScope("org1", "p0")) // the first epoch, now full
	first, second := beginWaitingAtMost(t, k, "2s"), beginWaitingAtMost(t, k, "2s")
	for i, tx := range []*sql.Tx{first, second} {
		if _, err := k.Current(ctx, tx, ParticipantScope("org1", fmt.Sprintf("p%d", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tx := range []*sql.Tx{first, second} {
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	var epochs, sharing int
	if err := k.DB.QueryRowContext(ctx, `SELECT count(*) FROM key_epochs`).Scan(&epochs); err != nil {
		t.Fatal(err)
	}
	if err := k.DB.QueryRowContext(ctx, `SELECT count(DISTINCT epoch) FROM data_keys
		WHERE scope_kind = 'participant' AND scope_id IN ('p1', 'p2')`).Scan(&sharing); err != nil {
		t.Fatal(err)
	}
	if epochs != 2 || sharing != 1 {
		t.Errorf("the two enrolments made %d fresh epochs and joined %d, want one fresh epoch both join", epochs-1, sharing)
	}
}

// TestLIFE03_TheLanesOfANodeMakeOneFreshEpochBetweenThem makes
// participant keys in four transactions at a time through one keyring, as
// the lanes of a node on PostgreSQL do, until ten epochs fill. The
// transactions that find an epoch full at the same moment make one fresh
// epoch between them, not one each: every epoch but the newest holds at
// least its size.
func TestLIFE03_TheLanesOfANodeMakeOneFreshEpochBetweenThem(t *testing.T) {
	sqldbtest.RequirePostgres(t)
	ctx := context.Background()
	k := newKeyring(t, sqldb.Postgres)
	k.EpochSize = 40
	const lanes, batches, keys = 4, 10, 10
	var wg sync.WaitGroup
	for lane := range lanes {
		wg.Go(func() {
			for b := range batches {
				if err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
					for i := range keys {
						if _, err := k.Create(ctx, tx, ParticipantScope("org1", fmt.Sprintf("p%d-%d-%d", lane, b, i))); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rows, err := k.DB.QueryContext(ctx, `SELECT e.id, count(d.id) FROM key_epochs e LEFT JOIN data_keys d ON d.epoch = e.id
		GROUP BY e.id, e.created_at ORDER BY e.created_at, e.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sizes []int
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, n := range sizes {
		total += n
		if i < len(sizes)-1 && n < k.EpochSize {
			t.Errorf("epoch %d of %d holds %d participants, fewer than its size %d: %v", i+1, len(sizes), n, k.EpochSize, sizes)
		}
	}
	if total != lanes*batches*keys {
		t.Errorf("%d participant keys in the epochs, want %d", total, lanes*batches*keys)
	}
}

// TestLIFE03_EpochsFillWithoutCountingEveryJoin enrols participants through
// two keyrings of one database in turn, as two nodes would. Each counts an
// epoch's members only now and then, and every join near the epoch's size:
// every epoch fills to its size and none takes more.
func TestLIFE03_EpochsFillWithoutCountingEveryJoin(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		k.EpochSize = 40
		nodes := []*Keyring{k, otherNode(k)}
		nodes[1].EpochSize = k.EpochSize
		for i := range 200 {
			s := ParticipantScope("org1", fmt.Sprintf("p%d", i))
			if err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
				_, err := nodes[i%2].Create(ctx, tx, s)
				return err
			}); err != nil {
				t.Fatalf("Create(%v): %v", s, err)
			}
		}
		rows, err := k.DB.QueryContext(ctx, `SELECT epoch, count(DISTINCT scope_id) FROM data_keys
			WHERE scope_kind = 'participant' GROUP BY epoch`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		sizes := map[string]int{}
		for rows.Next() {
			var e string
			var n int
			if err := rows.Scan(&e, &n); err != nil {
				t.Fatal(err)
			}
			sizes[e] = n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(sizes) != 5 {
			t.Errorf("200 participants in %d epochs of up to 40, want 5: %v", len(sizes), sizes)
		}
		for e, n := range sizes {
			if e == "" || n != 40 {
				t.Errorf("epoch %q holds %d participants, want 40", e, n)
			}
		}
	})
}

// TestLIFE03_AKeyJoinsNoEpochRetiredSinceItWasCounted retires the epoch a
// keyring counted last behind its back, as an erasure on another node
// would, keeping the epoch's key: the keyring's next participant key goes
// into another epoch, not the retired one, and a Create of a scope that
// has its key already still answers that key.
func TestLIFE03_AKeyJoinsNoEpochRetiredSinceItWasCounted(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		create := func(s Scope) DataKey {
			t.Helper()
			var dk DataKey
			if err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
				var err error
				dk, err = k.Create(ctx, tx, s)
				return err
			}); err != nil {
				t.Fatalf("Create(%v): %v", s, err)
			}
			return dk
		}
		p0, p1, p2 := ParticipantScope("org1", "p0"), ParticipantScope("org1", "p1"), ParticipantScope("org1", "p2")
		create(p0)
		create(p1) // joins p0's epoch without counting
		retired := epochOfScope(t, k, p0)
		if got := epochOfScope(t, k, p1); got != retired {
			t.Fatalf("p1 in epoch %q, p0 in %q: want one epoch", got, retired)
		}
		if _, err := k.DB.ExecContext(ctx, `UPDATE key_epochs SET retired_at = $1 WHERE id = $2`, sqldb.Now(), retired); err != nil {
			t.Fatal(err)
		}
		dk := create(p2)
		if got := epochOfScope(t, k, p2); got == retired || got == "" {
			t.Errorf("p2's key in epoch %q after %q was retired, want a live epoch", got, retired)
		}
		if again := create(p2); again.ID != dk.ID || again.Version != dk.Version {
			t.Errorf("Create of p2 again = %v v%d, want its key %v v%d", again.ID, again.Version, dk.ID, dk.Version)
		}
		if n := count(t, k.DB, `SELECT count(*) FROM data_keys WHERE scope_id = 'p2'`); n != 1 {
			t.Errorf("%d key rows for p2, want 1", n)
		}
	})
}

// TestCRY07_CreateKeepsAnExistingKey shows that Create, for a scope that has
// a key already, answers that key rather than making a second version 1.
func TestCRY07_CreateKeepsAnExistingKey(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		s := ParticipantScope("org1", "p1")
		first := current(t, k, s)
		var again DataKey
		if err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			again, err = otherNode(k).Create(ctx, tx, s)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if again.ID != first.ID || again.Version != first.Version {
			t.Errorf("Create on a scope with a key = %v v%d, want %v v%d", again.ID, again.Version, first.ID, first.Version)
		}
		if n := count(t, k.DB, `SELECT count(*) FROM data_keys WHERE scope_id = 'p1'`); n != 1 {
			t.Errorf("%d key rows for p1, want 1", n)
		}
	})
}

// TestLIFE03_AReplacedEpochKeyFileIsReadAgain seals the values of three
// participants under one epoch, opens the first (which loads the epoch's
// key), then replaces the epoch's key file with another key, as a restore
// of the wrong file would: the key loaded before is not used for the
// second participant, whose value no longer opens. A removed file is a
// destroyed epoch at once, for the third.
func TestLIFE03_AReplacedEpochKeyFileIsReadAgain(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, sqldb.SQLite)
	var sealed [][]byte
	var ads []Context
	for i := range 3 {
		s := ParticipantScope("org1", fmt.Sprintf("p%d", i))
		ad := Context{OrgID: "org1", StudyID: "s1", RecordID: s.ID, Field: "name"}
		sealed = append(sealed, mustSeal(t, current(t, k, s), []byte("Ada"), ad))
		ads = append(ads, ad)
	}
	reader := otherNode(k)
	mustOpen(t, reader, sealed[0], ads[0], "Ada") // loads the epoch key
	local := k.KEK.(*LocalKEK)
	path := filepath.Join(filepath.Dir(local.path), "epochs", epochOfScope(t, k, ParticipantScope("org1", "p0"))+".key")
	if e := epochOfScope(t, k, ParticipantScope("org1", "p2")); !strings.HasSuffix(path, e+".key") {
		t.Fatalf("p2 is in another epoch (%s)", e)
	}
	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n"
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, reader, sealed[1], ads[1]); err == nil {
		t.Fatal("a value opened under the epoch key loaded before its file was replaced")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, reader, sealed[2], ads[2]); !errors.Is(err, ErrEpochDestroyed) {
		t.Errorf("a value whose epoch file is gone: %v, want ErrEpochDestroyed", err)
	}
}

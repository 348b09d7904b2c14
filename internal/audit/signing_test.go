package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// These tests tamper as a database administrator, or whoever holds a
// backup, would: with the triggers dropped and every audit table in reach,
// but without the audit key, which the data folder holds.

// forgeRow writes ev into audit_events as SQL alone can: unsigned, or with
// the signature line sig.
func forgeRow(t *testing.T, db *sqldb.DB, ev Event, sig string) Event {
	t.Helper()
	ev, err := normalize(ev)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, `INSERT INTO audit_events (id, org_id, at, actor_account, action, outcome, study_id, site_id,
		participant_id, object_type, object_id, security, body, sig)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		ev.ID, nullable(ev.OrgID), ev.Time.UnixMicro(), nullable(ev.ActorAccount), ev.Action, string(ev.Outcome),
		nullable(ev.StudyID), nullable(ev.SiteID), nullable(ev.ParticipantID), nullable(ev.ObjectType), nullable(ev.ObjectID),
		ev.Security, marshal(t, ev), nullable(sig))
	return ev
}

// strangerSig signs ev's body with a key of the audit key's name that is
// not the instance's.
func strangerSig(t *testing.T, ev Event) string {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, testSigner.Name())
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	ev, err = normalize(ev)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signEvent([]byte(marshal(t, ev)), s)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// rebuild makes audit_log and audit_hashes anew over the events ids names,
// in that order, as a thorough intruder would after removing or adding
// events, and removes the stored checkpoints beyond keepCheckpoints.
func rebuild(t *testing.T, db *sqldb.DB, ids []string, keepCheckpoints int64) {
	t.Helper()
	ctx := context.Background()
	exec(t, db, `DELETE FROM audit_log`)
	exec(t, db, `DELETE FROM audit_hashes`)
	exec(t, db, `DELETE FROM audit_checkpoints WHERE size > $1`, keepCheckpoints)
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for n, id := range ids {
		var body string
		var sig sql.NullString
		if err := db.QueryRowContext(ctx, `SELECT body, sig FROM audit_events WHERE id = $1`, id).Scan(&body, &sig); err != nil {
			t.Fatal(err)
		}
		leaf := tlog.RecordHash(leafData(body, sig.String))
		hs, err := tlog.StoredHashesForRecordHash(int64(n), leaf, r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		exec(t, db, `INSERT INTO audit_log (seq, event_id, leaf) VALUES ($1, $2, $3)`, int64(n), id, encodeHash(leaf))
	}
	for i, h := range stored {
		exec(t, db, `INSERT INTO audit_hashes (idx, hash) VALUES ($1, $2)`, int64(i), encodeHash(h))
	}
}

func eventIDs(evs []Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// (c) A forged event put in the queue is never adopted: the sequencer
// refuses it, unsigned or signed by another key, and the verifier reports
// the row it leaves.
func TestAUD02_ForgedQueuedEventIsNeverAdopted(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, l, _ := trail(t, d)
		var logged []string
		l.Logf = func(format string, args ...any) { logged = append(logged, format) }
		unsigned := sampleEvent(70)
		unsigned.ID = "forgedunsignedqueued"
		stranger := sampleEvent(71)
		stranger.ID = "forgedstrangerqueued"
		forgeRow(t, db, unsigned, "")
		forgeRow(t, db, stranger, strangerSig(t, stranger))
		for _, id := range []string{unsigned.ID, stranger.ID} {
			exec(t, db, `INSERT INTO audit_queue (event_id, queued_at) VALUES ($1, $2)`, id, sqldb.Now())
		}
		genuine := appendEach(t, db, sampleEvent(72))[0]
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_log WHERE event_id IN ($1, $2)`, unsigned.ID, stranger.ID); n != 0 {
			t.Fatalf("the sequencer adopted %d forged events", n)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_log WHERE event_id = $1`, genuine.ID); n != 1 {
			t.Fatalf("the genuine event behind the forged ones was not integrated")
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_queue`); n != 0 {
			t.Errorf("%d rows left in the queue", n)
		}
		if len(logged) != 2 {
			t.Errorf("logged %q, want one line per refused event", logged)
		}
		rep := verify(t, db, l, nil)
		expectBad(t, rep, -1, "event forgedunsignedqueued is not in the log")
		expectBad(t, rep, -1, "event forgedstrangerqueued is not in the log")
	})
}

// (c) The sequencer checks the queued events' signatures before its write
// transaction, and a verdict counts only for the body and signature it was
// made on: a row changed between the check and the transaction is checked
// again, so a forged event put in place of a checked one is refused.
func TestAUD02_SignatureCheckedBeforeTheTransactionCountsOnlyForWhatItChecked(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, l, _ := trail(t, d)
		l.Logf = func(string, ...any) {}
		genuine := appendEach(t, db, sampleEvent(90))[0]
		checked, err := l.checkQueued(ctx, seqBatch)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := checked[genuine.ID]; !ok || !c.ok {
			t.Fatalf("the queued genuine event was not found good before the transaction: %+v", checked)
		}
		// In the meantime a forged event takes the place the genuine
		// one's verdict was made for.
		stranger := sampleEvent(91)
		stranger.ID = "forgedafterthecheck"
		forgeRow(t, db, stranger, strangerSig(t, stranger))
		exec(t, db, `INSERT INTO audit_queue (event_id, queued_at) VALUES ($1, $2)`, stranger.ID, sqldb.Now())
		checked[stranger.ID] = checkedEvent{checked[genuine.ID].signedEvent, true}
		var n int
		var refused []string
		if err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			n, refused, err = l.sequence(ctx, tx, seqBatch, checked)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n != 1 || len(refused) != 1 || !strings.HasPrefix(refused[0], stranger.ID) {
			t.Fatalf("sequenced %d, refused %q; want the genuine event in and the forged one refused", n, refused)
		}
		if c := count(t, db, `SELECT COUNT(*) FROM audit_log WHERE event_id = $1`, stranger.ID); c != 0 {
			t.Fatal("the forged event was adopted on the verdict of another body")
		}
	})
}

// (c) A forged event appended to the log with the tree rebuilt over it
// fails on its missing signature and on the missing checkpoint, with or
// without a checkpoint kept outside.
func TestAUD02_ForgedEventAppendedWithRebuiltTreeFails(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, l, evs := trail(t, d)
		kept, err := l.Latest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dropTriggers(t, db)
		for _, c := range []struct{ id, sig string }{{"forgedappendunsigned", ""}, {"forgedappendstranger", "stranger"}} {
			ev := sampleEvent(80)
			ev.ID = c.id
			if c.sig != "" {
				c.sig = strangerSig(t, ev)
			}
			forgeRow(t, db, ev, c.sig)
			rebuild(t, db, append(eventIDs(evs), c.id), trailLen)
			for _, kept := range [][]byte{nil, kept.Note} {
				rep := verify(t, db, l, kept)
				expectBad(t, rep, trailLen, "index 12: event")
				expectBad(t, rep, trailLen, "events 12 to 12 are covered by no signed checkpoint")
			}
			exec(t, db, `DELETE FROM audit_events WHERE id = $1`, c.id)
		}
	})
}

// A forged event slipped into the middle, the later ones renumbered and
// the tree rebuilt: it fails at its own index, signed or not.
func TestAUD02_ForgedEventInsertedInTheMiddleFailsAtItsIndex(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		ev := sampleEvent(90)
		ev.ID = "forgedinthemiddle"
		forgeRow(t, db, ev, strangerSig(t, ev))
		ids := append(append(eventIDs(evs[:6]), ev.ID), eventIDs(evs[6:])...)
		rebuild(t, db, ids, 6)
		rep := verify(t, db, l, nil)
		expectBad(t, rep, 6, "index 6: event signature is not the audit key's")
	})
}

// (b) A middle event removed, the later ones renumbered, the tree rebuilt
// and the checkpoints from the change on removed: the events left after it
// are covered by no checkpoint, and the first bad index is the removed
// event's, as every batch was signed when it was integrated.
func TestAUD02_RemovedMiddleEventIsPinnedToItsIndex(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		exec(t, db, `DELETE FROM audit_events WHERE id = $1`, evs[5].ID)
		rest := append(eventIDs(evs[:5]), eventIDs(evs[6:])...)
		rebuild(t, db, rest, 5)
		rep := verify(t, db, l, nil)
		expectBad(t, rep, 5, "events 5 to 10 are covered by no signed checkpoint")
	})
}

// A trail written before events were signed verifies, its unsigned prefix
// reported; from the first signed event on, an unsigned one is refused by
// the sequencer and fails the verifier.
func TestAUD02_UpgradedTrailKeepsItsUnsignedPrefix(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		l := newLog(t, db)
		// Before the upgrade: unsigned events, checkpoints every so often,
		// and some still queued when the new version starts.
		old := func(i int) {
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := Append(ctx, tx, nil, sampleEvent(i))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		for i := range 4 {
			old(i)
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		old(4)
		old(5)
		// After it: signed events.
		appendEach(t, db, sampleEvent(6), sampleEvent(7))
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		rep := verify(t, db, l, nil)
		if !rep.OK() || rep.Size != 8 || rep.Unsigned != 6 {
			t.Fatalf("upgraded trail: %+v, want OK with 8 events, the first 6 unsigned", rep)
		}
		// An unsigned event now is not the instance's.
		var logged []string
		l.Logf = func(format string, args ...any) { logged = append(logged, format) }
		old(8)
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if len(logged) != 1 || count(t, db, `SELECT COUNT(*) FROM audit_log`) != 8 {
			t.Fatalf("an unsigned event after signed ones was adopted (logged %q)", logged)
		}
		// Stripping signatures changes the leaves, so the checkpoints of
		// the signed era give it away.
		dropTriggers(t, db)
		exec(t, db, `UPDATE audit_events SET sig = NULL`)
		rep = verify(t, db, l, nil)
		expectBad(t, rep, 6, "index 6: event body does not match its leaf hash")
		if !strings.Contains(strings.Join(rep.Problems, "\n"), "is not in the log") {
			t.Errorf("the refused unsigned event is not reported: %q", rep.Problems)
		}
	})
}

package audit

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// The tests below tamper as a database administrator would: they drop the
// append-only triggers and edit the tables with SQL. Verify must notice.

const trailLen = 12

// trail builds a trail of trailLen events with a checkpoint after each, so
// that a rewrite is pinned to one index by the checkpoints alone.
func trail(t *testing.T, d sqldb.Dialect) (*sqldb.DB, *Log, []Event) {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	l := newLog(t, db)
	var evs []Event
	for i := range trailLen {
		evs = append(evs, appendEach(t, db, sampleEvent(i))...)
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if rep := verify(t, db, l, nil); !rep.OK() || rep.Size != trailLen || rep.Checkpoints != trailLen {
		t.Fatalf("untouched trail: %+v", rep)
	}
	return db, l, evs
}

func dropTriggers(t *testing.T, db *sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	q := `SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'audit%'`
	if db.Dialect == sqldb.Postgres {
		q = `SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
			WHERE NOT t.tgisinternal AND c.relname LIKE 'audit%'`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var drops []string
	for rows.Next() {
		var name, table string
		if err := rows.Scan(&name, &table); err != nil {
			t.Fatal(err)
		}
		if db.Dialect == sqldb.Postgres {
			drops = append(drops, "DROP TRIGGER "+name+" ON "+table)
		} else {
			drops = append(drops, "DROP TRIGGER "+name)
		}
	}
	rows.Close()
	if len(drops) == 0 {
		t.Fatal("no audit triggers found")
	}
	for _, s := range drops {
		exec(t, db, s)
	}
}

func exec(t *testing.T, db *sqldb.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func scanString(t *testing.T, db *sqldb.DB, query string, args ...any) string {
	t.Helper()
	var s string
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

// expectBad checks that Verify fails with firstBad and a problem line
// containing want.
func expectBad(t *testing.T, rep Report, firstBad int64, want string) {
	t.Helper()
	if rep.OK() {
		t.Fatalf("Verify reported OK after tampering")
	}
	if rep.FirstBad != firstBad {
		t.Errorf("FirstBad = %d, want %d; problems:\n%s", rep.FirstBad, firstBad, strings.Join(rep.Problems, "\n"))
	}
	for _, p := range rep.Problems {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Errorf("no problem mentions %q; problems:\n%s", want, strings.Join(rep.Problems, "\n"))
}

func marshal(t *testing.T, ev Event) string {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAUD02_VerifyChangedBody(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		ev := evs[5]
		ev.UserAgent = "forged/2.0" // a field without a column of its own
		exec(t, db, `UPDATE audit_events SET body = $1 WHERE id = $2`, marshal(t, ev), ev.ID)
		expectBad(t, verify(t, db, l, nil), 5, "index 5: event body does not match its leaf hash")
	})
}

func TestAUD02_VerifyChangedColumn(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		exec(t, db, `UPDATE audit_events SET actor_account = 'mallory' WHERE id = $1`, evs[7].ID)
		rep := verify(t, db, l, nil)
		expectBad(t, rep, 7, "index 7: column actor_account differs from the event body")
		if len(rep.Problems) != 1 {
			t.Errorf("problems %q, want exactly one", rep.Problems)
		}
	})
}

func TestAUD02_VerifyDeletedEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		exec(t, db, `DELETE FROM audit_events WHERE id = $1`, evs[4].ID)
		rep := verify(t, db, l, nil)
		expectBad(t, rep, 4, "index 4: event missing")
		if len(rep.Problems) != 1 {
			t.Errorf("problems %q, want exactly one (the tree itself is intact)", rep.Problems)
		}
	})
}

func TestAUD02_VerifyDeletedLogEntry(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		exec(t, db, `DELETE FROM audit_log WHERE seq = 3`)
		exec(t, db, `DELETE FROM audit_events WHERE id = $1`, evs[3].ID)
		expectBad(t, verify(t, db, l, nil), 3, "index 3: log entry missing")
	})
}

func TestAUD02_VerifyInsertedEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, _ := trail(t, d)
		dropTriggers(t, db)
		ev := sampleEvent(99)
		ev.ID = "insertedbehindthelogsback1"
		ev, err := normalize(ev)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, db, `INSERT INTO audit_events (id, org_id, at, actor_account, action, outcome, security, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			ev.ID, ev.OrgID, ev.Time.UnixMicro(), ev.ActorAccount, ev.Action, string(ev.Outcome), false, marshal(t, ev))
		rep := verify(t, db, l, nil)
		expectBad(t, rep, -1, "event insertedbehindthelogsback1 is not in the log (inserted outside the sequencer)")
	})
}

func TestAUD02_VerifySwappedBodies(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		a, b := evs[8], evs[2]
		bodyA := scanString(t, db, `SELECT body FROM audit_events WHERE id = $1`, a.ID)
		bodyB := scanString(t, db, `SELECT body FROM audit_events WHERE id = $1`, b.ID)
		exec(t, db, `UPDATE audit_events SET body = $1 WHERE id = $2`, bodyB, a.ID)
		exec(t, db, `UPDATE audit_events SET body = $1 WHERE id = $2`, bodyA, b.ID)
		rep := verify(t, db, l, nil)
		expectBad(t, rep, 2, "index 2: event body does not match its leaf hash")
		expectBad(t, rep, 2, "index 8: event body does not match its leaf hash")
		expectBad(t, rep, 2, "bodies swapped")
	})
}

func TestAUD02_VerifySwappedLeaves(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, _ := trail(t, d)
		dropTriggers(t, db)
		leaf6 := scanString(t, db, `SELECT leaf FROM audit_log WHERE seq = 6`)
		leaf9 := scanString(t, db, `SELECT leaf FROM audit_log WHERE seq = 9`)
		exec(t, db, `UPDATE audit_log SET leaf = $1 WHERE seq = 6`, leaf9)
		exec(t, db, `UPDATE audit_log SET leaf = $1 WHERE seq = 9`, leaf6)
		rep := verify(t, db, l, nil)
		expectBad(t, rep, 6, "index 6: event body does not match its leaf hash")
		expectBad(t, rep, 6, "index 9: event body does not match its leaf hash")
	})
}

// Moving whole log entries (event and leaf together) keeps every row
// consistent; the tree's stored hashes give the reordering away.
func TestAUD02_VerifyReorderedLog(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		leaf1 := scanString(t, db, `SELECT leaf FROM audit_log WHERE seq = 1`)
		leaf10 := scanString(t, db, `SELECT leaf FROM audit_log WHERE seq = 10`)
		exec(t, db, `UPDATE audit_log SET event_id = 'moving' WHERE seq = 1`)
		exec(t, db, `UPDATE audit_log SET event_id = $1, leaf = $2 WHERE seq = 10`, evs[1].ID, leaf1)
		exec(t, db, `UPDATE audit_log SET event_id = $1, leaf = $2 WHERE seq = 1`, evs[10].ID, leaf10)
		expectBad(t, verify(t, db, l, nil), 1, "index 1: leaf differs from the tree's stored hash")
	})
}

func TestAUD02_VerifyAlteredTreeHash(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, _ := trail(t, d)
		dropTriggers(t, db)
		idx := tlog.StoredHashIndex(2, 1) // the node over leaves 4..7, written with leaf 7
		exec(t, db, `UPDATE audit_hashes SET hash = $1 WHERE idx = $2`, encodeHash(tlog.RecordHash([]byte("x"))), idx)
		expectBad(t, verify(t, db, l, nil), 7, "index 7: stored tree hash")
	})
}

// rewrite changes event k's outcome everywhere a DBA can reach: body,
// column, leaf and every stored tree hash. Only signed roots remain.
func rewrite(t *testing.T, db *sqldb.DB, ev Event, k int64) {
	t.Helper()
	ctx := context.Background()
	dropTriggers(t, db)
	ev.Outcome = Denied
	body := marshal(t, ev)
	exec(t, db, `UPDATE audit_events SET body = $1, outcome = $2 WHERE id = $3`, body, string(Denied), ev.ID)
	exec(t, db, `UPDATE audit_log SET leaf = $1 WHERE seq = $2`, encodeHash(tlog.RecordHash([]byte(body))), k)

	rows, err := db.QueryContext(ctx, `SELECT leaf FROM audit_log ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []tlog.Hash
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		h, err := decodeHash(s)
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, h)
	}
	rows.Close()
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for n, leaf := range leaves {
		hs, err := tlog.StoredHashesForRecordHash(int64(n), leaf, r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	exec(t, db, `DELETE FROM audit_hashes`)
	for i, h := range stored {
		exec(t, db, `INSERT INTO audit_hashes (idx, hash) VALUES ($1, $2)`, int64(i), encodeHash(h))
	}
}

func TestAUD02_VerifyConsistentRewriteCaughtByCheckpoint(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		rewrite(t, db, evs[6], 6)
		rep := verify(t, db, l, nil)
		expectBad(t, rep, 6, "checkpoint at size 7: root differs (history rewritten")
		// The event's signature pins the rewrite to its index.
		expectBad(t, rep, 6, "index 6: event body does not match its leaf hash; event signature is not the audit key's")
		// The sequencer refuses to sign over the rewritten history.
		appendEach(t, db, sampleEvent(50))
		if _, err := l.Checkpoint(context.Background()); err == nil {
			t.Errorf("Checkpoint signed over a rewritten history")
		}
	})
}

// Without its stored checkpoints the rewrite can only be caught by a
// checkpoint kept outside the database.
func TestAUD02_VerifyKeptCheckpointCatchesRewrite(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		kept, err := l.Latest(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rewrite(t, db, evs[3], 3)
		exec(t, db, `DELETE FROM audit_checkpoints`)
		rep := verify(t, db, l, kept.Note)
		if rep.OK() || rep.FirstBad < 0 || rep.FirstBad > 3 {
			t.Fatalf("Verify = %+v, want a problem at or before index 3", rep)
		}
		expectBad(t, rep, rep.FirstBad, "kept checkpoint at size 12: root differs")
	})
}

func TestAUD02_VerifyTruncatedTail(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs := trail(t, d)
		dropTriggers(t, db)
		for _, ev := range evs[9:] {
			exec(t, db, `DELETE FROM audit_events WHERE id = $1`, ev.ID)
		}
		exec(t, db, `DELETE FROM audit_log WHERE seq >= 9`)
		exec(t, db, `DELETE FROM audit_hashes WHERE idx >= $1`, tlog.StoredHashCount(9))
		rep := verify(t, db, l, nil)
		expectBad(t, rep, 9, "checkpoint at size 12: the log holds only 9 events (events removed)")
	})
}

func TestAUD02_VerifyForgedCheckpoint(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, _ := trail(t, d)
		dropTriggers(t, db)
		skey, _, err := note.GenerateKey(rand.Reader, "custodia-audit-test")
		if err != nil {
			t.Fatal(err)
		}
		other, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		root := tlog.RecordHash([]byte("forged"))
		forged, err := note.Sign(&note.Note{Text: checkpointBody(testOrigin, 5, root)}, other)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, db, `UPDATE audit_checkpoints SET note = $1, root = $2 WHERE size = 5`, string(forged), encodeHash(root))
		expectBad(t, verify(t, db, l, nil), -1, "checkpoint at size 5: not signed by the audit key")
	})
}

func TestAUD02_VerifyQueueWithoutEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, _ := trail(t, d)
		queued := appendEach(t, db, sampleEvent(40))[0]
		dropTriggers(t, db)
		exec(t, db, `DELETE FROM audit_events WHERE id = $1`, queued.ID)
		expectBad(t, verify(t, db, l, nil), -1, "queued event "+queued.ID+" has no event row")
		if _, err := l.Sequence(context.Background(), 10); err == nil {
			t.Errorf("Sequence integrated a queue entry without its event")
		}
	})
}

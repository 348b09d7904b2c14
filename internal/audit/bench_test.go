package audit

import (
	"context"
	"database/sql"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// The write benchmarks run on SQLite in a temporary folder, with its
// production settings (WAL, synchronous=FULL). Compare BenchmarkAuditedWrite
// with BenchmarkPlainWrite of the same run; BenchmarkAuditedWrite also
// reports the ratio itself ("x-plain") against a plain loop on the same
// database, the amortized cost of sequencing ("seq-ns/event") and the part
// of it spent in the sequencer's write transactions ("seq-locked-ns/event").

func benchDB(b *testing.B) *sqldb.DB {
	b.Helper()
	db := sqldbtest.Open(b, sqldb.SQLite, sqldb.Clinical)
	if _, err := db.ExecContext(context.Background(),
		`CREATE TABLE scratch (id TEXT PRIMARY KEY, org_id TEXT NOT NULL, value TEXT NOT NULL, created_at BIGINT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	return db
}

func writeRow(ctx context.Context, tx *sql.Tx) (string, error) {
	id := ids.New()
	_, err := tx.ExecContext(ctx, `INSERT INTO scratch (id, org_id, value, created_at) VALUES ($1, $2, $3, $4)`,
		id, "org1", "ciphertext-stand-in", sqldb.Now())
	return id, err
}

func plainWrites(b *testing.B, db *sqldb.DB, n int) {
	ctx := context.Background()
	for range n {
		if err := db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := writeRow(ctx, tx)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlainWrite(b *testing.B) {
	db := benchDB(b)
	b.ResetTimer()
	plainWrites(b, db, b.N)
}

func BenchmarkAuditedWrite(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := db.InTx(ctx, func(tx *sql.Tx) error {
			id, err := writeRow(ctx, tx)
			if err != nil {
				return err
			}
			_, err = Append(ctx, tx, testSigner, Event{
				OrgID: "org1", ActorAccount: "acct1", ActorSession: "sess1", Action: "record.update",
				Outcome: Success, StudyID: "study1", SiteID: "site1", ParticipantID: "part1",
				ObjectType: "scratch", ObjectID: id, Details: map[string]string{"new_sha256": "stand-in"},
			})
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	audited := time.Since(start)
	b.StopTimer()

	// Sequencing as Log.drain does it, its write transactions timed apart:
	// on SQLite every request's commit waits while one is open.
	seqStart := time.Now()
	l := newLog(b, db)
	var locked time.Duration
	for {
		checked, err := l.checkQueued(ctx, seqBatch)
		if err != nil {
			b.Fatal(err)
		}
		var n int
		lockStart := time.Now()
		if err := db.InTx(ctx, func(tx *sql.Tx) error {
			n, _, err = l.sequence(ctx, tx, seqBatch, checked)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		locked += time.Since(lockStart)
		if n < seqBatch {
			break
		}
	}
	b.ReportMetric(float64(time.Since(seqStart).Nanoseconds())/float64(b.N), "seq-ns/event")
	b.ReportMetric(float64(locked.Nanoseconds())/float64(b.N), "seq-locked-ns/event")

	plainStart := time.Now()
	plainWrites(b, db, b.N)
	b.ReportMetric(float64(audited)/float64(time.Since(plainStart)), "x-plain")
}

// BenchmarkVerify verifies a trail of CUSTODIA_BENCH_AUDIT_EVENTS events
// (default 20000) and reports events verified per second.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	n := 20000
	if s := os.Getenv("CUSTODIA_BENCH_AUDIT_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("CUSTODIA_BENCH_AUDIT_EVENTS=%q is not a positive number", s)
		}
		n = v
	}
	db := sqldbtest.Open(b, sqldb.SQLite, sqldb.Clinical)
	l := newLog(b, db)
	build := time.Now()
	const batch = 5000
	if err := db.InTx(ctx, func(tx *sql.Tx) error {
		evs := make([]Event, 0, batch)
		for i := range n {
			evs = append(evs, sampleEvent(i))
			if len(evs) == batch || i == n-1 {
				if _, err := appendEvents(ctx, tx, l.Signer, evs); err != nil {
					return err
				}
				evs = evs[:0]
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for {
		k, err := l.Sequence(ctx, 20000)
		if err != nil {
			b.Fatal(err)
		}
		if k == 0 {
			break
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("built a trail of %d events in %v", n, time.Since(build).Round(time.Millisecond))

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rep, err := Verify(ctx, db, VerifyOptions{Verifier: l.Verifier})
		if err != nil {
			b.Fatal(err)
		}
		if !rep.OK() || rep.Size != int64(n) {
			b.Fatalf("Verify = %+v", rep)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkAppendToALargeTrail appends batches of 11 events, as the gate
// writes the events of reads waiting together, to a trail of 30,000 events
// of 32 participants, and reports the pages each batch writes to the
// write-ahead log ("wal-frames/batch"): each is a write at the commit. The
// "random-ids" run gives every event a random id (ids.New), the baseline of
// the same run for the ids the trail takes (ids.Timed).
func BenchmarkAppendToALargeTrail(b *testing.B) {
	for _, random := range []bool{false, true} {
		name := "timed-ids"
		if random {
			name = "random-ids"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db := sqldbtest.Open(b, sqldb.SQLite, sqldb.Clinical)
			conn, err := db.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			// The log grows without checkpoints, so its size counts the
			// pages written.
			if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
				b.Fatal(err)
			}
			participants := make([]string, 32)
			for i := range participants {
				participants[i] = ids.New()
			}
			n := 0
			appendBatch := func(size int) {
				evs := make([]Event, size)
				for i := range evs {
					p := participants[n%len(participants)]
					n++
					evs[i] = Event{OrgID: "org1", ActorAccount: "acct1", Action: "participant.read", Outcome: Success,
						StudyID: "study1", SiteID: "site1", ParticipantID: p, ObjectType: "participant", ObjectID: p}
					if random {
						evs[i].ID = ids.New()
					}
				}
				signed, err := Sign(testSigner, evs...)
				if err != nil {
					b.Fatal(err)
				}
				tx, err := conn.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := AppendSigned(ctx, db.In(tx), signed); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			for range 60 {
				appendBatch(500)
			}
			// The sequencer empties the queue; the log starts empty.
			for _, stmt := range []string{"DELETE FROM audit_queue", "PRAGMA wal_checkpoint(TRUNCATE)"} {
				if _, err := conn.ExecContext(ctx, stmt); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				appendBatch(11)
			}
			b.StopTimer()
			fi, err := os.Stat(db.Location + "-wal")
			if err != nil {
				b.Fatal(err)
			}
			const header, frame = 32, 24 + 4096
			b.ReportMetric(float64(fi.Size()-header)/frame/float64(b.N), "wal-frames/batch")
		})
	}
}

// numberedParams is a querier of SQLite that does not tell its dialect, so
// that statements are written with numbered parameters ("$1"), as for any
// database.
type numberedParams struct{ sqldb.Querier }

// BenchmarkInsertABatchOfEvents inserts the events of a full batch of the
// gate (64, as many as a batch holds) in one transaction, rolled back, and
// reports the time an event ("ns/event"). The "anonymous-params" run
// writes the statement's parameters as SQLite takes them by position ("?",
// sqldb.Placeholder); the "numbered-params" run, the baseline of the same run, as
// "$1", "$2", …, which SQLite binds by name.
func BenchmarkInsertABatchOfEvents(b *testing.B) {
	for _, numbered := range []bool{false, true} {
		name := "anonymous-params"
		if numbered {
			name = "numbered-params"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			db := sqldbtest.Open(b, sqldb.SQLite, sqldb.Clinical)
			evs := make([]Event, 64)
			for i := range evs {
				p := ids.New()
				evs[i] = Event{OrgID: "org1", ActorAccount: "acct1", Action: "participant.read", Outcome: Success,
					StudyID: "study1", SiteID: "site1", ParticipantID: p, ObjectType: "participant", ObjectID: p}
			}
			var inserting time.Duration
			for range b.N {
				for i := range evs {
					evs[i].ID = ""
				}
				signed, err := Sign(testSigner, evs...)
				if err != nil {
					b.Fatal(err)
				}
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				var q sqldb.Tx = db.In(tx)
				if numbered {
					q = numberedParams{q}
				}
				start := time.Now()
				if _, err := AppendSigned(ctx, q, signed); err != nil {
					b.Fatal(err)
				}
				inserting += time.Since(start)
				tx.Rollback()
			}
			b.ReportMetric(float64(inserting.Nanoseconds())/float64(b.N*len(evs)), "ns/event")
		})
	}
}

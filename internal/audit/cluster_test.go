package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// Two server nodes share one database: each has its own Log and its own
// connection pool, while appenders write concurrently.
func TestAVL04_TwoSequencersShareOneTree(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		url := sqldbtest.URL(t, d)
		var dbs [2]*sqldb.DB
		for i := range dbs {
			db, err := sqldb.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if _, err := db.Migrate(ctx, sqldb.Clinical); err != nil {
				t.Fatal(err)
			}
			dbs[i] = db
		}
		first := newLog(t, dbs[0])
		second := &Log{DB: dbs[1], Signer: first.Signer, Verifier: first.Verifier, Origin: testOrigin}
		logs := []*Log{first, second}

		const appenders, txs = 4, 25
		var appended atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, appenders+len(logs))
		for a := range appenders {
			wg.Go(func() {
				db := dbs[a%2]
				for i := range txs {
					err := db.InTx(ctx, func(tx *sql.Tx) error {
						for k := range 1 + i%3 {
							ev := sampleEvent(a*1000 + i*10 + k)
							ev.ActorAccount = fmt.Sprintf("appender%d", a)
							if _, err := Append(ctx, tx, testSigner, ev); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						errc <- fmt.Errorf("appender %d: %w", a, err)
						return
					}
					appended.Add(int64(1 + i%3))
				}
			})
		}
		done := make(chan struct{})
		var seqWG sync.WaitGroup
		var sequenced [2]int64
		for i, l := range logs {
			seqWG.Go(func() {
				for {
					finished := false
					select {
					case <-done:
						finished = true
					default:
					}
					n, err := l.Sequence(ctx, 7)
					if err != nil {
						errc <- fmt.Errorf("sequencer %d: %w", i, err)
						return
					}
					sequenced[i] += int64(n)
					if n == 0 {
						if finished { // the queue was empty after the last append
							return
						}
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		close(done)
		seqWG.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		cp, err := second.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := appended.Load()
		if cp.Size != want {
			t.Fatalf("tree of %d events, %d appended", cp.Size, want)
		}
		if got := sequenced[0] + sequenced[1]; got != want {
			t.Fatalf("sequencers integrated %d events, %d appended", got, want)
		}
		db := dbs[0]
		if n := count(t, db, `SELECT COUNT(DISTINCT seq) FROM audit_log`); n != want {
			t.Errorf("%d distinct indexes, want %d", n, want)
		}
		if n := count(t, db, `SELECT COALESCE(MAX(seq), -1) + 1 FROM audit_log`); n != want {
			t.Errorf("largest index + 1 = %d, want %d (no gaps)", n, want)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_queue`); n != 0 {
			t.Errorf("%d events left in the queue", n)
		}
		rep := verify(t, db, first, cp.Note)
		if !rep.OK() || rep.Size != want {
			t.Fatalf("Verify = %+v", rep)
		}
		t.Logf("%d events; sequenced %d by node 1, %d by node 2", want, sequenced[0], sequenced[1])
	})
}

func TestAVL04_LeaseHasOneHolderAtATime(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		ttl := 300 * time.Millisecond
		steps := []struct {
			holder string
			want   bool
		}{
			{"node-a", true},  // free: taken
			{"node-b", false}, // held by a
			{"node-a", true},  // renewed
			{"node-b", false},
		}
		for i, s := range steps {
			got, err := acquireLease(ctx, db, "test-lease", s.holder, ttl)
			if err != nil || got != s.want {
				t.Fatalf("step %d: %s acquire = %v, %v; want %v", i, s.holder, got, err, s.want)
			}
		}
		time.Sleep(ttl + 50*time.Millisecond) // a stops renewing
		if got, err := acquireLease(ctx, db, "test-lease", "node-b", ttl); err != nil || !got {
			t.Fatalf("expired lease not taken over: %v, %v", got, err)
		}
		if got, err := acquireLease(ctx, db, "test-lease", "node-a", ttl); err != nil || got {
			t.Fatalf("old holder still holds the lease: %v, %v", got, err)
		}
		if err := releaseLease(ctx, db, "test-lease", "node-b"); err != nil {
			t.Fatal(err)
		}
		if got, err := acquireLease(ctx, db, "test-lease", "node-a", ttl); err != nil || !got {
			t.Fatalf("released lease not taken: %v, %v", got, err)
		}
	})
}

// Two Run loops: only one holds the lease and works; when it stops, the
// other takes over, and every event ends up in one verified tree.
func TestAVL04_OnlyOneRunLoopHoldsTheLease(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		a := newLog(t, db)
		a.Holder = "node-a"
		b := &Log{DB: db, Signer: a.Signer, Verifier: a.Verifier, Origin: testOrigin, Holder: "node-b"}

		var mu sync.Mutex
		held := map[string]int{}
		var overlap []string
		holding := map[string]bool{}
		observe := func(name string) func(bool) {
			return func(h bool) {
				mu.Lock()
				defer mu.Unlock()
				holding[name] = h
				if h {
					held[name]++
				}
				if holding["node-a"] && holding["node-b"] {
					overlap = append(overlap, fmt.Sprintf("%s saw both holding", name))
				}
			}
		}
		a.tick, b.tick = observe("node-a"), observe("node-b")
		var logged []string
		a.Logf = func(f string, args ...any) { mu.Lock(); logged = append(logged, fmt.Sprintf(f, args...)); mu.Unlock() }
		b.Logf = a.Logf

		every := 100 * time.Millisecond
		ctxA, stopA := context.WithCancel(ctx)
		doneA := make(chan error, 1)
		go func() { doneA <- a.Run(ctxA, every, 2*every) }()
		waitFor(t, "node-a to hold the lease", func() bool { mu.Lock(); defer mu.Unlock(); return held["node-a"] > 0 })

		ctxB, stopB := context.WithCancel(ctx)
		doneB := make(chan error, 1)
		go func() { doneB <- b.Run(ctxB, every, 2*every) }()

		appendEach(t, db, sampleEvent(1), sampleEvent(2), sampleEvent(3))
		waitFor(t, "node-a to sequence", func() bool { return count(t, db, `SELECT COUNT(*) FROM audit_log`) == 3 })
		time.Sleep(5 * every)
		mu.Lock()
		if held["node-b"] != 0 {
			t.Errorf("node-b held the lease %d times while node-a renewed it", held["node-b"])
		}
		mu.Unlock()

		stopA()
		if err := <-doneA; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		mu.Lock()
		holding["node-a"] = false
		mu.Unlock()
		waitFor(t, "node-b to take over", func() bool { mu.Lock(); defer mu.Unlock(); return held["node-b"] > 0 })
		appendEach(t, db, sampleEvent(4), sampleEvent(5))
		waitFor(t, "node-b to sequence and sign", func() bool {
			return count(t, db, `SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints`) == 5
		})
		stopB()
		if err := <-doneB; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(overlap) > 0 {
			t.Errorf("two holders at once: %v", overlap)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM leases`); n != 0 {
			t.Errorf("%d leases left after both loops stopped", n)
		}
		if rep := verify(t, db, a, nil); !rep.OK() || rep.Size != 5 {
			t.Errorf("Verify = %+v", rep)
		}
		t.Logf("log lines: %q", logged)
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A lease written while the holder's clock ran a day fast does not stand
// for a day once the clock is right: it ends further ahead than any
// renewal can set it, so another node takes it at once. A holder whose
// clock is a little ahead keeps its turn (AVL-04, AUD-02).
func TestAVL04_LeaseFromAClockRunningFastIsTakenOver(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		const ttl = time.Minute
		now := sqldb.Now()
		if got, err := acquireLeaseAt(ctx, db, "test-lease", "fast-node", ttl, now+(24*time.Hour).Microseconds()); err != nil || !got {
			t.Fatalf("fast node takes the lease: %v, %v", got, err)
		}
		if got, err := acquireLeaseAt(ctx, db, "test-lease", "right-node", ttl, now); err != nil || !got {
			t.Fatalf("a node with the right time cannot take a lease set a day ahead: %v, %v", got, err)
		}
		// A holder 30 s ahead of the others renews its lease; it stands.
		if got, err := acquireLeaseAt(ctx, db, "test-lease", "right-node", ttl, now+(30*time.Second).Microseconds()); err != nil || !got {
			t.Fatalf("renew: %v, %v", got, err)
		}
		if got, err := acquireLeaseAt(ctx, db, "test-lease", "other-node", ttl, now); err != nil || got {
			t.Errorf("a lease held a little ahead was taken over: %v, %v", got, err)
		}
	})
}

// TestAVL05_SequencerFailuresAreReportedAsFailures: a round that cannot
// take its lease or sequence goes to Failf (the server logs it as an
// error), never to Logf (information).
func TestAVL05_SequencerFailuresAreReportedAsFailures(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	l := newLog(t, db)
	var mu sync.Mutex
	var infos, failures []string
	l.Logf = func(f string, args ...any) { mu.Lock(); infos = append(infos, fmt.Sprintf(f, args...)); mu.Unlock() }
	l.Failf = func(f string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(f, args...))
		mu.Unlock()
	}
	db.Close() // every round fails
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, 20*time.Millisecond, time.Minute) }()
	waitFor(t, "a failed round to be reported", func() bool { mu.Lock(); defer mu.Unlock(); return len(failures) > 0 })
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(failures[0], "audit sequencer: lease") {
		t.Errorf("failure reported as %q", failures[0])
	}
	if len(infos) > 0 {
		t.Errorf("failures reported as information: %q", infos)
	}
}

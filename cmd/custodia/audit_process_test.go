//go:build unix

package main

// These tests check the audit trail (AUD-01, AUD-02) as an operator meets
// it: servers killed or stopped, then `custodia audit checkpoint`, `verify`
// and `prove` run as separate processes on what they left.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

var (
	verifiedRE = regexp.MustCompile(`(?m)^audit trail verified: (\d+) events, (\d+) signed checkpoints$`)
	instanceRE = regexp.MustCompile(`serving at \S+ \(environment \S+, instance (\S+)\)`)
	progressRE = regexp.MustCompile(`^verified \d+ of \d+ events$`)
)

// finished is how a command that ran to its end ended.
type finished struct {
	code   int
	stdout string
	stderr string
	p      *proc
}

// custodia runs the binary with args to its end, within timeout, and fails
// the test if a signal ended it or it printed a sign of a crash.
func custodia(t *testing.T, timeout time.Duration, args ...string) finished {
	t.Helper()
	began := time.Now()
	p := start(t, "", nil, args...)
	code := p.wait(t, timeout)
	f := finished{code: code, stdout: p.stdout.String(), stderr: p.stderr.String(), p: p}
	if code < 0 {
		t.Fatalf("custodia %s was ended by a signal: %v\n%s", strings.Join(args, " "), p.cmd.ProcessState, p.describe())
	}
	for _, bad := range []string{"panic:", "goroutine ", "runtime error"} {
		if strings.Contains(f.stderr, bad) || strings.Contains(f.stdout, bad) {
			t.Errorf("custodia %s printed %q, a sign of a crash:\n%s", strings.Join(args, " "), bad, p.describe())
		}
	}
	t.Logf("custodia %s → exit %d in %s", strings.Join(args, " "), code, time.Since(began).Round(time.Millisecond))
	return f
}

// verifyOK runs `custodia audit verify` with args, wants exit 0 and the
// success line, and returns the number of events and signed checkpoints it
// reports.
func verifyOK(t *testing.T, args ...string) (events, checkpoints int64) {
	t.Helper()
	f := custodia(t, 20*time.Second, append([]string{"audit", "verify"}, args...)...)
	if f.code != 0 {
		t.Fatalf("audit verify: exit %d, want 0\n%s", f.code, f.p.describe())
	}
	m := verifiedRE.FindStringSubmatch(f.stdout)
	if m == nil {
		t.Fatalf("audit verify: no line %q on stdout\n%s", verifiedRE, f.p.describe())
	}
	events, _ = strconv.ParseInt(m[1], 10, 64)
	checkpoints, _ = strconv.ParseInt(m[2], 10, 64)
	return events, checkpoints
}

// checkpointNote runs `custodia audit checkpoint` with args, wants exit 0,
// and returns the signed note it printed and the tree size it states.
func checkpointNote(t *testing.T, args ...string) (note string, size int64) {
	t.Helper()
	f := custodia(t, 20*time.Second, append([]string{"audit", "checkpoint"}, args...)...)
	if f.code != 0 {
		t.Fatalf("audit checkpoint: exit %d, want 0\n%s", f.code, f.p.describe())
	}
	lines := strings.Split(f.stdout, "\n")
	if len(lines) < 5 || !strings.HasPrefix(lines[0], "custodia.audit/") || !strings.Contains(f.stdout, "\n\n— ") {
		t.Fatalf("audit checkpoint printed no signed checkpoint note:\n%s", f.p.describe())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		t.Fatalf("audit checkpoint: size line %q is not a number\n%s", lines[1], f.p.describe())
	}
	return f.stdout, size
}

// verifyFails runs `custodia audit verify` with args and wants a non-zero
// exit with exactly one error line on stderr, starting "custodia: audit:
// verify: ". The lines before it may only be verify's progress lines, which
// it prints on stderr whether or not the trail verifies.
func verifyFails(t *testing.T, args ...string) finished {
	t.Helper()
	f := custodia(t, 20*time.Second, append([]string{"audit", "verify"}, args...)...)
	if f.code == 0 {
		t.Fatalf("audit verify: exit 0, want a failure\n%s", f.p.describe())
	}
	lines := strings.Split(strings.TrimSuffix(f.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "custodia: audit: verify: ") || !strings.HasSuffix(f.stderr, "\n") {
		t.Errorf("audit verify: stderr does not end in one line \"custodia: audit: verify: …\":\n%s", f.stderr)
	}
	for _, l := range lines[:len(lines)-1] {
		if !progressRE.MatchString(l) {
			t.Errorf("audit verify: stderr holds %q besides its error line:\n%s", l, f.stderr)
		}
	}
	if verifiedRE.MatchString(f.stdout) {
		t.Errorf("audit verify failed but printed the success line:\n%s", f.p.describe())
	}
	return f
}

// openDB opens a database the test reads directly; closed when the test
// ends.
func openDB(t *testing.T, url string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open %s: %v", sqldb.Redact(url), err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func queryInt(t *testing.T, db *sqldb.DB, query string, args ...any) int64 {
	t.Helper()
	var n sql.NullInt64
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if !n.Valid {
		return -1
	}
	return n.Int64
}

// siteEvent is a stored site.create event.
type siteEvent struct {
	outcome string
	seq     int64 // index in the log; -1 while still queued
}

// siteCreateEvents returns the stored site.create events by the site id
// they name.
func siteCreateEvents(t *testing.T, db *sqldb.DB) map[string][]siteEvent {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT e.object_id, e.outcome, l.seq
		FROM audit_events e LEFT JOIN audit_log l ON l.event_id = e.id
		WHERE e.action = 'site.create'`)
	if err != nil {
		t.Fatalf("read site.create events: %v", err)
	}
	defer rows.Close()
	out := map[string][]siteEvent{}
	for rows.Next() {
		var object sql.NullString
		var outcome string
		var seq sql.NullInt64
		if err := rows.Scan(&object, &outcome, &seq); err != nil {
			t.Fatalf("read site.create events: %v", err)
		}
		ev := siteEvent{outcome: outcome, seq: -1}
		if seq.Valid {
			ev.seq = seq.Int64
		}
		out[object.String] = append(out[object.String], ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read site.create events: %v", err)
	}
	return out
}

// checkGapFree checks that the log's indexes run from 0 without a gap, that
// nothing waits in the queue and that every event is in the log, and
// returns the log's size.
func checkGapFree(t *testing.T, db *sqldb.DB) int64 {
	t.Helper()
	var count int64
	var maxSeq sql.NullInt64
	if err := db.QueryRowContext(context.Background(), `SELECT count(*), max(seq) FROM audit_log`).Scan(&count, &maxSeq); err != nil {
		t.Fatalf("read audit_log: %v", err)
	}
	if !maxSeq.Valid || count != maxSeq.Int64+1 {
		t.Errorf("audit_log holds %d entries with highest index %v: not gap-free from 0", count, maxSeq)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM audit_queue`); n != 0 {
		t.Errorf("audit_queue still holds %d events after the final checkpoint", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM audit_events`); n != count {
		t.Errorf("audit_events holds %d events, audit_log %d", n, count)
	}
	return count
}

// TestAUD02_KilledServerLeavesVerifiableTrail kills the server with SIGKILL
// while clients are writing and checks that the trail it leaves verifies,
// before and after `audit checkpoint` sequences what was still queued, and
// that every acknowledged write, and every row in the database, has its
// event: data and event commit together or not at all.
func TestAUD02_KilledServerLeavesVerifiableTrail(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		k := killMidWrites(t, d)
		db := openDB(t, k.clinical)
		queued := queryInt(t, db, `SELECT count(*) FROM audit_queue`)
		t.Logf("%s: %d events still queued after the kill", d, queued)

		// Events the killed sequencer never reached are no problem.
		before, _ := verifyOK(t, "--data", k.data, "--database", k.clinical)

		_, size := checkpointNote(t, "--data", k.data, "--database", k.clinical, "--identity-database", k.identity)
		events, checkpoints := verifyOK(t, "--data", k.data, "--database", k.clinical)
		if events != size {
			t.Errorf("audit verify reports %d events, the checkpoint just signed covers %d", events, size)
		}
		if events < before || events < int64(len(k.acked)) {
			t.Errorf("audit verify reports %d events after the checkpoint, %d before it, for %d acknowledged writes", events, before, len(k.acked))
		}
		if checkpoints < 1 {
			t.Errorf("audit verify checked %d signed checkpoints, want at least the one just signed", checkpoints)
		}
		if got := checkGapFree(t, db); got != size {
			t.Errorf("audit_log holds %d entries, the checkpoint covers %d", got, size)
		}

		siteEvents := siteCreateEvents(t, db)
		stored := storedSites(t, k.clinical, k.study)
		var problems []string
		for _, id := range k.acked {
			if evs := siteEvents[id]; len(evs) != 1 || evs[0].outcome != "success" || evs[0].seq < 0 {
				problems = append(problems, fmt.Sprintf("acknowledged site %s has site.create events %v, want one successful, sequenced", id, evs))
			}
		}
		for id := range stored {
			if evs := siteEvents[id]; len(evs) != 1 || evs[0].outcome != "success" {
				problems = append(problems, fmt.Sprintf("stored site %s has site.create events %v, want one successful", id, evs))
			}
		}
		for id, evs := range siteEvents {
			for _, ev := range evs {
				if ev.outcome == "success" && !stored[id] {
					problems = append(problems, fmt.Sprintf("successful site.create event for %q, but no such site is stored", id))
				}
			}
		}
		if len(problems) > 0 {
			t.Errorf("%d sites and events do not match after the kill (%d acknowledged, %d stored, %d events):\n  %s",
				len(problems), len(k.acked), len(stored), len(siteEvents), strings.Join(problems, "\n  "))
		}

		// The last acknowledged write is provably in the signed tree.
		last := k.acked[len(k.acked)-1]
		evs := siteEvents[last]
		if len(evs) != 1 || evs[0].seq < 0 {
			t.Fatalf("no sequenced event for site %s", last)
		}
		f := custodia(t, 20*time.Second, "audit", "prove", strconv.FormatInt(evs[0].seq, 10),
			"--data", k.data, "--database", k.clinical, "--identity-database", k.identity)
		if f.code != 0 {
			t.Fatalf("audit prove %d: exit %d\n%s", evs[0].seq, f.code, f.p.describe())
		}
		var proof struct {
			Index int64 `json:"index"`
			Event struct {
				Action string `json:"action"`
				Object string `json:"object"`
			} `json:"event"`
			Proof      []string `json:"inclusion_proof"`
			Checkpoint string   `json:"checkpoint"`
		}
		if err := json.Unmarshal([]byte(f.stdout), &proof); err != nil {
			t.Fatalf("audit prove %d: output is not JSON: %v\n%s", evs[0].seq, err, f.p.describe())
		}
		if proof.Index != evs[0].seq || proof.Event.Action != "site.create" || proof.Event.Object != last || proof.Checkpoint == "" {
			t.Errorf("audit prove %d: index %d, action %q, object %q, want %d, site.create, %s",
				evs[0].seq, proof.Index, proof.Event.Action, proof.Event.Object, evs[0].seq, last)
		}
		if size > 1 && len(proof.Proof) == 0 {
			t.Errorf("audit prove %d: empty inclusion proof in a tree of %d events", evs[0].seq, size)
		}
	})
}

// writeLoop creates sites through c until stop is closed and returns the
// ids whose 201 arrived, and the failures.
func writeLoop(ctx context.Context, c *client, sitesPath, prefix string, stop <-chan struct{}) (acked []string, failed []error) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return acked, failed
		default:
		}
		id, err := c.create(ctx, sitesPath, map[string]string{"name": fmt.Sprintf("%s %d", prefix, i)})
		if err != nil {
			failed = append(failed, err)
			if len(failed) >= 5 {
				return acked, failed
			}
			continue
		}
		acked = append(acked, id)
	}
}

// TestAVL04_TwoServersOnOnePostgresShareOneTree runs two servers on the same
// PostgreSQL databases and data folder, writes through both at once, stops
// both, and checks that their events form one gap-free, verifiable tree.
func TestAVL04_TwoServersOnOnePostgresShareOneTree(t *testing.T) {
	sqldbtest.RequirePostgres(t)
	clinical := sqldbtest.URL(t, sqldb.Postgres)
	identity := sqldbtest.URL(t, sqldb.Postgres)
	data := filepath.Join(t.TempDir(), "data")
	common := []string{"--addr", "127.0.0.1:0", "--data", data, "--database", clinical, "--identity-database", identity}

	a := serve(t, "", nil, append([]string{"--demo"}, common...)...)
	admin, ok := a.demoLogins()["org-admin"]
	if !ok {
		t.Fatalf("no org-admin login printed\n%s", a.describe())
	}
	b := serve(t, "", nil, common...)
	if a.url == b.url {
		t.Fatalf("both servers serve at %s", a.url)
	}
	ia, ib := instanceRE.FindStringSubmatch(a.stdout.String()), instanceRE.FindStringSubmatch(b.stdout.String())
	if ia == nil || ib == nil || ia[1] != ib[1] {
		t.Errorf("the servers name different instances: %v, %v", ia, ib)
	}

	ctx := context.Background()
	ca, cb := newClient(a.url, a.fingerprint), newClient(b.url, b.fingerprint)
	ca.login(t, admin[0], admin[1])
	cb.login(t, admin[0], admin[1])
	study, err := ca.create(ctx, "/api/v1/orgs/demo/studies", map[string]string{"kind": "study", "name": "Two Servers"})
	if err != nil {
		t.Fatal(err)
	}
	sitesPath := "/api/v1/orgs/demo/studies/" + study + "/sites"

	const writersPerServer = 3
	stop := make(chan struct{})
	var (
		mu     sync.Mutex
		acked  = map[string][]string{} // server → site ids
		failed []error
		wg     sync.WaitGroup
	)
	for _, s := range []struct {
		name string
		c    *client
	}{{"a", ca}, {"b", cb}} {
		for w := range writersPerServer {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, errs := writeLoop(ctx, s.c, sitesPath, fmt.Sprintf("Site %s%d", s.name, w), stop)
				mu.Lock()
				acked[s.name] = append(acked[s.name], got...)
				failed = append(failed, errs...)
				mu.Unlock()
			}()
		}
	}
	// Verification may run while both servers append and one sequences: it
	// checks the trail as of its start.
	time.Sleep(time.Second)
	live, _ := verifyOK(t, "--data", data, "--database", clinical)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	for _, err := range failed {
		t.Errorf("a write failed: %v", err)
	}
	writes := 1 + len(acked["a"]) + len(acked["b"]) // the study, and the sites
	t.Logf("%d sites acknowledged by server a, %d by server b", len(acked["a"]), len(acked["b"]))
	if len(acked["a"]) < 5 || len(acked["b"]) < 5 {
		t.Fatalf("too few writes acknowledged to prove anything: a %d, b %d", len(acked["a"]), len(acked["b"]))
	}

	// Each server serves what the other wrote.
	for _, x := range []struct {
		c  *client
		id string
	}{{ca, acked["b"][0]}, {cb, acked["a"][0]}} {
		resp, body, err := x.c.do(ctx, "GET", sitesPath+"/"+x.id, nil)
		switch {
		case err != nil:
			t.Errorf("GET site %s, written through the other server: %v", x.id, err)
		case resp.StatusCode != http.StatusOK:
			t.Errorf("GET site %s, written through the other server: status %d: %s", x.id, resp.StatusCode, body)
		}
	}

	for _, s := range []*server{a, b} {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
	}
	for name, s := range map[string]*server{"a": a, "b": b} {
		if code := s.wait(t, 40*time.Second); code != 0 {
			t.Errorf("server %s: exit %d after SIGTERM, want 0\n%s", name, code, s.describe())
		}
		if strings.Contains(s.stderr.String(), "final audit checkpoint") {
			t.Errorf("server %s could not sign its final checkpoint\n%s", name, s.describe())
		}
		t.Logf("server %s took the sequencer lease %d times", name, strings.Count(s.stderr.String(), "now sequences the audit trail"))
	}
	if !strings.Contains(a.stderr.String()+b.stderr.String(), "now sequences the audit trail") {
		t.Errorf("neither server says it sequenced the audit trail\n%s\n%s", a.describe(), b.describe())
	}

	events, checkpoints := verifyOK(t, "--data", data, "--database", clinical)
	if events <= live {
		t.Errorf("audit verify reports %d events after the writes, %d while they ran", events, live)
	}
	if events < int64(writes) {
		t.Errorf("audit verify reports %d events for %d acknowledged writes", events, writes)
	}
	if checkpoints < 1 {
		t.Errorf("audit verify checked %d signed checkpoints, want at least one", checkpoints)
	}
	db := openDB(t, clinical)
	size := checkGapFree(t, db)
	if size != events {
		t.Errorf("audit_log holds %d entries, audit verify reports %d events", size, events)
	}
	if latest := queryInt(t, db, `SELECT max(size) FROM audit_checkpoints`); latest != size {
		t.Errorf("the latest checkpoint covers %d events of %d: the final checkpoint of the last server to stop is missing", latest, size)
	}
	siteEvents := siteCreateEvents(t, db)
	var missing []string
	for _, id := range append(append([]string(nil), acked["a"]...), acked["b"]...) {
		if evs := siteEvents[id]; len(evs) != 1 || evs[0].outcome != "success" || evs[0].seq < 0 {
			missing = append(missing, fmt.Sprintf("%s %v", id, evs))
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged sites have not exactly one sequenced site.create event:\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
}

// demoTrail starts `serve --demo` with the given flags, makes a study and
// n sites as the organization administrator, stops the server with SIGTERM
// and returns the administrator's login. admin is the login printed by an
// earlier start on the same databases, or nil on the first.
func demoTrail(t *testing.T, admin *[2]string, n int, args ...string) *[2]string {
	t.Helper()
	s := serve(t, "", nil, append([]string{"--demo", "--addr", "127.0.0.1:0"}, args...)...)
	if admin == nil {
		l, ok := s.demoLogins()["org-admin"]
		if !ok {
			t.Fatalf("no org-admin login printed\n%s", s.describe())
		}
		admin = &l
	}
	c := newClient(s.url, s.fingerprint)
	c.login(t, admin[0], admin[1])
	ctx := context.Background()
	study, err := c.create(ctx, "/api/v1/orgs/demo/studies", map[string]string{"kind": "study", "name": "Audit " + ids.New()[:6]})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := c.create(ctx, "/api/v1/orgs/demo/studies/"+study+"/sites", map[string]string{"name": fmt.Sprintf("Site %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0\n%s", code, s.describe())
	}
	return admin
}

// TestAUD02_TamperedRowIsCaughtByVerify changes one event behind the
// application's back, as a database administrator could after dropping the
// append-only triggers, and checks that `audit verify` names its index.
func TestAUD02_TamperedRowIsCaughtByVerify(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	demoTrail(t, nil, 5, "--data", data)
	events, _ := verifyOK(t, "--data", data)

	ctx := context.Background()
	clinicalURL := "sqlite:" + filepath.Join(data, "clinical.db")
	db, err := sqldb.Open(ctx, clinicalURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// Pick the third of the site creations, a known index well inside the
	// tree.
	var seq int64
	var id, actor, body string
	if err := db.QueryRowContext(ctx, `SELECT l.seq, e.id, e.actor_account, e.body
		FROM audit_log l JOIN audit_events e ON e.id = l.event_id
		WHERE e.action = 'site.create' AND e.actor_account IS NOT NULL
		ORDER BY l.seq LIMIT 1 OFFSET 2`).Scan(&seq, &id, &actor, &body); err != nil {
		t.Fatalf("find the third site.create event: %v", err)
	}
	if seq+1 >= events {
		t.Fatalf("the event at index %d is the last of %d; want one inside the tree", seq, events)
	}
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET actor_account = 'x' WHERE id = $1`, id); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("an UPDATE of audit_events was not refused as append-only: %v", err)
	}

	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'trigger'`)
	if err != nil {
		t.Fatal(err)
	}
	var triggers []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		triggers = append(triggers, name)
	}
	rows.Close()
	if len(triggers) == 0 {
		t.Fatalf("no triggers in the clinical database")
	}
	for _, name := range triggers {
		if _, err := db.ExecContext(ctx, `DROP TRIGGER "`+name+`"`); err != nil {
			t.Fatalf("drop trigger %s: %v", name, err)
		}
	}

	// Another actor, in the body and its searchable column alike, so that
	// only the hash tree can tell.
	other := ids.New()
	tampered := strings.Replace(body, `"actor":"`+actor+`"`, `"actor":"`+other+`"`, 1)
	if tampered == body {
		t.Fatalf("event body names no actor %s: %s", actor, body)
	}
	res, err := db.ExecContext(ctx, `UPDATE audit_events SET body = $1, actor_account = $2 WHERE id = $3`, tampered, other, id)
	if err != nil {
		t.Fatalf("tamper with event %s: %v", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tampering changed %d rows, want 1", n)
	}
	db.Close()

	f := verifyFails(t, "--data", data)
	if !regexp.MustCompile(`(?m)^index ` + strconv.FormatInt(seq, 10) + `: `).MatchString(f.stdout) {
		t.Errorf("audit verify does not name index %d on stdout:\n%s", seq, f.stdout)
	}
	if want := fmt.Sprintf("first bad index %d ", seq); !strings.Contains(f.stderr, want) {
		t.Errorf("audit verify's stderr does not say %q:\n%s", want, f.stderr)
	}
	t.Logf("changed the actor of event %d of %d; audit verify says:\n%s%s", seq, events, f.stdout, f.stderr)
}

// TestAUD02_VerifyAgainstKeptCheckpoint keeps a checkpoint outside the
// database, as an operator would, and checks that the trail still verifies
// against it after it has grown, and that a file that is not a checkpoint of
// this trail's key is refused with one clear line.
func TestAUD02_VerifyAgainstKeptCheckpoint(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		clinical, identity := sqldbtest.URL(t, d), sqldbtest.URL(t, d)
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		flags := []string{"--data", data, "--database", clinical, "--identity-database", identity}
		admin := demoTrail(t, nil, 2, flags...)

		note, size := checkpointNote(t, flags...)
		kept := filepath.Join(dir, "kept-checkpoint.txt")
		if err := os.WriteFile(kept, []byte(note), 0o644); err != nil {
			t.Fatal(err)
		}
		events, _ := verifyOK(t, "--data", data, "--database", clinical, "--checkpoint", kept)
		if events != size {
			t.Errorf("audit verify reports %d events, the kept checkpoint covers %d", events, size)
		}

		// The trail grows; the kept checkpoint is still part of it.
		demoTrail(t, admin, 2, flags...)
		grown, _ := verifyOK(t, "--data", data, "--database", clinical, "--checkpoint", kept)
		if grown <= size {
			t.Errorf("audit verify reports %d events after more writes, the kept checkpoint covered %d already", grown, size)
		}

		// A checkpoint signed by another instance's key (audit commands
		// work only on an instance that exists: migrate makes one).
		otherData := filepath.Join(dir, "other")
		if f := custodia(t, 20*time.Second, "migrate", "--data", otherData); f.code != 0 {
			t.Fatalf("migrate another instance: exit %d\n%s", f.code, f.p.describe())
		}
		foreign, _ := checkpointNote(t, "--data", otherData)
		// The kept checkpoint with its size changed under the signature.
		lines := strings.SplitN(note, "\n", 3)
		altered := lines[0] + "\n" + strconv.FormatInt(size+1, 10) + "\n" + lines[2]
		for _, tc := range []struct {
			name, content, want string
		}{
			{"garbage", "this is not a checkpoint\n\x00\xff\n", "not a signed note"},
			{"empty", "", "checkpoint"},
			{"another instance's key", foreign, "not signed by the audit key"},
			{"altered size", altered, "does not verify"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				file := filepath.Join(t.TempDir(), "checkpoint.txt")
				if err := os.WriteFile(file, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
				f := verifyFails(t, "--data", data, "--database", clinical, "--checkpoint", file)
				if !strings.Contains(f.stderr, tc.want) {
					t.Errorf("stderr %q does not say %q", f.stderr, tc.want)
				}
				if f.stdout != "" {
					t.Errorf("audit verify refused the checkpoint file but printed on stdout:\n%s", f.stdout)
				}
				t.Logf("%s → %s", tc.name, strings.TrimSpace(f.stderr))
			})
		}
		missing := filepath.Join(dir, "absent.txt")
		f := verifyFails(t, "--data", data, "--database", clinical, "--checkpoint", missing)
		if !strings.Contains(f.stderr, missing) && !strings.Contains(f.stderr, "absent.txt") {
			t.Errorf("stderr %q does not name the missing file", f.stderr)
		}
	})
}

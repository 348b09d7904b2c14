//go:build unix

package main

// TestAVL04_ThreeNodesBehaveAsOne runs three `custodia serve` processes on
// one pair of PostgreSQL databases behind a round-robin client, as a load
// balancer would spread a clinic's requests, and checks that they behave as
// one server (AVL-04): sessions, lockouts and rate limits are shared, a
// node killed under load loses no acknowledged write, and the scheduled
// jobs (audit sequencing, alerts, purges and sweeps) run once, not once per
// node.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// node is one server of the cluster, with a client pinned to it.
type node struct {
	name string
	*server
	c *client
}

// as is a client of the node that sends session's cookie.
func (n *node) as(session string) *client {
	c := *n.c
	c.session = session
	return &c
}

// cluster is the nodes behind a round-robin client: each request goes to
// the next node that is not down, as a load balancer sends them.
type cluster struct {
	nodes []*node
	mu    sync.Mutex
	turn  int
	down  map[*node]bool
}

// next returns the node whose turn it is.
func (cl *cluster) next() *node {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for range len(cl.nodes) {
		n := cl.nodes[cl.turn%len(cl.nodes)]
		cl.turn++
		if !cl.down[n] {
			return n
		}
	}
	panic("every node is down")
}

// isDown reports whether n was taken down.
func (cl *cluster) isDown(n *node) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.down[n]
}

// live returns the nodes that are not down.
func (cl *cluster) live() []*node {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var out []*node
	for _, n := range cl.nodes {
		if !cl.down[n] {
			out = append(out, n)
		}
	}
	return out
}

// signIn tries email and password on n and returns the status, the session
// cookie of a success and the Retry-After of a refusal.
func signIn(t *testing.T, n *node, email, password string) (status int, session string, retry time.Duration) {
	t.Helper()
	resp, body, err := n.c.do(context.Background(), "POST", "/api/v1/auth/login",
		map[string]string{"email": email, "password": password})
	if err != nil {
		t.Fatalf("sign in as %s on node %s: %v", email, n.name, err)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		retry = time.Duration(s) * time.Second
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-custodia_session" && ck.Value != "" {
			session = ck.Value
		}
	}
	if resp.StatusCode == http.StatusOK && session == "" {
		t.Fatalf("sign in as %s on node %s: 200 without a session cookie: %s", email, n.name, body)
	}
	return resp.StatusCode, session, retry
}

// statusOf sends a request to n with session's cookie and returns the
// answer's status.
func statusOf(t *testing.T, n *node, session, method, path string, body any) int {
	t.Helper()
	resp, _, err := n.as(session).do(context.Background(), method, path, body)
	if err != nil {
		t.Fatalf("%s %s on node %s: %v", method, path, n.name, err)
	}
	return resp.StatusCode
}

// waitReady waits until n answers /readyz with 200.
func waitReady(t *testing.T, n *node) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, _, err := n.c.do(context.Background(), "GET", "/readyz", nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: /readyz not 200 within 30s (%v)\n%s", n.name, err, n.describe())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor polls cond every 200ms until it holds or timeout passes, and
// fails the test with what as the reason then.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// storedEvent is an audit event as stored, with its place in the log.
type storedEvent struct {
	id, action, outcome, object, participant string
	seq                                      int64 // -1 while queued
	details                                  map[string]string
}

// eventsWhere returns the stored events matching the SQL condition cond on
// audit_events (alias e).
func eventsWhere(t *testing.T, db *sqldb.DB, cond string, args ...any) []storedEvent {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT e.id, e.action, e.outcome, e.object_id, e.participant_id, l.seq, e.body
		FROM audit_events e LEFT JOIN audit_log l ON l.event_id = e.id WHERE `+cond, args...)
	if err != nil {
		t.Fatalf("read events where %s: %v", cond, err)
	}
	defer rows.Close()
	var out []storedEvent
	for rows.Next() {
		var ev storedEvent
		var object, participant sql.NullString
		var seq sql.NullInt64
		var body string
		if err := rows.Scan(&ev.id, &ev.action, &ev.outcome, &object, &participant, &seq, &body); err != nil {
			t.Fatalf("read events: %v", err)
		}
		ev.object, ev.participant, ev.seq = object.String, participant.String, -1
		if seq.Valid {
			ev.seq = seq.Int64
		}
		var b struct {
			Details map[string]string `json:"details"`
		}
		if err := json.Unmarshal([]byte(body), &b); err != nil {
			t.Fatalf("event %s: body is not JSON: %v", ev.id, err)
		}
		ev.details = b.Details
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read events: %v", err)
	}
	return out
}

// alertMails counts the security alert e-mails in the outbox the nodes
// share, by recipient.
func alertMails(t *testing.T, outbox string) map[string]int {
	t.Helper()
	entries, err := os.ReadDir(outbox)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(outbox, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := strings.Cut(string(b), "\r\n\r\n")
		if !strings.Contains(head, "\r\nSubject: Custodia security alert\r\n") {
			continue
		}
		for line := range strings.SplitSeq(head, "\r\n") {
			if to, ok := strings.CutPrefix(line, "To: "); ok {
				out[to]++
			}
		}
	}
	return out
}

// TestAVL04_ThreeNodesBehaveAsOne starts three serve processes on one
// PostgreSQL database pair and data folder, each sweeping every second
// (CUSTODIA_TEST_SWEEP_EVERY), and checks through a round-robin client:
//
//   - wrong passwords spread over the nodes lock the account and spend its
//     sign-in budget (429 on the next node); the right password is then
//     refused on every node;
//   - a session begun on one node works on the others, and ends on all
//     when signed out on one;
//   - deleted participants past their retention are purged once, each
//     step on the trail once, each erasure epoch destroyed once, however
//     the three sweeps meet;
//   - each alert is raised once and e-mailed once per administrator;
//   - the node that sequences the audit trail, killed with SIGKILL while
//     clients enrol, loses no acknowledged enrolment, another node takes
//     the sequencing over, and the trail verifies as one gap-free tree.
func TestAVL04_ThreeNodesBehaveAsOne(t *testing.T) {
	sqldbtest.RequirePostgres(t)
	began := time.Now()
	ctx := context.Background()
	clinical := sqldbtest.URL(t, sqldb.Postgres)
	identity := sqldbtest.URL(t, sqldb.Postgres)
	data := filepath.Join(t.TempDir(), "data")
	// The sweeps (identity sweep, purges) run every hour; each node here
	// sweeps every second, so that three sweeps meet on the same work.
	env := childEnv("CUSTODIA_TEST_SWEEP_EVERY=1s")
	// Each node schedules backups into one folder: one writes it.
	backups := t.TempDir()
	_, public, err := backup.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--addr", "127.0.0.1:0", "--data", data, "--database", clinical,
		"--identity-database", identity, "--enrolments-per-hour", "0", "--backup-to", backups, "--backup-recipient", public}

	// Three nodes on one pair of databases and one data folder (its key
	// files, certificate and mail outbox); the first seeds the demo.
	first := serve(t, "", env, append([]string{"--demo"}, common...)...)
	logins := first.demoLogins()
	procs := []*proc{start(t, "", env, append([]string{"serve"}, common...)...),
		start(t, "", env, append([]string{"serve"}, common...)...)}
	cl := &cluster{down: map[*node]bool{}}
	cl.nodes = append(cl.nodes, &node{name: "A", server: first})
	for i, p := range procs {
		url := p.waitStdout(t, servingRE, 30*time.Second)[1]
		fp := p.waitStdout(t, fingerprintRE, 5*time.Second)[1]
		cl.nodes = append(cl.nodes, &node{name: string(rune('B' + i)), server: &server{proc: p, url: url, fingerprint: fp}})
	}
	instances := map[string]bool{}
	for _, n := range cl.nodes {
		n.c = newClient(n.url, n.fingerprint)
		waitReady(t, n)
		if m := instanceRE.FindStringSubmatch(n.stdout.String()); m != nil {
			instances[m[1]] = true
		}
		if n.fingerprint != first.fingerprint {
			t.Errorf("node %s presents certificate %s, node A %s: they share one data folder", n.name, n.fingerprint, first.fingerprint)
		}
	}
	if len(instances) != 1 {
		t.Fatalf("the nodes name %d instances, want one: %v", len(instances), instances)
	}
	A, B, C := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	t.Logf("three nodes ready after %s: %s, %s, %s", time.Since(began).Round(time.Millisecond), A.url, B.url, C.url)
	db := openDB(t, clinical)
	orgID := ""
	if err := db.QueryRowContext(ctx, `SELECT id FROM organizations WHERE slug = 'demo'`).Scan(&orgID); err != nil {
		t.Fatalf("find the demo organization: %v", err)
	}
	accountID := func(email string) string {
		t.Helper()
		var id string
		if err := db.QueryRowContext(ctx, `SELECT id FROM accounts WHERE email = $1`, email).Scan(&id); err != nil {
			t.Fatalf("find account %s: %v", email, err)
		}
		return id
	}

	// The administrator signs in on A; every request of theirs below goes
	// round robin, with that one cookie.
	admin, ok := logins["org-admin"]
	if !ok {
		t.Fatalf("no org-admin login printed\n%s", first.describe())
	}
	status, adminSession, _ := signIn(t, A, admin[0], admin[1])
	if status != http.StatusOK {
		t.Fatalf("the administrator's sign-in on A: status %d", status)
	}
	study := idByName(t, B.as(adminSession), "/api/v1/orgs/demo/studies", "studies", "Demo Study")
	site := idByName(t, C.as(adminSession), "/api/v1/orgs/demo/studies/"+study+"/sites", "sites", "North Clinic")
	enrolPath := "/api/v1/orgs/demo/studies/" + study + "/sites/" + site + "/participants"

	// Lockout and rate limit. Wrong passwords spread round robin lock
	// the account once the LockAfter-th arrives, on whichever node, and
	// spend its sign-in budget, which is counted once for all nodes. The
	// right password is tried on every node further down, once the budget
	// has room again.
	if accounts.LockAfter < ratelimit.AccountPerMinute {
		t.Fatalf("the test assumes that the %d failures that lock an account spend its budget of %d attempts a minute", accounts.LockAfter, ratelimit.AccountPerMinute)
	}
	guessed, ok := logins["data-manager"]
	if !ok {
		t.Fatalf("no data-manager login printed\n%s", first.describe())
	}
	guessedID := accountID(guessed[0])
	failedOn := map[string]int{}
	for i := 0; i < accounts.LockAfter; {
		n := cl.next()
		switch status, _, retry := signIn(t, n, guessed[0], fmt.Sprintf("not the password %d", i)); status {
		case http.StatusUnauthorized:
			failedOn[n.name]++
			i++
		case http.StatusTooManyRequests:
			time.Sleep(retry + 100*time.Millisecond)
		default:
			t.Fatalf("wrong password %d on node %s: status %d, want 401", i, n.name, status)
		}
	}
	burst := time.Now()
	t.Logf("%d wrong passwords answered 401, by node: %v", accounts.LockAfter, failedOn)
	for _, n := range cl.nodes {
		if failedOn[n.name] >= ratelimit.AccountPerMinute || failedOn[n.name] >= accounts.LockAfter {
			t.Fatalf("node %s saw %d of the failures: the round robin did not spread them", n.name, failedOn[n.name])
		}
	}
	n := cl.next()
	if status, _, retry := signIn(t, n, guessed[0], guessed[1]); status != http.StatusTooManyRequests || retry <= 0 {
		t.Errorf("the right password on node %s right after %d failures spread over three nodes: status %d (Retry-After %s), want 429: the account's budget is not shared",
			n.name, accounts.LockAfter, status, retry)
	}
	var failures int
	var lockedAt sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT failed_logins, locked_at FROM accounts WHERE id = $1`, guessedID).Scan(&failures, &lockedAt); err != nil {
		t.Fatal(err)
	}
	if failures != accounts.LockAfter || !lockedAt.Valid {
		t.Errorf("after %d failures over three nodes the account holds %d failures, locked %v", accounts.LockAfter, failures, lockedAt.Valid)
	}

	// Sessions. A sign-in on A is a session on B and C; a sign-out on
	// B ends it on A and C.
	monitor, ok := logins["monitor"]
	if !ok {
		t.Fatalf("no monitor login printed\n%s", first.describe())
	}
	status, session, _ := signIn(t, A, monitor[0], monitor[1])
	if status != http.StatusOK {
		t.Fatalf("the monitor's sign-in on A: status %d", status)
	}
	const mine = "/api/v1/account/organizations"
	for _, n := range cl.nodes {
		if s := statusOf(t, n, session, "GET", mine, nil); s != http.StatusOK {
			t.Errorf("GET %s on node %s with the session begun on A: status %d, want 200", mine, n.name, s)
		}
	}
	if s := statusOf(t, B, session, "POST", "/api/v1/auth/logout", nil); s != http.StatusNoContent {
		t.Fatalf("sign-out on B: status %d, want 204", s)
	}
	for _, n := range cl.nodes {
		if s := statusOf(t, n, session, "GET", mine, nil); s != http.StatusUnauthorized {
			t.Errorf("GET %s on node %s with the session ended on B: status %d, want 401", mine, n.name, s)
		}
	}

	// Scheduled jobs: the purge of deleted participants. Participants enrolled and
	// deleted round robin are made older than any retention period; the
	// three nodes' sweeps, every second each, then meet on them.
	const purged = 24
	var gone []string
	for i := range purged {
		n := cl.next()
		resp, body, err := n.as(adminSession).do(ctx, "POST", enrolPath, newEnrolment("purge", 0, i))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("enrol participant %d on node %s: %v %s", i, n.name, err, body)
		}
		var p struct{ Pseudonym string }
		if err := json.Unmarshal(body, &p); err != nil || p.Pseudonym == "" {
			t.Fatalf("enrolment answered no pseudonym: %s", body)
		}
		gone = append(gone, p.Pseudonym)
	}
	for _, p := range gone {
		n := cl.next()
		if s := statusOf(t, n, adminSession, "DELETE", enrolPath+"/"+p, map[string]string{"reason": "enrolled by mistake"}); s != http.StatusNoContent {
			t.Fatalf("delete participant %s on node %s: status %d, want 204", p, n.name, s)
		}
	}
	res, err := db.ExecContext(ctx, `UPDATE participant_deletions SET deleted_at = deleted_at - $1 WHERE org_id = $2`,
		(366 * 24 * time.Hour).Microseconds(), orgID)
	if err != nil {
		t.Fatalf("date the deletions back: %v", err)
	}
	if k, _ := res.RowsAffected(); k != purged {
		t.Fatalf("dated back %d deletions, want %d", k, purged)
	}
	purgeFrom := time.Now()
	// A test builds the list: the pseudonyms are the server's.
	goneList := "'" + strings.Join(gone, "', '") + "'"
	waitFor(t, 30*time.Second, "the deleted participants purged", func() bool {
		return queryInt(t, db, `SELECT count(*) FROM participants WHERE org_id = $1 AND id IN (`+goneList+`)`, orgID) == 0
	})
	t.Logf("%d deleted participants purged %s after they fell due", purged, time.Since(purgeFrom).Round(time.Millisecond))

	// Scheduled jobs: alerts. The lock and every other security event of the
	// organization (the deletions, the purges' steps) raise one alert
	// each, and each alert is e-mailed once to each administrator, not
	// once per node. Wait until the watchers have passed every alert's own
	// event, then for the mails, and give the watchers another round.
	admins := queryInt(t, db, `SELECT count(DISTINCT account_id) FROM role_assignments WHERE org_id = $1 AND role = 'org-admin'`, orgID)
	announced := func() (alerts, pending int64) {
		alerts = queryInt(t, db, `SELECT count(*) FROM alerts WHERE org_id = $1`, orgID)
		pending = queryInt(t, db, `SELECT count(*) FROM audit_events e LEFT JOIN audit_log l ON l.event_id = e.id
			WHERE e.org_id = $1 AND e.action = 'alert.raised'
			AND (l.seq IS NULL OR l.seq >= (SELECT next_seq FROM alert_watch WHERE name = 'alerts'))`, orgID)
		return alerts, pending
	}
	mailsFor := func() int64 {
		var n int64
		for _, c := range alertMails(t, filepath.Join(data, "outbox")) {
			n += int64(c)
		}
		return n
	}
	waitFor(t, 30*time.Second, "every alert announced", func() bool {
		alerts, pending := announced()
		return pending == 0 && alerts > 0 && mailsFor() == alerts*admins
	})
	time.Sleep(2500 * time.Millisecond) // the alert watchers run every 2s
	alerts, pending := announced()
	mails := alertMails(t, filepath.Join(data, "outbox"))
	t.Logf("%d alerts raised for the organization, e-mails by recipient %v", alerts, mails)
	if pending != 0 || int64(len(mails)) != admins {
		t.Errorf("after another watcher round: %d alerts not announced, e-mails to %d recipients for %d administrators", pending, len(mails), admins)
	}
	for to, c := range mails {
		if int64(c) != alerts {
			t.Errorf("%s got %d security alert e-mails for %d alerts: each alert is to be sent once, not once per node", to, c, alerts)
		}
	}
	if n := queryInt(t, db, `SELECT count(*) FROM alerts WHERE kind = 'account.locked' AND subject = $1`, guessedID); n != 1 {
		t.Errorf("%d account.locked alerts for the account locked once, want 1", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM (SELECT subject FROM alerts WHERE kind = 'security.event' GROUP BY subject HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("%d security events raised more than one alert", n)
	}
	var unalerted []string
	for _, ev := range eventsWhere(t, db, `e.org_id = $1 AND e.security AND e.action IN ('account.lock', 'participant.delete', 'participant.purge')
		AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.kind = 'security.event' AND a.subject = e.id)`, orgID) {
		unalerted = append(unalerted, ev.action+" "+ev.id)
	}
	if len(unalerted) > 0 {
		t.Errorf("%d security events raised no alert: %v", len(unalerted), unalerted)
	}

	// The lock holds on every node: the right password is refused on
	// each, as a locked account's (once the budget has room again).
	for _, n := range cl.nodes {
		for {
			status, _, retry := signIn(t, n, guessed[0], guessed[1])
			if status == http.StatusTooManyRequests && time.Since(burst) < time.Minute {
				time.Sleep(retry + 100*time.Millisecond)
				continue
			}
			if status != http.StatusUnauthorized {
				t.Errorf("the right password of the locked account on node %s: status %d, want 401", n.name, status)
			}
			break
		}
	}
	lockedTries := 0
	for _, ev := range eventsWhere(t, db, `e.action = 'auth.login' AND e.actor_account = $1 AND e.outcome = 'failure'`, guessedID) {
		if ev.details["reason"] == "locked" {
			lockedTries++
		}
	}
	if lockedTries != len(cl.nodes) {
		t.Errorf("%d sign-ins refused as locked on the trail, want %d (one per node)", lockedTries, len(cl.nodes))
	}
	t.Logf("the right password refused on all three nodes %s after the lockout", time.Since(burst).Round(time.Millisecond))

	// A node killed under load: clients enrol participants round robin;
	// the node that sequences the audit trail is killed with SIGKILL while
	// they write. Every enrolment answered 201 is kept, and another node
	// takes over the sequencing.
	var holder string
	if err := db.QueryRowContext(ctx, `SELECT holder FROM leases WHERE name = 'audit-sequencer'`).Scan(&holder); err != nil {
		t.Fatalf("read the sequencer's lease: %v", err)
	}
	killed := C
	for _, n := range cl.nodes {
		if strings.Contains(n.stderr.String(), "node "+holder+" now sequences") {
			killed = n
		}
	}
	t.Logf("node %s holds the sequencer's lease (%s): it is the one killed", killed.name, holder)
	const writers = 6
	var (
		mu       sync.Mutex
		acked    = map[string]string{} // pseudonym → node
		failed   []string
		lost     int // requests to the killed node without an answer
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		perNode  = map[string]int{}
		killedAt time.Time
		atKilled atomic.Int32 // requests under way to the node to kill
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := cl.next()
				if n == killed {
					atKilled.Add(1)
				}
				resp, body, err := n.as(adminSession).do(ctx, "POST", enrolPath, newEnrolment("load", w, i))
				if n == killed {
					atKilled.Add(-1)
				}
				var p struct{ Pseudonym string }
				ok := err == nil && resp.StatusCode == http.StatusCreated && json.Unmarshal(body, &p) == nil && p.Pseudonym != ""
				mu.Lock()
				switch {
				case ok:
					acked[p.Pseudonym] = n.name
					perNode[n.name]++
				case n == killed && cl.isDown(n):
					lost++
				case err != nil:
					failed = append(failed, fmt.Sprintf("node %s: %v", n.name, err))
				default:
					failed = append(failed, fmt.Sprintf("node %s: status %d: %s", n.name, resp.StatusCode, body))
				}
				mu.Unlock()
			}
		}()
	}
	// The kill falls while the node has a request under way.
	time.Sleep(1500 * time.Millisecond)
	for deadline := time.Now().Add(2 * time.Second); atKilled.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	cl.mu.Lock()
	cl.down[killed] = true
	cl.mu.Unlock()
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL node %s: %v", killed.name, err)
	}
	killedAt = time.Now()
	killed.wait(t, 10*time.Second)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if ws, ok := killed.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("node %s was not ended by SIGKILL: %v", killed.name, killed.cmd.ProcessState)
	}
	t.Logf("%d enrolments acknowledged (by node %v), %d requests to the killed node unanswered", len(acked), perNode, lost)
	for _, f := range failed {
		t.Errorf("an enrolment on a live node failed: %s", f)
	}
	for _, n := range cl.nodes {
		if perNode[n.name] < 5 {
			t.Fatalf("node %s acknowledged only %d enrolments: too few to prove anything", n.name, perNode[n.name])
		}
	}

	// Every acknowledged enrolment reads back through the surviving nodes.
	pseudonyms := make([]string, 0, len(acked))
	for p := range acked {
		pseudonyms = append(pseudonyms, p)
	}
	slices.Sort(pseudonyms)
	var (
		missing []string
		rmu     sync.Mutex
		rwg     sync.WaitGroup
		jobs    = make(chan string)
	)
	for range 4 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for p := range jobs {
				n := cl.next()
				resp, body, err := n.as(adminSession).do(ctx, "GET", enrolPath+"/"+p, nil)
				if err != nil || resp.StatusCode != http.StatusOK {
					rmu.Lock()
					missing = append(missing, fmt.Sprintf("%s (written through %s, read on %s: %v %s)", p, acked[p], n.name, err, body))
					rmu.Unlock()
				}
			}
		}()
	}
	for _, p := range pseudonyms {
		jobs <- p
	}
	close(jobs)
	rwg.Wait()
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged enrolments do not read back after node %s was killed:\n  %s",
			len(missing), len(acked), killed.name, strings.Join(missing, "\n  "))
	}

	// Scheduled jobs: a surviving node takes the audit sequencer's lease
	// over.
	waitFor(t, 20*time.Second, "a surviving node takes the sequencer's lease over", func() bool {
		var h string
		if err := db.QueryRowContext(ctx, `SELECT holder FROM leases WHERE name = 'audit-sequencer'`).Scan(&h); err != nil {
			return false
		}
		for _, n := range cl.live() {
			if strings.Contains(n.stderr.String(), "node "+h+" now sequences") {
				return true
			}
		}
		return false
	})
	t.Logf("the sequencer's lease taken over %s after the kill", time.Since(killedAt).Round(time.Millisecond))

	// Scheduled jobs: backups (AVL-01). Every node looked at its start
	// whether a backup was due; one wrote it.
	if files, _ := filepath.Glob(filepath.Join(backups, "*"+backup.Suffix)); len(files) != 1 {
		t.Errorf("three nodes wrote %d backups in their first turn, want 1: %v", len(files), files)
	}
	if evs := eventsWhere(t, db, `action = 'backup.create'`); len(evs) != 1 {
		t.Errorf("%d backup.create events, want 1", len(evs))
	}

	// The survivors stop; the last signs the final checkpoint. The trail
	// is one tree: gap-free, every event in it once, every checkpoint of
	// it, whichever node signed it, verifying against it.
	for _, n := range cl.live() {
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM node %s: %v", n.name, err)
		}
	}
	for _, n := range cl.live() {
		if code := n.wait(t, 40*time.Second); code != 0 {
			t.Errorf("node %s: exit %d after SIGTERM, want 0\n%s", n.name, code, n.describe())
		}
	}
	events, checkpoints := verifyOK(t, "--data", data, "--database", clinical)
	if size := checkGapFree(t, db); size != events {
		t.Errorf("audit_log holds %d entries, audit verify reports %d events", size, events)
	}
	if latest := queryInt(t, db, `SELECT max(size) FROM audit_checkpoints`); latest != events {
		t.Errorf("the latest checkpoint covers %d of %d events", latest, events)
	}
	takeovers := 0
	for _, n := range cl.nodes {
		k := strings.Count(n.stderr.String(), "now sequences the audit trail")
		takeovers += k
		t.Logf("node %s took the sequencer's lease %d times", n.name, k)
	}
	if takeovers < 2 {
		t.Errorf("the sequencer's lease was taken %d times, want at least twice (at start, and after the kill)", takeovers)
	}
	t.Logf("the trail verifies: %d events, %d signed checkpoints", events, checkpoints)

	// Every acknowledged enrolment has one event, in the tree.
	enrolled := map[string][]storedEvent{}
	for _, ev := range eventsWhere(t, db, `e.action = 'participant.enrol' AND e.outcome = 'success' AND e.org_id = $1`, orgID) {
		enrolled[ev.participant] = append(enrolled[ev.participant], ev)
	}
	var unaudited []string
	for _, p := range pseudonyms {
		if evs := enrolled[p]; len(evs) != 1 || evs[0].seq < 0 {
			unaudited = append(unaudited, fmt.Sprintf("%s: %d events", p, len(evs)))
		}
	}
	if len(unaudited) > 0 {
		t.Errorf("%d acknowledged enrolments have not exactly one sequenced participant.enrol event:\n  %s", len(unaudited), strings.Join(unaudited, "\n  "))
	}

	// Each purged participant was purged once: one event for each step,
	// not one per node, and one for their deletion.
	deleted := map[string]int{}
	for _, ev := range eventsWhere(t, db, `e.action = 'participant.delete' AND e.outcome = 'success' AND e.org_id = $1`, orgID) {
		deleted[ev.object]++
	}
	type stepKey struct{ participant, step string }
	steps := map[stepKey]int{}
	for _, ev := range eventsWhere(t, db, `e.action = 'participant.purge' AND e.org_id = $1`, orgID) {
		if ev.outcome != "success" {
			t.Errorf("participant.purge event %s: outcome %s (%v)", ev.id, ev.outcome, ev.details)
		}
		steps[stepKey{ev.object, ev.details["step"]}]++
	}
	for _, p := range gone {
		if deleted[p] != 1 {
			t.Errorf("participant %s: %d participant.delete events, want 1", p, deleted[p])
		}
		for _, step := range []string{"identity", "data"} {
			if k := steps[stepKey{p, step}]; k != 1 {
				t.Errorf("participant %s: %d participant.purge events of step %s, want 1", p, k, step)
			}
		}
	}
	if len(steps) != 2*purged {
		t.Errorf("participant.purge events name %d (participant, step) pairs, want %d", len(steps), 2*purged)
	}
	sum := 0
	for _, n := range cl.nodes {
		// Each node logs how many it purged, the participants it found
		// due and still there at each step.
		k := 0
		for line := range strings.Lines(n.stderr.String()) {
			var l struct {
				Msg    string
				Purged int
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "purge of deleted participants" {
				k += l.Purged
			}
		}
		t.Logf("node %s purged %d of them", n.name, k)
		sum += k
	}
	if sum != purged {
		t.Errorf("the nodes purged %d participants between them, want %d: each once", sum, purged)
	}
	// The erasure epochs the purges retired are destroyed once each.
	destroyed := map[string]int{}
	for _, ev := range eventsWhere(t, db, `e.action = 'key.epoch_destroy'`) {
		destroyed[ev.object]++
	}
	if len(destroyed) == 0 {
		t.Errorf("no erasure epoch destroyed after %d purges", purged)
	}
	for epoch, k := range destroyed {
		if k != 1 {
			t.Errorf("erasure epoch %s: %d key.epoch_destroy events, want 1", epoch, k)
		}
	}
	t.Logf("%d erasure epochs destroyed; the whole test took %s", len(destroyed), time.Since(began).Round(time.Millisecond))
}

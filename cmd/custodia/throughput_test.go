//go:build unix

package main

// TestThroughput measures, side by side in one run on one machine, how many
// requests a second the real custodia serve answers under closed-loop load
// over HTTPS, and sets each figure against a baseline measured in the same
// run: the same rows inserted plain by a minimal server in this binary, and
// PocketBase. What each row measures: docs/benchmarks.md. It runs only with
// CUSTODIA_BENCH=1 (scripts/bench), never as part of ./scripts/test, and it
// fails only when a row's requests fail, never on speed.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/loadtest"
	"github.com/custodia/custodia/internal/orgs"
	srv "github.com/custodia/custodia/internal/server" // "server" is this package's started process
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

var (
	throughputDuration = flag.Duration("throughput.duration", 10*time.Second, "TestThroughput: how long each row is measured")
	throughputClients  = flag.Int("throughput.clients", 32, "TestThroughput: closed-loop clients of the main rows")
	throughputWarmup   = flag.Duration("throughput.warmup", time.Second, "TestThroughput: load before each row's measurement, not recorded")
)

// defaultPostgres is where TestThroughput makes its PostgreSQL databases
// when CUSTODIA_TEST_POSTGRES is not set.
const defaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// pocketBaseModule is the PocketBase compared with: its example program,
// built as `go install` builds it.
const pocketBaseModule = "github.com/pocketbase/pocketbase/examples/base@v0.36.8"

// pocketBaseGo is the Go release PocketBase is built with (see
// pocketBaseBinary).
const pocketBaseGo = "go1.26.8"

// envPocketBase names a PocketBase program to use instead of building one.
const envPocketBase = "CUSTODIA_BENCH_POCKETBASE"

// Rows, by the ids the ratios name them with.
const (
	rowEnrol         = "enrol-sqlite"
	rowEnrolOne      = "enrol-sqlite-1"
	rowRead          = "read-sqlite"
	rowPlain         = "plain-sqlite"
	rowPlainOne      = "plain-sqlite-1"
	rowPlainBoth     = "plain-both-sqlite"
	rowPlainRead     = "plain-read-sqlite"
	rowPBCreateHTTPS = "pb-create-https"
	rowPBReadHTTPS   = "pb-read-https"
	rowPBCreateHTTP  = "pb-create-http"
	rowPBReadHTTP    = "pb-read-http"
	rowEnrolPG       = "enrol-pg"
	rowReadPG        = "read-pg"
	rowPlainPG       = "plain-pg"
	rowPlainReadPG   = "plain-read-pg"
	rowEnrolMixed    = "enrol-mixed-sqlite"
	rowReadMixed     = "read-mixed-sqlite"
	rowEnrolTwoNodes = "enrol-pg-2"
	rowReadTwoNodes  = "read-pg-2"
)

// maxErrorShare is the share of failed requests above which a row fails the
// test: the harness, not the speed, is then broken.
const maxErrorShare = 0.01

const (
	pocketBaseEmail      = "bench@example.com"
	pocketBasePassword   = "throughput-bench-password"
	pocketBaseCollection = "participants"
)

// ratios are the comparisons the table ends with: subject ÷ baseline, both
// measured in this run.
var ratios = []struct{ what, subject, baseline string }{
	{"enrolment ÷ plain insert (SQLite)", rowEnrol, rowPlain},
	{"enrolment ÷ plain insert (SQLite, 1 client)", rowEnrolOne, rowPlainOne},
	{"enrolment ÷ plain insert of both rows (SQLite, 2 databases)", rowEnrol, rowPlainBoth},
	{"enrolment ÷ PocketBase create (HTTPS)", rowEnrol, rowPBCreateHTTPS},
	{"audited read ÷ plain read (SQLite)", rowRead, rowPlainRead},
	{"audited read ÷ PocketBase read (HTTPS)", rowRead, rowPBReadHTTPS},
	{"enrolment ÷ plain insert (PostgreSQL)", rowEnrolPG, rowPlainPG},
	{"audited read ÷ plain read (PostgreSQL)", rowReadPG, rowPlainReadPG},
	{"enrolment, 2 nodes ÷ 1 node (PostgreSQL)", rowEnrolTwoNodes, rowEnrolPG},
	{"audited read, 2 nodes ÷ 1 node (PostgreSQL)", rowReadTwoNodes, rowReadPG},
	{"PocketBase create, HTTPS proxy ÷ direct HTTP", rowPBCreateHTTPS, rowPBCreateHTTP},
	{"PocketBase read, HTTPS proxy ÷ direct HTTP", rowPBReadHTTPS, rowPBReadHTTP},
}

func TestThroughput(t *testing.T) {
	if os.Getenv("CUSTODIA_BENCH") != "1" {
		t.Skip("a benchmark: run it with CUSTODIA_BENCH=1 (scripts/bench)")
	}
	clients := *throughputClients
	if clients < 1 {
		t.Fatalf("-throughput.clients %d: want at least 1", clients)
	}
	b := &bench{load: loadtest.Load{Duration: *throughputDuration, Warmup: *throughputWarmup}}

	t.Run("custodia on SQLite", func(t *testing.T) {
		d := deploy(t, 1, clients)
		p := d.pool(clients)
		b.measure(t, rowEnrol, "enrol (custodia, SQLite)", enrolRequests(p, d.enrolPath, rowEnrol))
		b.measure(t, rowRead, "audited read (custodia, SQLite)", readRequests(p, d.participantPath))
		p.close()
		// Mixed load: a quarter of the clients enrol while the others read.
		enrolling := max(1, clients/4)
		pe, pr := d.pool(enrolling), d.pool(max(1, clients-enrolling))
		b.measureTogether(t,
			part{rowEnrolMixed, "enrol beside reads (custodia, SQLite)", enrolRequests(pe, d.enrolPath, rowEnrolMixed)},
			part{rowReadMixed, "audited read beside enrolments (custodia, SQLite)", readRequests(pr, d.participantPath)})
		pe.close()
		pr.close()
		one := d.pool(1)
		b.measure(t, rowEnrolOne, "enrol (custodia, SQLite)", enrolRequests(one, d.enrolPath, rowEnrolOne))
		one.close()
		b.note(t, d.tally("custodia on SQLite"))
	})

	t.Run("plain on SQLite", func(t *testing.T) {
		dir := t.TempDir()
		ps := startPlain(t, "sqlite:"+filepath.Join(dir, "clinical.db"), "sqlite:"+filepath.Join(dir, "identity.db"))
		p := ps.pool(clients)
		b.measure(t, rowPlain, "plain insert (SQLite)", enrolRequests(p, "/participants", rowPlain))
		b.measure(t, rowPlainBoth, "plain insert, both rows (SQLite, 2 databases)", enrolRequests(p, "/participants-with-identity", rowPlainBoth))
		b.measure(t, rowPlainRead, "plain read (SQLite)", readRequests(p, ps.participantPath))
		p.close()
		one := ps.pool(1)
		b.measure(t, rowPlainOne, "plain insert (SQLite)", enrolRequests(one, "/participants", rowPlainOne))
		one.close()
	})

	t.Run("PocketBase", func(t *testing.T) {
		pb := startPocketBase(t, clients)
		b.note(t, "PocketBase: "+pb.program+", serve --dev=false")
		proxied := tlsProxy(t, pb.direct.base, clients)
		proxied.pid = pb.direct.pid // the server's time is PocketBase's; the proxy's counts with the load's
		for _, v := range []struct {
			create, read, how string
			at                endpoint
		}{
			{rowPBCreateHTTPS, rowPBReadHTTPS, "HTTPS proxy", proxied},
			{rowPBCreateHTTP, rowPBReadHTTP, "direct HTTP", pb.direct},
		} {
			p := newPool(clients, []endpoint{v.at}, pb.auth)
			b.measure(t, v.create, "PocketBase create ("+v.how+")", pocketBaseCreates(p, v.create))
			b.measure(t, v.read, "PocketBase read ("+v.how+")", readRequests(p, pb.recordPath))
			p.close()
		}
	})

	t.Run("custodia on PostgreSQL", func(t *testing.T) {
		pg := requirePostgres(t)
		b.note(t, "PostgreSQL "+postgresSettings(pg))
		d := deploy(t, 1, clients, "--database", sqldbtest.URL(t, sqldb.Postgres), "--identity-database", sqldbtest.URL(t, sqldb.Postgres))
		p := d.pool(clients)
		b.measure(t, rowEnrolPG, "enrol (custodia, PostgreSQL)", enrolRequests(p, d.enrolPath, rowEnrolPG))
		b.measure(t, rowReadPG, "audited read (custodia, PostgreSQL)", readRequests(p, d.participantPath))
		p.close()
		b.note(t, d.tally("custodia on PostgreSQL"))
		d.stop(t)

		ps := startPlain(t, sqldbtest.URL(t, sqldb.Postgres), sqldbtest.URL(t, sqldb.Postgres))
		pp := ps.pool(clients)
		b.measure(t, rowPlainPG, "plain insert (PostgreSQL)", enrolRequests(pp, "/participants", rowPlainPG))
		b.measure(t, rowPlainReadPG, "plain read (PostgreSQL)", readRequests(pp, ps.participantPath))
		pp.close()
	})

	t.Run("custodia on PostgreSQL, 2 nodes", func(t *testing.T) {
		requirePostgres(t)
		d := deploy(t, 2, clients, "--database", sqldbtest.URL(t, sqldb.Postgres), "--identity-database", sqldbtest.URL(t, sqldb.Postgres))
		p := d.pool(clients)
		b.measure(t, rowEnrolTwoNodes, "enrol (custodia, PostgreSQL, 2 nodes)", enrolRequests(p, d.enrolPath, rowEnrolTwoNodes))
		b.measure(t, rowReadTwoNodes, "audited read (custodia, PostgreSQL, 2 nodes)", readRequests(p, d.participantPath))
		p.close()
		b.note(t, d.tally("custodia on PostgreSQL, 2 nodes"))
	})

	b.report(os.Stdout)
	for _, r := range b.rows {
		if r.res.Succeeded == 0 || r.res.ErrorShare() > maxErrorShare {
			t.Errorf("%s, %d clients: %d of %d requests failed (more than %.0f%%): %v",
				r.name, r.res.Workers, r.res.Failed, r.res.Requests(), maxErrorShare*100, r.res.Failures)
		}
	}
}

// row is one line of the table.
type row struct {
	id, name string
	res      loadtest.Result
}

// bench collects the rows and notes of one run.
type bench struct {
	load  loadtest.Load
	rows  []row
	notes []string
}

func (b *bench) measure(t *testing.T, id, name string, req request) {
	t.Helper()
	l := b.load
	l.Workers = req.workers
	l.Meters = cpuMeters(req.servers)
	b.record(t, id, name, l.Run(context.Background(), req.send))
}

// Meters of processor time (cpu_test.go): the machine's, and the server
// processes' together.
const (
	meterMachine = "machine"
	meterServer  = "server"
)

// cpuMeters meters the machine's processor time and that of the processes
// servers, where the system tells them.
func cpuMeters(servers []int) map[string]loadtest.Meter {
	m := map[string]loadtest.Meter{}
	if _, ok := machineCPU(); ok {
		m[meterMachine] = func() float64 { s, _ := machineCPU(); return s }
	}
	if len(servers) == 0 {
		return m
	}
	for _, pid := range servers {
		if _, ok := processCPU(pid); !ok {
			return m
		}
	}
	m[meterServer] = func() float64 {
		var sum float64
		for _, pid := range servers {
			s, _ := processCPU(pid)
			sum += s
		}
		return sum
	}
	return m
}

// cpuPerRequest is the processor time of meter per request answered in
// ms, or "n/a" where it was not metered.
func cpuPerRequest(res loadtest.Result, meter string) string {
	if _, ok := res.Metered[meter]; !ok || res.Requests() == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f ms", 1000*res.PerRequest(meter))
}

// record adds the row of a measured load and logs it.
func (b *bench) record(t *testing.T, id, name string, res loadtest.Result) {
	t.Helper()
	b.rows = append(b.rows, row{id: id, name: name, res: res})
	t.Logf("%s, %d clients: %.1f req/s, p50 %s, p99 %s, %d failed, processor time per request %s (machine), %s (server)",
		name, res.Workers, res.Rate(), millis(res.P50), millis(res.P99), res.Failed, cpuPerRequest(res, meterMachine), cpuPerRequest(res, meterServer))
	for msg, n := range res.Failures {
		t.Logf("  %d× %s", n, msg)
	}
}

// part is one row of loads measured together.
type part struct {
	id, name string
	req      request
}

// measureTogether runs the loads of parts at the same time, each with its
// own clients, for the same time, and records a row for each and a note of
// their sum.
func (b *bench) measureTogether(t *testing.T, parts ...part) {
	t.Helper()
	res := make([]loadtest.Result, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		l := b.load
		l.Workers = p.req.workers
		wg.Go(func() { res[i] = l.Run(context.Background(), p.req.send) })
	}
	wg.Wait()
	var sum []string
	var total float64
	for i, p := range parts {
		b.record(t, p.id, p.name, res[i])
		sum = append(sum, fmt.Sprintf("%s %.1f", p.name, res[i].Rate()))
		total += res[i].Rate()
	}
	b.note(t, fmt.Sprintf("measured together: %.1f requests a second in all (%s)", total, strings.Join(sum, ", ")))
}

func (b *bench) note(t *testing.T, s string) {
	t.Helper()
	t.Log(s)
	b.notes = append(b.notes, s)
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// report prints the table, the ratios and the notes as Markdown, ready for
// docs/benchmarks.md.
func (b *bench) report(w io.Writer) {
	fmt.Fprintf(w, "\nThroughput: %s measured per row after %s of warm-up; closed-loop clients over HTTPS\n", b.load.Duration, b.load.Warmup)
	fmt.Fprintf(w, "(PocketBase also over direct HTTP). Machine: %s.\n\n", machine())
	fmt.Fprintln(w, "| row | clients | req/s | p50 | p99 | errors | CPU/req, machine | CPU/req, server |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range b.rows {
		errors := "0"
		if r.res.Failed > 0 {
			errors = fmt.Sprintf("%d (%.2f%%)", r.res.Failed, 100*r.res.ErrorShare())
		}
		fmt.Fprintf(w, "| %s | %d | %.1f | %s | %s | %s | %s | %s |\n", r.name, r.res.Workers, r.res.Rate(), millis(r.res.P50), millis(r.res.P99), errors,
			cpuPerRequest(r.res, meterMachine), cpuPerRequest(r.res, meterServer))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| subject ÷ baseline, same run | req/s | p50 | CPU/req, machine |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: |")
	byID := map[string]row{}
	for _, r := range b.rows {
		byID[r.id] = r
	}
	for _, q := range ratios {
		s, okS := byID[q.subject]
		base, okB := byID[q.baseline]
		if !okS || !okB || base.res.Rate() == 0 || base.res.P50 == 0 {
			fmt.Fprintf(w, "| %s | n/a | n/a | n/a |\n", q.what)
			continue
		}
		cpu := "n/a"
		if sc, bc := s.res.PerRequest(meterMachine), base.res.PerRequest(meterMachine); sc > 0 && bc > 0 {
			cpu = fmt.Sprintf("%.2f", sc/bc)
		}
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %s |\n", q.what, s.res.Rate()/base.res.Rate(), float64(s.res.P50)/float64(base.res.P50), cpu)
	}
	if len(b.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range b.notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
	fmt.Fprintln(w)
}

// machine describes where the run happened.
func machine() string {
	cpu := ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = " (" + strings.TrimSpace(v) + ")"
				break
			}
		}
		f.Close()
	}
	return fmt.Sprintf("%s/%s, %d CPUs%s, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpu, runtime.Version())
}

// endpoint is a server as the load reaches it: its base URL and, for HTTPS,
// the fingerprint of the certificate it must present.
type endpoint struct {
	base        string
	fingerprint string // empty for plain HTTP
	// pid is the process of the server measured, 0 for a server in this
	// process (the plain server; the HTTPS proxy counts as the load's).
	pid int
}

// pool gives each worker an HTTP client of its own, so each keeps one
// keep-alive connection, to one of the endpoints (worker w to endpoint
// w mod n), with its own Authorization header.
type pool struct {
	clients []*http.Client
	at      []endpoint
	auth    []string
}

func newPool(workers int, endpoints []endpoint, auth []string) *pool {
	p := &pool{}
	for w := range workers {
		e := endpoints[w%len(endpoints)]
		tr := &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute, DisableCompression: true}
		if e.fingerprint != "" {
			tr.TLSClientConfig = pinnedTLS(e.fingerprint)
		}
		p.clients = append(p.clients, &http.Client{Transport: tr, Timeout: 30 * time.Second})
		p.at = append(p.at, e)
		a := ""
		if len(auth) > 0 {
			a = auth[w%len(auth)]
		}
		p.auth = append(p.auth, a)
	}
	return p
}

func (p *pool) close() {
	for _, c := range p.clients {
		c.CloseIdleConnections()
	}
}

// send makes one request as worker w and wants status want. A failure
// names the method, the status and the start of the answer, never an id,
// so that failures of one kind count under one message.
func (p *pool) send(ctx context.Context, w int, method, path string, body []byte, want int) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.at[w].base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.auth[w] != "" {
		req.Header.Set("Authorization", p.auth[w])
	}
	resp, err := p.clients[w].Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", method, errorWithoutURL(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: status %d, answer cut: %v", method, resp.StatusCode, err)
	}
	if resp.StatusCode != want {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 160 {
			msg = msg[:160] + "…"
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			msg += " (Retry-After " + ra + ")"
		}
		return nil, fmt.Errorf("%s: status %d: %s", method, resp.StatusCode, msg)
	}
	return b, nil
}

// errorWithoutURL drops the URL a client error names (it may hold an id).
func errorWithoutURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// request is a loadtest.Request with the number of workers it is made for
// and the processes of the servers it reaches (none for a server in this
// process).
type request struct {
	workers int
	servers []int
	send    loadtest.Request
}

// servers are the processes of the pool's endpoints, or none if one of
// them is in this process.
func (p *pool) servers() []int {
	var pids []int
	for _, e := range p.at {
		if e.pid == 0 {
			return nil
		}
		if !slices.Contains(pids, e.pid) {
			pids = append(pids, e.pid)
		}
	}
	return pids
}

// enrolment is the body of every enrolment and plain insert: all five
// identity fields, so that custodia seals five values, keeps a blind index
// of the national id and writes the identity database. The national id is
// unique per row, worker and request, because custodia refuses a national
// id enrolled twice in one study; letters part the numbers, because the
// blind index keeps letters and digits only ("1-23" and "12-3" are one id).
type enrolment struct {
	Name       string `json:"name"`
	BirthDate  string `json:"birth_date"`
	Email      string `json:"email"`
	Phone      string `json:"phone"`
	NationalID string `json:"national_id"`
}

func newEnrolment(tag string, w, i int) enrolment {
	return enrolment{Name: "Ada Lovelace", BirthDate: "1952-03-11", Email: "ada@example.org",
		Phone: "+44 20 7946 0000", NationalID: fmt.Sprintf("%s w%d n%d", tag, w, i)}
}

func enrolRequests(p *pool, path, tag string) request {
	return request{workers: len(p.clients), servers: p.servers(), send: func(ctx context.Context, w, i int) error {
		body, err := json.Marshal(newEnrolment(tag, w, i))
		if err != nil {
			return err
		}
		_, err = p.send(ctx, w, http.MethodPost, path, body, http.StatusCreated)
		return err
	}}
}

func readRequests(p *pool, path string) request {
	return request{workers: len(p.clients), servers: p.servers(), send: func(ctx context.Context, w, i int) error {
		_, err := p.send(ctx, w, http.MethodGet, path, nil, http.StatusOK)
		return err
	}}
}

// deployment is custodia serve --demo on one pair of databases, on one or
// more nodes, ready for load as the demo site investigator: the path to
// enrol at the demo study's North Clinic, one personal access token per
// worker, and one participant, enrolled with identity data, to read.
//
// Tokens rather than sign-ins: sign-in is limited to 20 attempts a minute
// from one address and 10 a minute for one account (AUTH-05), so 32
// sessions from the loopback address would take minutes to open. A token is
// the API's credential for scripts; up to 50 may live per account.
type deployment struct {
	procs           []*server
	enrolPath       string
	participantPath string
	auth            []string
}

// deploy starts nodes custodia serve processes sharing one data folder and
// the databases dbArgs name (the SQLite files in the data folder without
// them).
func deploy(t *testing.T, nodes, clients int, dbArgs ...string) *deployment {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	args := append([]string{"--addr", "127.0.0.1:0", "--data", data, "--enrolments-per-hour", "0"}, dbArgs...)
	d := &deployment{procs: []*server{serve(t, "", nil, append([]string{"--demo"}, args...)...)}}
	for range nodes - 1 {
		d.procs = append(d.procs, serve(t, "", nil, args...))
	}
	first := d.procs[0]
	inv, ok := first.demoLogins()["site-investigator"]
	if !ok {
		t.Fatalf("no site-investigator login printed\n%s", first.describe())
	}
	c := newClient(first.url, first.fingerprint)
	c.login(t, inv[0], inv[1])
	study := idByName(t, c, "/api/v1/orgs/demo/studies", "studies", "Demo Study")
	site := idByName(t, c, "/api/v1/orgs/demo/studies/"+study+"/sites", "sites", "North Clinic")
	d.enrolPath = "/api/v1/orgs/demo/studies/" + study + "/sites/" + site + "/participants"

	ctx := context.Background()
	var tokens []string
	for k := range min(clients, sessions.TokensPerAccount) {
		resp, body, err := c.do(ctx, "POST", "/api/v1/tokens", map[string]any{
			"name": fmt.Sprintf("throughput worker %d", k), "scopes": []string{"write"}, "expires_in_days": 1})
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("make access token %d: %v %s", k, err, body)
		}
		var tok struct{ Token string }
		if err := json.Unmarshal(body, &tok); err != nil || tok.Token == "" {
			t.Fatalf("make access token %d: no token in %s", k, body)
		}
		tokens = append(tokens, "Bearer "+tok.Token)
	}
	d.auth = tokens

	resp, body, err := c.do(ctx, "POST", d.enrolPath, newEnrolment("read", 0, 0))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("enrol the participant to read: %v %s", err, body)
	}
	var p struct{ Pseudonym string }
	if err := json.Unmarshal(body, &p); err != nil || p.Pseudonym == "" {
		t.Fatalf("enrolment answered no pseudonym: %s", body)
	}
	d.participantPath = d.enrolPath + "/" + p.Pseudonym
	return d
}

// pool spreads workers over the nodes, each with its own token.
func (d *deployment) pool(workers int) *pool {
	var at []endpoint
	for _, s := range d.procs {
		at = append(at, endpoint{base: s.url, fingerprint: s.fingerprint, pid: s.cmd.Process.Pid})
	}
	return newPool(workers, at, d.auth)
}

// stop ends the nodes now, so that they take no CPU from the rows after.
func (d *deployment) stop(t *testing.T) {
	t.Helper()
	for _, s := range d.procs {
		s.cmd.Process.Kill()
		s.wait(t, 10*time.Second)
	}
}

// tally summarizes what the nodes logged from their start (setup and
// warm-up included): the requests by status, and the lines logged at level
// ERROR or WARN with their messages.
func (d *deployment) tally(name string) string {
	var parts []string
	for n, s := range d.procs {
		statuses := map[int]int{}
		problems := map[string]int{}
		for line := range strings.Lines(s.stderr.String()) {
			var l struct {
				Level, Msg, Err string
				Status          int
			}
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			if l.Msg == "request" {
				statuses[l.Status]++
			}
			if l.Level == "ERROR" || l.Level == "WARN" {
				problems[l.Level+" "+l.Msg+": "+l.Err]++
			}
		}
		var keys []int
		for k := range statuses {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var byStatus []string
		for _, k := range keys {
			byStatus = append(byStatus, fmt.Sprintf("%d × %d", k, statuses[k]))
		}
		part := fmt.Sprintf("node %d answered %s", n+1, strings.Join(byStatus, ", "))
		if len(problems) == 0 {
			part += ", no warnings or errors"
		}
		for msg, c := range problems {
			part += fmt.Sprintf("; %d× %s", c, msg)
		}
		parts = append(parts, part)
	}
	return name + ": " + strings.Join(parts, "; ") + " (status × count, setup and warm-up included)"
}

// idByName finds the id of the object called name in the list at path.
func idByName(t *testing.T, c *client, path, key, name string) string {
	t.Helper()
	resp, body, err := c.do(context.Background(), "GET", path, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %s", path, err, body)
	}
	var list map[string][]struct{ ID, Name string }
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	for _, o := range list[key] {
		if o.Name == name {
			return o.ID
		}
	}
	t.Fatalf("GET %s: no %q in %s", path, name, body)
	return ""
}

// plainServer is the baseline: the same rows inserted plain, with no
// sealing, no audit and no authorization, by a minimal server with the
// HTTPS setup of custodia serve (serveTLS) and its storage (sqldb.Open:
// SQLite in WAL mode with synchronous=FULL, or PostgreSQL), one
// transaction per request. Its tables are those of migrated clinical and
// identity databases; the organization, study and site the participants
// belong to are made first, so the foreign keys hold.
type plainServer struct {
	endpoint
	clinical, identity     *sqldb.DB
	orgID, studyID, siteID string
	participantPath        string
}

func startPlain(t *testing.T, clinicalURL, identityURL string) *plainServer {
	t.Helper()
	ctx := context.Background()
	ps := &plainServer{clinical: openMigrated(t, clinicalURL, sqldb.Clinical), identity: openMigrated(t, identityURL, sqldb.Identity)}
	err := ps.clinical.InTx(ctx, func(tx *sql.Tx) error {
		org, err := orgs.CreateOrganization(ctx, tx, "Plain Organization", "plain")
		if err != nil {
			return err
		}
		study, err := orgs.CreateStudy(ctx, tx, org.ID, orgs.KindStudy, "Plain Study")
		if err != nil {
			return err
		}
		site, err := orgs.CreateSite(ctx, tx, org.ID, study.ID, "Plain Site")
		ps.orgID, ps.studyID, ps.siteID = org.ID, study.ID, site.ID
		return err
	})
	if err != nil {
		t.Fatalf("make the plain server's site: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /participants", ps.insert(false))
	mux.HandleFunc("POST /participants-with-identity", ps.insert(true))
	mux.HandleFunc("GET /participants/{participant}", ps.read)
	ps.endpoint = serveTLS(t, mux)

	body, err := newPool(1, []endpoint{ps.endpoint}, nil).send(ctx, 0, http.MethodPost, "/participants", mustJSON(t, newEnrolment("read", 0, 0)), http.StatusCreated)
	if err != nil {
		t.Fatalf("plain insert of the participant to read: %v", err)
	}
	var p struct{ Pseudonym string }
	if err := json.Unmarshal(body, &p); err != nil || p.Pseudonym == "" {
		t.Fatalf("plain insert answered no pseudonym: %s", body)
	}
	ps.participantPath = "/participants/" + p.Pseudonym
	return ps
}

func (ps *plainServer) pool(workers int) *pool {
	return newPool(workers, []endpoint{ps.endpoint}, nil)
}

func openMigrated(t *testing.T, url string, s sqldb.Schema) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatalf("open %s: %v", sqldb.Redact(url), err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx, s); err != nil {
		t.Fatalf("migrate %s: %v", sqldb.Redact(url), err)
	}
	return db
}

// plainParticipant is the plain server's answer, shaped like custodia's.
type plainParticipant struct {
	Pseudonym string `json:"pseudonym"`
	StudyID   string `json:"study_id"`
	SiteID    string `json:"site_id"`
	Status    string `json:"status"`
	Identity  string `json:"identity"`
	CreatedAt string `json:"created_at"`
}

// insert adds the participants row; withIdentity first adds the identity
// row, its values unsealed, to the identity database in a transaction of
// its own, as custodia's enrolment writes both databases.
func (ps *plainServer) insert(withIdentity bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in enrolment
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
			http.Error(w, "the body is not an enrolment", http.StatusBadRequest)
			return
		}
		ctx := r.Context()
		p := plainParticipant{Pseudonym: ids.New(), StudyID: ps.studyID, SiteID: ps.siteID, Status: "enrolled", Identity: "none"}
		now := sqldb.Now()
		if withIdentity {
			p.Identity = "recorded"
			err := ps.identity.InTx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO identities
					(participant_id, org_id, study_id, name, birth_date, email, phone, national_id, national_id_index, created_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
					p.Pseudonym, ps.orgID, ps.studyID, []byte(in.Name), []byte(in.BirthDate), []byte(in.Email),
					[]byte(in.Phone), []byte(in.NationalID), in.NationalID, now)
				return err
			})
			if err != nil {
				http.Error(w, "insert the identity: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		err := ps.clinical.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO participants (id, org_id, study_id, site_id, status, identity, created_at)
				VALUES ($1, $2, $3, $4, 'enrolled', $5, $6)`, p.Pseudonym, ps.orgID, ps.studyID, ps.siteID, p.Identity, now)
			return err
		})
		if err != nil {
			http.Error(w, "insert the participant: "+err.Error(), http.StatusInternalServerError)
			return
		}
		p.CreatedAt = time.UnixMicro(now).UTC().Format(time.RFC3339)
		writePlainJSON(w, http.StatusCreated, p)
	}
}

func (ps *plainServer) read(w http.ResponseWriter, r *http.Request) {
	var p plainParticipant
	var created int64
	err := ps.clinical.QueryRowContext(r.Context(),
		`SELECT id, study_id, site_id, status, identity, created_at FROM participants WHERE org_id = $1 AND id = $2`,
		ps.orgID, r.PathValue("participant")).Scan(&p.Pseudonym, &p.StudyID, &p.SiteID, &p.Status, &p.Identity, &created)
	switch {
	case err == sql.ErrNoRows:
		http.Error(w, "no such participant", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, "read the participant: "+err.Error(), http.StatusInternalServerError)
		return
	}
	p.CreatedAt = time.UnixMicro(created).UTC().Format(time.RFC3339)
	writePlainJSON(w, http.StatusOK, p)
}

func writePlainJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveTLS serves h over HTTPS on a loopback port as custodia serve does:
// internal/server's self-signed certificate, TLS configuration and
// http.Server settings (srv.Serve), with keep-alive.
func serveTLS(t *testing.T, h http.Handler) endpoint {
	t.Helper()
	cert, _, err := srv.SelfSignedCertificate(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatalf("self-signed certificate: %v", err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, h, srv.TLSConfig(cert), slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return endpoint{base: "https://" + ln.Addr().String(), fingerprint: srv.Fingerprint(cert)}
}

// tlsProxy terminates HTTPS as serveTLS does and passes each request on to
// backend over plain HTTP, keeping up to conns backend connections alive,
// so that PocketBase, which speaks plain HTTP, is measured over HTTPS too.
func tlsProxy(t *testing.T, backend string, conns int) endpoint {
	t.Helper()
	target, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return serveTLS(t, &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	})
}

// pocketBase is PocketBase serving on a loopback port, with a superuser
// signed in once per worker and a participants collection whose rules are
// null (superusers only), holding one record to read.
type pocketBase struct {
	program    string // what was run, for the notes
	direct     endpoint
	auth       []string
	recordPath string
}

// startPocketBase builds and starts PocketBase, or skips the test when it
// cannot be built. It runs with --dev=false: the example program takes a
// binary under the temporary folder for `go run` and would print every SQL
// statement, which its ordinary build does not.
func startPocketBase(t *testing.T, clients int) *pocketBase {
	t.Helper()
	bin := pocketBaseBinary(t)
	dir := t.TempDir()
	if out, err := exec.Command(bin, "superuser", "upsert", pocketBaseEmail, pocketBasePassword, "--dir", dir, "--dev=false").CombinedOutput(); err != nil {
		t.Fatalf("PocketBase superuser upsert: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--http", addr, "--dir", dir, "--dev=false")
	cmd.Dir = dir
	out := newSyncBuffer()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start PocketBase: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	pb := &pocketBase{program: pocketBaseModule + " (go install)", direct: endpoint{base: "http://" + addr, pid: cmd.Process.Pid}}
	if p := os.Getenv(envPocketBase); p != "" {
		pb.program = p + " (" + envPocketBase + ")"
	}
	ctx := context.Background()
	anon := newPool(1, []endpoint{pb.direct}, nil)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := anon.send(ctx, 0, http.MethodGet, "/api/health", nil, http.StatusOK); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("PocketBase exited at start (%v):\n%s", cmd.ProcessState, tail(out.String(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("PocketBase did not answer /api/health within 30s:\n%s", tail(out.String(), 4000))
		}
	}

	signIn := func() string {
		body, err := anon.send(ctx, 0, http.MethodPost, "/api/collections/_superusers/auth-with-password",
			mustJSON(t, map[string]string{"identity": pocketBaseEmail, "password": pocketBasePassword}), http.StatusOK)
		if err != nil {
			t.Fatalf("PocketBase superuser sign-in: %v", err)
		}
		var a struct{ Token string }
		if err := json.Unmarshal(body, &a); err != nil || a.Token == "" {
			t.Fatalf("PocketBase superuser sign-in answered no token: %s", body)
		}
		return a.Token
	}
	for range clients {
		pb.auth = append(pb.auth, signIn())
	}
	admin := newPool(1, []endpoint{pb.direct}, pb.auth[:1])
	var fields []map[string]any
	for _, f := range []string{"name", "birth_date", "email", "phone", "national_id"} {
		fields = append(fields, map[string]any{"name": f, "type": "text"})
	}
	if _, err := admin.send(ctx, 0, http.MethodPost, "/api/collections", mustJSON(t, map[string]any{
		"name": pocketBaseCollection, "type": "base", "fields": fields,
		"listRule": nil, "viewRule": nil, "createRule": nil, "updateRule": nil, "deleteRule": nil,
	}), http.StatusOK); err != nil {
		t.Fatalf("PocketBase: create the collection: %v\n%s", err, out.String()[:min(len(out.String()), 3000)])
	}
	body, err := admin.send(ctx, 0, http.MethodPost, "/api/collections/"+pocketBaseCollection+"/records", mustJSON(t, newEnrolment("read", 0, 0)), http.StatusOK)
	if err != nil {
		t.Fatalf("PocketBase: create the record to read: %v", err)
	}
	var rec struct{ ID string }
	if err := json.Unmarshal(body, &rec); err != nil || rec.ID == "" {
		t.Fatalf("PocketBase: create answered no id: %s", body)
	}
	pb.recordPath = "/api/collections/" + pocketBaseCollection + "/records/" + rec.ID
	// The collection is the superuser's alone: without a token, no record.
	if _, err := anon.send(ctx, 0, http.MethodGet, pb.recordPath, nil, http.StatusForbidden); err != nil {
		t.Fatalf("PocketBase: reading without a token: %v (want 403)", err)
	}
	return pb
}

// pocketBaseBinary returns the PocketBase program to measure: $envPocketBase
// when set, else pocketBaseModule built with go install into a temporary
// folder (the Go module proxy serves it). It skips the test when the build
// fails.
func pocketBaseBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envPocketBase); p != "" {
		return p
	}
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", pocketBaseModule)
	cmd.Dir = gobin // outside this module
	// PocketBase v0.36.8 is built with the Go release it was made for:
	// built with Go 1.27 (encoding/json on its new implementation) it
	// overflows its stack decoding a collection. A baseline on the
	// machine, it faces no one.
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOWORK=off", "GOTOOLCHAIN="+pocketBaseGo)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("PocketBase rows skipped: go install %s failed (%v); set %s to a PocketBase program to use instead:\n%s",
			pocketBaseModule, err, envPocketBase, tail(string(out), 2000))
	}
	return filepath.Join(gobin, "base")
}

func pocketBaseCreates(p *pool, tag string) request {
	return request{workers: len(p.clients), servers: p.servers(), send: func(ctx context.Context, w, i int) error {
		body, err := json.Marshal(newEnrolment(tag, w, i))
		if err != nil {
			return err
		}
		_, err = p.send(ctx, w, http.MethodPost, "/api/collections/"+pocketBaseCollection+"/records", body, http.StatusOK)
		return err
	}}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// requirePostgres points the fresh databases of sqldbtest at
// CUSTODIA_TEST_POSTGRES, or at defaultPostgres when it is not set, and
// skips the test when that server does not answer.
func requirePostgres(t *testing.T) string {
	t.Helper()
	u := os.Getenv(sqldbtest.EnvPostgres)
	if u == "" {
		u = defaultPostgres
		t.Setenv(sqldbtest.EnvPostgres, u)
	}
	db, err := sql.Open("pgx", u)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
	}
	if err != nil {
		t.Skipf("PostgreSQL rows skipped: no server at %s (%v); set %s", sqldb.Redact(u), err, sqldbtest.EnvPostgres)
	}
	return u
}

// postgresSettings names the server's version and the settings that decide
// what a commit waits for.
func postgresSettings(url string) string {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return "(settings unknown)"
	}
	defer db.Close()
	var out []string
	for _, name := range []string{"server_version", "fsync", "synchronous_commit"} {
		var v string
		if err := db.QueryRowContext(context.Background(), "SHOW "+name).Scan(&v); err != nil {
			return "(settings unknown)"
		}
		out = append(out, name+" "+v)
	}
	return strings.Join(out, ", ")
}

//go:build unix

package main

// These tests run the real custodia binary as a separate process: they kill
// it, signal it, feed it bad input and read what it prints, as an operator
// or a supervisor would.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// binary is the custodia program built once for all tests of this file.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "custodia-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "make folder for the binary:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "custodia")
	build := exec.Command("go", "build", "-o", binary, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build -o %s .: %v\n%s", binary, err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// childEnv is the test's environment without any CUSTODIA_* variable, so a
// setting of the developer's shell cannot change what the binary does, plus
// extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CUSTODIA_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// syncBuffer collects a child's output and tells a waiter when it grows.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running custodia process.
type proc struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	exited chan struct{} // closed once the process has exited
}

// start runs the binary with args in dir (a fresh temporary folder when
// empty) and kills it when the test ends.
func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if env == nil {
		env = childEnv()
	}
	p := &proc{
		cmd:    exec.Command(binary, args...),
		stdout: newSyncBuffer(),
		stderr: newSyncBuffer(),
		exited: make(chan struct{}),
	}
	p.cmd.Dir = dir
	p.cmd.Env = env
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start custodia %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

func (p *proc) describe() string {
	return fmt.Sprintf("custodia %s\n--- stdout:\n%s--- stderr:\n%s",
		strings.Join(p.cmd.Args[1:], " "), p.stdout.String(), tail(p.stderr.String(), 4000))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// waitStdout waits until the process's stdout matches re and returns the
// submatches. It fails the test if the process exits first or time runs out.
func (p *proc) waitStdout(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
			return m
		}
		select {
		case <-p.stdout.changed:
		case <-p.exited:
			if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
				return m
			}
			t.Fatalf("the process exited (%v) before printing %q\n%s", p.cmd.ProcessState, re, p.describe())
		case <-deadline.C:
			t.Fatalf("no %q on stdout within %s\n%s", re, timeout, p.describe())
		}
	}
}

// wait waits for the process to exit and returns its exit code (-1 when a
// signal ended it).
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("the process did not exit within %s\n%s", timeout, p.describe())
		return 0
	}
}

var (
	servingRE     = regexp.MustCompile(`serving at (https://[^/\s]+)/`)
	fingerprintRE = regexp.MustCompile(`SHA-256 fingerprint:\n\s+((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\n`)
	loginRE       = regexp.MustCompile(`(?m)^ +(\S+) +(\S+@demo\.example) +(\S+)$`)
)

// server is a started server: its base URL and the certificate fingerprint it
// printed.
type server struct {
	*proc
	url         string
	fingerprint string
}

// serve starts `custodia serve` with a self-signed certificate and waits
// until it has printed its address and fingerprint.
func serve(t *testing.T, dir string, env []string, args ...string) *server {
	t.Helper()
	p := start(t, dir, env, append([]string{"serve"}, args...)...)
	url := p.waitStdout(t, servingRE, 20*time.Second)[1]
	fp := p.waitStdout(t, fingerprintRE, 5*time.Second)[1]
	return &server{proc: p, url: url, fingerprint: fp}
}

// demoLogins returns the printed demo accounts, role → [email, password].
func (p *proc) demoLogins() map[string][2]string {
	out := map[string][2]string{}
	for _, m := range loginRE.FindAllStringSubmatch(p.stdout.String(), -1) {
		out[m[1]] = [2]string{m[2], m[3]}
	}
	return out
}

func fingerprintOf(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// client talks to one server over HTTPS, trusting only the certificate whose
// fingerprint the server printed.
type client struct {
	base    string
	hc      *http.Client
	session string
}

func newClient(base, fingerprint string) *client {
	tr := &http.Transport{
		TLSClientConfig:     pinnedTLS(fingerprint),
		MaxIdleConnsPerHost: 8,
	}
	return &client{base: base, hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// pinnedTLS is a client's TLS configuration that trusts only the
// certificate with the given SHA-256 fingerprint.
func pinnedTLS(fingerprint string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the fingerprint pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			if got := fingerprintOf(cs.PeerCertificates[0].Raw); got != fingerprint {
				return fmt.Errorf("the server presented certificate %s, not the printed %s", got, fingerprint)
			}
			return nil
		},
	}
}

// do sends a request with an optional JSON body and returns the response
// with its body read in full.
func (c *client) do(ctx context.Context, method, path string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.session != "" {
		req.AddCookie(&http.Cookie{Name: "__Host-custodia_session", Value: c.session})
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, err
	}
	return resp, b, nil
}

func (c *client) login(t *testing.T, email, password string) {
	t.Helper()
	resp, body, err := c.do(context.Background(), "POST", "/api/v1/auth/login",
		map[string]string{"email": email, "password": password})
	if err != nil {
		t.Fatalf("sign in as %s: %v", email, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in as %s: status %d: %s", email, resp.StatusCode, body)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-custodia_session" && ck.Value != "" {
			c.session = ck.Value
			return
		}
	}
	t.Fatalf("sign in as %s: no session cookie in %v", email, resp.Header.Values("Set-Cookie"))
}

// create posts body to path, wants 201 and returns the new object's id.
func (c *client) create(ctx context.Context, path string, body any) (string, error) {
	resp, b, err := c.do(ctx, "POST", path, body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST %s: status %d: %s", path, resp.StatusCode, b)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.ID == "" {
		return "", fmt.Errorf("POST %s: 201 without an id: %q", path, b)
	}
	return out.ID, nil
}

// checkDatabaseIntegrity opens a database the server is not using and checks
// its storage: PRAGMA integrity_check for SQLite, amcheck for PostgreSQL
// (logged and skipped where the extension is not installed).
func checkDatabaseIntegrity(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatalf("open %s after the kill: %v", sqldb.Redact(url), err)
	}
	defer db.Close()
	switch db.Dialect {
	case sqldb.SQLite:
		rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
		if err != nil {
			t.Fatalf("integrity_check %s: %v", db.Location, err)
		}
		defer rows.Close()
		var report []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatalf("integrity_check %s: %v", db.Location, err)
			}
			report = append(report, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("integrity_check %s: %v", db.Location, err)
		}
		if len(report) != 1 || report[0] != "ok" {
			t.Errorf("PRAGMA integrity_check on %s after the kill: %q, want \"ok\"", db.Location, report)
		}
	case sqldb.Postgres:
		if _, err := db.ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS amcheck"); err != nil {
			t.Logf("amcheck not available on %s, index check skipped: %v", db.Location, err)
			return
		}
		rows, err := db.QueryContext(ctx, `
			SELECT c.relname, bt_index_check(c.oid, true)
			FROM pg_class c
			JOIN pg_am am ON am.oid = c.relam
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind = 'i' AND am.amname = 'btree' AND n.nspname = current_schema()`)
		if err != nil {
			t.Errorf("amcheck on %s after the kill: %v", db.Location, err)
			return
		}
		defer rows.Close()
		checked := 0
		for rows.Next() {
			checked++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("amcheck on %s after the kill: %v", db.Location, err)
		}
		if checked == 0 {
			t.Errorf("amcheck on %s found no index to check", db.Location)
		}
	}
}

// storedSites returns the ids of a study's sites as stored in the clinical
// database.
func storedSites(t *testing.T, url, studyID string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatalf("open %s: %v", sqldb.Redact(url), err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT id FROM sites WHERE study_id = $1`, studyID)
	if err != nil {
		t.Fatalf("read sites: %v", err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("read sites: %v", err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read sites: %v", err)
	}
	return ids
}

// killedRun is a server that SIGKILL ended while several clients were
// creating sites in one study.
type killedRun struct {
	clinical, identity string   // the databases' URLs
	data               string   // the data folder
	args               []string // the serve flags, to restart on the same databases
	admin              [2]string
	study              string
	sitesPath          string
	first              *server
	acked              []string // ids of the sites whose 201 reached a client
}

// killMidWrites starts `serve --demo` on fresh databases of dialect d, makes
// a study, lets four clients create sites in it until enough are
// acknowledged or time is up, and kills the server with SIGKILL while they
// are still writing.
func killMidWrites(t *testing.T, d sqldb.Dialect) *killedRun {
	t.Helper()
	k := &killedRun{
		clinical: sqldbtest.URL(t, d),
		identity: sqldbtest.URL(t, d),
		data:     filepath.Join(t.TempDir(), "data"),
	}
	k.args = []string{"--demo", "--addr", "127.0.0.1:0", "--data", k.data,
		"--database", k.clinical, "--identity-database", k.identity}

	first := serve(t, "", nil, k.args...)
	k.first = first
	admin, ok := first.demoLogins()["org-admin"]
	if !ok {
		t.Fatalf("no org-admin login printed\n%s", first.describe())
	}
	k.admin = admin
	c := newClient(first.url, first.fingerprint)
	c.login(t, admin[0], admin[1])
	ctx := context.Background()
	study, err := c.create(ctx, "/api/v1/orgs/demo/studies", map[string]string{"kind": "study", "name": "Kill Test"})
	if err != nil {
		t.Fatal(err)
	}
	k.study = study
	k.sitesPath = "/api/v1/orgs/demo/studies/" + study + "/sites"

	const (
		writers   = 4
		enough    = 400
		writeTime = 1500 * time.Millisecond
	)
	var (
		mu        sync.Mutex
		acked     []string
		attempts  int
		killed    bool
		earlyErrs []error
		wg        sync.WaitGroup
	)
	progress := make(chan struct{}, 1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				mu.Lock()
				stop := killed
				if !stop {
					attempts++
				}
				mu.Unlock()
				if stop {
					return
				}
				id, err := c.create(ctx, k.sitesPath, map[string]string{"name": fmt.Sprintf("Site %d-%d", w, i)})
				mu.Lock()
				if err == nil {
					acked = append(acked, id)
				} else if !killed {
					earlyErrs = append(earlyErrs, err)
				}
				stop = killed || err != nil
				mu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
				if stop {
					return
				}
			}
		}()
	}

	deadline := time.After(writeTime)
writing:
	for {
		select {
		case <-deadline:
			break writing
		case <-progress:
			mu.Lock()
			n, failed := len(acked), len(earlyErrs) > 0
			mu.Unlock()
			if n >= enough || failed {
				break writing
			}
		}
	}
	mu.Lock()
	killed = true
	mu.Unlock()
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	first.wait(t, 10*time.Second)
	wg.Wait()
	if ws, ok := first.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the server was not ended by SIGKILL: %v", first.cmd.ProcessState)
	}
	for _, err := range earlyErrs {
		t.Errorf("a write failed before the kill: %v", err)
	}
	if len(acked) < 10 {
		t.Fatalf("only %d writes were acknowledged before the kill; too few to prove anything", len(acked))
	}
	t.Logf("%s: %d writes acknowledged, %d in flight at the kill", d, len(acked), attempts-len(acked))
	k.acked = acked
	return k
}

// TestAVL03_KilledServerKeepsEveryAcknowledgedWrite kills the server with
// SIGKILL while several clients are writing, restarts it on the same
// databases and checks that every write whose 201 reached a client is there,
// and that the databases are intact.
func TestAVL03_KilledServerKeepsEveryAcknowledgedWrite(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		k := killMidWrites(t, d)
		clinical, identity, args := k.clinical, k.identity, k.args
		first, admin, acked, sitesPath := k.first, k.admin, k.acked, k.sitesPath
		ctx := context.Background()

		// The files and tables as the killed process left them.
		checkDatabaseIntegrity(t, clinical)
		checkDatabaseIntegrity(t, identity)
		stored := storedSites(t, clinical, k.study)
		var missing []string
		for _, id := range acked {
			if !stored[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%d of %d acknowledged sites are not in the clinical database after the kill: %s",
				len(missing), len(acked), strings.Join(missing, ", "))
		}

		// The restarted server serves them all, to the same account.
		second := serve(t, "", nil, args...)
		if !strings.Contains(second.stdout.String(), "exists already") {
			t.Errorf("the restart did not say that the demo organization exists\n%s", second.describe())
		}
		if n := len(second.demoLogins()); n != 0 {
			t.Errorf("the restart printed %d new demo logins\n%s", n, second.describe())
		}
		if second.fingerprint != first.fingerprint {
			t.Errorf("the restart presents certificate %s, not %s as before the kill", second.fingerprint, first.fingerprint)
		}
		c2 := newClient(second.url, second.fingerprint)
		c2.login(t, admin[0], admin[1])

		type result struct {
			id     string
			status string
		}
		jobs := make(chan string)
		results := make(chan result)
		for range 4 {
			go func() {
				for id := range jobs {
					resp, body, err := c2.do(ctx, "GET", sitesPath+"/"+id, nil)
					switch {
					case err != nil:
						results <- result{id, err.Error()}
					case resp.StatusCode != http.StatusOK:
						results <- result{id, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))}
					default:
						results <- result{id, ""}
					}
				}
			}()
		}
		go func() {
			for _, id := range acked {
				jobs <- id
			}
			close(jobs)
		}()
		var lost []string
		for range acked {
			if r := <-results; r.status != "" {
				lost = append(lost, r.id+" ("+r.status+")")
			}
		}
		if len(lost) > 0 {
			slices.Sort(lost)
			t.Fatalf("%d of %d acknowledged writes are lost after SIGKILL and restart (%s):\n  %s",
				len(lost), len(acked), d, strings.Join(lost, "\n  "))
		}
	})
}

// writeCert writes a certificate and its key as PEM files into dir. With a
// nil parent the certificate signs itself.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certPath, keyPath string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath = filepath.Join(dir, name+".crt")
	keyPath = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, cert, key
}

func leafTemplate(serial int64, cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
}

// selfSignedPair writes a self-signed server certificate and key.
func selfSignedPair(t *testing.T) (certPath, keyPath string) {
	certPath, keyPath, _, _ = writeCert(t, t.TempDir(), "self", leafTemplate(1, "localhost"), nil, nil)
	return certPath, keyPath
}

// refusal is how a command that must refuse to start ended.
type refusal struct {
	code   int
	stdout string
	stderr string
}

// refuse runs the binary in a fresh working folder, wants it to exit
// non-zero within timeout with exactly one line on stderr of the form
// "custodia: …" and no trace of a panic, and checks that neither the working
// folder nor the given data folder (when not empty) was written.
func refuse(t *testing.T, data string, timeout time.Duration, args ...string) refusal {
	t.Helper()
	wd := t.TempDir()
	began := time.Now()
	p := start(t, wd, nil, args...)
	code := p.wait(t, timeout)
	r := refusal{code: code, stdout: p.stdout.String(), stderr: p.stderr.String()}
	if code == 0 {
		t.Errorf("custodia %s exited 0, want a refusal\n%s", strings.Join(args, " "), p.describe())
	}
	if code < 0 {
		t.Errorf("custodia %s was ended by a signal: %v\n%s", strings.Join(args, " "), p.cmd.ProcessState, p.describe())
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "custodia: ") || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("custodia %s: stderr is not exactly one line \"custodia: …\":\n%s", strings.Join(args, " "), r.stderr)
	}
	for _, bad := range []string{"panic:", "goroutine ", "runtime error", ".go:"} {
		if strings.Contains(r.stderr, bad) || strings.Contains(r.stdout, bad) {
			t.Errorf("custodia %s printed %q, a sign of a crash:\n%s", strings.Join(args, " "), bad, p.describe())
		}
	}
	// A flag the parser rejects makes it print the command's usage; nothing
	// else belongs on stdout when the command refuses to start.
	if r.stdout != "" && !strings.HasPrefix(r.stdout, "Usage: custodia ") {
		t.Errorf("custodia %s printed on stdout while refusing:\n%s", strings.Join(args, " "), r.stdout)
	}
	if data != "" {
		if _, err := os.Lstat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("custodia %s refused but the data folder %s exists now (err %v)", strings.Join(args, " "), data, err)
		}
	}
	if entries, _ := os.ReadDir(wd); len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("custodia %s refused but wrote into its working folder: %s", strings.Join(args, " "), strings.Join(names, ", "))
	}
	t.Logf("custodia %s → exit %d in %s: %s", strings.Join(args, " "), code, time.Since(began).Round(time.Millisecond), strings.TrimSpace(r.stderr))
	return r
}

// nonLoopbackIP returns an address of this machine that is not loopback, so
// a PostgreSQL URL naming it counts as remote, or nil if there is none.
func nonLoopbackIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	return nil
}

// TestOPS01_ProductionRefusesSelfSignedCertificate checks that --env
// production refuses insecure settings before it writes or connects
// anywhere, naming the setting, and that it starts with a certificate issued
// by a certificate authority.
func TestOPS01_ProductionRefusesSelfSignedCertificate(t *testing.T) {
	selfCert, selfKey := selfSignedPair(t)
	quick := 10 * time.Second
	want := func(t *testing.T, r refusal, parts ...string) {
		t.Helper()
		if !strings.HasPrefix(r.stderr, "custodia: serve: ") {
			t.Errorf("stderr %q does not start with \"custodia: serve: \"", r.stderr)
		}
		for _, p := range parts {
			if !strings.Contains(r.stderr, p) {
				t.Errorf("stderr %q does not name %q", r.stderr, p)
			}
		}
	}

	t.Run("no certificate", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		r := refuse(t, data, quick, "serve", "--env", "production", "--addr", "127.0.0.1:0", "--data", data)
		want(t, r, "production", "self-signed certificate", "--tls-cert")
	})
	t.Run("self-signed certificate", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		r := refuse(t, data, quick, "serve", "--env", "production", "--addr", "127.0.0.1:0", "--data", data,
			"--tls-cert", selfCert, "--tls-key", selfKey, "--allow-local-kek", "--public-url", "https://localhost")
		want(t, r, "production", "self-signed", selfCert)
	})
	t.Run("key file without consent", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		r := refuse(t, data, quick, "serve", "--env", "production", "--addr", "127.0.0.1:0", "--data", data,
			"--tls-cert", selfCert, "--tls-key", selfKey)
		want(t, r, "production", "--kek local", "--allow-local-kek")
	})
	t.Run("no public URL", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		r := refuse(t, data, quick, "serve", "--env", "production", "--addr", "127.0.0.1:0", "--data", data,
			"--tls-cert", selfCert, "--tls-key", selfKey, "--allow-local-kek")
		want(t, r, "production", "--public-url")
	})
	t.Run("demo", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		r := refuse(t, data, quick, "serve", "--env", "production", "--demo", "--addr", "127.0.0.1:0", "--data", data,
			"--tls-cert", selfCert, "--tls-key", selfKey)
		want(t, r, "production", "--demo")
	})
	for _, flag := range []string{"--database", "--identity-database"} {
		t.Run("remote "+flag+" without verify-full", func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			r := refuse(t, data, quick, "serve", "--env", "production", "--addr", "127.0.0.1:0", "--data", data,
				"--tls-cert", selfCert, "--tls-key", selfKey, flag, "postgres://u@db.example.org/x")
			want(t, r, "production", flag, "db.example.org", "sslmode=verify-full")
		})
	}
	t.Run("remote database is not contacted", func(t *testing.T) {
		ip := nonLoopbackIP()
		if ip == nil {
			t.Skip("this machine has no non-loopback address to stand in for a remote database")
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			t.Skipf("cannot listen on %s: %v", ip, err)
		}
		defer ln.Close()
		contacted := make(chan string, 1)
		go func() {
			if conn, err := ln.Accept(); err == nil {
				contacted <- conn.RemoteAddr().String()
				conn.Close()
			}
		}()
		data := filepath.Join(t.TempDir(), "data")
		dbURL := "postgres://u@" + ln.Addr().String() + "/x?sslmode=require"
		r := refuse(t, data, quick, "serve", "--env", "production", "--addr", "127.0.0.1:0", "--data", data,
			"--tls-cert", selfCert, "--tls-key", selfKey, "--database", dbURL)
		want(t, r, "--database", "sslmode=verify-full")
		select {
		case from := <-contacted:
			t.Errorf("the refused server connected to the database address %s (from %s)", ln.Addr(), from)
		case <-time.After(200 * time.Millisecond):
		}
	})
	t.Run("certificate from an authority is accepted", func(t *testing.T) {
		dir := t.TempDir()
		caTmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(10),
			Subject:               pkix.Name{CommonName: "Custodia Test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		_, _, ca, caKey := writeCert(t, dir, "ca", caTmpl, nil, nil)
		certPath, keyPath, _, _ := writeCert(t, dir, "server", leafTemplate(11, "localhost"), ca, caKey)
		data := filepath.Join(dir, "data")
		p := start(t, "", nil, "serve", "--env", "production", "--addr", "127.0.0.1:0", "--data", data,
			"--tls-cert", certPath, "--tls-key", keyPath, "--allow-local-kek", "--public-url", "https://localhost")
		url := p.waitStdout(t, servingRE, 20*time.Second)[1]
		if strings.Contains(p.stdout.String(), "fingerprint") {
			t.Errorf("the server speaks of a self-signed certificate although it was given one:\n%s", p.describe())
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		hc := &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		}
		resp, err := hc.Get(url + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz with the authority's certificate verified: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz: %d", resp.StatusCode)
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 10*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM\n%s", code, p.describe())
		}
	})
}

// TestServeFailsCleanlyOnBadInput checks that bad settings end the process
// with one line naming the problem, no crash, and nothing written.
func TestServeFailsCleanlyOnBadInput(t *testing.T) {
	occupied, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer occupied.Close()

	tmp := t.TempDir()
	_, goodKey := selfSignedPair(t)
	corruptCert := filepath.Join(tmp, "corrupt.crt")
	if err := os.WriteFile(corruptCert, []byte("-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(tmp, "notpem.crt")
	if err := os.WriteFile(notPEM, []byte("hello\x00\xff"), 0o644); err != nil {
		t.Fatal(err)
	}
	regularFile := filepath.Join(tmp, "file")
	if err := os.WriteFile(regularFile, []byte("a file, not a folder\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		args  []string
		want  []string
		fresh bool // pass a fresh --data folder and check it stays absent
	}{
		{"unknown flag", []string{"--no-such-flag"}, []string{"no-such-flag"}, true},
		{"positional argument", []string{"extra"}, []string{`"extra"`}, true},
		{"unknown environment", []string{"--env", "staging"}, []string{"--env", "staging"}, true},
		{"mysql database", []string{"--database", "mysql://x"}, []string{"--database", "mysql://x"}, true},
		{"postgres port not a number", []string{"--database", "postgres://u@h:notaport/db"}, []string{"--database"}, true},
		{"same database twice", []string{"--database", "sqlite:" + filepath.Join(tmp, "one.db"), "--identity-database", "sqlite:" + filepath.Join(tmp, "one.db")}, []string{"--identity-database"}, true},
		{"port in use", []string{"--addr", occupied.Addr().String()}, []string{occupied.Addr().String(), "in use"}, true},
		{"bad address", []string{"--addr", "no-port"}, []string{"--addr"}, true},
		{"corrupt certificate", []string{"--tls-cert", corruptCert, "--tls-key", goodKey}, []string{corruptCert, "corrupt"}, true},
		{"certificate not PEM", []string{"--tls-cert", notPEM, "--tls-key", goodKey}, []string{notPEM}, true},
		{"missing certificate file", []string{"--tls-cert", filepath.Join(tmp, "absent.crt"), "--tls-key", goodKey}, []string{"absent.crt", "does not exist"}, true},
		{"certificate without key", []string{"--tls-cert", corruptCert}, []string{"--tls-key"}, true},
		{"data folder under a file", []string{"--data", filepath.Join(regularFile, "data")}, []string{filepath.Join(regularFile, "data")}, false},
		{"data folder is a file", []string{"--data", regularFile}, []string{regularFile, "not a folder"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve"}, tc.args...)
			if !slices.Contains(tc.args, "--addr") {
				args = append(args, "--addr", "127.0.0.1:0")
			}
			data := ""
			if tc.fresh {
				data = filepath.Join(t.TempDir(), "data")
				args = append(args, "--data", data)
			}
			r := refuse(t, data, 10*time.Second, args...)
			if !strings.HasPrefix(r.stderr, "custodia: serve: ") {
				t.Errorf("stderr %q does not start with \"custodia: serve: \"", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not name %q", r.stderr, w)
				}
			}
		})
	}
	if b, err := os.ReadFile(regularFile); err != nil || string(b) != "a file, not a folder\n" {
		t.Errorf("the regular file standing in the data folder's way was changed: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "one.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start created %s", filepath.Join(tmp, "one.db"))
	}
}

// TestServeGracefulShutdownOnSIGTERM checks that SIGTERM stops a serving
// process promptly with exit status 0, as supervisors expect.
func TestServeGracefulShutdownOnSIGTERM(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := serve(t, "", nil, "--addr", "127.0.0.1:0", "--data", data)
	c := newClient(s.url, s.fingerprint)
	ready := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, _, err := c.do(context.Background(), "GET", "/healthz", nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatalf("/healthz did not answer 200\n%s", s.describe())
	}
	began := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := s.wait(t, 5*time.Second)
	took := time.Since(began)
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, s.describe())
	}
	if !strings.Contains(s.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no \"stopped\" log line after SIGTERM\n%s", s.describe())
	}
	t.Logf("stopped %s after SIGTERM", took.Round(time.Millisecond))
	if _, _, err := c.do(context.Background(), "GET", "/healthz", nil); err == nil {
		t.Errorf("the server still answers after it exited")
	}
}

// TestREADMEDemoCommandServes runs what the README tells a newcomer to run,
// `custodia serve --demo`, in an empty folder, and checks what it promises:
// an address, the certificate's fingerprint and eight working logins.
func TestREADMEDemoCommandServes(t *testing.T) {
	wd := t.TempDir()
	// Only the port moves, through the environment, so the command line stays
	// the README's and a busy 8443 on this machine cannot fail the test.
	s := serve(t, wd, childEnv("CUSTODIA_ADDR=127.0.0.1:0"), "--demo")
	// localhost, not 127.0.0.1: passkeys need a host name, and browsers
	// treat localhost as secure.
	if !strings.HasPrefix(s.url, "https://localhost:") {
		t.Errorf("printed address %s, want https://localhost:PORT", s.url)
	}
	if strings.Contains(s.stderr.String(), "passkeys are unavailable") {
		t.Errorf("passkeys are off on a newcomer's server:\n%s", s.describe())
	}
	if fi, err := os.Stat(filepath.Join(wd, "custodia-data")); err != nil || !fi.IsDir() {
		t.Errorf("no custodia-data folder in the working folder: %v", err)
	}

	logins := s.demoLogins()
	wantRoles := []string{"org-admin", "org-manager", "study-admin", "data-manager",
		"site-investigator", "monitor", "care-provider", "participant"}
	if len(logins) != len(wantRoles) {
		t.Errorf("printed %d logins, want %d\n%s", len(logins), len(wantRoles), s.describe())
	}
	for _, r := range wantRoles {
		if _, ok := logins[r]; !ok {
			t.Errorf("no login printed for role %s", r)
		}
	}

	// Plain TLS without pinning: this test compares the fingerprint itself.
	hc := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	resp, err := hc.Get(s.url + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /: status %d, want 200", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); csp == "" {
		t.Errorf("GET /: no Content-Security-Policy header")
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("GET /: no TLS certificate seen")
	}
	if got := fingerprintOf(resp.TLS.PeerCertificates[0].Raw); got != s.fingerprint {
		t.Errorf("the server presents certificate %s, but printed the fingerprint %s", got, s.fingerprint)
	}

	// Every printed login works.
	for _, role := range wantRoles {
		l, ok := logins[role]
		if !ok {
			continue
		}
		c := newClient(s.url, s.fingerprint)
		c.login(t, l[0], l[1])
	}
}

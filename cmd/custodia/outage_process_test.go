//go:build linux

package main

// These tests drill the faults that must fail closed with the real binary:
// a disk that takes no more writes, database sessions cut under a running
// server, a key file lost between two starts, and commands pointed at a
// folder that holds no instance.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// limitFileSize sets the soft limit on the size of files that process pid
// may write (RLIMIT_FSIZE) to n bytes, or lifts it with n < 0. With n = 1
// every write past a file's first byte fails with EFBIG, as on a disk that
// is full; Go ignores the SIGXFSZ that comes with it.
func limitFileSize(t *testing.T, pid int, n int64) {
	t.Helper()
	var old syscall.Rlimit
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE, 0, uintptr(unsafe.Pointer(&old)), 0, 0); e != 0 {
		t.Fatalf("read the file size limit of %d: %v", pid, e)
	}
	lim := syscall.Rlimit{Cur: old.Max, Max: old.Max}
	if n >= 0 {
		lim.Cur = uint64(n)
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_FSIZE, uintptr(unsafe.Pointer(&lim)), 0, 0, 0); e != 0 {
		t.Fatalf("set the file size limit of %d: %v", pid, e)
	}
}

// status sends a request and returns its status, or fails the test.
func status(t *testing.T, c *client, method, path string, body any) int {
	t.Helper()
	resp, _, err := c.do(context.Background(), method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode
}

// TestAVL05_FullDiskFailsWritesAndReadiness: with a disk that takes no
// more writes, a change answers 503 (never 500 or success), /readyz stops
// answering 200 although the database still answers reads, the audit
// sequencer's failures are logged as errors, and all recovers once the
// disk takes writes again.
func TestAVL05_FullDiskFailsWritesAndReadiness(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := serve(t, "", nil, "--demo", "--addr", "127.0.0.1:0", "--data", data)
	admin := s.demoLogins()["org-admin"]
	c := newClient(s.url, s.fingerprint)
	c.login(t, admin[0], admin[1])
	ctx := context.Background()
	if _, err := c.create(ctx, "/api/v1/orgs/demo/studies", map[string]string{"kind": "study", "name": "Before"}); err != nil {
		t.Fatal(err)
	}
	if got := status(t, c, "GET", "/readyz", nil); got != http.StatusOK {
		t.Fatalf("/readyz before the disk filled: %d", got)
	}

	limitFileSize(t, s.cmd.Process.Pid, 1)
	for i := range 3 {
		resp, body, err := c.do(ctx, "POST", "/api/v1/orgs/demo/studies", map[string]string{"kind": "study", "name": fmt.Sprintf("Full %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("a change on a full disk answered %d %s, want 503", resp.StatusCode, body)
		}
	}
	if got := status(t, c, "GET", "/readyz", nil); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz while every write fails: %d, want 503", got)
	}
	failed := regexp.MustCompile(`"level":"ERROR","msg":"audit sequencer"`)
	for deadline := time.Now().Add(10 * time.Second); !failed.MatchString(s.stderr.String()); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no audit sequencer failure logged as an error\n%s", s.describe())
			break
		}
	}
	if strings.Contains(s.stderr.String(), `"level":"INFO","msg":"audit sequencer","detail":"audit sequencer: lease`) {
		t.Errorf("an audit sequencer failure was logged as information\n%s", s.describe())
	}

	limitFileSize(t, s.cmd.Process.Pid, -1)
	if _, err := c.create(ctx, "/api/v1/orgs/demo/studies", map[string]string{"kind": "study", "name": "After"}); err != nil {
		t.Fatalf("a change once the disk takes writes again: %v", err)
	}
	if got := status(t, c, "GET", "/readyz", nil); got != http.StatusOK {
		t.Errorf("/readyz once writes succeed again: %d, want 200", got)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("serve exited %d\n%s", code, s.describe())
	}
	verifyOK(t, "--data", data)
}

// TestAVL05_CutDatabaseSessionsAnswer503: PostgreSQL sessions of a running
// server cut by pg_terminate_backend (SQLSTATE 57P01) fail the requests
// that meet them with 503, never 500, and the server serves again after.
func TestAVL05_CutDatabaseSessionsAnswer503(t *testing.T) {
	clinical, identity := sqldbtest.URL(t, sqldb.Postgres), sqldbtest.URL(t, sqldb.Postgres)
	s := serve(t, "", nil, "--demo", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data"),
		"--database", clinical, "--identity-database", identity)
	admin := s.demoLogins()["org-admin"]
	c := newClient(s.url, s.fingerprint)
	c.login(t, admin[0], admin[1])
	for range 4 {
		if got := status(t, c, "GET", "/api/v1/orgs/demo/studies", nil); got != http.StatusOK {
			t.Fatalf("list studies: %d", got)
		}
	}
	db := openDB(t, sqldbtest.RequirePostgres(t))
	name := clinical[strings.LastIndex(clinical, "/")+1:]
	name, _, _ = strings.Cut(name, "?")
	var cut int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1`, name).Scan(&cut); err != nil || cut == 0 {
		t.Fatalf("cut the sessions of %s: %d, %v", name, cut, err)
	}
	// Each cut session fails the one request that meets it, and the
	// server's pools held several: the requests go on until one is served,
	// within a bound that only a server which never recovers reaches.
	unavailable, served := 0, false
	for i := 0; i < 60 && !served; i++ {
		switch got := status(t, c, "GET", "/api/v1/orgs/demo/studies", nil); got {
		case http.StatusOK:
			served = true
		case http.StatusServiceUnavailable:
			unavailable++
		default:
			t.Errorf("a request meeting a cut session answered %d, want 503 (or 200 on a fresh session)", got)
		}
	}
	t.Logf("%d requests met a cut session", unavailable)
	if unavailable == 0 {
		t.Errorf("no request met a cut session; the drill proved nothing")
	}
	if !served {
		t.Fatalf("no request was served in 60 after the cut\n%s", s.describe())
	}
	if got := status(t, c, "GET", "/api/v1/orgs/demo/studies", nil); got != http.StatusOK {
		t.Errorf("after the cut: %d, want 200", got)
	}
}

// TestCRY04_KeyFileLostWhileRunningIsRefusedAtRestart: the local key file
// removed under a running server fails readiness; the restarted server
// refuses to start, naming the version and the file, makes no new key,
// and starts again once the file is restored, every value opening.
func TestCRY04_KeyFileLostWhileRunningIsRefusedAtRestart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--addr", "127.0.0.1:0", "--data", data}
	s := serve(t, "", nil, append([]string{"--demo"}, args...)...)
	admin := s.demoLogins()["org-admin"]
	c := newClient(s.url, s.fingerprint)
	c.login(t, admin[0], admin[1])
	ctx := context.Background()
	study, err := c.create(ctx, "/api/v1/orgs/demo/studies", map[string]string{"kind": "study", "name": "Keys"})
	if err != nil {
		t.Fatal(err)
	}
	site, err := c.create(ctx, "/api/v1/orgs/demo/studies/"+study+"/sites", map[string]string{"name": "North"})
	if err != nil {
		t.Fatal(err)
	}
	participants := "/api/v1/orgs/demo/studies/" + study + "/sites/" + site + "/participants"
	resp, body, err := c.do(ctx, "POST", participants, map[string]string{"name": "Ada Lovelace"})
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("enrol: %v %v %s", resp, err, body)
	}
	keyFile := filepath.Join(data, "keys", "kek.key")
	saved, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if got := status(t, c, "GET", "/readyz", nil); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the key file gone: %d, want 503", got)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.wait(t, 30*time.Second)

	r := refuse(t, "", 20*time.Second, append([]string{"serve"}, args...)...)
	for _, want := range []string{keyFile + " is missing", "wrapped by key-encryption key version local:", "restore"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the refusal does not say %q: %s", want, r.stderr)
		}
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a new key file was made in place of the lost one (%v)", err)
	}

	if err := os.WriteFile(keyFile, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	s = serve(t, "", nil, args...)
	c = newClient(s.url, s.fingerprint)
	c.login(t, admin[0], admin[1])
	resp, body, err = c.do(ctx, "GET", participants, nil)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"identity":"recorded"`) {
		t.Fatalf("list after the restore: %v %v %s", resp, err, body)
	}
	resp, body, err = c.do(ctx, "POST", participants, map[string]string{"name": "Grace Hopper"})
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Errorf("enrol after the restore: %v %v %s", resp, err, body)
	}
}

// TestWEB05_CommandsOnAFolderWithoutInstanceWriteNothing: every command
// but serve, init and migrate refuses, with one line naming the place, a
// data folder that does not exist or holds no instance, and writes nothing
// there.
func TestWEB05_CommandsOnAFolderWithoutInstanceWriteNothing(t *testing.T) {
	typo := filepath.Join(t.TempDir(), "typo")
	for _, args := range [][]string{
		{"keys", "status"},
		{"user", "unlock", "--org", "demo", "--email", "someone@demo.example"},
		{"user", "add", "--org", "demo", "--email", "someone@demo.example", "--role", "monitor"},
		{"audit", "verify"},
		{"audit", "checkpoint"},
	} {
		r := refuse(t, typo, 20*time.Second, append(args, "--data", typo)...)
		if !strings.Contains(r.stderr, "no Custodia instance at "+typo) {
			t.Errorf("custodia %s: the refusal does not name %s: %s", strings.Join(args, " "), typo, r.stderr)
		}
	}
	empty := t.TempDir()
	for _, args := range [][]string{{"keys", "status"}, {"audit", "verify"}} {
		r := refuse(t, "", 20*time.Second, append(args, "--data", empty)...)
		if !strings.Contains(r.stderr, "clinical.db is missing or empty") {
			t.Errorf("custodia %s on an empty folder: %s", strings.Join(args, " "), r.stderr)
		}
		if entries, _ := os.ReadDir(empty); len(entries) > 0 {
			t.Errorf("custodia %s refused but wrote into %s", strings.Join(args, " "), empty)
		}
	}
}

//go:build unix

package sqldb_test

// Control CRY-02: connections to PostgreSQL honour sslmode=verify-full. The
// tests run throwaway PostgreSQL clusters of their own with TLS switched on
// and server certificates issued by a CA generated here, and connect through
// sqldb.Open like production code does.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
)

const (
	// envPGBinDir names the variable holding the folder with initdb and pg_ctl.
	envPGBinDir = "CUSTODIA_TEST_PG_BINDIR"
	// envPGTmpDir names the variable holding the folder the test clusters are
	// made in (default: the system's temporary folder). scripts/test points
	// it into a folder of its own, where it stops whatever a run cut short
	// left behind.
	envPGTmpDir = "CUSTODIA_TEST_PG_TMPDIR"
)

func TestCRY02_VerifyFullAcceptsServerWithTrustedCertificate(t *testing.T) {
	t.Parallel()
	srv := acquireTLSTestServer(t, certForLocalhost)

	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			ctx := context.Background()
			db, err := sqldb.Open(ctx, srv.url(host, "verify-full", srv.caFile))
			if err != nil {
				t.Fatalf("verify-full against a server with a trusted certificate for %s: %v", host, err)
			}
			defer db.Close()
			var ssl bool
			var version string
			err = db.QueryRowContext(ctx,
				"SELECT ssl, COALESCE(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version)
			if err != nil {
				t.Fatalf("query over verify-full connection: %v", err)
			}
			if !ssl {
				t.Fatal("pg_stat_ssl says the connection is not encrypted")
			}
			if !strings.HasPrefix(version, "TLSv1.2") && !strings.HasPrefix(version, "TLSv1.3") {
				t.Fatalf("connection uses %q, want TLS 1.2 or newer", version)
			}
		})
	}
}

func TestCRY02_VerifyFullRefusesCertificateForWrongHost(t *testing.T) {
	t.Parallel()
	srv := acquireTLSTestServer(t, certForWrongHost)
	ctx := context.Background()

	// The chain itself is trusted: verify-ca, which skips the host name check,
	// gets through. So the refusal below is about the host name alone.
	db, err := sqldb.Open(ctx, srv.url("localhost", "verify-ca", srv.caFile))
	if err != nil {
		t.Fatalf("verify-ca against the wrong-host certificate should connect: %v", err)
	}
	db.Close()

	db, err = sqldb.Open(ctx, srv.url("localhost", "verify-full", srv.caFile))
	if err == nil {
		db.Close()
		t.Fatal("verify-full accepted a certificate issued for db.wrong.example when connecting to localhost")
	}
	if msg := err.Error(); !strings.Contains(msg, "certificate") || !strings.Contains(msg, "db.wrong.example") {
		t.Fatalf("error does not explain the host name mismatch: %v", err)
	}
	t.Logf("refused as required: %v", err)
}

func TestCRY02_VerifyFullRefusesUntrustedCA(t *testing.T) {
	t.Parallel()
	srv := acquireTLSTestServer(t, certForLocalhost)
	other, err := newTestCA("Custodia CRY-02 unrelated CA")
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "unrelated-ca.pem")
	if err := os.WriteFile(otherFile, other.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	db, err := sqldb.Open(ctx, srv.url("localhost", "verify-full", otherFile))
	if err == nil {
		db.Close()
		t.Fatal("verify-full accepted a server certificate from a CA that sslrootcert does not name")
	}
	if msg := err.Error(); !strings.Contains(msg, "certificate signed by unknown authority") {
		t.Fatalf("error does not explain the untrusted issuer: %v", err)
	}
	t.Logf("refused as required: %v", err)

	db, err = sqldb.Open(ctx, srv.url("localhost", "verify-full", srv.caFile))
	if err != nil {
		t.Fatalf("same server with its own CA trusted should connect: %v", err)
	}
	db.Close()
}

func TestCRY02_PostgresRefusesPlainConnectionWhenHBARequiresTLS(t *testing.T) {
	t.Parallel()
	srv := acquireTLSTestServer(t, certForLocalhost)
	ctx := context.Background()

	db, err := sqldb.Open(ctx, srv.url("localhost", "disable", ""))
	if err == nil {
		db.Close()
		t.Fatal("server accepted a connection without TLS")
	}
	if msg := err.Error(); !strings.Contains(msg, "no pg_hba.conf entry") || !strings.Contains(msg, "no encryption") {
		t.Fatalf("plain connection failed for another reason than the hostssl rule: %v", err)
	}
	t.Logf("refused as required: %v", err)

	db, err = sqldb.Open(ctx, srv.url("localhost", "verify-full", srv.caFile))
	if err != nil {
		t.Fatalf("same server over verify-full should connect: %v", err)
	}
	db.Close()
}

// tlsCertKind says which host names a test server's certificate names.
type tlsCertKind string

const (
	// certForLocalhost is valid for localhost and 127.0.0.1.
	certForLocalhost tlsCertKind = "localhost"
	// certForWrongHost is valid for db.wrong.example only.
	certForWrongHost tlsCertKind = "wrong-host"
)

// tlsTestServer is a running TLS-only cluster and the CA that issued its
// certificate.
type tlsTestServer struct {
	*tlsTestCluster
	caFile string // the CA certificate in PEM, as sslrootcert takes it
}

// sharedTLSServers holds at most one running server per certificate kind.
// Tests running at the same time share it; the last one to finish stops it.
// Starting a cluster costs about a second, so the tests start two, not four.
var sharedTLSServers = struct {
	sync.Mutex
	m map[tlsCertKind]*sharedTLSServer
}{m: map[tlsCertKind]*sharedTLSServer{}}

type sharedTLSServer struct {
	ready chan struct{} // closed once srv or err is set
	srv   *tlsTestServer
	err   error
	users int
}

// acquireTLSTestServer returns a running server whose certificate is of the
// given kind, started if no other running test holds one.
func acquireTLSTestServer(t *testing.T, kind tlsCertKind) *tlsTestServer {
	t.Helper()
	bin := pgServerBinDir(t)
	account := lookupPGServerAccount(t)

	sharedTLSServers.Lock()
	s := sharedTLSServers.m[kind]
	starter := s == nil
	if starter {
		s = &sharedTLSServer{ready: make(chan struct{})}
		sharedTLSServers.m[kind] = s
	}
	s.users++
	sharedTLSServers.Unlock()

	t.Cleanup(func() {
		<-s.ready
		sharedTLSServers.Lock()
		s.users--
		last := s.users == 0
		if last {
			delete(sharedTLSServers.m, kind)
		}
		sharedTLSServers.Unlock()
		if last && s.srv != nil {
			if err := s.srv.stop(); err != nil {
				t.Errorf("stop PostgreSQL: %v", err)
			}
		}
	})

	if starter {
		s.srv, s.err = startTLSTestServer(bin, account, kind)
		close(s.ready)
	}
	<-s.ready
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.srv
}

// startTLSTestServer makes a CA and a server certificate of the given kind
// and starts a cluster serving it.
func startTLSTestServer(bin string, account pgServerAccount, kind tlsCertKind) (*tlsTestServer, error) {
	ca, err := newTestCA("Custodia CRY-02 test CA")
	if err != nil {
		return nil, err
	}
	var pair serverCertPair
	switch kind {
	case certForLocalhost:
		pair, err = ca.issueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	case certForWrongHost:
		pair, err = ca.issueServerCert([]string{"db.wrong.example"}, nil)
	default:
		err = fmt.Errorf("unknown certificate kind %q", kind)
	}
	if err != nil {
		return nil, err
	}
	c, err := startTLSTestCluster(bin, account, pair)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(c.dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.certPEM, 0o644); err != nil {
		return nil, errors.Join(err, c.stop())
	}
	return &tlsTestServer{tlsTestCluster: c, caFile: caFile}, nil
}

// requireOrSkip skips the test, or fails it under CI=true: CI must never
// pass by skipping.
func requireOrSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the TLS tests must run)")
	}
	t.Skip(msg)
}

// pgServerBinDir returns the folder holding the PostgreSQL server programs:
// CUSTODIA_TEST_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin.
func pgServerBinDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv(envPGBinDir); dir != "" {
		for _, prog := range []string{"initdb", "pg_ctl"} {
			if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
				t.Fatalf("%s=%s: %v", envPGBinDir, dir, err)
			}
		}
		return dir
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		requireOrSkip(t, "no PostgreSQL server programs found (set %s or install Debian's postgresql package)", envPGBinDir)
	}
	major := func(p string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return n
	}
	sort.Slice(found, func(i, j int) bool { return major(found[i]) < major(found[j]) })
	return filepath.Dir(found[len(found)-1])
}

// pgServerAccount is the OS account a test cluster runs as. PostgreSQL
// refuses to run as root, so a root test runs it as the "postgres" user.
type pgServerAccount struct {
	cred     *syscall.Credential // nil: run as the current user
	uid, gid int
}

func lookupPGServerAccount(t *testing.T) pgServerAccount {
	t.Helper()
	if os.Geteuid() != 0 {
		return pgServerAccount{uid: os.Geteuid(), gid: os.Getegid()}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		requireOrSkip(t, "running as root but there is no postgres OS user to run the test cluster: %v", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		t.Fatalf("postgres OS user has a non-numeric uid/gid %q/%q", u.Uid, u.Gid)
	}
	return pgServerAccount{
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		uid:  uid,
		gid:  gid,
	}
}

// tlsTestCluster is a throwaway PostgreSQL cluster that accepts only TLS
// connections, and only from 127.0.0.1.
type tlsTestCluster struct {
	bin     string
	dir     string // everything of the cluster lives here
	data    string
	port    int
	account pgServerAccount
}

// serverCertPair is a PEM certificate and its PEM private key.
type serverCertPair struct {
	certPEM, keyPEM []byte
}

// startTLSTestCluster creates and starts a cluster serving pair, in a new
// temporary folder; stop removes both. pg_hba.conf has a single hostssl rule
// for 127.0.0.1, so plain TCP connections and Unix sockets are refused.
func startTLSTestCluster(bin string, account pgServerAccount, pair serverCertPair) (c *tlsTestCluster, err error) {
	// Not t.TempDir: the server's OS user must be able to reach the folder,
	// and a short path keeps the Unix socket name within its limit.
	dir, err := os.MkdirTemp(os.Getenv(envPGTmpDir), "custodia-pgtls-")
	if err != nil {
		return nil, err
	}
	c = &tlsTestCluster{bin: bin, dir: dir, data: filepath.Join(dir, "data"), account: account}
	started := false
	defer func() {
		if err == nil {
			return
		}
		if started {
			err = errors.Join(err, c.stop())
		} else {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chown(dir, account.uid, account.gid); err != nil {
		return nil, err
	}

	if out, err := c.command("initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}

	certFile := filepath.Join(dir, "server.crt")
	keyFile := filepath.Join(dir, "server.key")
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
ssl_min_protocol_version = 'TLSv1.2'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 20
shared_buffers = 16MB
`, dir, certFile, keyFile)
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{certFile, pair.certPEM, 0o644},
		{keyFile, pair.keyPEM, 0o600}, // the server refuses a key others can read
		{filepath.Join(c.data, "pg_hba.conf"), []byte("hostssl all all 127.0.0.1/32 trust\n"), 0o600},
	} {
		if err := c.writeFile(f.path, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	pgconf, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = pgconf.WriteString(conf)
	if cerr := pgconf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	logFile := filepath.Join(dir, "server.log")
	for attempt := 1; ; attempt++ {
		if c.port, err = freeLocalPort(); err != nil {
			return nil, err
		}
		out, err := c.command("pg_ctl", "-D", c.data, "-l", logFile, "-w", "-t", "30",
			"-o", fmt.Sprintf("-p %d", c.port), "start").CombinedOutput()
		if err == nil {
			started = true
			return c, nil
		}
		log, _ := os.ReadFile(logFile)
		if attempt < 3 && strings.Contains(string(log), "could not bind") {
			continue // another process took the port in between
		}
		// pg_ctl may give up waiting on a server that still comes up later.
		started = true
		return nil, fmt.Errorf("start PostgreSQL: %w\n%s\nserver log:\n%s", err, out, log)
	}
}

// stop stops the cluster and removes its folder.
func (c *tlsTestCluster) stop() error {
	var err error
	if _, statErr := os.Stat(filepath.Join(c.data, "postmaster.pid")); statErr == nil {
		if out, stopErr := c.command("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "-t", "30", "stop").CombinedOutput(); stopErr != nil {
			err = fmt.Errorf("pg_ctl stop: %w\n%s", stopErr, out)
		}
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// url is the address of the cluster's postgres database as sqldb.Open takes
// it; rootCert may be empty.
func (c *tlsTestCluster) url(host, sslmode, rootCert string) string {
	q := url.Values{}
	q.Set("sslmode", sslmode)
	if rootCert != "" {
		q.Set("sslrootcert", rootCert)
	}
	q.Set("connect_timeout", "10")
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort(host, strconv.Itoa(c.port)),
		Path:     "/postgres",
		RawQuery: q.Encode(),
	}
	return u.String()
}

// command prepares a PostgreSQL program to run as the cluster's OS user.
func (c *tlsTestCluster) command(prog string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	if c.account.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.account.cred}
	}
	return cmd
}

// writeFile writes a file owned by the cluster's OS user.
func (c *tlsTestCluster) writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Chown(path, c.account.uid, c.account.gid)
}

// freeLocalPort asks the kernel for a TCP port on 127.0.0.1 that is free
// right now.
func freeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// testCA is a certificate authority made for tests.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newTestCA(name string) (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newTestSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Custodia tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &testCA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// issueServerCert makes a TLS server certificate valid for exactly the given
// names and addresses.
func (ca *testCA) issueServerCert(dnsNames []string, ips []net.IP) (serverCertPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return serverCertPair{}, err
	}
	serial, err := newTestSerial()
	if err != nil {
		return serverCertPair{}, err
	}
	cn := "server"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Custodia tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return serverCertPair{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return serverCertPair{}, err
	}
	return serverCertPair{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func newTestSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

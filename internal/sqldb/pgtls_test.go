//go:build unix

package sqldb_test

// Control CRY-02: connections to PostgreSQL honour sslmode=verify-full. Each
// test starts a throwaway PostgreSQL cluster of its own with TLS switched on
// and a server certificate issued by a CA generated here, then connects
// through sqldb.Open like production code does.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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
	"syscall"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
)

// envPGBinDir names the variable holding the folder with initdb and pg_ctl.
const envPGBinDir = "CUSTODIA_TEST_PG_BINDIR"

func TestCRY02_VerifyFullAcceptsServerWithTrustedCertificate(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "Custodia CRY-02 test CA")
	srv := startTLSTestCluster(t, ca.issueServerCert(t, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}))

	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			ctx := context.Background()
			db, err := sqldb.Open(ctx, srv.url(host, "verify-full", ca.certFile))
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
	ca := newTestCA(t, "Custodia CRY-02 test CA")
	srv := startTLSTestCluster(t, ca.issueServerCert(t, []string{"db.wrong.example"}, nil))
	ctx := context.Background()

	// The chain itself is trusted: verify-ca, which skips the host name check,
	// gets through. So the refusal below is about the host name alone.
	db, err := sqldb.Open(ctx, srv.url("localhost", "verify-ca", ca.certFile))
	if err != nil {
		t.Fatalf("verify-ca against the wrong-host certificate should connect: %v", err)
	}
	db.Close()

	db, err = sqldb.Open(ctx, srv.url("localhost", "verify-full", ca.certFile))
	if err == nil {
		db.Close()
		t.Fatal("verify-full accepted a certificate issued for db.wrong.example when connecting to localhost")
	}
	msg := err.Error()
	if !strings.Contains(msg, "certificate") || !strings.Contains(msg, "db.wrong.example") || !strings.Contains(msg, "localhost") {
		t.Fatalf("error does not explain the host name mismatch: %v", err)
	}
	t.Logf("refused as required: %v", err)
}

func TestCRY02_VerifyFullRefusesUntrustedCA(t *testing.T) {
	t.Parallel()
	serverCA := newTestCA(t, "Custodia CRY-02 server CA")
	otherCA := newTestCA(t, "Custodia CRY-02 unrelated CA")
	srv := startTLSTestCluster(t, serverCA.issueServerCert(t, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}))
	ctx := context.Background()

	db, err := sqldb.Open(ctx, srv.url("localhost", "verify-full", otherCA.certFile))
	if err == nil {
		db.Close()
		t.Fatal("verify-full accepted a server certificate from a CA that sslrootcert does not name")
	}
	if msg := err.Error(); !strings.Contains(msg, "certificate signed by unknown authority") {
		t.Fatalf("error does not explain the untrusted issuer: %v", err)
	}
	t.Logf("refused as required: %v", err)

	db, err = sqldb.Open(ctx, srv.url("localhost", "verify-full", serverCA.certFile))
	if err != nil {
		t.Fatalf("same server with its own CA trusted should connect: %v", err)
	}
	db.Close()
}

func TestCRY02_PostgresRefusesPlainConnectionWhenHBARequiresTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "Custodia CRY-02 test CA")
	srv := startTLSTestCluster(t, ca.issueServerCert(t, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}))
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

	db, err = sqldb.Open(ctx, srv.url("localhost", "verify-full", ca.certFile))
	if err != nil {
		t.Fatalf("same server over verify-full should connect: %v", err)
	}
	db.Close()
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

// pgServerAccount is the OS account the test cluster runs as. PostgreSQL
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
// connections from 127.0.0.1.
type tlsTestCluster struct {
	bin     string
	dir     string
	data    string
	port    int
	account pgServerAccount
}

// serverCertPair is a PEM certificate and its PEM private key.
type serverCertPair struct {
	certPEM, keyPEM []byte
}

// startTLSTestCluster creates and starts a cluster serving pair, stopped and
// removed when the test ends. pg_hba.conf has a single hostssl rule for
// 127.0.0.1, so plain TCP connections are refused.
func startTLSTestCluster(t *testing.T, pair serverCertPair) *tlsTestCluster {
	t.Helper()
	c := &tlsTestCluster{bin: pgServerBinDir(t), account: lookupPGServerAccount(t)}

	// Not t.TempDir: the server's OS user must be able to reach the folder,
	// and a short path keeps the Unix socket name within its limit.
	dir, err := os.MkdirTemp("", "custodia-pgtls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c.dir = dir
	c.data = filepath.Join(dir, "data")
	if err := os.Chown(dir, c.account.uid, c.account.gid); err != nil {
		t.Fatal(err)
	}

	c.run(t, "initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")

	certFile := filepath.Join(dir, "server.crt")
	keyFile := filepath.Join(dir, "server.key")
	c.writeFile(t, certFile, pair.certPEM, 0o644)
	c.writeFile(t, keyFile, pair.keyPEM, 0o600)
	c.writeFile(t, filepath.Join(c.data, "pg_hba.conf"),
		[]byte("hostssl all all 127.0.0.1/32 trust\n"), 0o600)
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
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	logFile := filepath.Join(dir, "server.log")
	for attempt := 1; ; attempt++ {
		c.port = freeLocalPort(t)
		out, err := c.command("pg_ctl", "-D", c.data, "-l", logFile, "-w", "-t", "30",
			"-o", fmt.Sprintf("-p %d", c.port), "start").CombinedOutput()
		if err == nil {
			break
		}
		log, _ := os.ReadFile(logFile)
		if attempt < 3 && strings.Contains(string(log), "could not bind") {
			continue // another process took the port in between
		}
		t.Fatalf("start PostgreSQL: %v\n%s\nserver log:\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if out, err := c.command("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "-t", "30", "stop").CombinedOutput(); err != nil {
			t.Errorf("stop PostgreSQL: %v\n%s", err, out)
		}
	})
	return c
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

func (c *tlsTestCluster) run(t *testing.T, prog string, args ...string) {
	t.Helper()
	if out, err := c.command(prog, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", prog, err, out)
	}
}

// writeFile writes a file owned by the cluster's OS user.
func (c *tlsTestCluster) writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, c.account.uid, c.account.gid); err != nil {
		t.Fatal(err)
	}
}

// freeLocalPort asks the kernel for a TCP port on 127.0.0.1 that is free
// right now.
func freeLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testCA is a certificate authority made for one test; certFile is its
// certificate in PEM, as sslrootcert takes it.
type testCA struct {
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	certFile string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := newTestKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          newTestSerial(t),
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
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, certFile: file}
}

// issueServerCert makes a TLS server certificate valid for exactly the given
// names and addresses.
func (ca *testCA) issueServerCert(t *testing.T, dnsNames []string, ips []net.IP) serverCertPair {
	t.Helper()
	key := newTestKey(t)
	cn := "server"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: newTestSerial(t),
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
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return serverCertPair{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

func newTestKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newTestSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

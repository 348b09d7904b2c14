package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
)

// ---- certificate helpers ----

type certSpec struct {
	subject   string
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
	dnsNames  []string
	ips       []net.IP
	key       crypto.Signer // generated (ECDSA P-256) when nil
}

// issueCert creates a certificate for spec, signed by parent/parentKey, or
// self-signed when parent is nil.
func issueCert(t *testing.T, spec certSpec, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := spec.key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = time.Now().Add(-time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = time.Now().Add(30 * 24 * time.Hour)
	}
	if spec.subject == "" {
		spec.subject = "test"
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.subject},
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
		DNSNames:              spec.dnsNames,
		IPAddresses:           spec.ips,
	}
	if spec.isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// writePair writes a certificate and key as PEM into dir.
func writePair(t *testing.T, dir string, c *x509.Certificate, key crypto.Signer) (certPath, keyPath string) {
	t.Helper()
	certPath = filepath.Join(dir, "server.crt")
	keyPath = filepath.Join(dir, "server.key")
	if err := os.WriteFile(certPath, certPEM(c), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func tlsCert(c *x509.Certificate, key crypto.Signer) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}
}

var rsaTestKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

// serverCerts returns the certificates the handshake tests run against: the
// self-signed ECDSA certificate Custodia creates, and an RSA one, since the
// TLS 1.2 suites on offer depend on the kind of server key.
func ecdsaServerCert(t *testing.T) tls.Certificate {
	t.Helper()
	cert, _, err := SelfSignedCertificate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func rsaServerCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := rsaTestKey()
	if err != nil {
		t.Fatal(err)
	}
	c, k := issueCert(t, certSpec{
		subject:  "localhost",
		dnsNames: []string{"localhost"},
		ips:      []net.IP{net.IPv4(127, 0, 0, 1)},
		key:      key,
	}, nil, nil)
	return tlsCert(c, k)
}

// ---- handshake helpers ----

// startHandshakeServer serves TLS handshakes with cfg on 127.0.0.1 and
// reports the server side result of each handshake.
func startHandshakeServer(t *testing.T, cfg *tls.Config) (addr string, results <-chan error) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(inner, cfg)
	out := make(chan error, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				tc := conn.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				err := tc.Handshake()
				out <- err
				if err == nil {
					_, _ = tc.Write([]byte("ok"))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), out
}

// clientConfig trusts exactly cert and expects it to name localhost.
func clientConfig(t *testing.T, cert tls.Certificate) *tls.Config {
	t.Helper()
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// handshake dials addr with cfg and returns the client's connection state and
// error, and the server's error for the same handshake.
func handshake(t *testing.T, addr string, results <-chan error, cfg *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	conn, clientErr := d.DialContext(ctx, "tcp", addr)
	var state tls.ConnectionState
	if clientErr == nil {
		tc := conn.(*tls.Conn)
		state = tc.ConnectionState()
		// Reading the server's reply makes sure the server finished its side.
		buf := make([]byte, 2)
		_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ok" {
			clientErr = fmt.Errorf("reading server reply: %v (%q)", err, buf)
		}
		conn.Close()
	}
	select {
	case serverErr := <-results:
		return state, clientErr, serverErr
	case <-time.After(10 * time.Second):
		t.Fatal("server did not report a handshake")
		return state, clientErr, nil
	}
}

// permissiveConfig is a deliberately weak server configuration: TLS 1.0 and
// every cipher suite crypto/tls implements. The refusal tests run their
// client against it first, to prove that the client is able to connect and
// that only the CRY-01 policy turns it away.
func permissiveConfig(cert tls.Certificate) *tls.Config {
	var suites []uint16
	for _, s := range tls.CipherSuites() {
		suites = append(suites, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		suites = append(suites, s.ID)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS10,
		MaxVersion:   tls.VersionTLS13,
		CipherSuites: suites,
		Certificates: []tls.Certificate{cert},
	}
}

// assertRefused proves that client connects to the permissive server and is
// refused by TLSConfig(cert), with the server naming why.
func assertRefused(t *testing.T, cert tls.Certificate, client *tls.Config, serverReason string, checkPermissive func(tls.ConnectionState)) {
	t.Helper()

	addr, results := startHandshakeServer(t, permissiveConfig(cert))
	state, clientErr, serverErr := handshake(t, addr, results, client.Clone())
	if clientErr != nil || serverErr != nil {
		t.Fatalf("sanity check: client cannot connect even to a permissive server (client: %v, server: %v); the refusal below would prove nothing", clientErr, serverErr)
	}
	checkPermissive(state)

	addr, results = startHandshakeServer(t, TLSConfig(cert))
	state, clientErr, serverErr = handshake(t, addr, results, client.Clone())
	if clientErr == nil {
		t.Fatalf("handshake succeeded with version %s, suite %s; want refusal",
			tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
	}
	if serverErr == nil {
		t.Fatalf("server completed the handshake; want refusal (client: %v)", clientErr)
	}
	if !strings.Contains(serverErr.Error(), serverReason) {
		t.Errorf("server error = %q; want it to contain %q", serverErr, serverReason)
	}
}

// ---- CRY-01: TLS configuration ----

func TestCRY01_ConfigPolicy(t *testing.T) {
	t.Parallel()
	cert := ecdsaServerCert(t)
	cfg := TLSConfig(cert)

	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %s; want TLS 1.2", tls.VersionName(cfg.MinVersion))
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion != tls.VersionTLS13 {
		t.Errorf("MaxVersion = %s; want TLS 1.3", tls.VersionName(cfg.MaxVersion))
	}
	want := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	got := slices.Clone(cfg.CipherSuites)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("CipherSuites = %v; want %v", suiteNames(cfg.CipherSuites), suiteNames(want))
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "_CHACHA20_POLY1305_")) {
			t.Errorf("cipher suite %s is not ECDHE with AEAD", name)
		}
	}
	wantCurves := []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}
	if !slices.Equal(cfg.CurvePreferences, wantCurves) {
		t.Errorf("CurvePreferences = %v; want %v", cfg.CurvePreferences, wantCurves)
	}
	if !slices.Equal(cfg.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos = %v; want [h2 http/1.1]", cfg.NextProtos)
	}
	if len(cfg.Certificates) != 1 || Fingerprint(cfg.Certificates[0]) != Fingerprint(cert) {
		t.Errorf("Certificates does not hold the given certificate")
	}

	// Each call returns its own slices, so a caller tuning one listener's
	// configuration cannot weaken another's.
	cfg.CipherSuites[0] = tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
	if slices.Contains(TLSConfig(cert).CipherSuites, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA) {
		t.Error("TLSConfig shares its cipher suite list between calls")
	}
}

func suiteNames(ids []uint16) []string {
	var names []string
	for _, id := range ids {
		names = append(names, tls.CipherSuiteName(id))
	}
	return names
}

func TestCRY01_TLS10And11Refused(t *testing.T) {
	t.Parallel()
	for _, version := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			cert := ecdsaServerCert(t)
			client := clientConfig(t, cert)
			client.MinVersion = version
			client.MaxVersion = version
			assertRefused(t, cert, client, "unsupported versions", func(s tls.ConnectionState) {
				if s.Version != version {
					t.Fatalf("sanity check negotiated %s; want %s", tls.VersionName(s.Version), tls.VersionName(version))
				}
			})
		})
	}
}

func TestCRY01_CBCOnlyTLS12ClientRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		cert   func(*testing.T) tls.Certificate
		suites []uint16
	}{
		{"ECDSA", ecdsaServerCert, []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
		}},
		{"RSA", rsaServerCert, []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert := tc.cert(t)
			client := clientConfig(t, cert)
			client.MinVersion = tls.VersionTLS12
			client.MaxVersion = tls.VersionTLS12
			client.CipherSuites = tc.suites
			assertRefused(t, cert, client, "no cipher suite supported", func(s tls.ConnectionState) {
				if s.Version != tls.VersionTLS12 || !slices.Contains(tc.suites, s.CipherSuite) {
					t.Fatalf("sanity check negotiated %s %s; want TLS 1.2 with a CBC suite",
						tls.VersionName(s.Version), tls.CipherSuiteName(s.CipherSuite))
				}
			})
		})
	}
}

func TestCRY01_StaticRSAKeyExchangeRefused(t *testing.T) {
	t.Parallel()
	// AEAD, but without ECDHE there is no forward secrecy.
	cert := rsaServerCert(t)
	client := clientConfig(t, cert)
	client.MinVersion = tls.VersionTLS12
	client.MaxVersion = tls.VersionTLS12
	client.CipherSuites = []uint16{
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	}
	assertRefused(t, cert, client, "no cipher suite supported", func(s tls.ConnectionState) {
		if !slices.Contains(client.CipherSuites, s.CipherSuite) {
			t.Fatalf("sanity check negotiated %s; want a TLS_RSA suite", tls.CipherSuiteName(s.CipherSuite))
		}
	})
}

func TestCRY01_TLS13Accepted(t *testing.T) {
	t.Parallel()
	cert := ecdsaServerCert(t)
	addr, results := startHandshakeServer(t, TLSConfig(cert))
	client := clientConfig(t, cert)
	client.MinVersion = tls.VersionTLS13
	client.NextProtos = []string{"h2", "http/1.1"}

	state, clientErr, serverErr := handshake(t, addr, results, client)
	if clientErr != nil || serverErr != nil {
		t.Fatalf("handshake failed: client: %v, server: %v", clientErr, serverErr)
	}
	if state.Version != tls.VersionTLS13 {
		t.Errorf("Version = %s; want TLS 1.3", tls.VersionName(state.Version))
	}
	if state.NegotiatedProtocol != "h2" {
		t.Errorf("NegotiatedProtocol = %q; want h2", state.NegotiatedProtocol)
	}
}

func TestCRY01_DefaultClientNegotiatesTLS13(t *testing.T) {
	t.Parallel()
	cert := ecdsaServerCert(t)
	addr, results := startHandshakeServer(t, TLSConfig(cert))

	state, clientErr, serverErr := handshake(t, addr, results, clientConfig(t, cert))
	if clientErr != nil || serverErr != nil {
		t.Fatalf("handshake failed: client: %v, server: %v", clientErr, serverErr)
	}
	if state.Version != tls.VersionTLS13 {
		t.Errorf("Version = %s; want TLS 1.3", tls.VersionName(state.Version))
	}
	if state.CurveID != tls.X25519MLKEM768 {
		t.Errorf("key exchange = %s; want the hybrid post-quantum %s", state.CurveID, tls.X25519MLKEM768)
	}
}

func TestCRY01_TLS12AEADAccepted(t *testing.T) {
	t.Parallel()
	ecdsaCert, rsaCert := ecdsaServerCert(t), rsaServerCert(t)
	for _, suite := range TLSConfig(ecdsaCert).CipherSuites {
		name := tls.CipherSuiteName(suite)
		t.Run(name, func(t *testing.T) {
			cert := ecdsaCert
			if strings.HasPrefix(name, "TLS_ECDHE_RSA_") {
				cert = rsaCert
			}
			addr, results := startHandshakeServer(t, TLSConfig(cert))
			client := clientConfig(t, cert)
			client.MinVersion = tls.VersionTLS12
			client.MaxVersion = tls.VersionTLS12
			client.CipherSuites = []uint16{suite}

			state, clientErr, serverErr := handshake(t, addr, results, client)
			if clientErr != nil || serverErr != nil {
				t.Fatalf("handshake failed: client: %v, server: %v", clientErr, serverErr)
			}
			if state.Version != tls.VersionTLS12 || state.CipherSuite != suite {
				t.Errorf("negotiated %s %s; want TLS 1.2 %s",
					tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite), name)
			}
		})
	}

	t.Run("client default suites", func(t *testing.T) {
		addr, results := startHandshakeServer(t, TLSConfig(ecdsaCert))
		client := clientConfig(t, ecdsaCert)
		client.MaxVersion = tls.VersionTLS12
		state, clientErr, serverErr := handshake(t, addr, results, client)
		if clientErr != nil || serverErr != nil {
			t.Fatalf("handshake failed: client: %v, server: %v", clientErr, serverErr)
		}
		name := tls.CipherSuiteName(state.CipherSuite)
		if state.Version != tls.VersionTLS12 || !strings.HasPrefix(name, "TLS_ECDHE_") ||
			!(strings.Contains(name, "_GCM_") || strings.Contains(name, "_CHACHA20_POLY1305_")) {
			t.Errorf("negotiated %s %s; want TLS 1.2 with ECDHE and AEAD", tls.VersionName(state.Version), name)
		}
	})
}

func TestCRY01_HTTPServedOverTLS(t *testing.T) {
	t.Parallel()
	cert := ecdsaServerCert(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", r.Proto, tls.VersionName(r.TLS.Version))
		}),
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(tls.NewListener(inner, TLSConfig(cert)))
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})

	for _, tc := range []struct {
		name      string
		forceHTTP bool
		want      string
	}{
		{"h2", true, "HTTP/2.0 TLS 1.3"},
		{"http/1.1", false, "HTTP/1.1 TLS 1.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: clientConfig(t, cert), ForceAttemptHTTP2: tc.forceHTTP}
			defer tr.CloseIdleConnections()
			url := "https://localhost:" + fmt.Sprint(inner.Addr().(*net.TCPAddr).Port) + "/"
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, inner.Addr().String())
			}
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tc.want {
				t.Errorf("server saw %q; want %q", body, tc.want)
			}
		})
	}
}

// ---- self-signed certificate ----

func TestSelfSignedCertificate_CreatedOnceAndReused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, created, err := SelfSignedCertificate(dir, []string{"custodia.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first call: created = false; want true")
	}
	if first.Leaf == nil {
		t.Fatal("first call: Leaf not set")
	}
	second, created, err := SelfSignedCertificate(dir, []string{"custodia.example"})
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("second call: created = true; want the existing certificate reused")
	}
	if Fingerprint(first) != Fingerprint(second) {
		t.Errorf("fingerprint changed from %s to %s", Fingerprint(first), Fingerprint(second))
	}
	if second.Leaf == nil {
		t.Error("second call: Leaf not set")
	}
	// Fewer hosts than the certificate names is fine too.
	if _, created, err := SelfSignedCertificate(dir, nil); err != nil || created {
		t.Errorf("call without hosts: created = %v, err = %v; want reuse", created, err)
	}
}

func TestSelfSignedCertificate_FileModes(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not enforced on Windows")
	}
	dir := t.TempDir()
	if _, _, err := SelfSignedCertificate(dir, nil); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, "tls"):                    0o700 | os.ModeDir,
		filepath.Join(dir, "tls", "self-signed.key"): 0o600,
		filepath.Join(dir, "tls", "self-signed.crt"): 0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != want {
			t.Errorf("%s: mode %v; want %v", path, got, want)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"self-signed.crt", "self-signed.key"}) {
		t.Errorf("tls directory holds %v; want only the certificate and key", names)
	}
}

func TestSelfSignedCertificate_Properties(t *testing.T) {
	t.Parallel()
	before := time.Now()
	cert, _, err := SelfSignedCertificate(t.TempDir(), []string{
		"Custodia.Example", "10.1.2.3", "[2001:db8::1]", "0.0.0.0", "records.example:8443", "",
	})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	leaf := cert.Leaf

	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T; want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v: want a positive number of at most 128 bits", leaf.SerialNumber)
	}
	if leaf.NotBefore.Before(before.Add(-time.Hour-time.Second)) || leaf.NotBefore.After(after.Add(-time.Hour)) {
		t.Errorf("NotBefore = %v; want an hour before creation", leaf.NotBefore)
	}
	if leaf.NotAfter.Before(before.Add(365*24*time.Hour-time.Second)) || leaf.NotAfter.After(after.Add(366*24*time.Hour)) {
		t.Errorf("NotAfter = %v; want a year after creation", leaf.NotAfter)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v; want digital signature only", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v; want server auth", leaf.ExtKeyUsage)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want false, true", leaf.IsCA, leaf.BasicConstraintsValid)
	}
	wantDNS := []string{"localhost", "custodia.example", "records.example"}
	if !slices.Equal(leaf.DNSNames, wantDNS) {
		t.Errorf("DNSNames = %v; want %v", leaf.DNSNames, wantDNS)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	wantIPs := []string{"127.0.0.1", "::1", "10.1.2.3", "2001:db8::1"}
	if !slices.Equal(ips, wantIPs) {
		t.Errorf("IPAddresses = %v; want %v", ips, wantIPs)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "custodia.example", "10.1.2.3"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("certificate does not cover %s: %v", h, err)
		}
	}
	if !IsSelfSigned(cert) {
		t.Error("IsSelfSigned = false")
	}
}

func TestSelfSignedCertificate_KeyReadableByOthersRefused(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not enforced on Windows")
	}
	dir := t.TempDir()
	if _, _, err := SelfSignedCertificate(dir, nil); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "tls", "self-signed.key")
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		before, err := os.ReadFile(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		_, created, err := SelfSignedCertificate(dir, nil)
		if err == nil {
			t.Fatalf("mode %04o: key accepted; want refusal", mode)
		}
		if created {
			t.Errorf("mode %04o: created = true alongside an error", mode)
		}
		msg := errs.SafeMessage(err)
		if !errs.Is(err, errs.Invalid) || !strings.Contains(msg, "readable by other users") || !strings.Contains(msg, keyPath) {
			t.Errorf("mode %04o: error %q (kind %v); want an invalid error naming the key and its permissions", mode, msg, errs.KindOf(err))
		}
		after, err := os.ReadFile(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		if string(before) != string(after) {
			t.Errorf("mode %04o: the exposed key was replaced; want it left for the operator", mode)
		}
	}
}

func TestSelfSignedCertificate_RenewedNearExpiry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, key := issueCert(t, certSpec{
		subject:  "localhost",
		notAfter: time.Now().Add(3 * 24 * time.Hour),
		dnsNames: []string{"localhost"},
		ips:      []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}, nil, nil)
	if err := os.WriteFile(filepath.Join(tlsDir, "self-signed.crt"), certPEM(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tlsDir, "self-signed.key"), keyPEM(t, key), 0o600); err != nil {
		t.Fatal(err)
	}

	cert, created, err := SelfSignedCertificate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("created = false; want a certificate expiring in 3 days replaced")
	}
	if Fingerprint(cert) == Fingerprint(tlsCert(old, key)) {
		t.Error("the expiring certificate was reused")
	}
	if time.Until(cert.Leaf.NotAfter) < 300*24*time.Hour {
		t.Errorf("new certificate expires %v; want about a year from now", cert.Leaf.NotAfter)
	}
}

func TestSelfSignedCertificate_RenewedForNewHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, _, err := SelfSignedCertificate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, created, err := SelfSignedCertificate(dir, []string{"custodia.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !created || Fingerprint(first) == Fingerprint(second) {
		t.Error("certificate not renewed although it does not name the new host")
	}
	if err := second.Leaf.VerifyHostname("custodia.example"); err != nil {
		t.Error(err)
	}
}

func TestSelfSignedCertificate_CorruptFilesReplaced(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := SelfSignedCertificate(dir, nil); err != nil {
		t.Fatal(err)
	}
	// A crash between the two renames leaves a new key next to the old
	// certificate; a damaged file is handled the same way.
	certPath := filepath.Join(dir, "tls", "self-signed.crt")
	if err := os.WriteFile(certPath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, created, err := SelfSignedCertificate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !created || cert.Leaf == nil {
		t.Errorf("created = %v; want a fresh certificate", created)
	}
}

// ---- LoadCertificate ----

func TestLoadCertificate_Valid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, key := issueCert(t, certSpec{subject: "records.example", dnsNames: []string{"records.example"}}, nil, nil)
	certPath, keyPath := writePair(t, dir, c, key)

	cert, err := LoadCertificate(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf == nil || !cert.Leaf.Equal(c) {
		t.Error("Leaf not set to the certificate")
	}
	if Fingerprint(cert) != Fingerprint(tlsCert(c, key)) {
		t.Error("loaded a different certificate")
	}
}

func TestLoadCertificate_Errors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, goodKey := issueCert(t, certSpec{}, nil, nil)
	_, otherKey := issueCert(t, certSpec{}, nil, nil)
	expired, expiredKey := issueCert(t, certSpec{
		notBefore: time.Now().Add(-60 * 24 * time.Hour),
		notAfter:  time.Now().Add(-24 * time.Hour),
	}, nil, nil)
	future, futureKey := issueCert(t, certSpec{
		notBefore: time.Now().Add(24 * time.Hour),
		notAfter:  time.Now().Add(60 * 24 * time.Hour),
	}, nil, nil)

	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodCert := write("good.crt", certPEM(good))
	goodKeyFile := write("good.key", keyPEM(t, goodKey))
	corruptBlock := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER at all")})

	cases := []struct {
		name     string
		certFile string
		keyFile  string
		want     []string
	}{
		{"missing certificate", filepath.Join(dir, "absent.crt"), goodKeyFile,
			[]string{"TLS certificate file", "absent.crt", "does not exist"}},
		{"missing key", goodCert, filepath.Join(dir, "absent.key"),
			[]string{"TLS key file", "absent.key", "does not exist"}},
		{"not PEM", write("text.crt", []byte("hello, this is not a certificate\n")), goodKeyFile,
			[]string{"text.crt", "not a PEM certificate"}},
		{"corrupt certificate", write("corrupt.crt", corruptBlock), goodKeyFile,
			[]string{"corrupt.crt", "corrupt certificate"}},
		{"key file holds a certificate", goodCert, write("cert-as.key", certPEM(good)),
			[]string{"cert-as.key", "no PRIVATE KEY"}},
		{"corrupt key", goodCert, write("corrupt.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})),
			[]string{"corrupt.key", "corrupt private key"}},
		{"encrypted key", goodCert, write("encrypted.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")})),
			[]string{"encrypted.key", "encrypted"}},
		{"mismatched key", goodCert, write("other.key", keyPEM(t, otherKey)),
			[]string{"other.key", "does not match", "good.crt"}},
		{"expired", write("expired.crt", certPEM(expired)), write("expired.key", keyPEM(t, expiredKey)),
			[]string{"expired.crt", "expired on", expired.NotAfter.UTC().Format("2006-01-02")}},
		{"not yet valid", write("future.crt", certPEM(future)), write("future.key", keyPEM(t, futureKey)),
			[]string{"future.crt", "not valid yet", future.NotBefore.UTC().Format("2006-01-02")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCertificate(tc.certFile, tc.keyFile)
			if err == nil {
				t.Fatal("no error")
			}
			if !errs.Is(err, errs.Invalid) {
				t.Errorf("kind = %v; want invalid", errs.KindOf(err))
			}
			msg := errs.SafeMessage(err)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q spans several lines", msg)
			}
		})
	}
}

// ---- IsSelfSigned and Fingerprint ----

func TestIsSelfSigned(t *testing.T) {
	t.Parallel()
	ca, caKey := issueCert(t, certSpec{subject: "Test CA", isCA: true}, nil, nil)
	leaf, leafKey := issueCert(t, certSpec{subject: "records.example", dnsNames: []string{"records.example"}}, ca, caKey)
	// Names itself as issuer, but the CA signed it: not self-signed.
	sameName, sameNameKey := issueCert(t, certSpec{subject: "Test CA"}, ca, caKey)
	own, ownKey := issueCert(t, certSpec{subject: "localhost"}, nil, nil)

	cases := []struct {
		name string
		cert tls.Certificate
		want bool
	}{
		{"Custodia self-signed", ecdsaServerCert(t), true},
		{"self-signed leaf", tlsCert(own, ownKey), true},
		{"self-signed RSA", rsaServerCert(t), true},
		{"CA root", tlsCert(ca, caKey), true},
		{"issued by a CA", tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.Raw}, PrivateKey: leafKey}, false},
		{"issued by a CA, leaf parsed", tlsCert(leaf, leafKey), false},
		{"issuer name equals subject, signed by CA", tlsCert(sameName, sameNameKey), false},
		{"empty", tls.Certificate{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsSelfSigned(tc.cert); got != tc.want {
				t.Errorf("IsSelfSigned = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	c, key := issueCert(t, certSpec{}, nil, nil)
	fp := Fingerprint(tlsCert(c, key))

	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Errorf("Fingerprint = %q; want 32 uppercase hex bytes separated by colons", fp)
	}
	sum := sha256.Sum256(c.Raw)
	var parts []string
	for _, b := range sum {
		parts = append(parts, fmt.Sprintf("%02X", b))
	}
	if want := strings.Join(parts, ":"); fp != want {
		t.Errorf("Fingerprint = %s; want %s", fp, want)
	}
	if got := Fingerprint(tls.Certificate{Certificate: [][]byte{c.Raw}}); got != fp {
		t.Errorf("without Leaf: Fingerprint = %s; want %s", got, fp)
	}
	if got := Fingerprint(tls.Certificate{}); got != "" {
		t.Errorf("empty certificate: Fingerprint = %q; want empty", got)
	}
}

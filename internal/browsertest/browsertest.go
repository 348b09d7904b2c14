// Package browsertest runs browser flows in real headless Chromium against
// a real Custodia server, for tests only.
//
// Start gives a test an HTTPS server (the whole handler of package server,
// on a self-signed certificate for 127.0.0.1 and localhost, over a fresh instance seeded
// with the demo organization) and a Chromium tab driven through the
// DevTools protocol (github.com/chromedp/chromedp):
//
//	b := browsertest.Start(t, browsertest.Options{})
//	err := chromedp.Do(b.Ctx, chromedp.Navigate(b.BaseURL+"/login"), …)
//
// Chromium accepts the test server's certificate and no other: it is told
// the certificate's public-key hash (--ignore-certificate-errors-spki-list).
// The browser is found at $CUSTODIA_TEST_CHROMIUM, else /usr/bin/chromium or
// chromium on PATH. Without one the test is skipped, except under CI=true,
// where it fails: CI must never pass by skipping.
//
// Each Browser.NewContext is a separate browser context (its own cookies and
// storage, like a second device), so a test can sign one person in twice.
// Chromium's DevTools domains (for example WebAuthn's virtual authenticator,
// github.com/chromedp/cdproto/webauthn) run on any of these contexts.
package browsertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/instance/instancetest"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// EnvChromium names the variable holding the Chromium executable's path.
const EnvChromium = "CUSTODIA_TEST_CHROMIUM"

// Options adjust the test server and the browser.
type Options struct {
	// Dialect of both databases: sqldb.SQLite (the default) or
	// sqldb.Postgres (fresh databases on CUSTODIA_TEST_POSTGRES; skipped
	// without it, failed under CI).
	Dialect sqldb.Dialect
	// Configure, if set, adjusts the server's dependencies before the
	// handler is built: session limits, the idle warning, the mail sender.
	Configure func(*server.Deps)
	// Timeout bounds the whole test's browsing; 2 minutes by default.
	Timeout time.Duration
	// Localhost serves at https://localhost:port, a host name, instead of
	// https://127.0.0.1:port: WebAuthn refuses IP addresses, so passkey
	// tests need it. The server's public URL follows.
	Localhost bool
}

// Server is the running test server.
type Server struct {
	URL      string // https://127.0.0.1:port, or https://localhost:port (Options.Localhost)
	Instance *instance.Instance
	Shells   server.Shells
	// Logins are the demo organization's accounts, one per built-in role.
	Logins map[authz.Role]demo.Login
	// Outbox is where the server's e-mails go (unless Configure set
	// another sender); Mails reads it.
	Outbox *mail.Outbox
	// Logs holds the server's log lines (JSON), for tests that check what
	// is, or is not, logged.
	Logs *LogBuffer
	http *httptest.Server
}

// Browser is one Chromium process and its first tab.
type Browser struct {
	// Ctx runs chromedp actions in the first tab; it ends with the test.
	Ctx     context.Context
	BaseURL string
	Server  *Server
	alloc   context.Context
}

// Start starts the server and Chromium; both stop when the test ends.
func Start(t testing.TB, o Options) *Browser {
	t.Helper()
	exe := chromium(t)
	srv := StartServer(t, o)
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	root, cancelRoot := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancelRoot)
	flags := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, srv.http.Certificate())),
		chromedp.Flag("no-sandbox", os.Geteuid() == 0), // Chromium refuses root without it
		chromedp.WindowSize(1200, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(root, flags...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(cancelCtx)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium (%s): %v", exe, err)
	}
	return &Browser{Ctx: ctx, BaseURL: srv.URL, Server: srv, alloc: alloc}
}

// NewContext opens a tab in a browser context of its own: no cookies or
// storage shared with the others, as on another device.
func (b *Browser) NewContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.Ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	return ctx
}

// chromium finds the browser, or skips (fails under CI) the test.
func chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", EnvChromium, p, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no Chromium found (set %s); under CI the browser tests must run", EnvChromium)
	}
	t.Skipf("no Chromium found (set %s); skipping browser test", EnvChromium)
	return ""
}

// spkiHash is the base64 SHA-256 of the certificate's public key, the form
// --ignore-certificate-errors-spki-list takes.
func spkiHash(t testing.TB, c *x509.Certificate) string {
	t.Helper()
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// StartServer starts the test server alone, for tests that speak HTTP
// themselves (Server.Client) and need no browser.
func StartServer(t testing.TB, o Options) *Server {
	t.Helper()
	ctx := context.Background()
	var (
		cfg    instance.Config
		logins []demo.Login
	)
	if o.Dialect == sqldb.Postgres {
		cfg = instance.Config{DataDir: t.TempDir(), Database: sqldbtest.URL(t, sqldb.Postgres),
			IdentityDatabase: sqldbtest.URL(t, sqldb.Postgres)}
	} else {
		// A copy of an instance migrated and seeded once a test binary.
		cfg.DataDir, logins = instancetest.SeededCopy(t)
	}
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open instance: %v", err)
	}
	t.Cleanup(func() { inst.Close() })
	if o.Dialect == sqldb.Postgres {
		if logins, err = demo.Seed(ctx, gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey})); err != nil {
			t.Fatalf("seed demo: %v", err)
		}
	}
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatalf("open key-encryption key: %v", err)
	}
	srv := &Server{
		Instance: inst, Logins: map[authz.Role]demo.Login{}, Logs: new(LogBuffer),
		Outbox: &mail.Outbox{Dir: filepath.Join(inst.DataDir, "outbox"), From: "custodia@127.0.0.1"},
	}
	for _, l := range logins {
		srv.Logins[l.Role] = l
	}
	srv.http = httptest.NewUnstartedServer(nil)
	srv.http.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12}
	srv.http.StartTLS()
	t.Cleanup(srv.http.Close)
	srv.URL = srv.http.URL
	if o.Localhost {
		srv.URL = strings.Replace(srv.URL, "://127.0.0.1:", "://localhost:", 1)
	}
	d := server.Deps{
		Log: slog.New(slog.NewJSONHandler(srv.Logs, nil)), Instance: inst, KEK: kek,
		Mail: srv.Outbox, BaseURL: srv.URL,
	}
	if o.Configure != nil {
		o.Configure(&d)
	}
	var h http.Handler
	h, srv.Shells = server.NewHandler(d)
	srv.http.Config.Handler = h
	return srv
}

// selfSigned makes a certificate for 127.0.0.1 and ::1 only, new for each
// server, so the browser trusts this server and no other.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// Client is a Go HTTPS client that trusts the test server, without cookies.
func (s *Server) Client() *http.Client { return s.http.Client() }

// Mails returns the text of every e-mail sent to the address, oldest first.
func (s *Server) Mails(t testing.TB, to string) []string {
	t.Helper()
	if s.Shells.Links != nil {
		s.Shells.Links.Wait() // links are mailed in the background
	}
	entries, err := os.ReadDir(s.Outbox.Dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Outbox.Dir, e.Name()))
		if err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		if strings.Contains(string(b), "\r\nTo: "+to+"\r\n") {
			out = append(out, string(b))
		}
	}
	return out
}

var linkPattern = regexp.MustCompile(`https://\S+`)

// LastLink returns the first link of the newest e-mail sent to the address
// whose path starts with prefix ("/reset/", "/setup/"), or fails the test.
func (s *Server) LastLink(t testing.TB, to, prefix string) string {
	t.Helper()
	mails := s.Mails(t, to)
	for i := len(mails) - 1; i >= 0; i-- {
		for _, l := range linkPattern.FindAllString(mails[i], -1) {
			if strings.HasPrefix(l, s.URL+prefix) {
				return l
			}
		}
	}
	t.Fatalf("no e-mail to %s with a %s link", to, prefix)
	return ""
}

// LogBuffer collects the server's log lines; safe for its goroutines.
type LogBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

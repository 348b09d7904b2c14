package mail

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpPeer is a minimal SMTP server speaking the RFC 5321 exchange a client
// needs, with STARTTLS when it has a certificate.
type smtpPeer struct {
	ln       net.Listener
	cert     *tls.Certificate
	mu       sync.Mutex
	received []string
	tlsUsed  bool
}

func startPeer(t *testing.T, withTLS bool) (*smtpPeer, *x509.CertPool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &smtpPeer{ln: ln}
	pool := x509.NewCertPool()
	if withTLS {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.test"},
			DNSNames: []string{"127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		leaf, _ := x509.ParseCertificate(der)
		pool.AddCert(leaf)
		p.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p, pool
}

func (p *smtpPeer) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.session(c)
	}
}

func (p *smtpPeer) session(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), c
	say := func(s string) { w.Write([]byte(s + "\r\n")) }
	say("220 mail.test ESMTP")
	secure := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			if p.cert != nil && !secure {
				say("250-mail.test")
				say("250 STARTTLS")
			} else {
				say("250-mail.test")
				say("250 AUTH PLAIN")
			}
		case cmd == "STARTTLS":
			say("220 go ahead")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*p.cert}})
			if tc.Handshake() != nil {
				return
			}
			c, r, w, secure = tc, bufio.NewReader(tc), tc, true
			p.mu.Lock()
			p.tlsUsed = true
			p.mu.Unlock()
		case strings.HasPrefix(cmd, "AUTH"):
			say("235 ok")
		case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"):
			say("250 ok")
		case cmd == "DATA":
			say("354 go")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			p.mu.Lock()
			p.received = append(p.received, b.String())
			p.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("502 unknown")
		}
	}
}

var msg = Message{To: "person@clinic.example", Subject: "Your access", Text: "Sign in at https://custodia.example/\n"}

func TestWEB07_SMTPUsesSTARTTLS(t *testing.T) {
	p, pool := startPeer(t, true)
	s := &SMTP{Addr: p.ln.Addr().String(), From: "custodia@clinic.example", Username: "u", Password: "p",
		TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	if err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tlsUsed || len(p.received) != 1 || !strings.Contains(p.received[0], "Sign in at https://custodia.example/") {
		t.Errorf("tls %v, received %q", p.tlsUsed, p.received)
	}
}

func TestWEB07_SMTPRefusesServerWithoutSTARTTLS(t *testing.T) {
	p, _ := startPeer(t, false)
	s := &SMTP{Addr: p.ln.Addr().String(), From: "custodia@clinic.example"}
	if err := s.Send(context.Background(), msg); !errors.Is(err, ErrNoSTARTTLS) {
		t.Errorf("server without STARTTLS: %v, want ErrNoSTARTTLS", err)
	}
	p.mu.Lock()
	if len(p.received) != 0 {
		t.Error("a message went out in clear text")
	}
	p.mu.Unlock()
	s.Insecure = true // an explicit choice for a local relay
	if err := s.Send(context.Background(), msg); err != nil {
		t.Errorf("insecure relay when allowed: %v", err)
	}
}

func TestSMTPRefusesUntrustedCertificate(t *testing.T) {
	p, _ := startPeer(t, true)
	s := &SMTP{Addr: p.ln.Addr().String(), From: "custodia@clinic.example"}
	if err := s.Send(context.Background(), msg); err == nil {
		t.Error("sent to a server whose certificate nobody trusts")
	}
}

func TestOutboxWritesOwnerOnlyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o := &Outbox{Dir: dir, From: "custodia@clinic.example"}
	if err := o.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("files = %v", files)
	}
	fi, _ := os.Stat(files[0])
	b, _ := os.ReadFile(files[0])
	if fi.Mode().Perm() != 0o600 || !strings.Contains(string(b), "To: person@clinic.example\r\n") {
		t.Errorf("mode %v, content %q", fi.Mode(), b)
	}
	if err := o.Send(context.Background(), Message{To: "a@b.example\r\nBcc: evil@x.example", Subject: "x"}); err == nil {
		t.Error("header injection accepted")
	}
}

func TestParseSMTPURL(t *testing.T) {
	s, err := ParseSMTPURL("smtp://me:pw@mail.example", "custodia@clinic.example")
	if err != nil || s.Addr != "mail.example:587" || s.Username != "me" || s.Password != "pw" || s.Insecure {
		t.Errorf("%+v %v", s, err)
	}
	for _, bad := range []string{"http://mail.example", "smtp://", "mail.example:25"} {
		if _, err := ParseSMTPURL(bad, "custodia@clinic.example"); err == nil {
			t.Errorf("ParseSMTPURL(%q) accepted", bad)
		}
	}
}

// ?insecure=1 lets mail go without STARTTLS, in clear text: only to a relay
// on this machine (ASVS V12.3.1), never to a host across the network.
func TestWEB07_InsecureSMTPOnlyToALocalRelay(t *testing.T) {
	for _, ok := range []string{"smtp://localhost:25?insecure=1", "smtp://127.0.0.1:25?insecure=1", "smtp://[::1]:25?insecure=1"} {
		if s, err := ParseSMTPURL(ok, "custodia@clinic.example"); err != nil || !s.Insecure {
			t.Errorf("%s: %+v, %v; want a local relay without STARTTLS", ok, s, err)
		}
	}
	for _, bad := range []string{"smtp://mail.example:25?insecure=1", "smtp://192.0.2.10:25?insecure=1", "smtp://localhost.evil.example?insecure=1"} {
		if _, err := ParseSMTPURL(bad, "custodia@clinic.example"); err == nil || !strings.Contains(err.Error(), "clear text") {
			t.Errorf("%s: %v, want refused", bad, err)
		}
	}
}

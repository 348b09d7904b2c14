package audit

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// collector is a syslog-over-TLS receiver (RFC 5425 framing) on loopback.
type collector struct {
	ln    net.Listener
	roots *x509.CertPool
	mu    sync.Mutex
	got   []string
	conns []net.Conn
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "collector"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	c := &collector{roots: x509.NewCertPool()}
	c.roots.AddCert(cert)
	c.ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			conn, err := c.ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			go c.read(conn)
		}
	}()
	t.Cleanup(c.close)
	return c
}

// read takes octet-counted frames: "LEN SP MSG".
func (c *collector) read(conn net.Conn) {
	r := bufio.NewReader(conn)
	for {
		n, err := r.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil || size <= 0 {
			return
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		c.mu.Lock()
		c.got = append(c.got, string(msg))
		c.mu.Unlock()
	}
}

func (c *collector) close() {
	c.ln.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
}

// ids waits until the collector holds n messages and returns their events' ids.
func (c *collector) ids(t *testing.T, n int) []string {
	t.Helper()
	return c.idsWithin(t, n, 5*time.Second)
}

func (c *collector) idsWithin(t *testing.T, n int, wait time.Duration) []string {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		got := append([]string(nil), c.got...)
		c.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			var out []string
			for _, m := range got {
				var ev Event
				if err := json.Unmarshal([]byte(m), &ev); err != nil {
					t.Fatalf("a message is not an event: %q", m)
				}
				out = append(out, ev.ID)
			}
			return out
		}
	}
}

func (c *collector) dial(t *testing.T) func(context.Context) (net.Conn, error) {
	t.Helper()
	dial, err := DialSyslog("syslog+tls://"+c.ln.Addr().String(), &tls.Config{RootCAs: c.roots})
	if err != nil {
		t.Fatal(err)
	}
	return dial
}

// The trail is pushed, as it grows, to a collector outside the instance
// over TLS (ASVS V16.4.3): every sequenced event once, in index order,
// from where the last round stopped, also after a restart or when the
// collector was away; an event altered in the database is not forwarded.
func TestAUD04_TrailIsForwardedToACollectorAsItGrows(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		l := newLog(t, db)
		var want []string
		add := func(n int) {
			for _, ev := range appendEach(t, db, sampleEvent(len(want)), sampleEvent(len(want)+1), sampleEvent(len(want)+2))[:n] {
				want = append(want, ev.ID)
			}
			if _, err := l.Sequence(ctx, 100); err != nil {
				t.Fatal(err)
			}
		}
		add(3)
		add(3)
		first := newCollector(t)
		f := &Forwarder{Log: l, Target: "syslog+tls://siem.example:6514", Dial: first.dial(t), Format: FormatJSON, Batch: 4}
		for _, wantN := range []int{4, 2, 0} {
			if n, err := f.Round(ctx); err != nil || n != wantN {
				t.Fatalf("round: %d, %v; want %d", n, err, wantN)
			}
		}
		if got := first.ids(t, 6); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("the collector got %v, want %v", got, want)
		}
		if s := f.Status(); s.Sent != 6 || s.Error != "" {
			t.Fatalf("status %+v", s)
		}

		// The collector goes away: nothing is lost, the place stays.
		add(3)
		first.close()
		// The first round must see it: a round that wrote to the closed
		// connection would lose its batch and move the place on.
		for range 2 {
			if n, err := f.Round(ctx); !errs.Is(err, errs.Unavailable) {
				t.Fatalf("a round without a collector: %d sent, %v", n, err)
			}
		}
		if s := f.Status(); s.Error == "" {
			t.Fatal("the status hides the failure")
		}
		var place int64
		db.QueryRowContext(ctx, `SELECT next_seq FROM audit_forward WHERE target = $1`, f.Target).Scan(&place)
		if place != 6 {
			t.Fatalf("the place moved to %d without a collector", place)
		}

		// A new process (another Forwarder) to a collector that is back
		// goes on where the last one stopped.
		second := newCollector(t)
		g := &Forwarder{Log: l, Target: f.Target, Dial: second.dial(t), Format: FormatJSON}
		if n, err := g.Round(ctx); err != nil || n != 3 {
			t.Fatalf("round after the restart: %d, %v", n, err)
		}
		if got := second.ids(t, 3); strings.Join(got, ",") != strings.Join(want[6:], ",") {
			t.Fatalf("after the restart the collector got %v, want %v", got, want[6:])
		}

		// An event altered behind the application's back is not sent.
		add(1)
		dropTriggers(t, db)
		exec(t, db, `UPDATE audit_events SET body = REPLACE(body, 'participant.read', 'participant.erase') WHERE id = $1`, want[9])
		if n, err := g.Round(ctx); err == nil || n != 0 {
			t.Fatalf("an altered event: %d sent, %v", n, err)
		}
		if got := second.idsWithin(t, 4, 300*time.Millisecond); len(got) != 3 {
			t.Fatalf("the altered event reached the collector: %v", got)
		}
	})
}

// A collector that closed its end is seen before a round writes to it,
// however late the forwarder gets to read: a round that wrote to the
// closed connection would lose its batch and move the place on.
func TestAUD04_AForwarderSeesAClosedCollectorHoweverLateItReads(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	l := newLog(t, db)
	appendEach(t, db, sampleEvent(0), sampleEvent(1))
	if _, err := l.Sequence(ctx, 100); err != nil {
		t.Fatal(err)
	}
	c := newCollector(t)
	addr := c.ln.Addr().String()
	dial := func(ctx context.Context) (net.Conn, error) {
		raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		// Every deadline has passed by the time the read starts, as when
		// the forwarder's goroutine waits for a processor.
		conn := tls.Client(lateReader{raw.(*net.TCPConn)}, &tls.Config{RootCAs: c.roots, ServerName: "127.0.0.1"})
		return conn, conn.HandshakeContext(ctx)
	}
	f := &Forwarder{Log: l, Target: "syslog+tls://" + addr, Dial: dial, Format: FormatJSON, Batch: 1}
	for want := 1; want <= 2; want++ {
		if n, err := f.Round(ctx); err != nil || n != 1 {
			t.Fatalf("round %d: %d, %v", want, n, err)
		}
		c.ids(t, want)
	}
	appendEach(t, db, sampleEvent(2))
	if _, err := l.Sequence(ctx, 100); err != nil {
		t.Fatal(err)
	}
	c.close()
	if n, err := f.Round(ctx); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("a round after the collector closed: %d sent, %v", n, err)
	}
	if s := f.Status(); s.Sent != 2 {
		t.Fatalf("the place moved to %d without a collector", s.Sent)
	}
}

// lateReader is a connection whose reads start only after their deadline.
type lateReader struct{ *net.TCPConn }

func (c lateReader) SetReadDeadline(t time.Time) error {
	err := c.TCPConn.SetReadDeadline(t)
	if !t.IsZero() {
		time.Sleep(time.Until(t) + time.Millisecond)
	}
	return err
}

// A collector is reached over TLS with its certificate checked; in clear
// only on this machine.
func TestAUD04_ForwardingRefusesCleartextAndUnknownCollectors(t *testing.T) {
	for _, bad := range []string{"syslog+tcp://10.1.2.3:514", "udp://127.0.0.1:514", "siem.example:6514", "syslog+tls://", "syslog+tls://no-port"} {
		if _, err := DialSyslog(bad, nil); !errs.Is(err, errs.Invalid) {
			t.Errorf("DialSyslog(%q): %v, want refused", bad, err)
		}
	}
	if _, err := DialSyslog("syslog+tcp://127.0.0.1:514", nil); err != nil {
		t.Errorf("a collector on this machine in clear: %v", err)
	}
	c := newCollector(t)
	dial, err := DialSyslog("syslog+tls://"+c.ln.Addr().String(), nil) // the system's roots
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := dial(context.Background()); err == nil {
		conn.Write([]byte("x"))
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatal("a collector whose certificate no trusted root signed was accepted")
		}
		conn.Close()
	}
}

package audit

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/errs"
)

// Forwarder sends the sequenced audit trail, in index order, to a log
// collector outside the instance (a SIEM, a syslog server), as it grows
// (ASVS V16.4.3): one message per event, framed by octet counting (RFC 6587
// and RFC 5425, syslog over TLS). It starts at the beginning of the trail
// for a new target and keeps its place in the database (audit_forward), so
// a restart, or another node taking over (the lease "audit.forward"), goes
// on where it stopped. Delivery is at least once: events sent just before a
// crash are sent again, and a collector tells them apart by their id.
type Forwarder struct {
	Log *Log // the instance's trail: its database and verifier
	// Target names the collector, as the operator gave it; the place is
	// kept per target. Dial connects to it.
	Target string
	Dial   func(ctx context.Context) (net.Conn, error)
	// Format makes an event's message (without framing), e.g. an RFC 5424
	// line (auditadmin.Syslog).
	Format func(Event) ([]byte, error)
	Batch  int // events per round; 500 when zero

	mu   sync.Mutex
	conn net.Conn
	last error // the last round's failure, nil after a good round
	sent int64 // the place after the last good round
}

const forwardLease = "audit.forward"

// DialSyslog returns a Dial for a collector's URL: syslog+tls://host:port,
// verified against roots (the system's when nil), or syslog+tcp://host:port
// in clear, to a collector on this machine only.
func DialSyslog(raw string, roots *tls.Config) (func(ctx context.Context) (net.Conn, error), error) {
	scheme, addr, ok := cutScheme(raw)
	if !ok {
		return nil, errs.E(errs.Invalid, "--audit-forward must be syslog+tls://HOST:PORT (or syslog+tcp://127.0.0.1:PORT for a collector on this machine)")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return nil, errs.E(errs.Invalid, "--audit-forward %s: want HOST:PORT", addr)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	switch scheme {
	case "syslog+tls":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		if roots != nil {
			cfg.RootCAs = roots.RootCAs
		}
		return func(ctx context.Context) (net.Conn, error) {
			return (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", addr)
		}, nil
	case "syslog+tcp":
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, errs.E(errs.Invalid, "--audit-forward %s sends the trail in clear: allowed only to a collector on this machine (localhost, 127.0.0.1, ::1); use syslog+tls:// for %s", raw, host)
		}
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }, nil
	}
	return nil, errs.E(errs.Invalid, "--audit-forward: unknown scheme %q (want syslog+tls or syslog+tcp)", scheme)
}

func cutScheme(raw string) (scheme, rest string, ok bool) {
	for i := 0; i+3 <= len(raw); i++ {
		if raw[i:i+3] == "://" {
			return raw[:i], raw[i+3:], i > 0 && raw[i+3:] != ""
		}
	}
	return "", "", false
}

// Status is what the forwarder last did, for /readyz.
type ForwardStatus struct {
	Target string `json:"target"`
	Sent   int64  `json:"sent"` // events forwarded so far
	Error  string `json:"error,omitempty"`
}

// Status reports the forwarder's place and its last failure.
func (f *Forwarder) Status() ForwardStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := ForwardStatus{Target: f.Target, Sent: f.sent}
	if f.last != nil {
		s.Error = errs.SafeMessage(f.last)
	}
	return s
}

// Round forwards the next batch of sequenced events and stores the new
// place; it returns how many it sent. A failure to connect or to write
// leaves the place where it was, for the next round.
func (f *Forwarder) Round(ctx context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.round(ctx)
	f.last = err
	if err != nil && f.conn != nil {
		f.conn.Close()
		f.conn = nil
	}
	return n, err
}

func (f *Forwarder) round(ctx context.Context) (int, error) {
	db := f.Log.DB
	batch := f.Batch
	if batch <= 0 {
		batch = 500
	}
	var next int64
	err := db.QueryRowContext(ctx, `SELECT next_seq FROM audit_forward WHERE target = $1`, f.Target).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		next = 0
	} else if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "read the forwarding place")
	}
	f.sent = next
	var msgs [][]byte
	for i := range int64(batch) {
		ev, err := f.Log.EventAt(ctx, next+i)
		if errs.Is(err, errs.NotFound) {
			break
		}
		if err != nil {
			return 0, err
		}
		msg, err := f.Format(ev)
		if err != nil {
			return 0, fmt.Errorf("format audit event %d: %w", next+i, err)
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if f.conn != nil && !alive(f.conn) {
		// The collector closed the connection (a restart): what is
		// written to it now would be lost without an error.
		f.conn.Close()
		f.conn = nil
	}
	if f.conn == nil {
		if f.conn, err = f.Dial(ctx); err != nil {
			return 0, errs.Wrap(errs.Unavailable, err, "connect to the log collector "+f.Target)
		}
	}
	f.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	var frame []byte
	for _, m := range msgs {
		frame = append(frame, strconv.Itoa(len(m))...)
		frame = append(frame, ' ')
		frame = append(frame, m...)
	}
	if _, err := f.conn.Write(frame); err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "send to the log collector "+f.Target)
	}
	next += int64(len(msgs))
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_forward (target, next_seq) VALUES ($1, $2)
		ON CONFLICT (target) DO UPDATE SET next_seq = excluded.next_seq WHERE audit_forward.next_seq < excluded.next_seq`, f.Target, next); err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "store the forwarding place")
	}
	f.sent = next
	return len(msgs), nil
}

// Run forwards until ctx ends, on the node that holds the lease, a round
// every interval (at once again while there is more to send).
func (f *Forwarder) Run(ctx context.Context, every time.Duration) {
	holder := f.Log.Holder
	if holder == "" {
		holder = processHolder
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	var reported string
	for {
		select {
		case <-ctx.Done():
			releaseLease(context.WithoutCancel(ctx), f.Log.DB, forwardLease, holder)
			f.mu.Lock()
			if f.conn != nil {
				f.conn.Close()
			}
			f.mu.Unlock()
			return
		case <-timer.C:
		}
		n := 0
		held, err := acquireLease(ctx, f.Log.DB, forwardLease, holder, 3*every)
		if err == nil && held {
			n, err = f.Round(ctx)
		}
		if msg := fmt.Sprint(err); err != nil && msg != reported {
			f.Log.failf("audit forwarding to %s: %v", f.Target, err)
			reported = msg
		} else if err == nil {
			reported = ""
		}
		if n > 0 {
			timer.Reset(0)
		} else {
			timer.Reset(every)
		}
	}
}

// FormatJSON makes an event's message its JSON, for collectors that take
// JSON lines.
func FormatJSON(ev Event) ([]byte, error) { return json.Marshal(ev) }

// alive reports whether the collector has not closed conn. A collector
// sends nothing, so the kernel holding the connection's end, a reset, or
// bytes on a connection in clear mean it is gone. It asks the kernel
// without waiting: a read with a short deadline answered "alive" whenever
// this goroutine was held up past the deadline before it read, and a round
// then wrote to a closed connection, lost its batch and moved the place on.
func alive(conn net.Conn) bool {
	tc, isTLS := conn.(*tls.Conn)
	raw := conn
	if isTLS {
		raw = tc.NetConn()
	}
	for range 20 {
		st, ok := peek(raw)
		if !ok {
			return readTimesOut(conn, time.Millisecond)
		}
		switch {
		case st == peekNothing:
			return true
		case st == peekClosed || !isTLS:
			return false
		}
		// Bytes wait on a TLS connection: session tickets sent after the
		// handshake, which the TLS layer takes, or the collector's
		// close_notify, which ends the read.
		if !readTimesOut(conn, 10*time.Millisecond) {
			return false
		}
	}
	return false // still unread: connect again rather than guess
}

// readTimesOut reads from conn until the deadline and reports whether the
// read found nothing before it.
func readTimesOut(conn net.Conn, wait time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(wait))
	defer conn.SetReadDeadline(time.Time{})
	_, err := conn.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// peekState is what a socket holds to read.
type peekState int

const (
	peekNothing peekState = iota + 1
	peekBytes
	peekClosed // the peer's end, a reset, or a failure to ask
)

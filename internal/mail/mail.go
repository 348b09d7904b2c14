// Package mail sends the platform's e-mails: notices with a link into the
// application and nothing confidential (WEB-07). Two senders exist: SMTP,
// which insists on STARTTLS unless told otherwise, and a file outbox for
// development and tests.
package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
)

// Message is one e-mail: plain text, one recipient.
type Message struct {
	To      string
	Subject string
	Text    string
}

// Sender delivers messages.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// format renders a message as RFC 5322 text.
func format(from string, m Message, now time.Time) ([]byte, error) {
	for _, v := range []string{from, m.To, m.Subject} {
		if strings.ContainsAny(v, "\r\n") {
			return nil, errs.E(errs.Invalid, "a mail header may not contain a line break")
		}
	}
	if _, err := mail.ParseAddress(m.To); err != nil {
		return nil, errs.E(errs.Invalid, "bad recipient address")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@custodia>\r\n",
		from, m.To, mime.QEncoding.Encode("utf-8", m.Subject), now.Format(time.RFC1123Z), ids.New())
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n", "\r\n"))
	return []byte(b.String()), nil
}

// Outbox writes each message as a file in a folder (mode 0600), for
// development and tests: nothing leaves the machine.
type Outbox struct {
	Dir  string
	From string
}

// Send writes the message to <Dir>/<time>-<id>.eml.
func (o *Outbox) Send(ctx context.Context, m Message) error {
	now := time.Now().UTC()
	b, err := format(o.From, m, now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("mail outbox: %w", err)
	}
	name := filepath.Join(o.Dir, now.Format("20060102T150405.000000")+"-"+ids.New()+".eml")
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("mail outbox: %w", err)
	}
	return os.Rename(tmp, name)
}

// SMTP sends through a mail server.
type SMTP struct {
	Addr     string // host:port
	Username string
	Password string
	From     string
	// Insecure allows a server without STARTTLS (a local relay only).
	Insecure bool
	// TLS verifies the server; nil means the system roots and Addr's host.
	TLS *tls.Config
}

// ParseSMTPURL reads smtp://[user[:password]@]host[:port][?insecure=1];
// port 587 by default. ?insecure=1, which allows a server without
// STARTTLS, is accepted for a relay on this machine only.
func ParseSMTPURL(raw, from string) (*SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "smtp" || u.Hostname() == "" {
		return nil, errs.E(errs.Invalid, "--smtp-url must look like smtp://user:password@host:587")
	}
	if _, err := mail.ParseAddress(from); err != nil {
		return nil, errs.E(errs.Invalid, "--mail-from %q is not an e-mail address", from)
	}
	port := u.Port()
	if port == "" {
		port = "587"
	}
	s := &SMTP{Addr: net.JoinHostPort(u.Hostname(), port), From: from, Insecure: u.Query().Get("insecure") == "1"}
	if s.Insecure && !loopback(u.Hostname()) {
		// Without STARTTLS the mail and the password cross the network in
		// clear (ASVS V12.3.1): only a relay on this machine is spared it.
		return nil, errs.E(errs.Invalid, "--smtp-url with ?insecure=1 sends mail in clear text: allowed only to a relay on this machine (localhost, 127.0.0.1, ::1), not %s", u.Hostname())
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	return s, nil
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrNoSTARTTLS is returned when the server offers no STARTTLS and
// Insecure is not set: Custodia does not send mail in clear text.
var ErrNoSTARTTLS = errors.New("the mail server does not offer STARTTLS")

// Send delivers the message.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	b, err := format(s.From, m, time.Now())
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	d := net.Dialer{Timeout: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("connect to mail server: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(time.Minute))
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("mail server: %w", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := s.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("mail server STARTTLS: %w", err)
		}
	} else if !s.Insecure {
		return ErrNoSTARTTLS
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return fmt.Errorf("mail server login: %w", err)
		}
	}
	from, _ := mail.ParseAddress(s.From)
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("mail server: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("mail server refused the recipient: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("mail server: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("mail server: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("mail server: %w", err)
	}
	return c.Quit()
}

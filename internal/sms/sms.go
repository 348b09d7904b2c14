// Package sms sends the platform's text messages: second-factor codes
// (AUTH-08) and nothing else. A Sender is pluggable: a gateway of the
// operator's choice implements it; Outbox, for development and tests,
// writes each message to a file and sends nothing. Messages are never
// logged: a text holds a code.
package sms

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
)

// Message is one text message to one phone number in E.164 form.
type Message struct {
	To   string
	Text string
}

// Sender delivers text messages.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// NormalizePhone checks a phone number and returns its E.164 form
// ("+" and 8 to 15 digits). Spaces, dashes, dots and parentheses a person
// types are dropped; a number must start with "+" and its country code.
func NormalizePhone(s string) (string, error) {
	bad := errs.E(errs.Invalid, "a phone number must be in international form: + and the country code, then 8 to 15 digits in all")
	s = strings.TrimSpace(s)
	if len(s) > 32 || !strings.HasPrefix(s, "+") {
		return "", bad
	}
	var b strings.Builder
	b.WriteByte('+')
	for _, r := range s[1:] {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", bad
		}
	}
	out := b.String()
	if n := len(out) - 1; n < 8 || n > 15 || out[1] == '0' {
		return "", bad
	}
	return out, nil
}

// Mask shows a phone number with all but its country prefix and last two
// digits hidden, for telling a person where a code went.
func Mask(phone string) string {
	if len(phone) < 6 {
		return "••"
	}
	return phone[:3] + strings.Repeat("•", utf8.RuneCountInString(phone)-5) + phone[len(phone)-2:]
}

// Outbox writes each message as a file in a folder (mode 0600), for
// development and tests: nothing leaves the machine.
type Outbox struct {
	Dir string
}

// Send writes the message to <Dir>/<time>-<id>.sms.
func (o *Outbox) Send(ctx context.Context, m Message) error {
	if _, err := NormalizePhone(m.To); err != nil {
		return err
	}
	if strings.ContainsAny(m.To, "\r\n") {
		return errs.E(errs.Invalid, "bad recipient")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("sms outbox: %w", err)
	}
	now := time.Now().UTC()
	name := filepath.Join(o.Dir, now.Format("20060102T150405.000000")+"-"+ids.New()+".sms")
	body := "To: " + m.To + "\nDate: " + now.Format(time.RFC3339) + "\n\n" + m.Text + "\n"
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return fmt.Errorf("sms outbox: %w", err)
	}
	return os.Rename(tmp, name)
}

// Recorder keeps sent messages in memory, by recipient, for tests and
// for embedding Custodia where the caller delivers texts itself.
type Recorder struct {
	mu   sync.Mutex
	sent map[string][]Message
}

// Send records the message.
func (r *Recorder) Send(ctx context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent == nil {
		r.sent = map[string][]Message{}
	}
	r.sent[m.To] = append(r.sent[m.To], m)
	return nil
}

// Last returns the latest message sent to the number.
func (r *Recorder) Last(to string) (Message, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := r.sent[to]
	if len(ms) == 0 {
		return Message{}, false
	}
	return ms[len(ms)-1], true
}

// Count returns how many messages went to the number.
func (r *Recorder) Count(to string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sent[to])
}

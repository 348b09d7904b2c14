package server

import (
	"context"
	"sync"

	"github.com/custodia/custodia/internal/mail"
)

// mailRecorder keeps the e-mails a test sends.
type mailRecorder struct {
	mu   sync.Mutex
	sent []mail.Message
}

func (r *mailRecorder) Send(_ context.Context, m mail.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, m)
	return nil
}

func (r *mailRecorder) all() []mail.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]mail.Message(nil), r.sent...)
}

// to answers the newest e-mail to an address.
func (r *mailRecorder) to(addr string) (mail.Message, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.sent) - 1; i >= 0; i-- {
		if r.sent[i].To == addr {
			return r.sent[i], true
		}
	}
	return mail.Message{}, false
}

package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"sync"
	"time"
)

// TicketKeyRotation is how often the keys that encrypt TLS session tickets
// are replaced. A ticket opens under the current key or the one before it,
// so a client resumes a session for at most twice this long, and a stolen
// ticket key opens the tickets of at most that long; Go's own rotation
// keeps a key for 7 days. Keys live in memory only: a restart, or another
// node, makes clients do a full handshake.
const TicketKeyRotation = time.Hour

// ticketKeys rotates the session-ticket keys of one server's TLS
// configuration.
type ticketKeys struct {
	mu   sync.Mutex
	cfg  *tls.Config
	keys [][32]byte // newest first, at most two
}

func newTicketKeys(cfg *tls.Config) (*ticketKeys, error) {
	t := &ticketKeys{cfg: cfg}
	return t, t.rotate()
}

// rotate makes a new key the one that encrypts and keeps the previous one
// only to decrypt; the key before that is forgotten.
func (t *ticketKeys) rotate() error {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("make a TLS session ticket key: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := [][32]byte{k}
	if len(t.keys) > 0 {
		keys = append(keys, t.keys[0])
	}
	for i := 1; i < len(t.keys); i++ {
		clear(t.keys[i][:])
	}
	t.keys = keys
	t.cfg.SetSessionTicketKeys(keys)
	return nil
}

func (t *ticketKeys) rotateEvery(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// crypto/rand does not fail on Linux; if it did, the keys
			// in use stay until the next tick.
			t.rotate()
		}
	}
}

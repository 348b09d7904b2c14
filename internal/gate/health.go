package gate

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// WriteFailureHold is how long a write that failed because the database
// could not write (disk full, connection lost: sqldb.IsOutage) keeps the
// gate reporting it through WriteFailure, unless a write succeeds first.
// It lets a load balancer that stopped sending traffic on /readyz send
// some again to find out, without a probe that writes.
const WriteFailureHold = 15 * time.Second

// writeHealth is how the gate's latest writes went, shared by its lanes.
type writeHealth struct {
	mu     sync.Mutex
	failed time.Time // when the latest write failed for an outage; zero once one succeeds
	err    error
}

// outcome records a write's end: err nil for a committed write, an outage
// for a failed one; other errors (the request's own) say nothing of the
// database.
func (h *writeHealth) outcome(err error) {
	if err != nil && !sqldb.IsOutage(err) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.failed, h.err = time.Time{}, nil
		return
	}
	h.failed, h.err = time.Now(), err
}

// WriteFailure reports the outage that failed the gate's latest write, if
// no write succeeded since and it failed less than WriteFailureHold ago:
// while a disk is full, or the database drops its connections, every write
// fails even though the database still answers a read, and readiness
// (AVL-05) must say so.
func (g *Gate) WriteFailure() error {
	h := g.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil || time.Since(h.failed) >= WriteFailureHold {
		return nil
	}
	return errs.Wrap(errs.Unavailable, h.err, "the latest write failed because the database could not write")
}

// answer is what a requester is told of err: a database outage that
// nothing explained better is Unavailable (503), never an internal error;
// an outage also counts as a failed write for WriteFailure.
func (g *Gate) answer(err error) error {
	if sqldb.IsOutage(err) {
		g.health.outcome(err)
	}
	return sqldb.Unavailable(err, "")
}

// PoolStats reports the connection pools of the databases the gate
// holds, by name ("clinical", "identity"), for monitoring (AVL-05).
func (g *Gate) PoolStats() map[string]sql.DBStats {
	out := map[string]sql.DBStats{"clinical": g.db.Stats()}
	if g.identity != nil {
		out["identity"] = g.identity.Stats()
	}
	return out
}

// probe is what ProbeKeys wraps: no secret, with associated data of its
// own, so the wrapped probe opens nothing else.
var probe, probeAD = make([]byte, 32), []byte("custodia key provider probe")

// ProbeKeys wraps and unwraps a probe with the key-encryption key, for
// monitoring its provider (AVL-05): how long the round took, and whether
// it answered.
func (g *Gate) ProbeKeys(ctx context.Context) (time.Duration, error) {
	if g.keys == nil || g.keys.KEK == nil {
		return 0, errs.E(errs.Unavailable, "no key-encryption key")
	}
	start := time.Now()
	w, err := g.keys.KEK.Wrap(ctx, probe, probeAD)
	if err == nil {
		_, err = g.keys.KEK.Unwrap(ctx, w, probeAD)
	}
	return time.Since(start), err
}

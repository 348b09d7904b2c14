package gate

import (
	"context"
	"database/sql"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Read runs work that only reads, audited as action. It is the same door as
// Do: the organization resolved, the requester's roles and the network
// policy loaded, nothing to query with before authz allowed the work, and
// no answer before the event that records the request, whatever its
// outcome, is committed (AUD-01). What differs is where the work runs: in
// a read-only snapshot of its own, beside the lanes rather than on their
// leaders, so that reads run side by side, never wait for a batch to commit,
// and hold no writer up. Only the event joins a batch, signed beforehand.
//
// The snapshot refuses every write, so work that writes fails there: such
// work belongs in Do. An identity read (Tx.Identity) is a read-only
// snapshot of the identity database in the same way.
func (g *Gate) Read(ctx context.Context, actor Actor, org Org, action string, work func(t *Tx) error) error {
	t, err := g.admit(ctx, actor, org, action)
	if err != nil {
		return g.answer(err)
	}
	answer, recorded := conclude(t, g.read(ctx, t, work))
	if !recorded {
		return g.answer(answer)
	}
	signed, err := audit.Sign(g.auditKey, t.events()...)
	if err != nil {
		return g.answer(errs.Wrap(errs.Unavailable, err, "the request could not be audited, so nothing was served"))
	}
	if err := g.lane().record(ctx, signed); err != nil {
		return g.answer(errs.Wrap(errs.Unavailable, err, "the request could not be audited, so nothing was served"))
	}
	if answer != nil || t.stream == nil {
		return g.answer(answer)
	}
	return g.answer(g.streamRead(ctx, t))
}

// read runs work in a read-only snapshot and gives the verdict on it.
func (g *Gate) read(ctx context.Context, t *Tx, work func(t *Tx) error) error {
	if t.denied != nil {
		return ErrDenied
	}
	reader := g.db.Reader()
	tx, err := reader.BeginTx(context.WithoutCancel(ctx), snapshot(reader.Dialect))
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the database is unavailable, so the request was not carried out")
	}
	defer tx.Rollback()
	t.tx, t.db, t.reading = tx, reader, true
	defer func() {
		if t.readIdentity != nil {
			t.readIdentity.Rollback()
		}
	}()
	return t.verdict(work(t))
}

// snapshot are the options of a read-only transaction that reads one
// consistent state of the database.
func snapshot(d sqldb.Dialect) *sql.TxOptions {
	opts := &sql.TxOptions{ReadOnly: true}
	if d == sqldb.Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	return opts
}

// readIdentityTx begins the identity snapshot of work run by Read.
func (t *Tx) readIdentityTx() (txQuerier, error) {
	reader := t.gate.identity.Reader()
	tx, err := reader.BeginTx(context.Background(), snapshot(reader.Dialect))
	if err != nil {
		return txQuerier{}, errs.Wrap(errs.Unavailable, err, "the identity database is unavailable, so the request was not carried out")
	}
	t.readIdentity = tx
	return txQuerier{tx, reader}, nil
}

// readEvents are the events of one read, waiting to be written.
type readEvents struct {
	evs []audit.Signed
	// written is closed once a leader handed them to batch b, or could
	// not (err).
	written chan struct{}
	b       *batch
	err     error
}

// record writes the events of a read in a batch of l and answers once
// that batch is committed. The events of the reads queued meanwhile are
// written together: the first of them that the lane's leader runs hands
// them all to its batch, which writes them at its commit with the
// events of its other requests, and every read answers after the commit
// of the batch that holds its own events.
func (l *lane) record(ctx context.Context, evs []audit.Signed) error {
	r := &readEvents{evs: evs, written: make(chan struct{})}
	l.pendingMu.Lock()
	l.pending = append(l.pending, r)
	l.pendingMu.Unlock()
	if err := l.do(ctx, false, (*job).appendPending); err != nil {
		return err
	}
	// They were taken at the latest when this request's own job ran,
	// which takes every read waiting.
	<-r.written
	if r.err != nil {
		return r.err
	}
	<-r.b.done
	return r.b.err
}

// appendPending hands the events of every read waiting to the batch, as
// one request of it, and tells each read where they went.
func (j *job) appendPending() error {
	l := j.lane
	l.pendingMu.Lock()
	rs := l.pending
	l.pending = nil
	l.pendingMu.Unlock()
	if len(rs) == 0 {
		return nil
	}
	var evs []audit.Signed
	for _, r := range rs {
		evs = append(evs, r.evs...)
	}
	var err error
	if j.b.broken != nil {
		err = errs.Wrap(errs.Unavailable, j.b.broken, "the database failed, so the request was not carried out")
	} else {
		j.b.deferred = append(j.b.deferred, signedEvents(evs))
		j.b.kept++
	}
	l.readWrites.Add(1)
	for _, r := range rs {
		r.b, r.err = j.b, err
		close(r.written)
	}
	return err
}

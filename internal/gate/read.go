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
// a read-only snapshot of its own, beside the lanes rather than in their
// turn, so that reads run side by side, never wait for a batch to commit,
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
	if err := g.lane().do(ctx, false, func(j *job) error { return j.appendSigned(signed) }); err != nil {
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

// appendSigned writes events signed beforehand in the batch, in a
// savepoint of their own.
func (j *job) appendSigned(evs []audit.Signed) error {
	if err := j.begin(); err != nil {
		return err
	}
	if _, err := audit.AppendSigned(context.Background(), j.lane.clinical.In(j.b.clinical), evs); err != nil {
		j.undo()
		return err
	}
	return j.keep()
}

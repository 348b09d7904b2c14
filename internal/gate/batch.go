package gate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Group commit. A request's work and its audit event commit together, and
// a commit that survives a crash costs a disk flush. Concurrent requests
// share it: a lane runs them one after another in one transaction per
// database (a batch), each in a savepoint of its own, and commits the batch
// once no more requests are queued or the batch is full. A request is
// answered only after the commit that holds its data and its event.
//
//   - One request's failure or denial rolls back its own savepoint only:
//     its work and the event it would have written. The event that records
//     the failure or denial is then written in the same batch.
//   - The identity transaction of the batch, begun by the first request
//     that needs it, commits before the clinical one (see IdentityTx and
//     lane.end), so the order of the two databases' commits is that of one
//     request.
//   - A batch that cannot commit, or a savepoint that cannot be rolled
//     back, fails every request in it; none is answered as done.
//   - The events of the requests whose work stays in the batch are
//     validated with the work, signed by their requesters once it ran, and
//     written together just before the commit, with those of the reads the
//     batch took (deferredEvents): the lane, which runs one request at a
//     time, spends neither a signature nor an insert on each.
//
// The work of a lane's requests runs on its leader, one goroutine that runs
// them one after another (lane.do, lane.lead); a panic in one is caught and
// raised again on its requester's goroutine. Its statements run without the
// request's cancellation: cancelling a statement can end the whole
// transaction, and with it other requests' work. A request gone before its
// work began is dropped.
//
// SQLite has one writer, so a gate on SQLite has one lane; on PostgreSQL
// the gate keeps several, each with its own transactions.

// maxBatch bounds a batch, so that one batch's commit is not put off for
// ever under a steady stream of requests.
const maxBatch = 64

// savepoint is the name of a request's savepoint in its batch.
const savepoint = "gate_request"

// lane runs the requests of one batch after another.
type lane struct {
	clinical, identity *sqldb.DB
	health             *writeHealth
	auditKey           note.Signer
	issued             *audit.Issued // told the events of each batch committed
	// queue holds the requests whose work has not run yet; leading says
	// that a leader runs them (lead). open is the leader's batch.
	mu      sync.Mutex
	queue   []*request
	leading bool
	open    *batch
	// commits counts the batches ended, committed or not.
	commits atomic.Int64
	// pending are the events of reads waiting to be written (read.go).
	pendingMu sync.Mutex
	pending   []*readEvents
	// readWrites counts the writes of reads' events, each of one read or
	// of several together.
	readWrites atomic.Int64
}

func newLane(clinical, identity *sqldb.DB, health *writeHealth, auditKey note.Signer) *lane {
	return &lane{clinical: clinical, identity: identity, health: health, auditKey: auditKey}
}

// batch is the transactions that the requests of one group commit share.
type batch struct {
	clinical *sql.Tx
	identity *sql.Tx // begun by the first request that asks
	// identityAfter orders the identity commit after the clinical one
	// (IdentityTx.CommitAfterEvent), for a batch of one request.
	identityAfter bool
	requests      int
	kept          int // requests whose work (and event) stayed in the batch
	// held and identityHeld say that the savepoint of the last request
	// kept is still open in the clinical and the identity transaction. On
	// PostgreSQL, where every statement is a round trip, a kept request's
	// savepoint is released with the next request's SAVEPOINT, in one
	// statement string, or by the commit (releaseWith).
	held, identityHeld bool
	broken             error // a savepoint that could not be rolled back
	// deferred are the events of the requests kept, to write at the
	// commit.
	deferred []*deferredEvents
	done     chan struct{}
	err      error // what the commit answered
}

// job is one request's part of its batch.
type job struct {
	b             *batch
	lane          *lane
	open          bool // the request's savepoint on the clinical transaction
	identityBegun bool // the request's savepoint on the identity transaction
	// after runs on the requester's goroutine once the work ran, before
	// it waits for the commit.
	after func()
}

// deferredEvents are the events of a request kept in its batch, validated
// with its work (audit.Prepare) and signed once: by the requester once its
// work ran, or by the commit if that comes first. The commit writes the events
// of every kept request together, in the batch's transaction; one that
// cannot be signed or written fails the whole batch, as a failed commit
// does.
type deferredEvents struct {
	unsigned audit.Unsigned
	key      note.Signer
	once     sync.Once
	signed   []audit.Signed
	err      error
}

// signedEvents are events signed beforehand (the events of reads), as
// deferred events.
func signedEvents(evs []audit.Signed) *deferredEvents {
	d := &deferredEvents{signed: evs}
	d.once.Do(func() {})
	return d
}

func (d *deferredEvents) sign() {
	d.once.Do(func() { d.signed, d.err = d.unsigned.Sign(d.key) })
}

// deferEvents registers evs, validated, to be written at the commit of the
// request's batch, and signed by the requester once its work ran.
func (j *job) deferEvents(evs []audit.Event) error {
	u, err := audit.Prepare(evs...)
	if err != nil {
		return err
	}
	d := &deferredEvents{unsigned: u, key: j.lane.auditKey}
	j.b.deferred = append(j.b.deferred, d)
	j.after = d.sign
	return nil
}

// signedDeferred waits for the events deferred in b to be signed, and
// returns them.
func (b *batch) signedDeferred() ([]audit.Signed, error) {
	var evs []audit.Signed
	for _, d := range b.deferred {
		d.sign()
		if d.err != nil {
			return nil, errs.Wrap(errs.Unavailable, d.err, "the request could not be audited, so it was not carried out")
		}
		evs = append(evs, d.signed...)
	}
	return evs, nil
}

// request is one request waiting in its lane's queue, and once run, what
// its work answered.
type request struct {
	ctx   context.Context
	alone bool
	fn    func(j *job) error
	// ran is closed once the request's work ran, or was dropped; j, err
	// and panicked are set before.
	ran      chan struct{}
	j        *job
	err      error
	panicked any
}

// do runs fn as one request in the lane's open batch (a batch of its own
// if alone) and answers, once the batch is committed, what fn answered. A
// failed commit answers for every request of the batch.
//
// The request joins the lane's queue, and the lane's leader, a goroutine
// that lives while requests are queued or a batch is open, runs their work
// one after another and commits (lead): the lane passes from one request
// to the next without waking a goroutine, and no requester's answer waits
// for the requests after it. The requester learns when its work has run, signs its
// events meanwhile (job.after), and waits for the commit.
func (l *lane) do(ctx context.Context, alone bool, fn func(j *job) error) error {
	r := &request{ctx: ctx, alone: alone, fn: fn, ran: make(chan struct{})}
	l.mu.Lock()
	l.queue = append(l.queue, r)
	start := !l.leading
	l.leading = true
	l.mu.Unlock()
	if start {
		go l.lead()
	}
	select {
	case <-r.ran:
	case <-ctx.Done():
		if l.withdraw(r) {
			return errs.Wrap(errs.Unavailable, ctx.Err(), "the request ended before it was carried out")
		}
		<-r.ran // already taken by the leader: its outcome stands
	}
	if r.panicked != nil {
		panic(r.panicked) // nothing of the request is left in the batch
	}
	if r.j == nil {
		return r.err // dropped, or no batch could begin
	}
	if r.j.after != nil {
		r.j.after()
	}
	b := r.j.b
	<-b.done
	if r.err != nil && (errs.KindOf(r.err) == errs.Unavailable || sqldb.IsOutage(r.err)) {
		// Not carried out either way, and its own failure (a database or a
		// key it could not reach) says best why.
		return r.err
	}
	if b.err != nil {
		return b.err
	}
	return r.err
}

// lead runs the queued requests in batches until none is queued and the
// last batch is committed. A batch is committed once no request is queued,
// or it is full, or a request of it must commit alone or broke it. Each
// request learns that its work ran before the commit.
func (l *lane) lead() {
	for {
		r, more := l.pop()
		if !more {
			return
		}
		if r == nil {
			l.commit(l.open)
			continue
		}
		b, ok := l.batchFor(r)
		if !ok {
			continue
		}
		j := &job{b: b, lane: l}
		r.j = j
		r.panicked, r.err = j.run(r.fn)
		b.requests++
		close(r.ran)
		if r.alone || b.broken != nil || b.requests >= maxBatch {
			l.commit(b)
		}
	}
}

// batchFor answers the batch r runs in: the open one, or a new one if none
// is open or r must be alone. A request gone before its work is dropped,
// and one for which no batch can begin fails; ok is false for both, and r
// is told.
func (l *lane) batchFor(r *request) (b *batch, ok bool) {
	if err := r.ctx.Err(); err != nil {
		r.err = errs.Wrap(errs.Unavailable, err, "the request ended before it was carried out")
		close(r.ran)
		return nil, false
	}
	if r.alone && l.open != nil {
		l.commit(l.open)
	}
	if l.open == nil {
		b, err := l.begin()
		if err != nil {
			r.err = err
			close(r.ran)
			return nil, false
		}
		l.open = b
	}
	return l.open, true
}

// pop takes the first request of the queue for the leader. With none
// queued it answers nil while a batch is open, to be committed; with none
// open either, more is false and the leader ends, in the same critical
// section as a request that joins the queue would see it lead, so that a
// request is never left queued without a leader.
func (l *lane) pop() (r *request, more bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		if l.open == nil {
			l.leading = false
			return nil, false
		}
		return nil, true
	}
	r = l.queue[0]
	l.queue[0] = nil
	l.queue = l.queue[1:]
	return r, true
}

// withdraw takes r out of the queue, if no leader took it yet.
func (l *lane) withdraw(r *request) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, q := range l.queue {
		if q == r {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			return true
		}
	}
	return false
}

// begin opens a batch. Its transactions are the lane's, not any request's:
// no request's end may end them.
func (l *lane) begin() (*batch, error) {
	tx, err := l.clinical.BeginTx(context.Background(), nil)
	if err != nil {
		l.health.outcome(err)
		return nil, errs.Wrap(errs.Unavailable, err, "the database is unavailable, so the request was not carried out")
	}
	return &batch{clinical: tx, done: make(chan struct{})}, nil
}

// commit ends the open batch b and tells its requests how it ended.
func (l *lane) commit(b *batch) {
	l.open = nil
	b.err = l.end(b)
	if b.err != nil || b.kept > 0 {
		// A committed write, or one the database could not make
		// (WriteFailure); a batch that kept nothing says nothing.
		l.health.outcome(b.err)
	}
	l.commits.Add(1)
	close(b.done)
}

func (b *batch) rollback() {
	b.clinical.Rollback()
	if b.identity != nil {
		b.identity.Rollback()
	}
}

// end writes the events of b and commits its transactions: the events,
// signed (most were, by their requesters), are inserted in the clinical
// transaction; then the identity transaction commits, then the clinical
// one, as IdentityTx orders them, or, for a batch whose identity changes
// are removals (identityAfter), the clinical transaction first. A step
// that fails rolls back what is not committed yet.
func (l *lane) end(b *batch) error {
	if b.broken != nil {
		b.rollback()
		return errs.Wrap(errs.Unavailable, b.broken, "the database failed while the request was carried out, so it was not")
	}
	evs, err := b.signedDeferred()
	if err == nil && len(evs) > 0 {
		if _, err = audit.AppendSigned(context.Background(), l.clinical.In(b.clinical), evs); err != nil {
			err = errs.Wrap(errs.Unavailable, err, "the request could not be audited, so it was not carried out")
		}
	}
	if err != nil {
		b.rollback()
		return err
	}
	if b.identity != nil && !b.identityAfter {
		if err := b.identity.Commit(); err != nil {
			b.clinical.Rollback()
			return errs.Wrap(errs.Unavailable, err, "the identity database did not commit, so the request was not carried out")
		}
	}
	if err := b.clinical.Commit(); err != nil {
		if b.identity != nil && b.identityAfter {
			b.identity.Rollback()
		}
		return errs.Wrap(errs.Unavailable, err, "the database did not commit, so the request was not carried out")
	}
	l.issued.Add(evs)
	if b.identity != nil && b.identityAfter {
		if err := b.identity.Commit(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "the change is recorded, but the identity database did not confirm it; repeat the request")
		}
	}
	return nil
}

// run runs fn, turning a panic into its value, which the requester raises
// again (lane.do); the savepoints fn left open are rolled back.
func (j *job) run(fn func(j *job) error) (panicked any, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
			j.undo()
		}
	}()
	return nil, fn(j)
}

// begin opens the request's savepoint in the batch's clinical transaction.
func (j *job) begin() error {
	if j.b.broken != nil {
		return errs.Wrap(errs.Unavailable, j.b.broken, "the database failed, so the request was not carried out")
	}
	if _, err := j.lane.clinical.In(j.b.clinical).ExecContext(context.Background(), releaseWith(&j.b.held, "SAVEPOINT "+savepoint)); err != nil {
		j.b.broken = err
		return errs.Wrap(errs.Unavailable, err, "the database is unavailable, so the request was not carried out")
	}
	j.open = true
	return nil
}

// identity returns the batch's identity transaction with the request's
// savepoint open in it, beginning either on first use.
func (j *job) identity() (*sql.Tx, error) {
	if j.lane.identity == nil {
		return nil, errs.E(errs.Unavailable, "the identity database is not configured on this server")
	}
	if j.b.identity == nil {
		tx, err := j.lane.identity.BeginTx(context.Background(), nil)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "the identity database is unavailable, so the request was not carried out")
		}
		j.b.identity = tx
	}
	if !j.open {
		return nil, errs.E(errs.Internal, "the identity database was asked for outside the request's work")
	}
	if !j.identityBegun {
		if _, err := j.lane.identity.In(j.b.identity).ExecContext(context.Background(), releaseWith(&j.b.identityHeld, "SAVEPOINT "+savepoint)); err != nil {
			j.b.broken = err
			return nil, errs.Wrap(errs.Unavailable, err, "the identity database is unavailable, so the request was not carried out")
		}
		j.identityBegun = true
	}
	return j.b.identity, nil
}

// keep releases the request's savepoints: its work stays in the batch.
func (j *job) keep() error {
	if !j.open {
		return nil
	}
	if j.lane.clinical.Dialect == sqldb.Postgres {
		j.b.held, j.b.identityHeld = true, j.b.identityHeld || j.identityBegun
	} else {
		j.exec("RELEASE SAVEPOINT " + savepoint)
	}
	j.open, j.identityBegun = false, false
	if j.b.broken != nil {
		return errs.Wrap(errs.Unavailable, j.b.broken, "the database failed, so the request was not carried out")
	}
	j.b.kept++
	return nil
}

// undo rolls the request's savepoints back: nothing of its work stays.
func (j *job) undo() {
	if !j.open {
		return
	}
	if j.lane.clinical.Dialect == sqldb.Postgres {
		j.exec("ROLLBACK TO SAVEPOINT " + savepoint + "; RELEASE SAVEPOINT " + savepoint)
	} else {
		j.exec("ROLLBACK TO SAVEPOINT " + savepoint)
		j.exec("RELEASE SAVEPOINT " + savepoint)
	}
	j.open, j.identityBegun = false, false
}

// releaseWith returns stmt preceded, in the same statement string, by the
// release of the savepoint that *held says is still open (PostgreSQL runs
// a string of statements without parameters in one round trip), and
// marks it released.
func releaseWith(held *bool, stmt string) string {
	if !*held {
		return stmt
	}
	*held = false
	return "RELEASE SAVEPOINT " + savepoint + "; " + stmt
}

// exec runs a savepoint statement on the request's transactions; one that
// fails breaks the batch.
func (j *job) exec(stmt string) {
	ctx := context.Background()
	if _, err := j.lane.clinical.In(j.b.clinical).ExecContext(ctx, stmt); err != nil && j.b.broken == nil {
		j.b.broken = fmt.Errorf("%s: %w", stmt, err)
	}
	if j.identityBegun {
		if _, err := j.lane.identity.In(j.b.identity).ExecContext(ctx, stmt); err != nil && j.b.broken == nil {
			j.b.broken = fmt.Errorf("%s on the identity database: %w", stmt, err)
		}
	}
}

// append writes ev in the batch, in a savepoint of its own.
func (j *job) append(ctx context.Context, ev audit.Event) error {
	if err := j.begin(); err != nil {
		return err
	}
	if _, err := audit.Append(context.WithoutCancel(ctx), j.lane.clinical.In(j.b.clinical), j.lane.auditKey, ev); err != nil {
		j.undo()
		return err
	}
	return j.keep()
}

// errAlone answers work that asked for an order of commits that only a
// batch of its own can keep.
var errAlone = errors.New("work whose identity changes commit after its event must run alone (Gate.DoAlone)")

package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Log integrates queued events into the tree and signs checkpoints. Every
// node may hold a Log on the same database: sequencing is serialized by the
// database (an advisory lock on PostgreSQL, the write lock on SQLite), so
// two nodes never assign the same index, and Run elects one node to do the
// work.
type Log struct {
	DB       *sqldb.DB
	Signer   note.Signer
	Verifier note.Verifier
	Origin   string // first line of the checkpoint body, e.g. "custodia.audit/<instance id>"
	Holder   string // this node's id for the lease; random per process if empty
	// Logf reports what the sequencer does (it took or lost the lease);
	// Failf reports what it failed to do (a round that could not sequence,
	// checkpoint or renew its lease), which an operator must see: it goes
	// to Logf when nil.
	Logf  func(format string, args ...any)
	Failf func(format string, args ...any)
	// Witnesses receive each checkpoint the sequencer signs (witness.go).
	Witnesses []Witness
	// Issued are the events this process wrote, whose signatures the
	// sequencer need not check again; nil checks every signature.
	Issued *Issued

	tick func(held bool) // tests observe Run's lease decisions

	split     refusal // a witness saw a larger or different tree
	witnessMu sync.Mutex
	witnesses map[string]*witnessState // by Witness.Name
	witnessed int64                    // size of the latest checkpoint handed to witnesses
}

// sequencerLock is the PostgreSQL advisory lock key that serializes
// sequencing and checkpointing across nodes.
const sequencerLock = 0x617564697431 // "audit1"

// seqBatch is how many events one sequencing transaction integrates when
// the Log drains the queue itself.
const seqBatch = 1000

// processHolder names this process for leases when Log.Holder is empty.
var processHolder = ids.New()

func (l *Log) ready(sign bool) error {
	switch {
	case l.DB == nil:
		return errs.E(errs.Internal, "audit log has no database")
	case sign && l.Signer == nil:
		return errs.E(errs.Internal, "audit log has no signing key")
	case sign && l.Verifier == nil:
		return errs.E(errs.Internal, "audit log has no verifier key")
	case sign && !validOrigin(l.Origin):
		return errs.E(errs.Internal, "audit log origin %q is empty or holds control characters", l.Origin)
	}
	return nil
}

// Sequence integrates up to limit queued events, oldest first, into the
// tree in one transaction, and returns how many it integrated. With a
// signing key it signs a checkpoint of the grown tree in that transaction
// too, so that every batch of leaves is signed as it is integrated: the
// trail never holds a sequenced event that no signed checkpoint covers.
//
// It adopts only events signed by the audit key (Append): a queued event
// that SQL alone wrote, or whose signature does not verify, is taken off the
// queue, never integrated, and reported through Logf; its row stays for the
// verifier to report. Unsigned events from before event signing are adopted
// until the trail holds its first signed event.
func (l *Log) Sequence(ctx context.Context, limit int) (int, error) {
	if err := l.ready(l.Signer != nil); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, errs.E(errs.Invalid, "audit sequencing needs a positive batch size")
	}
	// The signatures are checked before the write transaction, which on
	// SQLite holds the only write lock and stops every request's commit
	// while it lasts: a check costs more than all the rest of an event's
	// sequencing.
	checked, err := l.checkQueued(ctx, limit)
	if err != nil {
		return 0, asUnavailable(err, "sequence audit events")
	}
	var n int
	var refused []string
	err = l.DB.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, refused, err = l.sequence(ctx, tx, limit, checked)
		return err
	})
	if err != nil {
		return 0, asUnavailable(err, "sequence audit events")
	}
	for _, r := range refused {
		l.logf("refused queued audit event %s; the trail was altered, run custodia audit verify", r)
	}
	return n, nil
}

// drain sequences until the queue is empty.
func (l *Log) drain(ctx context.Context) error {
	for {
		n, err := l.Sequence(ctx, seqBatch)
		if err != nil || n < seqBatch {
			return err
		}
	}
}

func lockSequencer(ctx context.Context, tx *sql.Tx, d sqldb.Dialect) error {
	if d != sqldb.Postgres {
		return nil // an immediate transaction holds SQLite's only write lock
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(sequencerLock))
	return err
}

func logSize(ctx context.Context, q sqldb.Querier) (int64, error) {
	var size int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_log`).Scan(&size)
	return size, err
}

// signedEra reports whether the trail's last event is signed: from then on
// every event must be.
func signedEra(ctx context.Context, q sqldb.Querier, size int64) (bool, error) {
	if size == 0 {
		return false, nil
	}
	var sig sql.NullString
	err := q.QueryRowContext(ctx, `SELECT e.sig FROM audit_log l JOIN audit_events e ON e.id = l.event_id
		WHERE l.seq = $1`, size-1).Scan(&sig)
	if errors.Is(err, sql.ErrNoRows) {
		return false, errs.E(errs.Internal, "the last audit event (index %d) is missing; the trail was altered, run the verifier", size-1)
	}
	return sig.Valid && sig.String != "", err
}

// queueHead reads the first $1 queued events, oldest first, each with its
// event's body and signature (NULL for a queued id without an event row).
const queueHead = `SELECT q.event_id, e.body, e.sig FROM audit_queue q
	LEFT JOIN audit_events e ON e.id = q.event_id
	ORDER BY q.queued_at, q.event_id LIMIT $1`

// checkedEvent is a queued event whose signature was checked before the
// sequencer's write transaction, with the body and signature checked.
type checkedEvent struct {
	signedEvent
	ok bool
}

// checkQueued checks the signatures of the first limit queued events, read
// outside any write transaction, and returns the verdicts by event id.
func (l *Log) checkQueued(ctx context.Context, limit int) (map[string]checkedEvent, error) {
	if l.Verifier == nil {
		return nil, nil
	}
	rows, err := l.DB.Reader().QueryContext(ctx, queueHead, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	var evs []signedEvent
	for rows.Next() {
		var id string
		var body, sig sql.NullString
		if err := rows.Scan(&id, &body, &sig); err != nil {
			return nil, err
		}
		if body.Valid && sig.String != "" {
			ids, evs = append(ids, id), append(evs, signedEvent{body.String, sig.String})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ok := l.checkSignatures(evs)
	out := make(map[string]checkedEvent, len(evs))
	for i, id := range ids {
		out[id] = checkedEvent{evs[i], ok[i]}
	}
	return out, nil
}

// sequence integrates a batch and returns how many it integrated and the
// ids of the queued events it refused. checked holds verdicts on
// signatures made before the transaction (checkQueued); one counts only
// for the very body and signature it was made on, and every other
// signature is checked here.
func (l *Log) sequence(ctx context.Context, tx *sql.Tx, limit int, checked map[string]checkedEvent) (int, []string, error) {
	if err := lockSequencer(ctx, tx, l.DB.Dialect); err != nil {
		return 0, nil, err
	}
	size, err := logSize(ctx, tx)
	if err != nil {
		return 0, nil, err
	}
	signed, err := signedEra(ctx, tx, size)
	if err != nil {
		return 0, nil, err
	}
	rows, err := tx.QueryContext(ctx, queueHead, limit)
	if err != nil {
		return 0, nil, err
	}
	type queued struct {
		id        string
		body, sig sql.NullString
	}
	var batch []queued
	for rows.Next() {
		var q queued
		if err := rows.Scan(&q.id, &q.body, &q.sig); err != nil {
			rows.Close()
			return 0, nil, err
		}
		if !q.body.Valid {
			rows.Close()
			return 0, nil, errs.E(errs.Internal, "queued audit event %s has no event row; the trail was altered, run the verifier", q.id)
		}
		batch = append(batch, q)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	var toCheck []signedEvent
	verdict := make([]bool, len(batch))
	var unchecked []int // indexes into batch of the signatures to check here
	for i, q := range batch {
		if q.sig.String == "" {
			continue
		}
		ev := signedEvent{q.body.String, q.sig.String}
		if c, ok := checked[q.id]; ok && c.signedEvent == ev {
			verdict[i] = c.ok
			continue
		}
		toCheck, unchecked = append(toCheck, ev), append(unchecked, i)
	}
	if len(toCheck) > 0 && l.Verifier == nil {
		return 0, nil, errs.E(errs.Internal, "audit log has no verifier key to check queued events")
	}
	for j, ok := range l.checkSignatures(toCheck) {
		verdict[unchecked[j]] = ok
	}
	var eventIDs, leaves, refused []string
	for i, q := range batch {
		switch {
		case q.sig.String != "":
			if !verdict[i] {
				refused = append(refused, q.id+" (its signature is not the audit key's)")
				continue
			}
		case signed:
			refused = append(refused, q.id+" (not signed by the audit key)")
			continue
		}
		signed = signed || q.sig.String != ""
		eventIDs = append(eventIDs, q.id)
		leaves = append(leaves, string(leafData(q.body.String, q.sig.String)))
	}
	r := newHashReader(ctx, tx)
	logRows := make([][]any, 0, len(eventIDs))
	var hashRows [][]any
	for i, data := range leaves {
		n := size + int64(i)
		leaf := tlog.RecordHash([]byte(data))
		hs, err := tlog.StoredHashesForRecordHash(n, leaf, r)
		if err != nil {
			return 0, nil, err
		}
		idx := tlog.StoredHashIndex(0, n)
		for j, h := range hs {
			r.cache[idx+int64(j)] = h
			hashRows = append(hashRows, []any{idx + int64(j), encodeHash(h)})
		}
		logRows = append(logRows, []any{n, eventIDs[i], encodeHash(leaf)})
	}
	q := l.DB.In(tx) // names the dialect: anonymous placeholders on SQLite
	if len(logRows) > 0 {
		if err := insertRows(ctx, q, `INSERT INTO audit_log (seq, event_id, leaf) VALUES `, logRows, nil); err != nil {
			return 0, nil, err
		}
		if err := insertRows(ctx, q, `INSERT INTO audit_hashes (idx, hash) VALUES `, hashRows, nil); err != nil {
			return 0, nil, err
		}
	}
	done := append(append([]string(nil), eventIDs...), idsOf(refused)...)
	for rest := done; len(rest) > 0; {
		k := min(len(rest), deleteChunk)
		args := make([]any, k)
		for i, id := range rest[:k] {
			args[i] = id
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM audit_queue WHERE event_id IN (`+sqldb.Placeholders(l.DB.Dialect, 1, k)+`)`, args...); err != nil {
			return 0, nil, err
		}
		rest = rest[k:]
	}
	if len(eventIDs) > 0 && l.Signer != nil {
		if _, err := l.signCheckpoint(ctx, tx, r, size+int64(len(eventIDs))); err != nil {
			return 0, nil, err
		}
	}
	return len(eventIDs), refused, nil
}

// idsOf strips the reasons from refused.
func idsOf(refused []string) []string {
	out := make([]string, len(refused))
	for i, r := range refused {
		out[i], _, _ = strings.Cut(r, " ")
	}
	return out
}

// Checkpoint sequences everything queued and returns a signed checkpoint of
// the current tree: the latest stored one when it has the tree's size, as
// it has once sequencing signed it, or a new one. Before it signs, it
// checks that the tree still has the root of the previous checkpoint: it
// never signs over a rewritten history.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	if err := l.ready(true); err != nil {
		return Checkpoint{}, err
	}
	if err := l.drain(ctx); err != nil {
		return Checkpoint{}, err
	}
	var cp Checkpoint
	err := l.DB.InTx(ctx, func(tx *sql.Tx) error {
		if err := lockSequencer(ctx, tx, l.DB.Dialect); err != nil {
			return err
		}
		size, err := logSize(ctx, tx)
		if err != nil {
			return err
		}
		cp, err = l.signCheckpoint(ctx, tx, newHashReader(ctx, tx), size)
		return err
	})
	if err != nil {
		return Checkpoint{}, asUnavailable(err, "sign audit checkpoint")
	}
	return cp, nil
}

// signCheckpoint stores and returns a signed checkpoint of the tree at
// size, or the latest stored one if it has that size already, after
// checking that the tree still extends the latest one. tx holds the
// sequencer's lock.
func (l *Log) signCheckpoint(ctx context.Context, tx *sql.Tx, r *hashReader, size int64) (Checkpoint, error) {
	if err := l.refused(); err != nil {
		return Checkpoint{}, err
	}
	prev, err := l.latest(ctx, tx)
	switch {
	case errs.Is(err, errs.NotFound):
	case err != nil:
		return Checkpoint{}, err
	case prev.Size == size:
		return prev, nil
	case prev.Size > size:
		return Checkpoint{}, errs.E(errs.Internal, "the audit log holds %d events but a checkpoint covers %d; the trail was altered, run the verifier", size, prev.Size)
	default:
		h, err := tlog.TreeHash(prev.Size, r)
		if err != nil {
			return Checkpoint{}, err
		}
		if h != prev.Root {
			return Checkpoint{}, errs.E(errs.Internal, "the audit tree no longer matches its checkpoint at size %d; the trail was altered, run the verifier", prev.Size)
		}
	}
	root, err := tlog.TreeHash(size, r)
	if err != nil {
		return Checkpoint{}, err
	}
	signed, err := note.Sign(&note.Note{Text: checkpointBody(l.Origin, size, root)}, l.Signer)
	if err != nil {
		return Checkpoint{}, errs.Wrap(errs.Internal, err, "sign audit checkpoint")
	}
	now := sqldb.Now()
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4)`,
		size, encodeHash(root), string(signed), now); err != nil {
		return Checkpoint{}, err
	}
	return Checkpoint{Origin: l.Origin, Size: size, Root: root, Note: signed, Time: time.UnixMicro(now).UTC()}, nil
}

// Latest returns the newest stored checkpoint, checked against the
// verifier key; errs.NotFound if there is none.
func (l *Log) Latest(ctx context.Context) (Checkpoint, error) {
	if err := l.ready(false); err != nil {
		return Checkpoint{}, err
	}
	cp, err := l.latest(ctx, l.DB)
	if err != nil {
		return Checkpoint{}, asUnavailable(err, "read audit checkpoint")
	}
	return cp, nil
}

func (l *Log) latest(ctx context.Context, q sqldb.Querier) (Checkpoint, error) {
	if l.Verifier == nil {
		return Checkpoint{}, errs.E(errs.Internal, "audit log has no verifier key")
	}
	var size, created int64
	var text string
	err := q.QueryRowContext(ctx, `SELECT size, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).
		Scan(&size, &text, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, errs.E(errs.NotFound, "no audit checkpoint yet")
	}
	if err != nil {
		return Checkpoint{}, err
	}
	cp, err := ParseCheckpoint([]byte(text), l.Verifier)
	if err != nil {
		return Checkpoint{}, errs.E(errs.Internal, "stored audit checkpoint at size %d: %s", size, errs.SafeMessage(err))
	}
	if cp.Size != size {
		return Checkpoint{}, errs.E(errs.Internal, "stored audit checkpoint at size %d claims size %d", size, cp.Size)
	}
	cp.Time = time.UnixMicro(created).UTC()
	return cp, nil
}

// ProveInclusion proves that the event at index is in the tree of cp.
// Check it with tlog.CheckRecord(proof, cp.Size, cp.Root, index, leaf),
// where leaf is tlog.RecordHash of the event's leaf data (LeafAt).
func (l *Log) ProveInclusion(ctx context.Context, index int64, cp Checkpoint) (tlog.RecordProof, error) {
	if err := l.ready(false); err != nil {
		return nil, err
	}
	if index < 0 || index >= cp.Size {
		return nil, errs.E(errs.Invalid, "index %d is outside the checkpoint's %d events", index, cp.Size)
	}
	if err := l.covers(ctx, cp); err != nil {
		return nil, err
	}
	p, err := tlog.ProveRecord(cp.Size, index, newHashReader(ctx, l.DB))
	if err != nil {
		return nil, asUnavailable(err, "prove audit event inclusion")
	}
	return p, nil
}

// ProveConsistency proves that the tree of old is a prefix of the tree of
// new. Check it with tlog.CheckTree(proof, new.Size, new.Root, old.Size,
// old.Root).
func (l *Log) ProveConsistency(ctx context.Context, old, new Checkpoint) (tlog.TreeProof, error) {
	if err := l.ready(false); err != nil {
		return nil, err
	}
	if old.Size < 1 || old.Size > new.Size {
		return nil, errs.E(errs.Invalid, "a consistency proof needs 1 ≤ old size (%d) ≤ new size (%d)", old.Size, new.Size)
	}
	if err := l.covers(ctx, new); err != nil {
		return nil, err
	}
	p, err := tlog.ProveTree(new.Size, old.Size, newHashReader(ctx, l.DB))
	if err != nil {
		return nil, asUnavailable(err, "prove audit tree consistency")
	}
	return p, nil
}

func (l *Log) covers(ctx context.Context, cp Checkpoint) error {
	size, err := logSize(ctx, l.DB)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "read audit log size")
	}
	if cp.Size > size {
		return errs.E(errs.Invalid, "checkpoint size %d exceeds the audit log's %d events", cp.Size, size)
	}
	return nil
}

// EventAt returns the event at index in the tree, after checking that its
// stored text still has its leaf hash.
func (l *Log) EventAt(ctx context.Context, index int64) (Event, error) {
	ev, _, err := l.LeafAt(ctx, index)
	return ev, err
}

// LeafAt returns the event at index and the leaf data the tree hashes for
// it: the event's signed note, or its bare JSON for an event from before
// event signing. Check an inclusion proof with tlog.RecordHash(data).
func (l *Log) LeafAt(ctx context.Context, index int64) (Event, []byte, error) {
	if err := l.ready(false); err != nil {
		return Event{}, nil, err
	}
	var body, sig sql.NullString
	var leaf string
	err := l.DB.QueryRowContext(ctx, `SELECT e.body, e.sig, l.leaf FROM audit_log l
		LEFT JOIN audit_events e ON e.id = l.event_id WHERE l.seq = $1`, index).Scan(&body, &sig, &leaf)
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, nil, errs.E(errs.NotFound, "no audit event at index %d", index)
	}
	if err != nil {
		return Event{}, nil, errs.Wrap(errs.Unavailable, err, "read audit event")
	}
	if !body.Valid {
		return Event{}, nil, errs.E(errs.Internal, "audit event at index %d is missing; the trail was altered, run the verifier", index)
	}
	data := leafData(body.String, sig.String)
	if encodeHash(tlog.RecordHash(data)) != leaf {
		return Event{}, nil, errs.E(errs.Internal, "audit event at index %d does not match its leaf hash; the trail was altered, run the verifier", index)
	}
	if sig.String != "" && l.Verifier != nil && !eventSignature(body.String, sig.String, l.Verifier) {
		return Event{}, nil, errs.E(errs.Internal, "audit event at index %d is not signed by the audit key; the trail was altered, run the verifier", index)
	}
	var ev Event
	if err := json.Unmarshal([]byte(body.String), &ev); err != nil {
		return Event{}, nil, errs.E(errs.Internal, "audit event at index %d is not valid JSON", index)
	}
	return ev, data, nil
}

// asUnavailable gives a database failure a kind, leaving kinded errors be.
func asUnavailable(err error, msg string) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	return errs.Wrap(errs.Unavailable, err, msg)
}

// hashReader reads the tree's stored hashes from the database, through a
// cache that also holds hashes written in the current transaction.
type hashReader struct {
	ctx   context.Context
	q     sqldb.Querier
	cache map[int64]tlog.Hash
}

func newHashReader(ctx context.Context, q sqldb.Querier) *hashReader {
	return &hashReader{ctx: ctx, q: q, cache: make(map[int64]tlog.Hash)}
}

func (r *hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var missing []any
	for _, i := range indexes {
		if _, ok := r.cache[i]; !ok {
			missing = append(missing, i)
		}
	}
	for len(missing) > 0 {
		k := min(len(missing), deleteChunk)
		rows, err := r.q.QueryContext(r.ctx, `SELECT idx, hash FROM audit_hashes WHERE idx IN (`+sqldb.Placeholders(sqldb.DialectOf(r.q), 1, k)+`)`, missing[:k]...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var idx int64
			var s string
			if err := rows.Scan(&idx, &s); err != nil {
				rows.Close()
				return nil, err
			}
			h, err := decodeHash(s)
			if err != nil {
				rows.Close()
				return nil, errs.E(errs.Internal, "stored audit hash %d is malformed; the trail was altered, run the verifier", idx)
			}
			r.cache[idx] = h
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		missing = missing[k:]
	}
	out := make([]tlog.Hash, len(indexes))
	for j, i := range indexes {
		h, ok := r.cache[i]
		if !ok {
			return nil, errs.E(errs.Internal, "stored audit hash %d is missing; the trail was altered, run the verifier", i)
		}
		out[j] = h
	}
	return out, nil
}

package keys

import (
	"context"
	"database/sql"
	"errors"
	"sync"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// The keyring's side of erasure epochs (epochs.go): table key_epochs lists
// the epochs of one database, and data_keys.epoch names the epoch of each
// participant key.

func (k *Keyring) epochSize() int {
	if k.EpochSize > 0 {
		return k.EpochSize
	}
	return DefaultEpochSize
}

// wrap seals raw under epoch (if any) and wraps the result with the
// key-encryption key.
func (k *Keyring) wrap(ctx context.Context, epoch string, raw, ad []byte) ([]byte, error) {
	if epoch == "" {
		return k.KEK.Wrap(ctx, raw, ad)
	}
	ek, err := k.epochs()
	if err != nil {
		return nil, err
	}
	inner, err := ek.SealEpoch(ctx, epoch, raw, ad)
	if err != nil {
		return nil, err
	}
	defer clear(inner)
	return k.KEK.Wrap(ctx, inner, ad)
}

// unwrapRaw undoes wrap for a stored row.
func (k *Keyring) unwrapRaw(ctx context.Context, r row) ([]byte, error) {
	ad := wrapAD(r.id, r.version, r.scope)
	raw, err := k.KEK.Unwrap(ctx, r.wrapped, ad)
	if err != nil {
		kind := errs.Internal
		if errs.KindOf(err) == errs.Unavailable {
			kind = errs.Unavailable // the KMS is down: 503, not 500
		}
		return nil, errs.Wrap(kind, err, "unwrap the "+r.scope.String())
	}
	if r.epoch == "" {
		return raw, nil
	}
	defer clear(raw)
	ek, err := k.epochs()
	if err != nil {
		return nil, err
	}
	out, err := ek.OpenEpoch(ctx, r.epoch, raw, ad)
	switch {
	case errors.Is(err, ErrEpochDestroyed):
		return nil, ErrEpochDestroyed
	case err != nil && errs.KindOf(err) == errs.Unavailable:
		return nil, errs.Wrap(errs.Unavailable, err, "open the "+r.scope.String())
	case err != nil:
		return nil, errs.Wrap(errs.Internal, err, "open the "+r.scope.String())
	}
	return out, nil
}

// joinEpoch picks the erasure epoch of a new participant key version, in
// q: the epoch of the scope's newest version if it still takes keys, else
// the newest open epoch if it holds fewer than EpochSize participants,
// else a fresh one. Choosing an epoch locks its row until q ends, so an
// erasure that retires it waits for q, and q, if it waits for the erasure,
// sees the epoch retired and moves on. On PostgreSQL the lock is a share
// lock, which concurrent enrolments hold together; SQLite's one writer
// orders them. On PostgreSQL a count sees only committed joins, so under
// concurrent enrolments an epoch takes some more than EpochSize (up to a
// tenth more, measured with four transactions of 20 keys each), and
// enrolments that find it full at the same moment may each make a fresh
// one (one a node, see freshEpoch), of which the last made is joined from
// then on.
func (k *Keyring) joinEpoch(ctx context.Context, q sqldb.Querier, scope Scope, version uint32) (string, error) {
	mayTake := true
	for {
		epoch, unchecked, err := k.pickEpoch(ctx, q, scope, version, mayTake)
		if err != nil || !unchecked {
			return epoch, err
		}
		live, err := k.epochLive(ctx, q, epoch)
		switch {
		case err != nil:
			return "", err
		case live:
			return epoch, nil
		}
		k.fill.reset() // retired meanwhile
		mayTake = false
	}
}

// pickEpoch is joinEpoch, except that with mayTake the epoch the keyring
// counted last may be answered unchecked, and so may a fresh epoch on
// PostgreSQL and the one another transaction of the keyring made while
// this one counted (freshEpoch): then the caller locks its row and
// checks that it still takes keys in the statement that stores the key
// (insertKeyInLive), and asks again without mayTake if it does not.
//
// Counting an epoch's members costs a read of each; the keyring counts
// once and then adds its own joins (epochFill), counting again every
// fillRecount joins and for each join within fillMargin of the size, so
// that other nodes' joins are seen before the epoch fills.
func (k *Keyring) pickEpoch(ctx context.Context, q sqldb.Querier, scope Scope, version uint32, mayTake bool) (epoch string, unchecked bool, err error) {
	ek, err := k.epochs()
	if errors.Is(err, ErrEpochsUnsupported) {
		return "", false, nil // kept as before epochs; erasure refuses (Destroy)
	}
	if err != nil {
		return "", false, err
	}
	fail := func(err error) (string, bool, error) {
		return "", false, errs.Wrap(errs.Unavailable, err, "choose the erasure epoch of the "+scope.String())
	}
	if version > 1 {
		err := q.QueryRowContext(ctx, `SELECT epoch FROM data_keys WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3
			AND destroyed_at IS NULL ORDER BY version DESC LIMIT 1`, scope.OrgID, string(scope.Kind), scope.ID).Scan(&epoch)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fail(err)
		}
		if epoch != "" {
			live, err := k.epochLive(ctx, q, epoch)
			switch {
			case err != nil:
				return "", false, err
			case live:
				return epoch, false, nil
			}
		}
	}
	if mayTake {
		if epoch, ok := k.fill.take(k.epochSize()); ok {
			return epoch, true, nil
		}
	}
	made := k.fill.generation() // fresh epochs this keyring made so far
	// The newest live epoch and how many participants it holds, in one
	// statement (epoch <> '' lets the partial index on data_keys.epoch
	// serve the count).
	var members int
	err = q.QueryRowContext(ctx, `SELECT e.id,
		  (SELECT count(DISTINCT d.scope_id) FROM data_keys d WHERE d.epoch = e.id AND d.epoch <> '')
		FROM key_epochs e WHERE e.retired_at IS NULL
		ORDER BY e.created_at DESC, e.id LIMIT 1`+k.shareLock()).Scan(&epoch, &members)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		members = k.epochSize()
	case err != nil:
		return fail(err)
	}
	if members >= k.epochSize() {
		k.fresh.Lock()
		defer k.fresh.Unlock()
		// Another of this keyring's transactions may have made the next
		// one while this one counted.
		if next, ok := k.fill.madeSince(made); ok {
			return next, true, nil
		}
		if epoch, unchecked, err = k.freshEpoch(ctx, q, ek); err != nil {
			return "", false, err
		}
		k.fill.madeFresh(epoch)
		members = 0
	}
	k.fill.counted(epoch, members+1)
	return epoch, unchecked, nil
}

// freshEpoch makes the epoch that the next participant keys join, once the
// newest is full. On PostgreSQL it is recorded in a transaction of its own,
// committed before freshEpoch returns, and unchecked is true: the caller
// locks its row and checks that it still takes keys, as for an epoch it did
// not count (insertKeyInLive). Recorded in q, it would stay unseen by the
// transactions that make keys beside q (the gate's other lanes, other
// nodes) until q commits, and each of them would make an epoch of its own,
// which its own joins alone then fill. On SQLite, whose one writer is q's,
// it is recorded in q. Either way, an epoch that no key joins costs only
// the provider's key, which wraps nothing.
//
// A keyring makes one fresh epoch at a time (Keyring.fresh), and a
// transaction that found an epoch full while another of the same keyring
// made the next one joins that one (epochFill.madeSince): the lanes of a
// node that find the epoch full together make one epoch between them.
// Nodes may still each make one; the last made is joined from then on.
func (k *Keyring) freshEpoch(ctx context.Context, q sqldb.Querier, ek EpochKeeper) (epoch string, unchecked bool, err error) {
	if k.DB == nil || k.DB.Dialect != sqldb.Postgres {
		epoch, err = k.newEpoch(ctx, q, ek)
		return epoch, false, err
	}
	epoch, err = k.newEpoch(ctx, k.DB, ek)
	return epoch, true, err
}

// shareLock is the clause that locks the epoch rows a statement reads
// until its transaction ends: FOR SHARE on PostgreSQL, nothing on SQLite,
// whose one writer orders the transactions.
func (k *Keyring) shareLock() string {
	if k.DB != nil && k.DB.Dialect == sqldb.Postgres {
		return " FOR SHARE"
	}
	return ""
}

// epochLive reports whether epoch still takes keys, locking its row.
func (k *Keyring) epochLive(ctx context.Context, q sqldb.Querier, epoch string) (bool, error) {
	err := q.QueryRowContext(ctx, `SELECT id FROM key_epochs WHERE id = $1 AND retired_at IS NULL`+k.shareLock(), epoch).Scan(&epoch)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	}
	return false, errs.Wrap(errs.Unavailable, err, "read the erasure epoch "+epoch)
}

const (
	// fillRecount is how many joins a keyring adds to its count of an
	// epoch's members before it counts them again.
	fillRecount = 16
	// fillMargin is how close to the epoch size every join counts again.
	fillMargin = 16
)

// epochFill is a keyring's count of the members of the epoch it last
// joined: the members counted, plus its own joins since. A join rolled
// back leaves it one too many, which only fills the epoch sooner.
type epochFill struct {
	mu      sync.Mutex
	epoch   string
	members int
	joins   int // since the count
	// made counts the fresh epochs the keyring made, latest the last one
	// ("" once reset).
	made   int64
	latest string
}

// take answers the epoch to join without counting, and counts the join,
// or false when the members must be counted.
func (f *epochFill) take(size int) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.epoch == "" || f.joins >= fillRecount || f.members+1 > size-fillMargin {
		return "", false
	}
	f.members++
	f.joins++
	return f.epoch, true
}

// counted records a count of epoch's members, the new one included.
func (f *epochFill) counted(epoch string, members int) {
	f.mu.Lock()
	f.epoch, f.members, f.joins = epoch, members, 0
	f.mu.Unlock()
}

// generation is how many fresh epochs the keyring made so far.
func (f *epochFill) generation() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.made
}

// madeFresh records epoch as the fresh epoch the keyring made last.
func (f *epochFill) madeFresh(epoch string) {
	f.mu.Lock()
	f.made++
	f.latest = epoch
	f.mu.Unlock()
}

// madeSince answers the fresh epoch the keyring made last, if it made any
// since generation gen, and counts the join.
func (f *epochFill) madeSince(gen int64) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.made == gen || f.latest == "" {
		return "", false
	}
	if f.epoch == f.latest {
		f.members++
		f.joins++
	}
	return f.latest, true
}

// reset forgets every epoch the keyring knows of: the next join counts.
func (f *epochFill) reset() {
	f.mu.Lock()
	f.epoch, f.members, f.joins = "", 0, 0
	f.latest = ""
	f.mu.Unlock()
}

// newEpoch has the provider make an epoch and records it in q. If q rolls
// back, the provider keeps a key that wraps nothing.
func (k *Keyring) newEpoch(ctx context.Context, q sqldb.Querier, ek EpochKeeper) (string, error) {
	epoch, err := ek.NewEpoch(ctx)
	if err != nil {
		return "", err
	}
	if _, err := q.ExecContext(ctx, `INSERT INTO key_epochs (id, created_at) VALUES ($1, $2)`,
		epoch, sqldb.Now()); err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "record an erasure epoch")
	}
	return epoch, nil
}

// epochsOfScope lists the epochs of a participant's live key versions, and
// refuses if the provider keeps no epochs.
func (k *Keyring) epochsOfScope(ctx context.Context, q sqldb.Querier, scope Scope) ([]string, error) {
	if k.KEK == nil {
		return nil, errs.E(errs.Internal, "keyring without key-encryption key")
	}
	if _, err := k.epochs(); err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT epoch FROM data_keys WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3
		AND destroyed_at IS NULL AND epoch <> '' ORDER BY epoch`, scope.OrgID, string(scope.Kind), scope.ID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read "+scope.String())
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read "+scope.String())
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read "+scope.String())
	}
	return out, nil
}

// retireEpoch retires epoch in tx and moves its live keys to a fresh
// epoch. Retiring first locks the epoch's row, so no key joins it
// meanwhile; a key whose row changed under the move (a rotation re-wrapped
// it) fails the whole transaction rather than stay behind in the epoch.
func (k *Keyring) retireEpoch(ctx context.Context, tx sqldb.Querier, epoch string, now int64) error {
	ek, err := k.epochs()
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE key_epochs SET retired_at = $2 WHERE id = $1 AND retired_at IS NULL`, epoch, now); err != nil {
		return errs.Wrap(errs.Unavailable, err, "retire an erasure epoch")
	}
	rows, err := tx.QueryContext(ctx, selectRow+`WHERE epoch = $1 AND epoch <> '' AND wrapped IS NOT NULL ORDER BY id, version`, epoch)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the keys of an erasure epoch")
	}
	var live []row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return errs.Wrap(errs.Unavailable, err, "read the keys of an erasure epoch")
		}
		live = append(live, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the keys of an erasure epoch")
	}
	if len(live) == 0 {
		return nil
	}
	next, err := k.newEpoch(ctx, tx, ek)
	if err != nil {
		return err
	}
	for _, r := range live {
		raw, err := k.unwrapRaw(ctx, r)
		if err != nil {
			return err
		}
		wrapped, err := k.wrap(ctx, next, raw, wrapAD(r.id, r.version, r.scope))
		clear(raw)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "re-wrap the "+r.scope.String())
		}
		res, err := tx.ExecContext(ctx, `UPDATE data_keys SET wrapped = $1, kek_id = $2, epoch = $3
			WHERE id = $4 AND version = $5 AND wrapped = $6 AND epoch = $7`,
			wrapped, k.KEK.ID(), next, r.id.String(), int64(r.version), r.wrapped, epoch)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "re-wrap the "+r.scope.String())
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errs.E(errs.Conflict, "a key of the erasure epoch changed during the erasure; try again")
		}
		k.keys().evict(r.id)
	}
	return nil
}

// DestroyRetiredEpochs has the provider destroy every retired epoch of
// this database that it has not destroyed yet: those of erasures that
// committed (LIFE-03). before is called first for each, so the destruction
// can be audited; an error from it leaves that epoch for a later call. An
// epoch that still holds a live key is left alone and reported, never
// destroyed. It returns the epochs destroyed. A crash between an erasure's
// commit and here leaves the epoch retired, for the next call (the
// participants sweep makes one at start and hourly).
func (k *Keyring) DestroyRetiredEpochs(ctx context.Context, before func(epoch string) error) ([]string, error) {
	if k.KEK == nil {
		return nil, errs.E(errs.Internal, "keyring without key-encryption key")
	}
	rows, err := k.DB.QueryContext(ctx, `SELECT id FROM key_epochs WHERE retired_at IS NOT NULL AND destroyed_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read retired erasure epochs")
	}
	var pending []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			rows.Close()
			return nil, errs.Wrap(errs.Unavailable, err, "read retired erasure epochs")
		}
		pending = append(pending, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read retired erasure epochs")
	}
	if len(pending) == 0 {
		return nil, nil
	}
	ek, err := k.epochs()
	if err != nil {
		return nil, err
	}
	var done []string
	for _, e := range pending {
		destroyed, err := k.destroyEpoch(ctx, ek, e, before)
		if err != nil {
			return done, err
		}
		if destroyed {
			done = append(done, e)
		}
	}
	return done, nil
}

// destroyEpoch destroys one retired epoch (see DestroyRetiredEpochs) and
// reports whether it did. On PostgreSQL, where several nodes may sweep at
// once, it holds the epoch's row from before the audit until the
// destruction is recorded: of the nodes that meet on one epoch, one audits
// and destroys it and the others then find it destroyed and leave it, so
// that its destruction is audited once, not once per node (AVL-04). On
// SQLite, with one node, no row is held: a write lock held there across
// before, which commits through the gate, could wait for the gate's own
// writes to the identity database.
func (k *Keyring) destroyEpoch(ctx context.Context, ek EpochKeeper, e string, before func(epoch string) error) (bool, error) {
	if k.DB.Dialect != sqldb.Postgres {
		return true, destroyEpochIn(ctx, k.DB, ek, e, before)
	}
	destroyed := false
	err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM key_epochs WHERE id = $1 AND destroyed_at IS NULL FOR UPDATE`, e).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // destroyed by another node meanwhile
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "hold a retired erasure epoch")
		}
		if err := destroyEpochIn(ctx, tx, ek, e, before); err != nil {
			return err
		}
		destroyed = true
		return nil
	})
	return destroyed, err
}

// destroyEpochIn audits (before), destroys and records as destroyed the
// retired epoch e, reading and writing its rows in q.
func destroyEpochIn(ctx context.Context, q sqldb.Querier, ek EpochKeeper, e string, before func(epoch string) error) error {
	var live int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys WHERE epoch = $1 AND epoch <> '' AND wrapped IS NOT NULL`, e).Scan(&live); err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the keys of an erasure epoch")
	}
	if live > 0 {
		return errs.E(errs.Internal, "retired erasure epoch %s still holds %d live keys; it was not destroyed", e, live)
	}
	if before != nil {
		if err := before(e); err != nil {
			return err
		}
	}
	if err := ek.DestroyEpoch(ctx, e); err != nil {
		return err
	}
	if _, err := q.ExecContext(ctx, `UPDATE key_epochs SET destroyed_at = $2 WHERE id = $1 AND destroyed_at IS NULL`,
		e, sqldb.Now()); err != nil {
		return errs.Wrap(errs.Unavailable, err, "record a destroyed erasure epoch")
	}
	return nil
}

// epochs returns the keeper of erasure epoch keys: the key provider's own,
// or, for a provider that keeps none (PKCS#11, Vault), key files in
// EpochDir. Either way the epoch keys live outside every database, and a
// participant key needs both its epoch key and the key-encryption key to
// open, so files in EpochDir weaken nothing the provider protects.
func (k *Keyring) epochs() (EpochKeeper, error) {
	ek, err := epochsOf(k.KEK)
	if errors.Is(err, ErrEpochsUnsupported) && k.EpochDir != "" {
		k.dirOnce.Do(func() { k.dirEpochs = &localEpochs{dir: k.EpochDir} })
		return k.dirEpochs, nil
	}
	return ek, err
}

package keys

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Participant keys made before erasure epochs existed are wrapped by the
// key-encryption key alone (epoch ''), so erasing such a participant
// removes the key from the live database only and a backup taken before
// still opens it (LIFE-03). AdoptIntoEpochs moves them into epochs; from
// then on an erasure reaches every backup taken after the adoption. A
// backup taken before the adoption keeps the old wrapping and is not
// reached.

// DefaultAdoptBatch is how many participant keys AdoptIntoEpochs moves per
// transaction when it is given no batch size.
const DefaultAdoptBatch = 100

// AdoptIntoEpochs seals every live participant key version of this
// database that has no erasure epoch under the epoch its participant joins
// as a new key would (joinEpoch, up to EpochSize participants an epoch),
// and wraps the result with the key-encryption key. The key itself does
// not change, so values sealed under it keep opening. It works batch
// participants at a time, each batch one transaction, so that it can stop
// anywhere and resume; a row that another transaction changed meanwhile (an
// erasure, a rotation of the key-encryption key, another node adopting) is
// left to that transaction. A key that does not unwrap is left as it was
// and reported after the others are done. It returns how many key versions
// it adopted. A keyring that keeps no epochs adopts nothing.
func (k *Keyring) AdoptIntoEpochs(ctx context.Context, batch int) (int, error) {
	if k.KEK == nil {
		return 0, errs.E(errs.Internal, "keyring without key-encryption key")
	}
	if _, err := k.epochs(); errors.Is(err, ErrEpochsUnsupported) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	if batch <= 0 {
		batch = DefaultAdoptBatch
	}
	var (
		adopted, failed int
		firstFailure    error
		after           string
	)
	for {
		ids, err := k.preEpochKeys(ctx, after, batch)
		if err != nil {
			return adopted, err
		}
		if len(ids) == 0 {
			break
		}
		n, bad := 0, 0
		var badErr error
		err = k.DB.InTx(ctx, func(tx *sql.Tx) error {
			n, bad, badErr = 0, 0, nil
			for _, id := range ids {
				m, skip, err := k.adoptKey(ctx, tx, id)
				if err != nil {
					return err
				}
				if skip != nil {
					bad++
					if badErr == nil {
						badErr = skip
					}
				}
				n += m
			}
			return nil
		})
		if err != nil {
			return adopted, err
		}
		adopted, failed = adopted+n, failed+bad
		if firstFailure == nil {
			firstFailure = badErr
		}
		for _, id := range ids {
			k.keys().evict(id) // the wrapping changed; the key did not
		}
		if len(ids) < batch {
			break
		}
		after = ids[len(ids)-1].String()
	}
	if failed > 0 {
		return adopted, errs.Wrap(errs.Internal, firstFailure, strconv.Itoa(failed)+" participant keys did not unwrap and were left without an erasure epoch")
	}
	return adopted, nil
}

// preEpochKeys lists up to limit ids of participant keys, after the id
// after, that have a live version without an epoch.
func (k *Keyring) preEpochKeys(ctx context.Context, after string, limit int) ([]KeyID, error) {
	rows, err := k.DB.QueryContext(ctx, `SELECT DISTINCT id FROM data_keys WHERE scope_kind = $1 AND epoch = ''
		AND wrapped IS NOT NULL AND id > $2 ORDER BY id LIMIT $3`, string(KindParticipant), after, limit)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read participant keys without an erasure epoch")
	}
	defer rows.Close()
	var out []KeyID
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read participant keys without an erasure epoch")
		}
		id, err := parseKeyID(s)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read participant keys without an erasure epoch")
	}
	return out, nil
}

// adoptKey adopts, in tx, the live versions of participant key id that
// have no epoch, all into one epoch. It returns how many it adopted, and
// skip if one of them did not unwrap (then it adopts none). Each row is
// claimed first by an update that names its wrapped bytes and an empty epoch, so
// that it stays as read until tx ends, or is skipped if another
// transaction changed it first.
func (k *Keyring) adoptKey(ctx context.Context, tx *sql.Tx, id KeyID) (n int, skip, err error) {
	rows, err := tx.QueryContext(ctx, selectRow+`WHERE id = $1 AND scope_kind = $2 AND epoch = '' AND wrapped IS NOT NULL
		ORDER BY version`, id.String(), string(KindParticipant))
	if err != nil {
		return 0, nil, errs.Wrap(errs.Unavailable, err, "read a participant key without an erasure epoch")
	}
	var todo []row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			rows.Close()
			return 0, nil, errs.Wrap(errs.Unavailable, err, "read a participant key without an erasure epoch")
		}
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, nil, errs.Wrap(errs.Unavailable, err, "read a participant key without an erasure epoch")
	}
	var (
		claimed []row
		raws    [][]byte
	)
	defer func() {
		for _, raw := range raws {
			clear(raw)
		}
	}()
	for _, r := range todo {
		res, err := tx.ExecContext(ctx, `UPDATE data_keys SET epoch = epoch
			WHERE id = $1 AND version = $2 AND wrapped = $3 AND epoch = ''`, r.id.String(), int64(r.version), r.wrapped)
		if err != nil {
			return 0, nil, errs.Wrap(errs.Unavailable, err, "adopt the "+r.scope.String())
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			continue // erased, re-wrapped or adopted meanwhile
		}
		raw, err := k.unwrapRaw(ctx, r)
		switch {
		case err != nil && errs.KindOf(err) == errs.Unavailable:
			return 0, nil, err
		case err != nil:
			return 0, err, nil
		}
		claimed = append(claimed, r)
		raws = append(raws, raw)
	}
	if len(claimed) == 0 {
		return 0, nil, nil
	}
	scope := claimed[0].scope
	newest, err := latest(ctx, tx, scope)
	if err != nil {
		return 0, nil, errs.Wrap(errs.Unavailable, err, "read "+scope.String())
	}
	// As a new version of the scope would: the epoch of its newest version
	// if that has one and it takes keys, else an open epoch with room.
	epoch, err := k.joinEpoch(ctx, tx, scope, newest.version)
	if err != nil {
		return 0, nil, err
	}
	if epoch == "" {
		return 0, nil, nil // no epochs after all
	}
	for i, r := range claimed {
		wrapped, err := k.wrap(ctx, epoch, raws[i], wrapAD(r.id, r.version, r.scope))
		if err != nil {
			return 0, nil, errs.Wrap(errs.Unavailable, err, "re-wrap the "+r.scope.String())
		}
		res, err := tx.ExecContext(ctx, `UPDATE data_keys SET wrapped = $1, kek_id = $2, epoch = $3
			WHERE id = $4 AND version = $5 AND wrapped = $6 AND epoch = ''`,
			wrapped, k.KEK.ID(), epoch, r.id.String(), int64(r.version), r.wrapped)
		if err != nil {
			return 0, nil, errs.Wrap(errs.Unavailable, err, "re-wrap the "+r.scope.String())
		}
		if m, err := res.RowsAffected(); err != nil || m != 1 {
			return 0, nil, errs.E(errs.Conflict, "the %s changed while it was adopted into an erasure epoch; try again", r.scope)
		}
		n++
	}
	return n, nil, nil
}

// RetireEpochsOfDestroyedKeys retires every erasure epoch that is not
// retired but holds a destroyed participant key, moving its live keys to a
// fresh epoch as an erasure does; DestroyRetiredEpochs then destroys it.
// An erasure leaves this behind only if it read the participant's key
// before an adoption (AdoptIntoEpochs) committed and destroyed it after:
// it found no epoch to retire, and backups taken after the adoption would
// go on opening the key. It returns how many epochs it retired.
func (k *Keyring) RetireEpochsOfDestroyedKeys(ctx context.Context) (int, error) {
	if k.KEK == nil {
		return 0, errs.E(errs.Internal, "keyring without key-encryption key")
	}
	rows, err := k.DB.QueryContext(ctx, `SELECT DISTINCT e.id FROM key_epochs e JOIN data_keys d ON d.epoch = e.id
		WHERE e.retired_at IS NULL AND d.wrapped IS NULL ORDER BY e.id`)
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "read erasure epochs of destroyed keys")
	}
	var stale []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			rows.Close()
			return 0, errs.Wrap(errs.Unavailable, err, "read erasure epochs of destroyed keys")
		}
		stale = append(stale, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "read erasure epochs of destroyed keys")
	}
	n := 0
	for _, e := range stale {
		err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
			return k.retireEpoch(ctx, tx, e, sqldb.Now())
		})
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

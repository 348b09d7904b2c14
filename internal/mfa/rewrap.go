package mfa

import (
	"context"
	"database/sql"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// Secrets is the table of wrapped TOTP secrets as a keys.WrappedStore, so
// that a rotation of the key-encryption key re-wraps them with the data
// keys (CRY-07). A factor removed or replaced meanwhile is left alone: each
// update names the wrapped bytes it replaces.
type Secrets struct {
	DB *sqldb.DB
}

// Name names the store.
func (s *Secrets) Name() string { return "TOTP secrets" }

// Count counts the stored TOTP secrets, pending ones included.
func (s *Secrets) Count(ctx context.Context) (int, error) {
	var n int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM account_factors`).Scan(&n); err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "count TOTP secrets")
	}
	return n, nil
}

// KEKUse counts the TOTP secrets per kek_id.
func (s *Secrets) KEKUse(ctx context.Context) (map[string]int, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT kek_id, COUNT(*) FROM account_factors GROUP BY kek_id`)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "count TOTP secrets")
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "count TOTP secrets")
		}
		out[id] = n
	}
	return out, rows.Err()
}

// Rewrap re-wraps up to limit TOTP secrets after cursor (a factor id) in
// one transaction.
func (s *Secrets) Rewrap(ctx context.Context, kek keys.Provider, cursor string, limit int) (keys.Batch, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id, account_id, kek_id, wrapped FROM account_factors
		WHERE id > $1 ORDER BY id LIMIT $2`, cursor, limit)
	if err != nil {
		return keys.Batch{}, errs.Wrap(errs.Unavailable, err, "read TOTP secrets")
	}
	type secret struct {
		id, account, kekID string
		wrapped            []byte
	}
	var batch []secret
	for rows.Next() {
		var f secret
		if err := rows.Scan(&f.id, &f.account, &f.kekID, &f.wrapped); err != nil {
			rows.Close()
			return keys.Batch{}, errs.Wrap(errs.Unavailable, err, "read TOTP secrets")
		}
		batch = append(batch, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return keys.Batch{}, errs.Wrap(errs.Unavailable, err, "read TOTP secrets")
	}
	out := keys.Batch{Cursor: cursor, Visited: len(batch), Done: len(batch) < limit}
	type update struct {
		f       secret
		wrapped []byte
		kekID   string
	}
	var updates []update
	for _, f := range batch {
		out.Cursor = f.id
		w, v, changed, err := keys.RewrapSecret(ctx, kek, f.wrapped, secretAD(f.account, f.id), f.kekID)
		switch {
		case err != nil && keys.IsUnavailable(err):
			return keys.Batch{}, err
		case err != nil:
			out.Failed++
		case changed:
			updates = append(updates, update{f, w, v})
		}
	}
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		for _, u := range updates {
			if _, err := tx.ExecContext(ctx, `UPDATE account_factors SET wrapped = $1, kek_id = $2
				WHERE id = $3 AND wrapped = $4`, u.wrapped, u.kekID, u.f.id, u.f.wrapped); err != nil {
				return errs.Wrap(errs.Unavailable, err, "re-wrap TOTP secrets")
			}
		}
		return nil
	})
	if err != nil {
		return keys.Batch{}, err
	}
	out.Rewrapped = len(updates)
	return out, nil
}

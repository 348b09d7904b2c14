package gate

import (
	"context"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
)

// WrappedTable is a table of secrets the key-encryption key wraps (second
// factors' secrets, providers' client secrets) as a keys.WrappedStore, so
// that a rotation of the key-encryption key re-wraps them with the data
// keys (CRY-07). It is operator work: a batch that re-wraps anything is
// recorded as Action+".rewrap", a security event with its counts; one that
// only reads records nothing. A row changed meanwhile is left alone: each
// update names the wrapped bytes it replaces.
type WrappedTable struct {
	Gate *Gate
	// Label names the store in reports ("TOTP secrets"); Action prefixes
	// its events ("mfa.secrets").
	Label, Action string
	// Table and its columns: the key, the key-encryption key's version
	// and the wrapped secret; Bound are the columns whose values, with the
	// key's, bind a secret to its row (AD). They are the code's
	// constants, never input.
	Table, Key, KEKID, Wrapped string
	Bound                      []string
	AD                         func(key string, bound []string) []byte
}

// Name names the store.
func (w *WrappedTable) Name() string { return w.Label }

// read runs read as operator work that changes nothing.
func (w *WrappedTable) read(ctx context.Context, read func(o *OpTx) error) error {
	return w.Gate.Operate(ctx, w.Action+".read", func(o *OpTx) error {
		o.Nothing()
		return read(o)
	})
}

// Count counts the stored secrets.
func (w *WrappedTable) Count(ctx context.Context) (int, error) {
	var n int
	err := w.read(ctx, func(o *OpTx) error {
		if err := o.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+w.Table).Scan(&n); err != nil {
			return errs.Wrap(errs.Unavailable, err, "count "+w.Label)
		}
		return nil
	})
	return n, err
}

// KEKUse counts the secrets per version of the key-encryption key.
func (w *WrappedTable) KEKUse(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := w.read(ctx, func(o *OpTx) error {
		rows, err := o.QueryContext(ctx, `SELECT `+w.KEKID+`, COUNT(*) FROM `+w.Table+` GROUP BY `+w.KEKID)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "count "+w.Label)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				return errs.Wrap(errs.Unavailable, err, "count "+w.Label)
			}
			out[id] = n
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// wrappedRow is one secret of a WrappedTable.
type wrappedRow struct {
	key, kekID string
	bound      []string
	wrapped    []byte
}

// Rewrap re-wraps up to limit secrets after cursor (a key) in one
// transaction. kek is the rotation's provider: the new version wraps, the
// older ones it knows unwrap (keys.RewrapSecret).
func (w *WrappedTable) Rewrap(ctx context.Context, kek keys.Provider, cursor string, limit int) (keys.Batch, error) {
	var out keys.Batch
	err := w.Gate.Operate(ctx, w.Action+".rewrap", func(o *OpTx) error {
		cols := append([]string{w.Key, w.KEKID, w.Wrapped}, w.Bound...)
		rows, err := o.QueryContext(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+w.Table+`
			WHERE `+w.Key+` > $1 ORDER BY `+w.Key+` LIMIT $2`, cursor, limit)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read "+w.Label)
		}
		var batch []wrappedRow
		for rows.Next() {
			r := wrappedRow{bound: make([]string, len(w.Bound))}
			dest := []any{&r.key, &r.kekID, &r.wrapped}
			for i := range r.bound {
				dest = append(dest, &r.bound[i])
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "read "+w.Label)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read "+w.Label)
		}
		out = keys.Batch{Cursor: cursor, Visited: len(batch), Done: len(batch) < limit}
		for _, r := range batch {
			out.Cursor = r.key
			nw, v, changed, err := keys.RewrapSecret(ctx, kek, r.wrapped, w.AD(r.key, r.bound), r.kekID)
			switch {
			case err != nil && keys.IsUnavailable(err):
				return err
			case err != nil:
				out.Failed++
			case changed:
				if _, err := o.ExecContext(ctx, `UPDATE `+w.Table+` SET `+w.Wrapped+` = $1, `+w.KEKID+` = $2
					WHERE `+w.Key+` = $3 AND `+w.Wrapped+` = $4`, nw, v, r.key, r.wrapped); err != nil {
					return errs.Wrap(errs.Unavailable, err, "re-wrap "+w.Label)
				}
				out.Rewrapped++
			}
		}
		if out.Rewrapped == 0 {
			o.Nothing()
			return nil
		}
		o.Security()
		o.Detail("rewrapped_count", strconv.Itoa(out.Rewrapped))
		o.Detail("failed_count", strconv.Itoa(out.Failed))
		o.Detail("kek_version", kek.ID())
		return nil
	})
	if err != nil {
		return keys.Batch{}, err
	}
	return out, nil
}

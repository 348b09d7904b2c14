package mfa

import (
	"context"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
)

// Secrets is the table of wrapped factor secrets as a keys.WrappedStore, so
// that a rotation of the key-encryption key re-wraps them with the data
// keys (CRY-07). It is operator work (gate.Gate.Operate): a batch that
// re-wraps anything is recorded as mfa.secrets.rewrap, with its counts; one
// that only reads records nothing. A factor removed or replaced meanwhile
// is left alone: each update names the wrapped bytes it replaces.
type Secrets struct {
	Gate *gate.Gate
}

// Name names the store.
func (s *Secrets) Name() string { return "TOTP secrets" }

// read runs read as operator work that changes nothing.
func (s *Secrets) read(ctx context.Context, read func(o *gate.OpTx) error) error {
	return s.Gate.Operate(ctx, "mfa.secrets.read", func(o *gate.OpTx) error {
		o.Nothing()
		return read(o)
	})
}

// Count counts the stored TOTP secrets, pending ones included.
func (s *Secrets) Count(ctx context.Context) (int, error) {
	var n int
	err := s.read(ctx, func(o *gate.OpTx) error {
		if err := o.QueryRowContext(ctx, `SELECT COUNT(*) FROM account_factors`).Scan(&n); err != nil {
			return errs.Wrap(errs.Unavailable, err, "count TOTP secrets")
		}
		return nil
	})
	return n, err
}

// KEKUse counts the TOTP secrets per kek_id.
func (s *Secrets) KEKUse(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := s.read(ctx, func(o *gate.OpTx) error {
		rows, err := o.QueryContext(ctx, `SELECT kek_id, COUNT(*) FROM account_factors GROUP BY kek_id`)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "count TOTP secrets")
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				return errs.Wrap(errs.Unavailable, err, "count TOTP secrets")
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

// Rewrap re-wraps up to limit factor secrets (TOTP secrets and the phone
// numbers of text-message factors) after cursor (a factor id) in
// one transaction. kek is the rotation's provider: the new version wraps,
// the older ones it knows unwrap (keys.RewrapSecret).
func (s *Secrets) Rewrap(ctx context.Context, kek keys.Provider, cursor string, limit int) (keys.Batch, error) {
	var out keys.Batch
	err := s.Gate.Operate(ctx, "mfa.secrets.rewrap", func(o *gate.OpTx) error {
		rows, err := o.QueryContext(ctx, `SELECT id, account_id, kind, kek_id, wrapped FROM account_factors
			WHERE id > $1 ORDER BY id LIMIT $2`, cursor, limit)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read TOTP secrets")
		}
		type secret struct {
			id, account, kind, kekID string
			wrapped                  []byte
		}
		var batch []secret
		for rows.Next() {
			var f secret
			if err := rows.Scan(&f.id, &f.account, &f.kind, &f.kekID, &f.wrapped); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "read TOTP secrets")
			}
			batch = append(batch, f)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read TOTP secrets")
		}
		out = keys.Batch{Cursor: cursor, Visited: len(batch), Done: len(batch) < limit}
		for _, f := range batch {
			out.Cursor = f.id
			// A factor's secret is bound to what it is: a TOTP secret, or
			// the phone number of a text-message factor.
			ad := secretAD(f.account, f.id)
			if f.kind == "sms" {
				ad = phoneAD(f.account, f.id)
			}
			w, v, changed, err := keys.RewrapSecret(ctx, kek, f.wrapped, ad, f.kekID)
			switch {
			case err != nil && keys.IsUnavailable(err):
				return err
			case err != nil:
				out.Failed++
			case changed:
				if _, err := o.ExecContext(ctx, `UPDATE account_factors SET wrapped = $1, kek_id = $2
					WHERE id = $3 AND wrapped = $4`, w, v, f.id, f.wrapped); err != nil {
					return errs.Wrap(errs.Unavailable, err, "re-wrap TOTP secrets")
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

package sso

import (
	"context"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
)

// Secrets is the table of providers' wrapped client secrets as a
// keys.WrappedStore, so that a rotation of the key-encryption key re-wraps
// them with the data keys (CRY-07). It is operator work
// (gate.Gate.Operate): a batch that re-wraps anything is recorded as
// sso.secrets.rewrap with its counts; one that only reads records nothing.
// A secret replaced meanwhile is left alone: each update names the wrapped
// bytes it replaces.
type Secrets struct {
	Gate *gate.Gate
}

// Name names the store.
func (s *Secrets) Name() string { return "single sign-on client secrets" }

func (s *Secrets) read(ctx context.Context, read func(o *gate.OpTx) error) error {
	return s.Gate.Operate(ctx, "sso.secrets.read", func(o *gate.OpTx) error {
		o.Nothing()
		return read(o)
	})
}

// Count counts the stored client secrets.
func (s *Secrets) Count(ctx context.Context) (int, error) {
	var n int
	err := s.read(ctx, func(o *gate.OpTx) error {
		if err := o.QueryRowContext(ctx, `SELECT COUNT(*) FROM sso_providers`).Scan(&n); err != nil {
			return errs.Wrap(errs.Unavailable, err, "count single sign-on secrets")
		}
		return nil
	})
	return n, err
}

// KEKUse counts the client secrets per kek_id.
func (s *Secrets) KEKUse(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := s.read(ctx, func(o *gate.OpTx) error {
		rows, err := o.QueryContext(ctx, `SELECT kek_id, COUNT(*) FROM sso_providers GROUP BY kek_id`)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "count single sign-on secrets")
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				return errs.Wrap(errs.Unavailable, err, "count single sign-on secrets")
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

// Rewrap re-wraps up to limit client secrets after cursor (an
// organization id) in one transaction under kek's current version.
func (s *Secrets) Rewrap(ctx context.Context, kek keys.Provider, cursor string, limit int) (keys.Batch, error) {
	var out keys.Batch
	err := s.Gate.Operate(ctx, "sso.secrets.rewrap", func(o *gate.OpTx) error {
		rows, err := o.QueryContext(ctx, `SELECT org_id, issuer, client_id, kek_id, client_secret FROM sso_providers
			WHERE org_id > $1 ORDER BY org_id LIMIT $2`, cursor, limit)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read single sign-on secrets")
		}
		type secret struct {
			org, issuer, client, kekID string
			wrapped                    []byte
		}
		var batch []secret
		for rows.Next() {
			var f secret
			if err := rows.Scan(&f.org, &f.issuer, &f.client, &f.kekID, &f.wrapped); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "read single sign-on secrets")
			}
			batch = append(batch, f)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read single sign-on secrets")
		}
		out = keys.Batch{Cursor: cursor, Visited: len(batch), Done: len(batch) < limit}
		for _, f := range batch {
			out.Cursor = f.org
			w, v, changed, err := keys.RewrapSecret(ctx, kek, f.wrapped, SecretAD(f.org, f.issuer, f.client), f.kekID)
			switch {
			case err != nil && keys.IsUnavailable(err):
				return err
			case err != nil:
				out.Failed++
			case changed:
				if _, err := o.ExecContext(ctx, `UPDATE sso_providers SET client_secret = $1, kek_id = $2
					WHERE org_id = $3 AND client_secret = $4`, w, v, f.org, f.wrapped); err != nil {
					return errs.Wrap(errs.Unavailable, err, "re-wrap single sign-on secrets")
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

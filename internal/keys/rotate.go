package keys

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Rotation of the key-encryption key (CRY-07) re-wraps every secret it
// wrapped, store by store and batch by batch, each batch one transaction,
// while the server goes on serving: the provider unwraps with every version
// it holds throughout, so a secret opens before, during and after its
// batch. Package keys/keyadmin records the progress so that a rotation that was
// interrupted resumes where it stopped.
//
// Rotation of data keys adds a version to each scope's key; values sealed
// under older versions keep opening with them (they are never re-wrapped
// into values: re-encrypting stored values is not part of a rotation), and
// new values are sealed under the new version.

// WrappedStore is one table of secrets wrapped by the key-encryption key:
// the data keys of the clinical database, those of the identity database,
// and the TOTP secrets of second factors (package mfa).
type WrappedStore interface {
	// Name names the store in progress reports and audit events.
	Name() string
	// Count reports how many live wrapped secrets the store holds.
	Count(ctx context.Context) (int, error)
	// Rewrap visits up to limit live secrets in key order after cursor
	// ("" is the start) and re-wraps under kek's current version, in one
	// transaction, every one that another version wrapped.
	Rewrap(ctx context.Context, kek Provider, cursor string, limit int) (Batch, error)
	// KEKUse counts the live secrets per kek_id stored beside them.
	KEKUse(ctx context.Context) (map[string]int, error)
}

// Batch is what one step of a rotation did.
type Batch struct {
	Cursor    string // the last secret visited, where the next batch starts
	Visited   int
	Rewrapped int // re-wrapped, or relabelled with the version that wrapped them
	Failed    int // did not unwrap: left as they were, and reported
	Done      bool
}

// RewrapSecret re-wraps one secret under kek's current version if another
// version wrapped it. It returns the wrapped bytes to store and the version
// that wrapped them, and whether they differ from what is stored (bytes or
// label).
func RewrapSecret(ctx context.Context, kek Provider, wrapped, ad []byte, label string) (out []byte, version string, changed bool, err error) {
	v, err := kek.VersionOf(ctx, wrapped, ad)
	if err != nil {
		return nil, "", false, err
	}
	if v == kek.ID() {
		return wrapped, v, v != label, nil
	}
	pt, err := kek.Unwrap(ctx, wrapped, ad)
	if err != nil {
		return nil, "", false, err
	}
	defer clear(pt)
	if out, err = kek.Wrap(ctx, pt, ad); err != nil {
		return nil, "", false, err
	}
	// The stored label is the version that really wrapped the bytes, read
	// back from them, not ID() (which another process may have moved on).
	if version, err = kek.VersionOf(ctx, out, ad); err != nil {
		return nil, "", false, err
	}
	return out, version, true, nil
}

// IsUnavailable reports whether err means that a provider or a database
// could not be reached, so that a rotation stops (and can resume) rather
// than counting a secret as failed.
func IsUnavailable(err error) bool { return errs.KindOf(err) == errs.Unavailable }

// DataKeyStore is the data_keys table of one database as a WrappedStore.
type DataKeyStore struct {
	Label string // e.g. "clinical data keys"
	DB    *sqldb.DB
}

// Name is the store's label.
func (s *DataKeyStore) Name() string { return s.Label }

// Count counts the live (not destroyed) key versions.
func (s *DataKeyStore) Count(ctx context.Context) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys WHERE wrapped IS NOT NULL`).Scan(&n)
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "count "+s.Label)
	}
	return n, nil
}

// KEKUse counts live key versions per kek_id.
func (s *DataKeyStore) KEKUse(ctx context.Context) (map[string]int, error) {
	return countByKEK(ctx, s.DB, `SELECT kek_id, COUNT(*) FROM data_keys WHERE wrapped IS NOT NULL GROUP BY kek_id`, s.Label)
}

func countByKEK(ctx context.Context, db *sqldb.DB, stmt, label string) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, stmt)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "count "+label)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "count "+label)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "count "+label)
	}
	return out, nil
}

// dataKeyCursor is "<id hex>/<version>".
func parseDataKeyCursor(c string) (string, int64, error) {
	if c == "" {
		return "", 0, nil
	}
	id, v, ok := strings.Cut(c, "/")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil {
		return "", 0, errs.E(errs.Internal, "malformed rotation cursor %q", c)
	}
	return id, n, nil
}

// Rewrap re-wraps a batch of data key versions. The key material read is
// what the server reads too; a version destroyed meanwhile (LIFE-03) is
// not brought back, because each update names the wrapped bytes it
// replaces.
func (s *DataKeyStore) Rewrap(ctx context.Context, kek Provider, cursor string, limit int) (Batch, error) {
	afterID, afterVersion, err := parseDataKeyCursor(cursor)
	if err != nil {
		return Batch{}, err
	}
	rows, err := s.DB.QueryContext(ctx, selectRow+`WHERE wrapped IS NOT NULL AND (id > $1 OR (id = $1 AND version > $2))
		ORDER BY id, version LIMIT $3`, afterID, afterVersion, limit)
	if err != nil {
		return Batch{}, errs.Wrap(errs.Unavailable, err, "read "+s.Label)
	}
	var batch []row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			rows.Close()
			if _, malformed := errors.AsType[*errs.Error](err); malformed {
				return Batch{}, errs.Wrap(errs.Internal, err, s.Label+": malformed row")
			}
			return Batch{}, errs.Wrap(errs.Unavailable, err, "read "+s.Label)
		}
		batch = append(batch, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Batch{}, errs.Wrap(errs.Unavailable, err, "read "+s.Label)
	}
	out := Batch{Visited: len(batch), Done: len(batch) < limit, Cursor: cursor}
	type update struct {
		r       row
		wrapped []byte
		kekID   string
	}
	var updates []update
	for _, r := range batch {
		out.Cursor = r.id.String() + "/" + strconv.FormatUint(uint64(r.version), 10)
		w, v, changed, err := RewrapSecret(ctx, kek, r.wrapped, wrapAD(r.id, r.version, r.scope), r.kekID)
		switch {
		case err != nil && IsUnavailable(err):
			return Batch{}, err
		case err != nil:
			out.Failed++
		case changed:
			updates = append(updates, update{r, w, v})
		}
	}
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		for _, u := range updates {
			if _, err := tx.ExecContext(ctx, `UPDATE data_keys SET wrapped = $1, kek_id = $2
				WHERE id = $3 AND version = $4 AND wrapped = $5`,
				u.wrapped, u.kekID, u.r.id.String(), int64(u.r.version), u.r.wrapped); err != nil {
				return errs.Wrap(errs.Unavailable, err, "re-wrap "+s.Label)
			}
		}
		return nil
	})
	if err != nil {
		return Batch{}, err
	}
	out.Rewrapped = len(updates)
	return out, nil
}

// RotateScopes adds a version to the data key of up to limit scopes, in key
// order after cursor, in one transaction: every scope of organization orgID
// (of every organization if orgID is "") whose newest version was created
// before before (Unix microseconds), so that a rotation that resumes never
// adds a second version to a scope. Blind-index keys are left alone (see
// Rotate) and destroyed scopes stay destroyed.
func (k *Keyring) RotateScopes(ctx context.Context, orgID string, before int64, cursor string, limit int) (Batch, error) {
	out := Batch{Cursor: cursor}
	err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
		out = Batch{Cursor: cursor}
		rows, err := tx.QueryContext(ctx, `SELECT id, org_id, scope_kind, scope_id, MAX(created_at) FROM data_keys
			WHERE destroyed_at IS NULL AND scope_kind <> 'index' AND id > $1 AND ($2 = '' OR org_id = $2)
			GROUP BY id, org_id, scope_kind, scope_id ORDER BY id LIMIT $3`, cursor, orgID, limit)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "list data keys")
		}
		type scoped struct {
			id      string
			scope   Scope
			created int64
		}
		var todo []scoped
		for rows.Next() {
			var s scoped
			if err := rows.Scan(&s.id, &s.scope.OrgID, &s.scope.Kind, &s.scope.ID, &s.created); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "list data keys")
			}
			todo = append(todo, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "list data keys")
		}
		out.Visited, out.Done = len(todo), len(todo) < limit
		for _, s := range todo {
			out.Cursor = s.id
			if s.created >= before {
				continue
			}
			if _, err := k.Rotate(ctx, tx, s.scope); err != nil {
				if errors.Is(err, ErrKeyDestroyed) {
					continue
				}
				return err
			}
			out.Rewrapped++
		}
		return nil
	})
	return out, err
}

// KindCount is how many data keys of one scope kind a database holds.
type KindCount struct {
	Scopes    int // keys (scopes), live
	Versions  int // live versions of them
	Destroyed int // scopes destroyed (LIFE-03)
}

// CountByKind counts the data keys of a database per scope kind, for
// custodia keys status.
func CountByKind(ctx context.Context, db *sqldb.DB) (map[ScopeKind]KindCount, error) {
	rows, err := db.QueryContext(ctx, `SELECT scope_kind, COUNT(DISTINCT id), COUNT(*), 0 FROM data_keys WHERE destroyed_at IS NULL GROUP BY scope_kind
		UNION ALL SELECT scope_kind, 0, 0, COUNT(DISTINCT id) FROM data_keys WHERE destroyed_at IS NOT NULL GROUP BY scope_kind`)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "count data keys")
	}
	defer rows.Close()
	out := map[ScopeKind]KindCount{}
	for rows.Next() {
		var kind ScopeKind
		var c KindCount
		if err := rows.Scan(&kind, &c.Scopes, &c.Versions, &c.Destroyed); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "count data keys")
		}
		t := out[kind]
		t.Scopes, t.Versions, t.Destroyed = t.Scopes+c.Scopes, t.Versions+c.Versions, t.Destroyed+c.Destroyed
		out[kind] = t
	}
	return out, rows.Err()
}

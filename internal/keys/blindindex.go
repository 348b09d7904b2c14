package keys

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// BlindIndex returns a search token for an exact-match lookup of a sealed
// field (a national id, an email address): HMAC-SHA-256 of value under a key
// derived with HKDF-SHA-256 from the organization's blind-index key, one
// derived key per scope and field. Equal values in the same scope and field
// give equal tokens; the token reveals nothing else without the key, and
// tokens of different fields, scopes or organizations never match.
//
// The caller normalizes value first (case, spaces, separators) and stores
// the token beside the sealed value. The organization's blind-index key is
// created within q on first use; it is never rotated, and destroying it
// (Destroy of the organization's KindIndex scope) makes every token useless
// (see indexKey for when other nodes see that). The result is 43
// characters of unpadded URL-safe base64.
func (k *Keyring) BlindIndex(ctx context.Context, q sqldb.Querier, scope Scope, field string, value []byte) (string, error) {
	if err := scope.validate(); err != nil {
		return "", err
	}
	if scope.Kind == KindIndex || field == "" {
		return "", errs.E(errs.Internal, "blind index needs a data scope and a field")
	}
	ik, err := k.indexKey(ctx, q, scope.OrgID)
	if err != nil {
		return "", err
	}
	if len(ik.secret) != 32 {
		return "", errs.E(errs.Internal, "blind-index key of organization %s is unusable", scope.OrgID)
	}
	info := appendFields(nil, "custodia.blind-index.v1", string(scope.Kind), scope.ID, field)
	sub, err := hkdf.Key(sha256.New, ik.secret, nil, string(info), 32)
	if err != nil {
		return "", errs.Wrap(errs.Internal, err, "derive blind-index key")
	}
	defer clear(sub)
	m := hmac.New(sha256.New, sub)
	m.Write(value)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// indexKey answers the blind-index key of organization orgID. Once
// committed, that key's row stays as it is (it is never rotated), so the
// keyring reads it from the committed database, outside q, and keeps the
// row, not the key, for as long as its cache keeps unwrapped keys
// (CacheTTL): an enrolment then sends no statement for it. A key that is
// not committed yet, such as one q itself creates, is looked up and made
// in q each time and never kept, so a key whose transaction rolls back is
// not used again. No command destroys the key; a Destroy of it reaches
// every keyring within CacheTTL, and the destroying keyring's at once
// unless a request of its own read the key again before the destruction
// committed.
func (k *Keyring) indexKey(ctx context.Context, q sqldb.Querier, orgID string) (DataKey, error) {
	c := k.keys()
	if r, ok := k.indexRows.get(orgID, c.now()); ok {
		return k.unwrap(ctx, r)
	}
	scope := indexScope(orgID)
	if k.DB != nil {
		r, err := latest(ctx, k.DB.Reader(), scope)
		switch {
		case err == nil && !r.destroyed:
			k.indexRows.put(orgID, r, c.now().Add(c.ttl))
			return k.unwrap(ctx, r)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return DataKey{}, errs.Wrap(errs.Unavailable, err, "read "+scope.String())
		}
	}
	return k.Current(ctx, q, scope)
}

// indexRows are the committed rows of the blind-index keys a keyring has
// read, by organization, each until it expires.
type indexRows struct {
	mu   sync.Mutex
	rows map[string]keptRow
}

type keptRow struct {
	r     row
	until time.Time
}

func (x *indexRows) get(orgID string, now time.Time) (row, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.rows[orgID]
	if !ok || !now.Before(e.until) {
		return row{}, false
	}
	return e.r, true
}

func (x *indexRows) put(orgID string, r row, until time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.rows == nil {
		x.rows = map[string]keptRow{}
	}
	x.rows[orgID] = keptRow{r, until}
}

func (x *indexRows) forget(orgID string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.rows, orgID)
}

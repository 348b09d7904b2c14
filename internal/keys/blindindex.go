package keys

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"

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
// (Destroy of the organization's KindIndex scope) makes every token useless.
// The result is 43 characters of unpadded URL-safe base64.
func (k *Keyring) BlindIndex(ctx context.Context, q sqldb.Querier, scope Scope, field string, value []byte) (string, error) {
	if err := scope.validate(); err != nil {
		return "", err
	}
	if scope.Kind == KindIndex || field == "" {
		return "", errs.E(errs.Internal, "blind index needs a data scope and a field")
	}
	ik, err := k.Current(ctx, q, indexScope(scope.OrgID))
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

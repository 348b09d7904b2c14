package keys

import (
	"context"
	"crypto/rand"

	"github.com/custodia/custodia/internal/errs"
)

// A wrapped key is a data key that no keyring keeps: its material (its id
// and its 256-bit key) is itself a value sealed under another data key and
// stored with the object it protects, e.g. a conversation's key sealed
// under its participant's key. Whoever destroys that other key (LIFE-03)
// leaves the wrapped key, and every value sealed under it, unopenable for
// good, in every copy of the database, with no list of wrapped keys to
// keep. Values sealed under a wrapped key carry the usual header (its id,
// version 1) and open only through Only.

// wrappedSize is the length of a wrapped key's material: id || key.
const wrappedSize = KeyIDSize + 32

// NewWrappedKey draws the material of a new wrapped key, for the caller to
// seal under the key it is to follow and to forget.
func NewWrappedKey() ([]byte, error) {
	m := make([]byte, wrappedSize)
	if _, err := rand.Read(m); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "generate a wrapped key")
	}
	return m, nil
}

// WrappedKey makes the data key of material m (as NewWrappedKey drew it,
// and as it opened from its seal), belonging to scope, the scope of the key
// it was sealed under. It clears m. Material of the wrong length is
// ErrCorrupt.
func WrappedKey(m []byte, scope Scope) (DataKey, error) {
	defer clear(m)
	if len(m) != wrappedSize || scope.OrgID == "" {
		return DataKey{}, ErrCorrupt
	}
	var id KeyID
	copy(id[:], m[:KeyIDSize])
	return newDataKey(id, 1, scope, m[KeyIDSize:])
}

// Only is the ring of one data key, to open values sealed under a wrapped
// key: a value naming any other key is ErrCorrupt to Open.
func Only(dk DataKey) Ring { return onlyRing{dk} }

type onlyRing struct{ dk DataKey }

func (r onlyRing) ByID(_ context.Context, id KeyID, version uint32) (DataKey, error) {
	if r.dk.aead == nil || id != r.dk.ID || version != r.dk.Version {
		return DataKey{}, ErrUnknownKey
	}
	return r.dk, nil
}

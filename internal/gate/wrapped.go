package gate

import (
	"context"
	"errors"

	"github.com/custodia/custodia/internal/keys"
)

// WrappedKey is the key of one object that follows another key (see
// keys.NewWrappedKey): a conversation's key, sealed under its
// participant's key in the identity vault, so that erasing the participant
// (LIFE-03) erases the conversation too. Work holds it only as a handle
// that seals and opens within the request, like a vault: never its
// material. A value that does not open under it fails the request as a
// vault's does (CRY-05).
type WrappedKey struct {
	v  *Vault
	dk keys.DataKey
}

// NewWrappedKey makes a wrapped key for the object whose key is sealed at
// keyAt under the current key of scope, and answers it with its sealed
// material, for the work to store with the object. A destroyed scope
// answers keys.ErrKeyDestroyed.
func (v *Vault) NewWrappedKey(ctx context.Context, scope keys.Scope, keyAt keys.Context) (WrappedKey, []byte, error) {
	if err := v.check(scope.OrgID, keyAt.OrgID); err != nil {
		return WrappedKey{}, nil, err
	}
	m, err := keys.NewWrappedKey()
	if err != nil {
		return WrappedKey{}, nil, err
	}
	sealed, err := v.Seal(ctx, scope, keyAt, m)
	if err != nil {
		clear(m)
		return WrappedKey{}, nil, err
	}
	dk, err := keys.WrappedKey(m, scope)
	if err != nil {
		return WrappedKey{}, nil, err
	}
	return WrappedKey{v: v, dk: dk}, sealed, nil
}

// OpenWrappedKey opens the wrapped key of scope (the scope it was made
// for) sealed at keyAt. A key whose own key was destroyed answers
// keys.ErrKeyDestroyed (LIFE-03); one that does not open fails the request
// (see Vault).
func (v *Vault) OpenWrappedKey(ctx context.Context, scope keys.Scope, keyAt keys.Context, sealed []byte) (WrappedKey, error) {
	if err := v.check(scope.OrgID); err != nil {
		return WrappedKey{}, err
	}
	m, err := v.Open(ctx, keyAt, sealed)
	if err != nil {
		return WrappedKey{}, err
	}
	dk, err := keys.WrappedKey(m, scope)
	if err != nil {
		v.t.integrity = true
		return WrappedKey{}, errIntegrity(err)
	}
	return WrappedKey{v: v, dk: dk}, nil
}

// Seal encrypts plaintext under the wrapped key for the place at names.
func (k WrappedKey) Seal(at keys.Context, plaintext []byte) ([]byte, error) {
	if err := k.v.check(at.OrgID); err != nil {
		return nil, err
	}
	return keys.Seal(k.dk, plaintext, at)
}

// Open decrypts a value sealed under the wrapped key for the place at
// names; one that does not open (damaged, or moved from another object or
// place) fails the request and is recorded as a failed security event.
func (k WrappedKey) Open(ctx context.Context, at keys.Context, sealed []byte) ([]byte, error) {
	if err := k.v.check(at.OrgID); err != nil {
		return nil, err
	}
	pt, err := keys.Open(ctx, keys.Only(k.dk), sealed, at)
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, keys.ErrCorrupt):
		k.v.t.integrity = true
		return nil, errIntegrity(err)
	}
	return nil, err
}

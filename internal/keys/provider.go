package keys

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/errs"
)

// Provider is where the key-encryption key lives (CRY-04): the local key
// file (LocalKEK), a PKCS#11 token (pkcs11.go, build tag pkcs11), or
// Vault/OpenBao Transit (package keys/vault). A cloud KMS would be one more:
// all a provider does is wrap and unwrap small secrets with associated data
// under a key that never leaves it, and say which version of its key did.
//
// A provider that cannot be reached fails closed: Wrap, Unwrap and Check
// return an error of kind errs.Unavailable, never a key.
type Provider interface {
	KEK
	// Name is the provider's kind: "local", "pkcs11" or "vault".
	Name() string
	// Owns reports, from the format of wrapped alone, whether this
	// provider made it, so that Chain hands every wrapped key to the
	// provider that can open it.
	Owns(wrapped []byte) bool
	// VersionOf reports which version of the key wrapped this key (an ID
	// value), reading the version from wrapped where the format names it
	// and unwrapping it otherwise. Rotation relies on it rather than on the
	// kek_id stored beside a row (CRY-07).
	VersionOf(ctx context.Context, wrapped, ad []byte) (string, error)
	// Check reports whether the provider can wrap and unwrap now; /readyz
	// fails while it cannot.
	Check(ctx context.Context) error
}

// Rotator is a provider that can add a version of its key (CRY-07). After
// RotateKEK, Wrap uses the new version and ID names it, and every older
// version still unwraps.
type Rotator interface {
	RotateKEK(ctx context.Context) (newID string, err error)
}

// Retirer is a provider that can stop unwrapping with an older version once
// no wrapped key needs it. Versions lists the versions that unwrap, the
// current one first.
type Retirer interface {
	Versions() []string
	RetireKEK(ctx context.Context, id string) error
}

// knower is a KEK that can tell whether a kek_id names one of its versions.
type knower interface{ Knows(id string) bool }

// opensVersion reports whether kek unwraps what version id wrapped: its
// current version, or an older one it still holds.
func opensVersion(kek KEK, id string) bool {
	if id == kek.ID() {
		return true
	}
	k, ok := kek.(knower)
	return ok && k.Knows(id)
}

// Chain is the provider while one provider replaces another (a change of
// provider, CRY-08): it wraps with Primary and unwraps with whichever of
// Primary and Previous made the wrapped key, so that every key stays
// readable while rotation re-wraps them all under Primary.
type Chain struct {
	Primary  Provider
	Previous []Provider
}

func (c *Chain) all() []Provider { return append([]Provider{c.Primary}, c.Previous...) }

func (c *Chain) owner(wrapped []byte) (Provider, error) {
	for _, p := range c.all() {
		if p.Owns(wrapped) {
			return p, nil
		}
	}
	return nil, ErrUnwrap
}

// ID is the current version of Primary.
func (c *Chain) ID() string { return c.Primary.ID() }

// Name is Primary's name.
func (c *Chain) Name() string { return c.Primary.Name() }

// Wrap wraps with Primary.
func (c *Chain) Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error) {
	return c.Primary.Wrap(ctx, plaintext, ad)
}

// Unwrap unwraps with the provider whose format wrapped is in.
func (c *Chain) Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error) {
	p, err := c.owner(wrapped)
	if err != nil {
		return nil, err
	}
	return p.Unwrap(ctx, wrapped, ad)
}

// Owns reports whether any of the chained providers made wrapped.
func (c *Chain) Owns(wrapped []byte) bool {
	_, err := c.owner(wrapped)
	return err == nil
}

// VersionOf asks the provider that made wrapped.
func (c *Chain) VersionOf(ctx context.Context, wrapped, ad []byte) (string, error) {
	p, err := c.owner(wrapped)
	if err != nil {
		return "", err
	}
	return p.VersionOf(ctx, wrapped, ad)
}

// Check checks every chained provider: a key of any of them may be needed.
func (c *Chain) Check(ctx context.Context) error {
	var all []error
	for _, p := range c.all() {
		if err := p.Check(ctx); err != nil {
			all = append(all, err)
		}
	}
	if len(all) > 0 {
		return errs.Wrap(errs.Unavailable, errors.Join(all...), "a key-encryption key provider is not reachable")
	}
	return nil
}

// Close closes every chained provider that holds a session (a PKCS#11
// token); the others need no closing.
func (c *Chain) Close() error {
	var all []error
	for _, p := range c.all() {
		all = append(all, CloseProvider(p))
	}
	return errors.Join(all...)
}

// CloseProvider closes p if it holds a session (a PKCS#11 token, a chain
// with one), and does nothing otherwise.
func CloseProvider(p Provider) error {
	if c, ok := p.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// Knows reports whether id is a version of any chained provider.
func (c *Chain) Knows(id string) bool {
	for _, p := range c.all() {
		if opensVersion(p, id) {
			return true
		}
	}
	return false
}

// RotateKEK rotates Primary, if it can.
func (c *Chain) RotateKEK(ctx context.Context) (string, error) {
	r, ok := c.Primary.(Rotator)
	if !ok {
		return "", errs.E(errs.Invalid, "the %s key-encryption key cannot be rotated from here", c.Primary.Name())
	}
	return r.RotateKEK(ctx)
}

// ProviderNames are the providers custodia knows, for flags and messages.
var ProviderNames = []string{"local", "pkcs11", "vault"}

// ProviderOf names the provider of a kek_id ("local:…", "pkcs11:…",
// "vault:…").
func ProviderOf(kekID string) string {
	name, _, _ := strings.Cut(kekID, ":")
	return name
}

// PKCS11Config selects the key-encryption key in a PKCS#11 token (an HSM,
// or SoftHSM2): the module (shared library), the token's label, the key's
// label, and the user PIN, which comes from a file or the environment,
// never from a flag that would show in ps.
type PKCS11Config struct {
	Module string
	Token  string
	Key    string
	PIN    string
}

// Lacking lists, from use (each kek_id stored beside a wrapped secret →
// how many secrets it wrapped), the versions that p cannot unwrap, sorted:
// those of a provider that p neither is nor chains (a server started with
// the wrong --kek), and those of a local key file that the file does not
// hold (a file lost, or replaced by another instance's). The versions of a
// remote provider are not asked for here: it may not answer yet, and a
// version it lacks fails the requests that need it.
func Lacking(p Provider, use map[string]int) []string {
	providers := []Provider{p}
	if c, ok := p.(*Chain); ok {
		providers = c.all()
	}
	var out []string
	for id, n := range use {
		if id == "" || n == 0 {
			continue
		}
		var owner Provider
		for _, q := range providers {
			if q.Name() == ProviderOf(id) {
				owner = q
				break
			}
		}
		switch k := owner.(type) {
		case nil:
			out = append(out, id)
		case *LocalKEK:
			if !k.Knows(id) {
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}

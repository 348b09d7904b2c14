package gate

import "github.com/custodia/custodia/internal/errs"

// Secrets returns, to organization work that keeps a secret of the
// organization's own for the server's use (the client secret of its
// single sign-on provider, AUTH-13), the vault of secrets wrapped by the
// key-encryption key, as OpTx.Secrets does for an account's: the sign-in
// that uses the secret runs before anyone is signed in, as account work,
// and opens it there. Like Vault, it answers only once authz allowed the
// work.
func (t *Tx) Secrets() (*Secrets, error) {
	if !t.authorized || t.denied != nil {
		return nil, errs.E(errs.Internal, "secrets were asked for before authz allowed the work")
	}
	if t.gate.keys == nil || t.gate.keys.KEK == nil {
		return nil, errNoKeys
	}
	return &Secrets{kek: t.gate.keys.KEK}, nil
}

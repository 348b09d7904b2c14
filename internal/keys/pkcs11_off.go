//go:build !pkcs11

package keys

import (
	"context"

	"github.com/custodia/custodia/internal/errs"
)

// PKCS11Available reports whether this binary speaks PKCS#11: only when
// built with -tags pkcs11 (cgo), so that the default build stays pure Go.
const PKCS11Available = false

// OpenPKCS11 refuses: this binary was built without PKCS#11.
func OpenPKCS11(context.Context, PKCS11Config) (Provider, error) {
	return nil, errs.E(errs.Invalid, "this custodia was built without PKCS#11 support; build it with -tags pkcs11 (needs cgo)")
}

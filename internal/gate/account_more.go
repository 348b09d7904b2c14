package gate

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
)

// Also records ev in the work's transaction besides the work's own event:
// for one change that is two facts on the trail, such as a failed sign-in
// that locks the account (auth.login and account.lock in each of the
// account's organizations) or a password reset that lifts a lockout
// (auth.reset and account.unlock). It is written at once, in the work's
// savepoint, so it commits exactly when the work and its own event do:
// work that fails or finds nothing to do (Nothing) leaves neither. The
// event is the caller's as given; like Detail, it holds references, never
// a clear-text value or a secret.
func (o *OpTx) Also(ctx context.Context, ev audit.Event) error {
	if o.tx == nil {
		return errs.E(errs.Internal, "an event was recorded outside the work")
	}
	if _, err := audit.Append(context.WithoutCancel(ctx), o.db.In(o.tx), ev); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the operation could not be audited, so it was not carried out")
	}
	return nil
}

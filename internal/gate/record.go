package gate

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
)

// Record adds ev to what the work records: an event of its own, beside
// the work's, for a consequence of the work that the trail tells apart,
// such as an alert raised in one organization (its own organization,
// object and details) or a recovery code spent by a step recorded as
// something else. It is written in the work's transaction at once, so it
// commits with the work and the work's event or, if the work fails or
// finds it has nothing to do (Nothing), not at all. With orgIDs it is
// recorded once in each of those organizations instead of in ev's.
//
// The event's actor is the work's as it stands when it records (its
// account, session, address and agent, and its role if it has one), never
// one the work names; its outcome is a success unless ev says otherwise.
func (o *OpTx) Record(ctx context.Context, ev audit.Event, orgIDs ...string) error {
	ev.ActorAccount, ev.ActorSession = o.event.ActorAccount, o.event.ActorSession
	ev.RemoteAddr, ev.UserAgent = o.event.RemoteAddr, o.event.UserAgent
	if o.event.ActorRole != "" {
		ev.ActorRole = o.event.ActorRole
	}
	if ev.Outcome == "" {
		ev.Outcome = audit.Success
	}
	if len(orgIDs) == 0 {
		orgIDs = []string{ev.OrgID}
	}
	for _, id := range orgIDs {
		ev.OrgID = id
		if _, err := audit.Append(context.WithoutCancel(ctx), o.db.In(o.tx), o.gate.auditKey, ev); err != nil {
			return errs.Wrap(errs.Unavailable, err, "the operation could not be audited, so it was not carried out")
		}
	}
	return nil
}

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
	if _, err := audit.Append(context.WithoutCancel(ctx), o.db.In(o.tx), o.gate.auditKey, ev); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the operation could not be audited, so it was not carried out")
	}
	return nil
}

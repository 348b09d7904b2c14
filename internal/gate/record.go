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
		if _, err := audit.Append(context.WithoutCancel(ctx), o.db.In(o.tx), ev); err != nil {
			return errs.Wrap(errs.Unavailable, err, "the operation could not be audited, so it was not carried out")
		}
	}
	return nil
}

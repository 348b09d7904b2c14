package gate

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
)

// SecretsAvailable reports whether work can have the vault of account
// secrets (OpTx.Secrets): whether the gate has a key-encryption key. A
// service asks it to refuse at once, before any work, a step that would
// need one.
func (g *Gate) SecretsAvailable() bool {
	return g.keys != nil && g.keys.KEK != nil
}

// Record appends ev to the trail in the work's transaction, beside the
// work's own event: a second thing the same work did that the trail keeps
// in its own right, such as a recovery code spent by a step that is
// recorded as something else. It is recorded once in each organization
// orgIDs names, or once without one if none. Who acted and from where are
// the work's, as far as the work knows them when it records; the outcome
// is a success unless ev says otherwise. Like the rest of the work, it is
// undone if the work fails or finds nothing to do.
func (o *OpTx) Record(ctx context.Context, ev audit.Event, orgIDs ...string) error {
	ev.ActorAccount, ev.ActorSession, ev.ActorRole = o.event.ActorAccount, o.event.ActorSession, o.event.ActorRole
	ev.RemoteAddr, ev.UserAgent = o.event.RemoteAddr, o.event.UserAgent
	if ev.Outcome == "" {
		ev.Outcome = audit.Success
	}
	if len(orgIDs) == 0 {
		orgIDs = []string{""}
	}
	for _, id := range orgIDs {
		ev.OrgID = id
		if _, err := audit.Append(context.WithoutCancel(ctx), o.db.In(o.tx), ev); err != nil {
			return errs.Wrap(errs.Unavailable, err, "the operation could not be audited, so it was not carried out")
		}
	}
	return nil
}

package links

import (
	"context"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
)

// linkTx is the transaction of an invitation's acceptance as
// participants.LinkAccount needs it: it appends the link's event in the
// transaction, from the requester's address and agent.
type linkTx struct {
	sqldb.Tx
	from gate.Actor
}

func (t linkTx) Record(ctx context.Context, ev audit.Event, _ ...string) error {
	ev.RemoteAddr, ev.UserAgent = t.from.RemoteAddr, t.from.UserAgent
	_, err := audit.Append(ctx, t.Tx, ev)
	return err
}

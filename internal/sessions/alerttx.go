package sessions

import (
	"context"

	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/sqldb"
)

// alertTx gives tx what raising an alert needs, a transaction that records
// the alert's event beside the work's: a gate's operation (gate.OpTx) does
// that itself; a transaction of this package's own appends the event in
// it.
func alertTx(tx sqldb.Tx) alerts.Tx {
	if t, ok := tx.(alerts.Tx); ok {
		return t
	}
	return appendingTx{tx}
}

// appendingTx appends the events it records to its transaction.
type appendingTx struct{ sqldb.Tx }

func (t appendingTx) Record(ctx context.Context, ev audit.Event, _ ...string) error {
	_, err := audit.Append(ctx, t.Tx, ev)
	return err
}

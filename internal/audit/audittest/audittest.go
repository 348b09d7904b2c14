// Package audittest helps tests that set up state the gate's work would
// make, in a transaction of their own.
package audittest

import (
	"context"
	"database/sql"

	"github.com/custodia/custodia/internal/audit"
)

// Appending records the events it is given in its transaction, as the
// gate's account work does (accounts.Recorder).
type Appending struct{ *sql.Tx }

// Also appends ev in the transaction.
func (a Appending) Also(ctx context.Context, ev audit.Event) error {
	_, err := audit.Append(ctx, a.Tx, ev)
	return err
}

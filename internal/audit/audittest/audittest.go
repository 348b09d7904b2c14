// Package audittest helps tests that set up state the gate's work would
// make, in a transaction of their own.
package audittest

import (
	"context"
	"database/sql"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/audit"
)

// Appending records the events it is given in its transaction, as the
// gate's account work does (accounts.Recorder), signed with Key when the
// test gives the instance's audit key.
type Appending struct {
	*sql.Tx
	Key note.Signer
}

// Also appends ev in the transaction.
func (a Appending) Also(ctx context.Context, ev audit.Event) error {
	_, err := audit.Append(ctx, a.Tx, a.Key, ev)
	return err
}

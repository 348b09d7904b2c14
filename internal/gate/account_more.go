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

// Attempt is Account for an attempt that counts against limits and
// lockouts many requests share: a sign-in and its second step, a one-time
// link, an access token presented. Such work changes a few rows that
// concurrent requests change too (the rate-limit buckets of one source
// address, the failure count of one account), and holds them until its
// batch commits. On PostgreSQL the gate runs several batches at once, and
// two of them each waiting for a row the other holds would deadlock, failing
// every request of one batch. Attempts therefore all run in one lane: they
// still commit together, one after another in its batches, and wait for
// other lanes' work only as long as one of those batches runs.
func (g *Gate) Attempt(ctx context.Context, from Actor, action string, work func(o *OpTx) error) error {
	o := &OpTx{gate: g, event: audit.Event{Action: action, ActorAccount: from.AccountID, ActorSession: from.SessionID,
		RemoteAddr: from.RemoteAddr, UserAgent: from.UserAgent, Outcome: audit.Success}}
	return g.lanes[0].do(ctx, false, func(j *job) error {
		if err := j.begin(); err != nil {
			return err
		}
		o.tx, o.db = j.b.clinical, g.db
		err := work(o)
		if err == nil && !o.nothing {
			for _, ev := range o.events() {
				if _, err = audit.Append(context.WithoutCancel(ctx), o.db.In(o.tx), ev); err != nil {
					err = errs.Wrap(errs.Unavailable, err, "the operation could not be audited, so it was not carried out")
					break
				}
			}
		}
		if err != nil || o.nothing {
			j.undo()
			return err
		}
		return j.keep()
	})
}

package audit

import (
	"context"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// leaseName is the lease that elects the node which sequences and signs.
const leaseName = "audit-sequencer"

// Run sequences and checkpoints in the background until ctx ends, and then
// returns ctx's error. Every node may call it: a database lease elects one
// holder at a time, renewed on every round (every) and lost after three
// rounds without renewal, so another node takes over when the holder dies.
// Only the holder sequences (signing a checkpoint with every batch), and
// every checkpointEvery hands the newest checkpoint to the witnesses.
// Failures within a round are reported through Logf and retried in the next
// round; the lease decides who works, the database's sequencing lock keeps
// even two workers from assigning one index twice.
func (l *Log) Run(ctx context.Context, every, checkpointEvery time.Duration) error {
	if every <= 0 || checkpointEvery <= 0 {
		return errs.E(errs.Invalid, "audit sequencer intervals must be positive")
	}
	if err := l.ready(true); err != nil {
		return err
	}
	holder := l.Holder
	if holder == "" {
		holder = processHolder
	}
	ttl := 3 * every
	var lastCheckpoint time.Time
	held := false
	refusalLogged := false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if held {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				if err := releaseLease(rctx, l.DB, leaseName, holder); err != nil {
					l.failf("audit sequencer: release lease: %v", err)
				}
				cancel()
			}
			return ctx.Err()
		case <-timer.C:
		}
		ok, err := acquireLease(ctx, l.DB, leaseName, holder, ttl)
		if ctx.Err() != nil {
			continue // stopping: the branch above releases a held lease
		}
		if err != nil {
			l.logErr(ctx, "audit sequencer: lease", err)
		}
		if ok != held {
			if ok {
				l.logf("audit sequencer: node %s now sequences the audit trail", holder)
			} else {
				l.logf("audit sequencer: node %s lost the lease", holder)
				lastCheckpoint = time.Time{}
			}
		}
		held = ok
		if l.tick != nil {
			l.tick(held)
		}
		if held && l.refused() != nil {
			// A witness saw a larger or different tree: nothing is
			// sequenced or signed until an operator has looked.
			if !refusalLogged {
				l.logf("audit sequencer stopped: %v", l.refused())
				refusalLogged = true
			}
		} else if held {
			if err := l.drain(ctx); err != nil {
				l.logErr(ctx, "audit sequencer", err)
			} else if time.Since(lastCheckpoint) >= checkpointEvery {
				if _, err := l.Checkpoint(ctx); err != nil {
					l.logErr(ctx, "audit checkpoint", err)
				} else {
					lastCheckpoint = time.Now()
					// The checkpoint of the round goes to the witnesses
					// as it is made; the batches' own checkpoints in
					// between stay in the database, or the witnesses
					// would keep one checkpoint a second.
					if err := l.WitnessLatest(ctx); err != nil {
						l.logErr(ctx, "audit witness", err)
					}
				}
			}
		}
		timer.Reset(every)
	}
}

func (l *Log) logf(format string, args ...any) {
	if l.Logf != nil {
		l.Logf(format, args...)
	}
}

func (l *Log) failf(format string, args ...any) {
	if l.Failf != nil {
		l.Failf(format, args...)
		return
	}
	l.logf(format, args...)
}

// logErr logs a round's failure, unless it is only the end of ctx.
func (l *Log) logErr(ctx context.Context, what string, err error) {
	if ctx.Err() == nil {
		l.failf("%s: %v", what, err)
	}
}

// acquireLease takes or renews the named lease for holder until now+ttl
// (sqldb.AcquireLease): a lease set ahead by a clock that ran fast is taken
// over, rather than leaving events unsequenced until the wall clock caught
// up.
func acquireLease(ctx context.Context, db *sqldb.DB, name, holder string, ttl time.Duration) (bool, error) {
	return acquireLeaseAt(ctx, db, name, holder, ttl, sqldb.Now())
}

func acquireLeaseAt(ctx context.Context, db *sqldb.DB, name, holder string, ttl time.Duration, now int64) (bool, error) {
	ok, err := sqldb.AcquireLease(ctx, db, name, holder, ttl, now)
	if err != nil {
		return false, asUnavailable(err, "take lease "+name)
	}
	return ok, nil
}

// releaseLease gives the lease up, so that another node need not wait for
// it to expire.
func releaseLease(ctx context.Context, db *sqldb.DB, name, holder string) error {
	return sqldb.ReleaseLease(ctx, db, name, holder)
}

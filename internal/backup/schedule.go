package backup

import (
	"context"
	"log/slog"
	"time"

	"filippo.io/age"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Schedule writes a backup every Every to Target and keeps the newest
// Keep there (AVL-01). Every node of an instance may run it: a lease lets one
// node at a time look, and the record of backups in the clinical database
// tells it whether one is due, so one backup is written per period
// whichever nodes run.
type Schedule struct {
	Source     Source
	Recipients []age.Recipient
	Names      []string
	Target     Target
	Every      time.Duration
	Keep       int
	// Holder names this node for the lease.
	Holder string
	// Record records a written backup with its event, in one
	// transaction (Record, through the gate); Removed records the removal
	// of an old one (MarkRemoved).
	Record  func(ctx context.Context, res Result) error
	Removed func(ctx context.Context, location string) error
	Log     *slog.Logger
	// Look is how often a node looks whether a backup is due (default a
	// minute).
	Look time.Duration
}

const leaseName = "backup"

// leaseTTL is how long a node holds the lease without renewing it.
const leaseTTL = 2 * time.Minute

// Run looks until ctx ends.
func (s *Schedule) Run(ctx context.Context) {
	look := s.Look
	if look <= 0 {
		look = time.Minute
	}
	t := time.NewTicker(look)
	defer t.Stop()
	for {
		if err := s.Turn(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("backup failed; the next attempt is in a minute", "err", errs.SafeMessage(err), "to", s.Target.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Turn writes a backup if one is due and this node has the lease, then
// removes the backups beyond Keep.
func (s *Schedule) Turn(ctx context.Context) error {
	db := s.Source.Clinical
	ok, err := sqldb.AcquireLease(ctx, db, leaseName, s.Holder, leaseTTL, sqldb.Now())
	if err != nil || !ok {
		return err
	}
	defer sqldb.ReleaseLease(context.WithoutCancel(ctx), db, leaseName, s.Holder)
	last, found, err := Latest(ctx, db)
	if err != nil {
		return err
	}
	if found && time.Since(last.Created) < s.Every {
		return nil
	}
	// Hold the lease while the backup is written.
	renew, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-renew.Done():
				return
			case <-t.C:
				sqldb.AcquireLease(renew, db, leaseName, s.Holder, leaseTTL, sqldb.Now())
			}
		}
	}()
	res, err := Write(ctx, s.Source, s.Recipients, s.Names, s.Target, nil)
	if err != nil {
		return err
	}
	if err := s.Record(ctx, res); err != nil {
		s.Target.Remove(context.WithoutCancel(ctx), res.Where)
		return err
	}
	s.Log.Info("backup written", "file", res.Where, "bytes", res.FileSize)
	return s.prune(ctx)
}

// prune removes the target's backups beyond the newest Keep.
func (s *Schedule) prune(ctx context.Context) error {
	if s.Keep <= 0 {
		return nil
	}
	rows, err := s.Source.Clinical.QueryContext(ctx, `SELECT location FROM backups WHERE removed_at IS NULL ORDER BY created_at DESC`)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "list the backups")
	}
	var old []string
	kept := 0
	for rows.Next() {
		var loc string
		if err := rows.Scan(&loc); err != nil {
			rows.Close()
			return err
		}
		if !s.Target.Holds(loc) {
			continue
		}
		if kept < s.Keep {
			kept++
			continue
		}
		old = append(old, loc)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, loc := range old {
		if err := s.Target.Remove(ctx, loc); err != nil {
			return err
		}
		if err := s.Removed(ctx, loc); err != nil {
			return err
		}
	}
	return nil
}

// MarkRemoved records, in q, that the backup at location was removed.
func MarkRemoved(ctx context.Context, q sqldb.Querier, location string) error {
	_, err := q.ExecContext(ctx, `UPDATE backups SET removed_at = $1 WHERE location = $2 AND removed_at IS NULL`, sqldb.Now(), location)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "record the backup's removal")
	}
	return nil
}

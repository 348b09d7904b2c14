package participants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// SweepGrace is how old identity data must be before Sweep may take them
// for unreachable: far longer than an enrolment takes between its identity
// commit and its clinical commit.
const SweepGrace = 15 * time.Minute

// sweepPage is how many identity rows Sweep reads at once.
const sweepPageSize = 200

// Sweep shreds the identity data no request can reach: those whose
// participant the clinical database does not know (an enrolment that
// stopped between its two commits) and those of participants it records as
// not having them, erased ones above all (an erasure that stopped before
// the key was destroyed). Each shredding is first recorded as a security
// event of the participant's organization (action identity.sweep), then
// the participant's key is destroyed and the sealed values deleted. It
// returns how many participants' data it shredded. Identity data younger
// than SweepGrace are left alone. Several nodes may sweep at once: a
// shredding repeated is harmless.
//
// Before and after, it has the key provider destroy the erasure epochs
// that committed erasures retired and that are not destroyed yet (an
// erasure that stopped between its commit and the destruction, LIFE-03).
// After the shredding it adopts the participant keys made before erasure
// epochs existed into epochs (keys.Keyring.AdoptIntoEpochs), audited as a
// security event (action key.epoch_adopt), so that erasing them reaches
// the backups taken from then on, and it retires the epochs that still
// hold a key an erasure destroyed while it was being adopted.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	ring := s.Gate.IdentityKeys()
	if ring == nil {
		return 0, nil
	}
	if _, err := s.destroyRetiredEpochs(ctx, ring); err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	n, err := s.sweepIdentities(ctx)
	if err != nil {
		return n, err
	}
	if _, err := s.adoptIntoEpochs(ctx, ring); err != nil {
		return n, fmt.Errorf("sweep: %w", err)
	}
	if _, err := ring.RetireEpochsOfDestroyedKeys(ctx); err != nil {
		return n, fmt.Errorf("sweep: %w", err)
	}
	if _, err := s.destroyRetiredEpochs(ctx, ring); err != nil {
		return n, fmt.Errorf("sweep: %w", err)
	}
	return n, nil
}

// adoptIntoEpochs adopts the participant keys without an erasure epoch
// into epochs and, if it adopted any, records a security event outside any
// organization (action key.epoch_adopt) with how many key versions it
// adopted; an epoch holds keys of participants of any organization. Keys
// adopted before a failure are recorded too.
func (s *Service) adoptIntoEpochs(ctx context.Context, ring *keys.Keyring) (int, error) {
	n, err := ring.AdoptIntoEpochs(ctx, keys.DefaultAdoptBatch)
	if n > 0 {
		aerr := s.Gate.Operate(ctx, "key.epoch_adopt", func(o *gate.OpTx) error {
			o.Object("erasure_epoch", "")
			o.Security()
			o.Detail("keys", strconv.Itoa(n))
			return nil
		})
		if aerr != nil {
			return n, errs.Wrap(errs.Unavailable, errors.Join(aerr, err), "the adoption of participant keys into erasure epochs could not be audited")
		}
	}
	return n, err
}

// destroyRetiredEpochs has the key provider destroy the retired erasure
// epochs of the identity database, each first recorded as a security event
// (action key.epoch_destroy) outside any organization: an epoch holds keys
// of participants of any organization.
func (s *Service) destroyRetiredEpochs(ctx context.Context, ring *keys.Keyring) (int, error) {
	done, err := ring.DestroyRetiredEpochs(ctx, func(epoch string) error {
		err := s.Gate.Operate(ctx, "key.epoch_destroy", func(o *gate.OpTx) error {
			o.Object("erasure_epoch", epoch)
			o.Security()
			return nil
		})
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "the destruction of an erasure epoch could not be audited, so it was not carried out")
		}
		return nil
	})
	return len(done), err
}

// sweepCandidate is identity data the sweep may shred, and why.
type sweepCandidate struct{ pseudonym, orgID, reason string }

func (s *Service) sweepIdentities(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-SweepGrace).UnixMicro()
	n, after := 0, ""
	for {
		var (
			found []sweepCandidate
			last  string
			more  bool
		)
		// Finding what to shred reads pseudonyms and states only, and
		// records nothing; each shredding is recorded (sweepOne).
		err := s.Gate.Operate(ctx, "identity.sweep", func(o *gate.OpTx) error {
			o.Nothing()
			it, err := o.Identity(ctx)
			if err != nil {
				return err
			}
			found, last, more, err = sweepPage(ctx, it, o, cutoff, after)
			return err
		})
		if err != nil {
			return n, errs.Wrap(errs.Unavailable, err, "sweep: read the databases")
		}
		for _, c := range found {
			if err := s.sweepOne(ctx, c); err != nil {
				return n, err
			}
			n++
		}
		if !more {
			return n, nil
		}
		after = last
	}
}

// sweepPage reads one page of identity data older than cutoff after the
// pseudonym after, and returns those whose participant the clinical
// database does not know or records as not having them, the page's last
// pseudonym and whether there may be more.
func sweepPage(ctx context.Context, identity, clinical sqldb.Querier, cutoff int64, after string) ([]sweepCandidate, string, bool, error) {
	type row struct{ pseudonym, orgID string }
	var page []row
	rows, err := identity.QueryContext(ctx, `SELECT participant_id, org_id FROM identities
		WHERE created_at < $1 AND participant_id > $2 ORDER BY participant_id LIMIT $3`, cutoff, after, sweepPageSize)
	if err != nil {
		return nil, "", false, err
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.pseudonym, &r.orgID); err != nil {
			rows.Close()
			return nil, "", false, err
		}
		page = append(page, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", false, err
	}
	var found []sweepCandidate
	for _, r := range page {
		var state string
		err := clinical.QueryRowContext(ctx, `SELECT identity FROM participants WHERE org_id = $1 AND id = $2`,
			r.orgID, r.pseudonym).Scan(&state)
		reason := "erased"
		switch {
		case errors.Is(err, sql.ErrNoRows):
			reason = "orphan"
		case err != nil:
			return nil, "", false, err
		case IdentityState(state) == IdentityRecorded:
			continue
		}
		found = append(found, sweepCandidate{r.pseudonym, r.orgID, reason})
	}
	if len(page) == 0 {
		return found, after, false, nil
	}
	return found, page[len(page)-1].pseudonym, len(page) == sweepPageSize, nil
}

// sweepOne records, then carries out, the shredding of one participant's
// identity data: the identity transaction commits after the event.
func (s *Service) sweepOne(ctx context.Context, c sweepCandidate) error {
	err := s.Gate.Operate(ctx, "identity.sweep", func(o *gate.OpTx) error {
		var known int
		if err := o.QueryRowContext(ctx, `SELECT count(*) FROM organizations WHERE id = $1`, c.orgID).Scan(&known); err != nil {
			return err
		}
		if known == 1 {
			o.Org(c.orgID)
		}
		o.Object("participant", c.pseudonym)
		o.Participant(c.pseudonym)
		o.Security()
		o.Detail("reason", c.reason)
		it, err := o.Identity(ctx)
		if err != nil {
			return err
		}
		return shred(ctx, it, it, c.orgID, c.pseudonym)
	})
	if err != nil {
		return fmt.Errorf("sweep: shred participant %s: %w", c.pseudonym, err)
	}
	return nil
}

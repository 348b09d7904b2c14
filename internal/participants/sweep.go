package participants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// SweepGrace is how old identity data must be before Sweep may take them
// for unreachable: far longer than an enrolment takes between its identity
// commit and its clinical commit.
const SweepGrace = 15 * time.Minute

// sweepPage is how many identity rows Sweep reads at once.
const sweepPage = 200

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
	if s.Gate.Identity == nil || s.Gate.IdentityKeys == nil {
		return 0, nil
	}
	if _, err := s.destroyRetiredEpochs(ctx); err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	n, err := s.sweepIdentities(ctx)
	if err != nil {
		return n, err
	}
	if _, err := s.adoptIntoEpochs(ctx); err != nil {
		return n, fmt.Errorf("sweep: %w", err)
	}
	if _, err := s.Gate.IdentityKeys.RetireEpochsOfDestroyedKeys(ctx); err != nil {
		return n, fmt.Errorf("sweep: %w", err)
	}
	if _, err := s.destroyRetiredEpochs(ctx); err != nil {
		return n, fmt.Errorf("sweep: %w", err)
	}
	return n, nil
}

// adoptIntoEpochs adopts the participant keys without an erasure epoch
// into epochs and, if it adopted any, records a security event outside any
// organization (action key.epoch_adopt) with how many key versions it
// adopted; an epoch holds keys of participants of any organization. Keys
// adopted before a failure are recorded too.
func (s *Service) adoptIntoEpochs(ctx context.Context) (int, error) {
	n, err := s.Gate.IdentityKeys.AdoptIntoEpochs(ctx, keys.DefaultAdoptBatch)
	if n > 0 {
		aerr := s.Gate.DB.InTx(ctx, func(tx *sql.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Event{Action: "key.epoch_adopt", ActorRole: "operator", RemoteAddr: "local",
				ObjectType: "erasure_epoch", Outcome: audit.Success, Security: true,
				Details: map[string]string{"keys": strconv.Itoa(n)}})
			return err
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
func (s *Service) destroyRetiredEpochs(ctx context.Context) (int, error) {
	if s.Gate.IdentityKeys == nil {
		return 0, nil
	}
	done, err := s.Gate.IdentityKeys.DestroyRetiredEpochs(ctx, func(epoch string) error {
		err := s.Gate.DB.InTx(ctx, func(tx *sql.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Event{Action: "key.epoch_destroy", ActorRole: "operator", RemoteAddr: "local",
				ObjectType: "erasure_epoch", ObjectID: epoch, Outcome: audit.Success, Security: true})
			return err
		})
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "the destruction of an erasure epoch could not be audited, so it was not carried out")
		}
		return nil
	})
	return len(done), err
}

func (s *Service) sweepIdentities(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-SweepGrace).UnixMicro()
	n, after := 0, ""
	for {
		type row struct{ pseudonym, orgID string }
		var page []row
		rows, err := s.Gate.Identity.QueryContext(ctx, `SELECT participant_id, org_id FROM identities
			WHERE created_at < $1 AND participant_id > $2 ORDER BY participant_id LIMIT $3`, cutoff, after, sweepPage)
		if err != nil {
			return n, errs.Wrap(errs.Unavailable, err, "sweep: read the identity database")
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.pseudonym, &r.orgID); err != nil {
				rows.Close()
				return n, errs.Wrap(errs.Unavailable, err, "sweep: read the identity database")
			}
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return n, errs.Wrap(errs.Unavailable, err, "sweep: read the identity database")
		}
		for _, r := range page {
			var state string
			err := s.Gate.DB.QueryRowContext(ctx, `SELECT identity FROM participants WHERE org_id = $1 AND id = $2`,
				r.orgID, r.pseudonym).Scan(&state)
			reason := "erased"
			switch {
			case errors.Is(err, sql.ErrNoRows):
				reason = "orphan"
			case err != nil:
				return n, errs.Wrap(errs.Unavailable, err, "sweep: read the clinical database")
			case IdentityState(state) == IdentityRecorded:
				continue
			}
			if err := s.sweepOne(ctx, r.orgID, r.pseudonym, reason); err != nil {
				return n, err
			}
			n++
		}
		if len(page) < sweepPage {
			return n, nil
		}
		after = page[len(page)-1].pseudonym
	}
}

// sweepOne records, then carries out, the shredding of one participant's
// identity data.
func (s *Service) sweepOne(ctx context.Context, orgID, pseudonym, reason string) error {
	err := s.Gate.DB.InTx(ctx, func(tx *sql.Tx) error {
		var known int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM organizations WHERE id = $1`, orgID).Scan(&known); err != nil {
			return err
		}
		ev := audit.Event{Action: "identity.sweep", ActorRole: "operator", RemoteAddr: "local",
			ObjectType: "participant", ObjectID: pseudonym, ParticipantID: pseudonym, Outcome: audit.Success,
			Security: true, Details: map[string]string{"reason": reason}}
		if known == 1 {
			ev.OrgID = orgID
		}
		_, err := audit.Append(ctx, tx, ev)
		return err
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "sweep: the shredding could not be audited, so it was not carried out")
	}
	err = s.Gate.Identity.InTx(ctx, func(tx *sql.Tx) error {
		return shred(ctx, tx, keyringVault{s.Gate.IdentityKeys, tx}, orgID, pseudonym)
	})
	if err != nil {
		return fmt.Errorf("sweep: shred participant %s: %w", pseudonym, err)
	}
	return nil
}

// keyringVault destroys keys of a keyring within one transaction, for the
// sweep, which runs outside any request.
type keyringVault struct {
	ring *keys.Keyring
	q    sqldb.Querier
}

func (v keyringVault) Destroy(ctx context.Context, scope keys.Scope) error {
	return v.ring.Destroy(ctx, v.q, scope)
}

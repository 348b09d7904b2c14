package entries

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
)

// Deletion (LIFE-01): an entry deleted is hidden from every read and
// export and locked against saves, with who deleted it, when and why;
// an organization admin may restore it for Retention after, and then the
// purge erases it with its history for good. Each step is on the audit
// trail; the purge takes one entry a transaction, so a purge cut short by
// a crash leaves whole entries only, and the next one goes on.

// DefaultRetention is how long a deleted entry may be restored.
const DefaultRetention = 30 * 24 * time.Hour

func (s *Service) retention() time.Duration {
	if s.Retention > 0 {
		return s.Retention
	}
	return DefaultRetention
}

// Delete deletes the entry at a place, for reason.
func (s *Service) Delete(ctx context.Context, a gate.Actor, slug string, p Place, reason string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "entry.delete", func(t *gate.Tx) error {
		org := t.Org()
		sc, err := place(ctx, t, authz.EntryWrite, p, "this role reads entries; it does not delete them", false)
		if err != nil {
			return err
		}
		if onlyAsParticipant(t, authz.EntryWrite, p.resource(org.ID)) {
			return errs.E(errs.Forbidden, "a participant does not delete entries; the study team does")
		}
		why, err := checkReason(reason)
		if err != nil {
			return errs.E(errs.Invalid, "a reason is required to delete an entry: %s", errs.SafeMessage(err))
		}
		res, err := t.ExecContext(ctx, `UPDATE entries SET deleted_at = $1, deleted_by = $2, deleted_reason = $3
			WHERE participant_id = $4 AND visit_id = $5 AND visit_repeat = $6 AND form_id = $7 AND org_id = $8 AND deleted_at IS NULL`,
			s.now().UnixMicro(), t.Subject.AccountID, why, p.Participant, sc.visitID, p.Repeat, sc.formID, org.ID)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "delete the entry")
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errs.E(errs.NotFound, "no entry here, or it was deleted already")
		}
		return nil
	})
}

// Restore restores the deleted entry at a place, within the retention
// period, and answers it.
func (s *Service) Restore(ctx context.Context, a gate.Actor, slug string, p Place) (Entry, error) {
	var out Entry
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "entry.restore", func(t *gate.Tx) error {
		org := t.Org()
		sc, err := place(ctx, t, authz.EntryRestore, p, "only an organization admin restores a deleted entry", false)
		if err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, `UPDATE entries SET deleted_at = NULL, deleted_by = NULL, deleted_reason = NULL
			WHERE participant_id = $1 AND visit_id = $2 AND visit_repeat = $3 AND form_id = $4 AND org_id = $5
			AND deleted_at IS NOT NULL AND deleted_at > $6`,
			p.Participant, sc.visitID, p.Repeat, sc.formID, org.ID, s.now().Add(-s.retention()).UnixMicro())
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "restore the entry")
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errs.E(errs.NotFound, "no deleted entry here that may still be restored")
		}
		out, err = s.read(ctx, t, org.ID, p, sc, nil)
		return err
	})
	return out, err
}

// purgePage bounds the entries one look for them finds.
const purgePage = 200

// Purge erases for good the entries deleted longer than the retention
// period ago, with their values and history, each in a transaction of its
// own recorded as entry.purge in its organization's trail. It answers how
// many it erased. Several nodes may purge at once: an entry erased twice
// is erased once.
func (s *Service) Purge(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-s.retention()).UnixMicro()
	type victim struct{ id, org, study, site, participant string }
	n := 0
	for {
		var found []victim
		err := s.Gate.Operate(ctx, "entry.purge", func(o *gate.OpTx) error {
			o.Nothing()
			rows, err := o.QueryContext(ctx, `SELECT id, org_id, study_id, site_id, participant_id FROM entries
				WHERE deleted_at IS NOT NULL AND deleted_at <= $1 ORDER BY deleted_at, id LIMIT $2`, cutoff, purgePage)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var v victim
				if err := rows.Scan(&v.id, &v.org, &v.study, &v.site, &v.participant); err != nil {
					return err
				}
				found = append(found, v)
			}
			return rows.Err()
		})
		if err != nil {
			return n, errs.Wrap(errs.Unavailable, err, "purge: read the entries")
		}
		for _, v := range found {
			err := s.Gate.Operate(ctx, "entry.purge", func(o *gate.OpTx) error {
				o.Org(v.org)
				o.Study(v.study, v.site)
				o.Participant(v.participant)
				o.Object("entry", v.id)
				var deleted sql.NullInt64
				err := o.QueryRowContext(ctx, `SELECT deleted_at FROM entries WHERE id = $1`, v.id).Scan(&deleted)
				if errors.Is(err, sql.ErrNoRows) || err == nil && (!deleted.Valid || deleted.Int64 > cutoff) {
					o.Nothing() // purged by another node, or restored meanwhile
					return nil
				}
				if err != nil {
					return err
				}
				for _, q := range []string{
					`DELETE FROM entry_values WHERE entry_id = $1`,
					`DELETE FROM entry_changes WHERE entry_id = $1`,
					`DELETE FROM entry_revisions WHERE entry_id = $1`,
					`DELETE FROM entries WHERE id = $1 AND deleted_at IS NOT NULL`,
				} {
					if _, err := o.ExecContext(ctx, q, v.id); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return n, errs.Wrap(errs.Unavailable, err, "purge an entry")
			}
			n++
		}
		if len(found) < purgePage {
			return n, nil
		}
	}
}

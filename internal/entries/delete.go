package entries

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

// Deletion (LIFE-01): an entry deleted is hidden from every read and
// export and locked against saves, with who deleted it, when and why;
// an organization admin may restore it for the organization's retention
// period (policy.Security.DeletionRetentionDays) after, and then the purge
// erases it with its history for good. Each step is on the audit trail;
// the purge takes one entry a transaction, so a purge cut short by a crash
// leaves whole entries only, and the next one goes on. The entries of a
// deleted participant are hidden with them (participants.ByPseudonym, and
// live for the reads of a whole study), and purged with them
// (PurgeParticipants).

// DefaultRetention is how long deleted data may be restored in an
// organization that has not set its own period.
var DefaultRetention = time.Duration(policy.DefaultRetentionDays()) * 24 * time.Hour

// live is the condition, on entries e, that an entry is shown in the reads
// of a whole study (exports): neither it nor its participant is deleted.
const live = `e.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM participant_deletions pd
	WHERE pd.org_id = e.org_id AND pd.participant_id = e.participant_id)`

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
// period, and answers it. An entry deleted with its form version is
// restored with the version only (RestoreVersion).
func (s *Service) Restore(ctx context.Context, a gate.Actor, slug string, p Place) (Entry, error) {
	var out Entry
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "entry.restore", func(t *gate.Tx) error {
		org := t.Org()
		sc, err := place(ctx, t, authz.EntryRestore, p, "only an organization admin restores a deleted entry", false)
		if err != nil {
			return err
		}
		retention, err := policy.Retention(ctx, t, org.ID)
		if err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, `UPDATE entries SET deleted_at = NULL, deleted_by = NULL, deleted_reason = NULL
			WHERE participant_id = $1 AND visit_id = $2 AND visit_repeat = $3 AND form_id = $4 AND org_id = $5
			AND deleted_at IS NOT NULL AND deleted_with IS NULL AND deleted_at > $6`,
			p.Participant, sc.visitID, p.Repeat, sc.formID, org.ID, s.now().Add(-retention).UnixMicro())
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

// Purge erases for good the entries deleted longer than their
// organization's retention period ago, with their values and history, each
// in a transaction of its own recorded as entry.purge in its
// organization's trail. It answers how many it erased. Several nodes may
// purge at once: an entry erased twice is erased once.
func (s *Service) Purge(ctx context.Context) (int, error) {
	now := s.now()
	type victim struct{ id, org, study, site, participant string }
	n := 0
	for {
		var found []victim
		err := s.Gate.Operate(ctx, "entry.purge", func(o *gate.OpTx) error {
			o.Nothing()
			rows, err := o.QueryContext(ctx, `SELECT id, org_id, study_id, site_id, participant_id FROM entries
				WHERE deleted_at IS NOT NULL AND `+policy.DeletedBefore("entries.org_id", "deleted_at", 1)+`
				ORDER BY deleted_at, id LIMIT $3`, now.UnixMicro(), policy.DefaultRetentionDays(), purgePage)
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
				retention, err := policy.Retention(ctx, o, v.org)
				if err != nil {
					return err
				}
				cutoff := now.Add(-retention).UnixMicro()
				var deleted sql.NullInt64
				err = o.QueryRowContext(ctx, `SELECT deleted_at FROM entries WHERE id = $1`, v.id).Scan(&deleted)
				if errors.Is(err, sql.ErrNoRows) || err == nil && (!deleted.Valid || deleted.Int64 > cutoff) {
					o.Nothing() // purged by another node, or restored meanwhile
					return nil
				}
				if err != nil {
					return err
				}
				for _, q := range []string{
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

// PurgeParticipants erases for good the participants deleted longer than
// their organization's retention period ago (participants.Service.Purge):
// their identity, then, in one transaction each, their entries with their
// values and history, their files, and their record. It answers how many.
func (s *Service) PurgeParticipants(ctx context.Context) (int, error) {
	return (&participants.Service{Gate: s.Gate, Now: s.Now}).Purge(ctx, purgeParticipantData)
}

// purgeParticipantData erases a participant's entries and files in q (a
// participant purge's transaction; participants.PurgeData). The history of
// an entry goes only with an entry marked deleted (the tables' triggers),
// so each is marked first, as deleted by whoever deleted the participant.
func purgeParticipantData(ctx context.Context, q sqldb.Querier, orgID, pseudonym string) (string, error) {
	if _, err := q.ExecContext(ctx, `UPDATE entries SET deleted_at = d.deleted_at, deleted_by = d.deleted_by, deleted_reason = d.reason
		FROM (SELECT deleted_at, deleted_by, reason FROM participant_deletions WHERE org_id = $1 AND participant_id = $2) d
		WHERE entries.org_id = $1 AND entries.participant_id = $2 AND entries.deleted_at IS NULL`, orgID, pseudonym); err != nil {
		return "", err
	}
	n, err := purgeEntries(ctx, q, `org_id = $1 AND participant_id = $2`, orgID, pseudonym)
	if err != nil {
		return "", err
	}
	res, err := q.ExecContext(ctx, `DELETE FROM files WHERE org_id = $1 AND participant_id = $2`, orgID, pseudonym)
	if err != nil {
		return "", err
	}
	files, err := res.RowsAffected()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("entries=%d files=%d", n, files), nil
}

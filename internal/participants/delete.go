package participants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

// Deletion (LIFE-01): a participant deleted is hidden from every list, read
// and export and locked against every change (ByPseudonym no longer finds
// them), with who deleted them, when and why in participant_deletions. An
// organization admin may restore them for the organization's retention
// period (policy.Security.DeletionRetentionDays); then Purge erases them for
// good: their identity as Erase does (the key destroyed), then their
// entries and files, relations, invitations and record. Each step is on
// the audit trail.

// MaxDeleteReason bounds the reason of a deletion, in characters.
const MaxDeleteReason = 500

// deleteReason checks the reason of a deletion: required, text, bounded.
func deleteReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", errs.E(errs.Invalid, "a reason is required to delete a participant")
	case !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxDeleteReason:
		return "", errs.E(errs.Invalid, "the reason must be text of at most %d characters", MaxDeleteReason)
	case strings.ContainsFunc(reason, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }):
		return "", errs.E(errs.Invalid, "the reason may not contain control characters")
	}
	return reason, nil
}

// Delete deletes a participant for reason (LIFE-01). It needs
// participant.delete and a fresh confirmation (ACL-09): at the end of the
// retention period the purge erases the participant's identity for good.
// It is a security event, naming the retention period then in force.
func (s *Service) Delete(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym, reason string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "participant.delete", func(t *gate.Tx) error {
		p, err := authorizeAt(ctx, t, authz.ParticipantDelete, studyID, siteID, pseudonym, "deleting a participant is not among your permissions here")
		if err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		t.Security()
		why, err := deleteReason(reason)
		if err != nil {
			return err
		}
		retention, err := policy.Retention(ctx, t, p.OrgID)
		if err != nil {
			return err
		}
		_, err = t.ExecContext(ctx, `INSERT INTO participant_deletions (org_id, participant_id, deleted_at, deleted_by, reason)
			VALUES ($1, $2, $3, $4, $5)`, p.OrgID, p.Pseudonym, s.now().UnixMicro(), t.Subject.AccountID, why)
		if sqldb.IsUniqueViolation(err) {
			return errs.E(errs.NotFound, "participant not found")
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "delete the participant")
		}
		t.Detail("retention_days", strconv.Itoa(int(retention/(24*time.Hour))))
		return nil
	})
}

// deletedAt finds the deleted participant at a request's study and site
// and when they were deleted; one not deleted is not found.
func deletedAt(ctx context.Context, q sqldb.Querier, orgID, studyID, siteID, pseudonym string) (Participant, int64, error) {
	p, err := byPseudonym(ctx, q, orgID, pseudonym, "")
	if err != nil {
		return Participant{}, 0, err
	}
	if p.StudyID != studyID || p.SiteID != siteID {
		return Participant{}, 0, errs.E(errs.NotFound, "participant not found")
	}
	var at int64
	err = q.QueryRowContext(ctx, `SELECT deleted_at FROM participant_deletions WHERE org_id = $1 AND participant_id = $2`,
		orgID, pseudonym).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return Participant{}, 0, errs.E(errs.NotFound, "no deleted participant here that may still be restored")
	}
	if err != nil {
		return Participant{}, 0, errs.Wrap(errs.Unavailable, err, "read the deletion")
	}
	return p, at, nil
}

// Restore restores a deleted participant within the organization's
// retention period, with everything recorded about them, and answers
// them. It needs entry.restore: an organization admin's, as for a deleted
// entry. Those who read participants at the site are told so (403) whether
// or not the participant is deleted; to anyone else it is not found.
func (s *Service) Restore(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym string) (Participant, error) {
	var p Participant
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "participant.restore", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("participant", pseudonym)
		if ids.Valid(pseudonym) {
			t.Participant(pseudonym)
		}
		r := authz.Resource{OrgID: org.ID, StudyID: studyID, SiteID: siteID, ParticipantID: pseudonym}
		if !t.Allowed(authz.EntryRestore, r) && t.Allowed(authz.ParticipantRead, r) {
			// Told so whether deleted or not, but only about a participant
			// of this site.
			p, err := byPseudonym(ctx, t, org.ID, pseudonym, "")
			if err != nil {
				return err
			}
			if p.StudyID != studyID || p.SiteID != siteID {
				return errs.E(errs.NotFound, "participant not found")
			}
			return errs.E(errs.Forbidden, "only an organization admin restores a deleted participant")
		}
		if err := t.Authorize(authz.EntryRestore, r); err != nil {
			return err
		}
		found, at, err := deletedAt(ctx, t, org.ID, studyID, siteID, pseudonym)
		if err != nil {
			return err
		}
		retention, err := policy.Retention(ctx, t, org.ID)
		if err != nil {
			return err
		}
		if at <= s.now().Add(-retention).UnixMicro() {
			return errs.E(errs.NotFound, "no deleted participant here that may still be restored")
		}
		if _, err := t.ExecContext(ctx, `DELETE FROM participant_deletions WHERE org_id = $1 AND participant_id = $2`,
			org.ID, found.Pseudonym); err != nil {
			return errs.Wrap(errs.Unavailable, err, "restore the participant")
		}
		p = found
		return nil
	})
	return p, err
}

// PurgeData erases, in the purge's transaction q, what else is recorded
// about a participant (their entries and files; see entries.Service) and
// describes it for the audit event ("entries=3 files=1").
type PurgeData func(ctx context.Context, q sqldb.Querier, orgID, pseudonym string) (string, error)

// Due says, in a purge step's transaction q, whether the participant is
// still due to be purged: LIFE-01's purge asks whether they were deleted
// longer than the retention period ago (deletedLongAgo), LIFE-02's whether
// they are noticed for inactivity past the notice period. step is the
// step about to run, "identity" or "data": the data step of a purge whose
// identity step is done may ask less.
type Due func(ctx context.Context, q sqldb.Querier, orgID, pseudonym, step string) (bool, error)

// purgePage bounds the participants one look for them finds.
const purgePage = 100

// Purge erases for good the participants deleted longer than their
// organization's retention period ago, and answers how many. Each is
// erased in two steps, each a transaction of its own about that one
// participant, on the trail as participant.purge with its step:
//
//   - identity: the participant is marked erased and their key destroyed
//     and sealed values deleted, as Erase does (the identity transaction
//     commits after the event);
//   - data: data erases their entries and files, then their relations,
//     invitations, deletion and record go.
//
// A purge cut short between the steps, or by a crash anywhere, leaves the
// participant deleted and is completed by the next run: each step is
// repeated from the start and does only what is left, and is recorded if
// anything was (an identity step that finds the identity erased and its
// data gone records nothing). Several nodes may purge at once: each step
// of a participant is done and recorded once (purgeStep).
func (s *Service) Purge(ctx context.Context, data PurgeData) (int, error) {
	type victim struct{ org, pseudonym string }
	now := s.now().UnixMicro()
	n := 0
	for {
		var found []victim
		err := s.Gate.Operate(ctx, "participant.purge", func(o *gate.OpTx) error {
			o.Nothing()
			rows, err := o.QueryContext(ctx, `SELECT d.org_id, d.participant_id FROM participant_deletions d
				WHERE `+policy.DeletedBefore("d.org_id", "d.deleted_at", 1)+`
				ORDER BY d.deleted_at, d.participant_id LIMIT $3`, now, policy.DefaultRetentionDays(), purgePage)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var v victim
				if err := rows.Scan(&v.org, &v.pseudonym); err != nil {
					return err
				}
				found = append(found, v)
			}
			return rows.Err()
		})
		if err != nil {
			return n, errs.Wrap(errs.Unavailable, err, "purge: read the deleted participants")
		}
		for _, v := range found {
			done, err := s.purgeOne(ctx, "participant.purge", v.org, v.pseudonym, data, s.deletedLongAgo)
			if err != nil {
				return n, err
			}
			if done {
				n++
			}
		}
		if len(found) < purgePage {
			break
		}
	}
	if ring := s.Gate.IdentityKeys(); ring != nil && n > 0 {
		if _, err := s.destroyRetiredEpochs(ctx, ring); err != nil {
			return n, errs.Wrap(errs.Unavailable, err, "the purge is recorded, but the key of its erasure epoch is not destroyed yet; the next sweep completes it")
		}
	}
	return n, nil
}

// deletedLongAgo is the Due of LIFE-01's purge: the participant was
// deleted longer than their organization's retention period ago.
func (s *Service) deletedLongAgo(ctx context.Context, q sqldb.Querier, orgID, pseudonym, _ string) (bool, error) {
	var at int64
	err := q.QueryRowContext(ctx, `SELECT deleted_at FROM participant_deletions WHERE org_id = $1 AND participant_id = $2`,
		orgID, pseudonym).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	retention, err := policy.Retention(ctx, q, orgID)
	if err != nil {
		return false, err
	}
	return at <= s.now().Add(-retention).UnixMicro(), nil
}

// purgeStep finds, in a step's transaction, the participant still due to
// be purged (due), or reports false: restored or active again meanwhile,
// or purged by another node.
func (s *Service) purgeStep(ctx context.Context, o *gate.OpTx, orgID, pseudonym, step string, due Due) (Participant, bool, error) {
	o.Org(orgID)
	o.Object("participant", pseudonym)
	o.Participant(pseudonym)
	o.Security()
	o.Detail("step", step)
	if o.Dialect() == sqldb.Postgres {
		// Several nodes may purge at once. With the participant's row
		// held, the same step on another node waits for this one to
		// commit, and then finds what it did: the participant no longer
		// due, or their identity erased (identityLeft). Each step is done
		// and recorded once, not once per node (AVL-04). SQLite has one
		// node, and one writer at a time.
		var held string
		err := o.QueryRowContext(ctx, `SELECT id FROM participants WHERE org_id = $1 AND id = $2 FOR UPDATE`,
			orgID, pseudonym).Scan(&held)
		if errors.Is(err, sql.ErrNoRows) {
			o.Nothing()
			return Participant{}, false, nil
		}
		if err != nil {
			return Participant{}, false, err
		}
	}
	ok, err := due(ctx, o, orgID, pseudonym, step)
	if err != nil {
		return Participant{}, false, err
	}
	if !ok {
		o.Nothing()
		return Participant{}, false, nil
	}
	p, err := byPseudonym(ctx, o, orgID, pseudonym, "")
	if err != nil {
		return Participant{}, false, err
	}
	o.Study(p.StudyID, p.SiteID)
	return p, true, nil
}

// purgeOne purges one participant in its two steps (see Purge), recorded
// as action, while due says they are due.
func (s *Service) purgeOne(ctx context.Context, action, orgID, pseudonym string, data PurgeData, isDue Due) (bool, error) {
	due := false
	err := s.Gate.Operate(ctx, action, func(o *gate.OpTx) error {
		p, ok, err := s.purgeStep(ctx, o, orgID, pseudonym, "identity", isDue)
		if err != nil || !ok {
			return err
		}
		due = true
		o.Detail("previous", string(p.Identity))
		if p.Identity == IdentityErased {
			// Erased already: by an erasure, or by this step on another
			// node, which committed while this one waited. With no
			// identity data left there is nothing to do and nothing to
			// record (an erasure cut short is completed below).
			left, err := s.identityLeft(ctx, o, orgID, pseudonym)
			if err != nil {
				return err
			}
			if !left {
				o.Nothing()
				return nil
			}
		}
		if p.Identity != IdentityErased {
			if _, err := o.ExecContext(ctx, `UPDATE participants SET identity = 'erased', erased_at = $1
				WHERE org_id = $2 AND id = $3`, sqldb.Now(), orgID, pseudonym); err != nil {
				return fmt.Errorf("mark participant erased: %w", err)
			}
		}
		if s.Gate.IdentityKeys() == nil {
			return nil // no identity database: nothing was ever sealed there
		}
		it, err := o.Identity(ctx)
		if err != nil {
			return err
		}
		return shred(ctx, it, it, orgID, pseudonym)
	})
	if err != nil || !due {
		return false, wrapPurge(pseudonym, err)
	}
	err = s.Gate.Operate(ctx, action, func(o *gate.OpTx) error {
		_, ok, err := s.purgeStep(ctx, o, orgID, pseudonym, "data", isDue)
		if err != nil || !ok {
			due = ok
			return err
		}
		if data != nil {
			what, err := data(ctx, o, orgID, pseudonym)
			if err != nil {
				return err
			}
			o.Detail("erased", what)
		}
		if _, err := authz.UnrelateParticipant(ctx, o, orgID, pseudonym); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM participant_invitations WHERE org_id = $1 AND participant_id = $2`,
			`DELETE FROM participant_deletions WHERE org_id = $1 AND participant_id = $2`,
			`DELETE FROM participants WHERE org_id = $1 AND id = $2`,
		} {
			if _, err := o.ExecContext(ctx, q, orgID, pseudonym); err != nil {
				return err
			}
		}
		return nil
	})
	return due, wrapPurge(pseudonym, err)
}

// identityLeft reports, in a purge's identity step o, whether the identity
// database still holds identity data of the participant, removing them in
// the step's identity transaction as shred does. Unlike a read, the
// removal waits on PostgreSQL for another node's shredding of them that
// has not committed yet, and then finds what that left.
func (s *Service) identityLeft(ctx context.Context, o *gate.OpTx, orgID, pseudonym string) (bool, error) {
	if s.Gate.IdentityKeys() == nil {
		return false, nil // no identity database: nothing was ever sealed there
	}
	it, err := o.Identity(ctx)
	if err != nil {
		return false, err
	}
	res, err := it.ExecContext(ctx, `DELETE FROM identities WHERE participant_id = $1 AND org_id = $2`, pseudonym, orgID)
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "the identity database is unavailable")
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func wrapPurge(pseudonym string, err error) error {
	if err == nil {
		return nil
	}
	return errs.Wrap(errs.Unavailable, err, "purge participant "+pseudonym)
}

package entries

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

// Deleting a form version with data (LIFE-01): the entries saved under it
// are deleted with it, as one, and marked so (deleted_with), so that
// restoring the version restores exactly them and an entry of theirs is
// not restored alone. The version is retired and stays so: a restored
// entry is corrected under the form's current version. After the
// organization's retention period the purge erases the entries, one a
// transaction (Purge), and then the version's deletion (PurgeVersions).

// VersionDeletion answers a deleted or restored form version.
type VersionDeletion struct {
	Form    string
	Version int
	// Entries is how many entries were deleted or restored with it.
	Entries int
}

// versionAt finds a form version of the study by form key and number, with
// its state, and names it on the audit event.
func versionAt(ctx context.Context, t *gate.Tx, orgID, studyID, key string, version int) (string, forms.State, error) {
	t.Detail("form", forms.KeyForTrail(key))
	t.Detail("version", strconv.Itoa(version))
	notFound := errs.E(errs.NotFound, "form version not found")
	if !forms.ValidKey(key) || version < 1 {
		return "", "", notFound
	}
	if _, err := orgs.StudyByID(ctx, t, orgID, studyID); err != nil {
		return "", "", err
	}
	var id string
	var state forms.State
	err := t.QueryRowContext(ctx, `SELECT v.form_id, v.state FROM form_versions v JOIN forms f ON f.id = v.form_id
		WHERE f.org_id = $1 AND f.study_id = $2 AND f.form_key = $3 AND v.version = $4`, orgID, studyID, key, version).Scan(&id, &state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", "", notFound
	case err != nil:
		return "", "", errs.Wrap(errs.Unavailable, err, "read the form")
	}
	return id, state, nil
}

// DeleteVersion deletes a published or retired version of a form, for
// reason. A version with entries needs form.design and entry.write in the
// whole study (its entries are deleted with it, at every site); one
// without is simply retired (form.design), as Retire does.
func (s *Service) DeleteVersion(ctx context.Context, a gate.Actor, slug, studyID, key string, version int, reason string) (VersionDeletion, error) {
	out := VersionDeletion{Form: key, Version: version}
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "form.version.delete", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		r := authz.Resource{OrgID: org.ID, StudyID: studyID}
		if err := t.Authorize(authz.FormDesign, r); err != nil {
			return err
		}
		id, state, err := versionAt(ctx, t, org.ID, studyID, key, version)
		if err != nil {
			return err
		}
		if state == forms.Draft {
			return errs.E(errs.Conflict, "version %d of form %s is a draft; a draft is replaced, not deleted", version, key)
		}
		why, err := checkReason(reason)
		if err != nil {
			return errs.E(errs.Invalid, "a reason is required to delete a form version: %s", errs.SafeMessage(err))
		}
		var deleted int
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM form_version_deletions WHERE form_id = $1 AND version = $2`,
			id, version).Scan(&deleted); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the form version")
		}
		if deleted > 0 {
			return errs.E(errs.NotFound, "version %d of form %s was deleted already", version, key)
		}
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE form_id = $1 AND form_version = $2 AND deleted_at IS NULL`,
			id, version).Scan(&out.Entries); err != nil {
			return errs.Wrap(errs.Unavailable, err, "count the version's entries")
		}
		t.Detail("entries", strconv.Itoa(out.Entries))
		if out.Entries > 0 {
			if !t.Allowed(authz.EntryWrite, r) {
				return errs.E(errs.Forbidden, "this version holds entries; deleting them needs the permission to enter data in the whole study")
			}
			now := s.now().UnixMicro()
			if _, err := t.ExecContext(ctx, `INSERT INTO form_version_deletions (org_id, study_id, form_id, version, deleted_at, deleted_by, reason)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, org.ID, studyID, id, version, now, t.Subject.AccountID, why); err != nil {
				return errs.Wrap(errs.Unavailable, err, "delete the form version")
			}
			if _, err := t.ExecContext(ctx, `UPDATE entries SET deleted_at = $1, deleted_by = $2, deleted_reason = $3, deleted_with = 'form_version'
				WHERE form_id = $4 AND form_version = $5 AND org_id = $6 AND deleted_at IS NULL`,
				now, t.Subject.AccountID, why, id, version, org.ID); err != nil {
				return errs.Wrap(errs.Unavailable, err, "delete the version's entries")
			}
		}
		if state == forms.Published {
			return forms.Retire(ctx, t, org.ID, studyID, key, version)
		}
		return nil
	})
	return out, err
}

// RestoreVersion restores a deleted form version's entries within the
// organization's retention period (entry.restore: an organization admin).
// Those who read the study's forms are told they may not (403). The
// version stays retired.
func (s *Service) RestoreVersion(ctx context.Context, a gate.Actor, slug, studyID, key string, version int) (VersionDeletion, error) {
	out := VersionDeletion{Form: key, Version: version}
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "form.version.restore", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		r := authz.Resource{OrgID: org.ID, StudyID: studyID}
		if !t.Allowed(authz.EntryRestore, r) && t.Allowed(authz.FormRead, r) {
			if _, _, err := versionAt(ctx, t, org.ID, studyID, key, version); err != nil {
				return err
			}
			return errs.E(errs.Forbidden, "only an organization admin restores a deleted form version")
		}
		if err := t.Authorize(authz.EntryRestore, r); err != nil {
			return err
		}
		id, _, err := versionAt(ctx, t, org.ID, studyID, key, version)
		if err != nil {
			return err
		}
		retention, err := policy.Retention(ctx, t, org.ID)
		if err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, `DELETE FROM form_version_deletions WHERE form_id = $1 AND version = $2 AND org_id = $3 AND deleted_at > $4`,
			id, version, org.ID, s.now().Add(-retention).UnixMicro())
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "restore the form version")
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errs.E(errs.NotFound, "no deleted form version here that may still be restored")
		}
		res, err = t.ExecContext(ctx, `UPDATE entries SET deleted_at = NULL, deleted_by = NULL, deleted_reason = NULL, deleted_with = NULL
			WHERE form_id = $1 AND form_version = $2 AND org_id = $3 AND deleted_with = 'form_version'`, id, version, org.ID)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "restore the version's entries")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "restore the version's entries")
		}
		out.Entries = int(n)
		t.Detail("entries", strconv.Itoa(out.Entries))
		return nil
	})
	return out, err
}

// PurgeVersions ends the deletions of form versions older than their
// organization's retention period, each in a transaction of its own
// recorded as form.version.purge: what entries Purge has not erased yet
// are erased with their history, then the deletion goes. It answers how
// many.
func (s *Service) PurgeVersions(ctx context.Context) (int, error) {
	type victim struct {
		org, study, form string
		version          int
	}
	now := s.now()
	var found []victim
	err := s.Gate.Operate(ctx, "form.version.purge", func(o *gate.OpTx) error {
		o.Nothing()
		rows, err := o.QueryContext(ctx, `SELECT org_id, study_id, form_id, version FROM form_version_deletions
			WHERE `+policy.DeletedBefore("form_version_deletions.org_id", "deleted_at", 1)+`
			ORDER BY deleted_at, form_id, version`, now.UnixMicro(), policy.DefaultRetentionDays())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v victim
			if err := rows.Scan(&v.org, &v.study, &v.form, &v.version); err != nil {
				return err
			}
			found = append(found, v)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "purge: read the deleted form versions")
	}
	n := 0
	for _, v := range found {
		err := s.Gate.Operate(ctx, "form.version.purge", func(o *gate.OpTx) error {
			o.Org(v.org)
			o.Study(v.study, "")
			o.Object("form", v.form)
			o.Detail("version", strconv.Itoa(v.version))
			retention, err := policy.Retention(ctx, o, v.org)
			if err != nil {
				return err
			}
			var at int64
			err = o.QueryRowContext(ctx, `SELECT deleted_at FROM form_version_deletions WHERE form_id = $1 AND version = $2`,
				v.form, v.version).Scan(&at)
			if errors.Is(err, sql.ErrNoRows) || err == nil && at > now.Add(-retention).UnixMicro() {
				o.Nothing() // purged by another node, or restored meanwhile
				return nil
			}
			if err != nil {
				return err
			}
			left, err := purgeEntries(ctx, o, `form_id = $1 AND form_version = $2 AND deleted_with = 'form_version'`, v.form, v.version)
			if err != nil {
				return err
			}
			o.Detail("entries", strconv.Itoa(left))
			_, err = o.ExecContext(ctx, `DELETE FROM form_version_deletions WHERE form_id = $1 AND version = $2`, v.form, v.version)
			return err
		})
		if err != nil {
			return n, errs.Wrap(errs.Unavailable, err, "purge a deleted form version")
		}
		n++
	}
	return n, nil
}

// purgeEntries erases the deleted entries that match where (on entries,
// with args) with their values and history, and answers how many.
func purgeEntries(ctx context.Context, q sqldb.Querier, where string, args ...any) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE deleted_at IS NOT NULL AND `+where, args...).Scan(&n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	byEntry := `entry_id IN (SELECT id FROM entries WHERE deleted_at IS NOT NULL AND ` + where + `)`
	for _, stmt := range []string{
		`DELETE FROM entry_revisions WHERE ` + byEntry,
		`DELETE FROM entries WHERE deleted_at IS NOT NULL AND ` + where,
	} {
		if _, err := q.ExecContext(ctx, stmt, args...); err != nil {
			return 0, err
		}
	}
	return n, nil
}

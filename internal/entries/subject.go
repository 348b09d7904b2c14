package entries

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// Retention and data subjects' requests (LIFE-02): a participant purged
// for inactivity takes their entries and files with them
// (PurgeInactiveParticipantData), and a data subject's export holds every
// entry, with its history, and every file recorded about them
// (ReadSubjectEntries).

// PurgeInactiveParticipantData erases a participant's entries, with their
// values and history, and their files in q (the data step of a purge for
// inactivity; participants.PurgeData) and describes it for the audit
// event. The history tables give up an entry's rows only once the entry is
// marked deleted, so each entry is marked first, as deleted by whoever
// saved it last, for the purge that follows in the same transaction: the
// mark never outlives it.
func PurgeInactiveParticipantData(ctx context.Context, q sqldb.Querier, orgID, pseudonym string) (string, error) {
	if _, err := q.ExecContext(ctx, `UPDATE entries SET deleted_at = $3, deleted_by = saved_by, deleted_reason = 'inactive (LIFE-02)'
		WHERE org_id = $1 AND participant_id = $2 AND deleted_at IS NULL`, orgID, pseudonym, sqldb.Now()); err != nil {
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

// SubjectEntry is one entry as a data subject's export holds it: every
// value, sensitive ones opened, and every save, deleted entries included.
type SubjectEntry struct {
	Visit       string            `json:"visit"`
	Repeat      int               `json:"repeat"`
	Form        string            `json:"form"`
	FormVersion int               `json:"form_version"`
	Status      Status            `json:"status"`
	Revision    int               `json:"revision"`
	CreatedBy   string            `json:"created_by"`
	CreatedAt   time.Time         `json:"created_at"`
	SavedBy     string            `json:"saved_by"`
	SavedAt     time.Time         `json:"saved_at"`
	DeletedAt   *time.Time        `json:"deleted_at,omitempty"`
	Values      []SubjectValue    `json:"values"`
	History     []SubjectRevision `json:"history"`
}

// SubjectValue is one value of an entry: a field's, or a field's in a row
// of a repeating group (Row from 1).
type SubjectValue struct {
	Field   string `json:"field"`
	Row     int    `json:"row,omitempty"`
	Value   string `json:"value,omitempty"`
	Removed bool   `json:"removed,omitempty"`
}

// SubjectRevision is one save of an entry with what it changed.
type SubjectRevision struct {
	Revision    int            `json:"revision"`
	FormVersion int            `json:"form_version"`
	Status      Status         `json:"status"`
	SavedBy     string         `json:"saved_by"`
	SavedAt     time.Time      `json:"saved_at"`
	Reason      string         `json:"reason,omitempty"`
	Changes     []SubjectValue `json:"changes"`
}

// SubjectFile describes a file of the participant; its content goes to
// the export's sink under Path.
type SubjectFile struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	MediaType string    `json:"media_type"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	Path      string    `json:"path"`
}

// ReadSubjectEntries reads, for a data subject's export, every entry of p
// with its history and every file of p, the files' contents handed to put
// one at a time (path, content). The work must be allowed
// authz.SubjectExport on p: the export is for the person themselves, so
// neither a decrypt grant nor field visibility narrows it.
func ReadSubjectEntries(ctx context.Context, t *gate.Tx, p participants.Participant, put func(path string, content []byte) error) ([]SubjectEntry, []SubjectFile, error) {
	r := authz.Resource{OrgID: p.OrgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Pseudonym}
	if !t.Allowed(authz.SubjectExport, r) {
		return nil, nil, gate.ErrDenied
	}
	type stored struct {
		id      string
		e       SubjectEntry
		cells   string
		created int64
		saved   int64
		deleted int64
	}
	rows, err := t.QueryContext(ctx, `SELECT e.id, v.visit_key, e.visit_repeat, f.form_key, e.form_version, e.status, e.revision,
			e.created_by, e.created_at, e.saved_by, e.saved_at, coalesce(e.deleted_at, 0), e.cells
		FROM entries e JOIN visits v ON v.id = e.visit_id JOIN forms f ON f.id = e.form_id
		WHERE e.org_id = $1 AND e.participant_id = $2 ORDER BY e.created_at, e.id`, p.OrgID, p.Pseudonym)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	var found []stored
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.id, &s.e.Visit, &s.e.Repeat, &s.e.Form, &s.e.FormVersion, &s.e.Status, &s.e.Revision,
			&s.e.CreatedBy, &s.created, &s.e.SavedBy, &s.saved, &s.deleted, &s.cells); err != nil {
			rows.Close()
			return nil, nil, errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		found = append(found, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	// open reads packed cells, opening the sealed ones under the study's
	// key where they were sealed.
	open := func(entryID, form, packed string) ([]SubjectValue, error) {
		cells, err := unpackCells(packed, nil)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "read the entries")
		}
		out := []SubjectValue{}
		for _, pc := range cells {
			v := SubjectValue{Field: pc.c.field, Row: pc.c.row}
			switch {
			case pc.clear:
				v.Value = pc.value
			case pc.removed():
				v.Removed = true
			default:
				sealed, err := pc.ciphertext()
				if err != nil {
					return nil, errs.Wrap(errs.Internal, err, "read the entries")
				}
				b, err := t.Vault().Open(ctx, sealedAt(p.OrgID, p.StudyID, entryID, form, pc.c), sealed)
				if err != nil {
					return nil, err
				}
				v.Value = string(b)
			}
			out = append(out, v)
		}
		return out, nil
	}
	out := make([]SubjectEntry, 0, len(found))
	for _, s := range found {
		e := s.e
		e.History = []SubjectRevision{}
		e.CreatedAt, e.SavedAt = time.UnixMicro(s.created).UTC(), time.UnixMicro(s.saved).UTC()
		if s.deleted != 0 {
			at := time.UnixMicro(s.deleted).UTC()
			e.DeletedAt = &at
		}
		if e.Values, err = open(s.id, e.Form, s.cells); err != nil {
			return nil, nil, err
		}
		hist, err := t.QueryContext(ctx, `SELECT revision, form_version, status, saved_by, saved_at, coalesce(reason, ''), changes
			FROM entry_revisions WHERE entry_id = $1 ORDER BY revision`, s.id)
		if err != nil {
			return nil, nil, errs.Wrap(errs.Unavailable, err, "read the entries' history")
		}
		var packed []string
		for hist.Next() {
			var r SubjectRevision
			var at int64
			var changes string
			if err := hist.Scan(&r.Revision, &r.FormVersion, &r.Status, &r.SavedBy, &at, &r.Reason, &changes); err != nil {
				hist.Close()
				return nil, nil, errs.Wrap(errs.Unavailable, err, "read the entries' history")
			}
			r.SavedAt = time.UnixMicro(at).UTC()
			e.History = append(e.History, r)
			packed = append(packed, changes)
		}
		hist.Close()
		if err := hist.Err(); err != nil {
			return nil, nil, errs.Wrap(errs.Unavailable, err, "read the entries' history")
		}
		for i, changes := range packed {
			if e.History[i].Changes, err = open(s.id, e.Form, changes); err != nil {
				return nil, nil, err
			}
		}
		out = append(out, e)
	}
	files, err := readSubjectFiles(ctx, t, p, put)
	if err != nil {
		return nil, nil, err
	}
	return out, files, nil
}

// readSubjectFiles reads p's files one at a time, their contents to put.
func readSubjectFiles(ctx context.Context, t *gate.Tx, p participants.Participant, put func(string, []byte) error) ([]SubjectFile, error) {
	rows, err := t.QueryContext(ctx, `SELECT id, study_id, name, media_type, size, sha256, created_by, created_at FROM files
		WHERE org_id = $1 AND participant_id = $2 ORDER BY created_at, id`, p.OrgID, p.Pseudonym)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the files")
	}
	var out []SubjectFile
	var studies []string
	for rows.Next() {
		var f SubjectFile
		var study string
		var at int64
		if err := rows.Scan(&f.ID, &study, &f.Name, &f.MediaType, &f.Size, &f.SHA256, &f.CreatedBy, &at); err != nil {
			rows.Close()
			return nil, errs.Wrap(errs.Unavailable, err, "read the files")
		}
		f.CreatedAt, f.Path = time.UnixMicro(at).UTC(), "files/"+f.ID+"/"+pathName(f.Name)
		out = append(out, f)
		studies = append(studies, study)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the files")
	}
	for i, f := range out {
		var sealed []byte
		if err := t.QueryRowContext(ctx, `SELECT sealed FROM files WHERE id = $1`, f.ID).Scan(&sealed); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the files")
		}
		content, err := t.Vault().Open(ctx, fileAt(p.OrgID, studies[i], f.ID), sealed)
		if err != nil {
			return nil, err
		}
		if err := put(f.Path, content); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pathName is a file's name as the last element of a path in an export:
// a name is checked at upload (no slashes, no control characters), and
// one that is only dots becomes "file".
func pathName(name string) string {
	if strings.Trim(name, ".") == "" {
		return "file"
	}
	return name
}

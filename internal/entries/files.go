package entries

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// Files for the file fields of entries (WEB-05): uploaded for a
// participant, judged by their content (forms.SniffFile), at most
// forms.MaxFileBytes, sealed with the study's key; an entry's file field
// then names the file's id, and the save checks the file against the
// field's accepted types and size. Reading a file is audited as any read of
// the participant's data.

// File is an uploaded file's description.
type File struct {
	ID, Name, MediaType, SHA256 string
	Size                        int64
	CreatedAt                   int64
}

// maxFileName bounds a file's name, in characters.
const maxFileName = 200

func checkFileName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "file"
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxFileName || strings.ContainsAny(name, "/\\\"") ||
		strings.ContainsFunc(name, unicode.IsControl) {
		return "", errs.E(errs.Invalid, "a file's name is at most %d characters, without control characters, slashes or quotes", maxFileName)
	}
	return name, nil
}

// Upload stores a file for the participant at a place (its visit and form
// are not needed: a file belongs to the participant), and answers its
// description.
func (s *Service) Upload(ctx context.Context, a gate.Actor, slug string, p Place, name string, body io.Reader) (File, error) {
	var out File
	name, err := checkFileName(name)
	if err != nil {
		return out, err
	}
	data, err := io.ReadAll(io.LimitReader(body, forms.MaxFileBytes+1))
	if err != nil {
		if strings.Contains(err.Error(), "request body too large") {
			return out, errs.E(errs.Invalid, "a file is at most %d bytes", forms.MaxFileBytes)
		}
		return out, errs.Wrap(errs.Invalid, err, "the file could not be read")
	}
	if len(data) > forms.MaxFileBytes {
		return out, errs.E(errs.Invalid, "a file is at most %d bytes", forms.MaxFileBytes)
	}
	kind := forms.SniffFile(data)
	if kind == "" {
		return out, errs.E(errs.Invalid, "the file is none of %s, by its content", strings.Join(forms.FileTypes, ", "))
	}
	sum := sha256.Sum256(data)
	err = s.Gate.Do(ctx, a, gate.Slug(slug), "file.upload", func(t *gate.Tx) error {
		org := t.Org()
		if _, err := authorize(ctx, t, authz.EntryWrite, p, "this role reads entries; it does not enter them"); err != nil {
			return err
		}
		out = File{ID: ids.New(), Name: name, MediaType: kind, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), CreatedAt: sqldb.Now()}
		sealed, err := t.Vault().Seal(ctx, keys.StudyScope(org.ID, p.StudyID), fileAt(org.ID, p.StudyID, out.ID), data)
		if err != nil {
			return err
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO files (id, org_id, study_id, site_id, participant_id, name, media_type, size, sha256, sealed, created_by, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			out.ID, org.ID, p.StudyID, p.SiteID, p.Participant, name, kind, out.Size, out.SHA256, sealed, t.Subject.AccountID, out.CreatedAt); err != nil {
			return errs.Wrap(errs.Unavailable, err, "store the file")
		}
		t.Detail("file", out.ID)
		t.Detail("media_type", kind)
		t.Detail("size", strconv.FormatInt(out.Size, 10))
		t.Detail("sha256", out.SHA256)
		return nil
	})
	return out, err
}

// fileAt is where a file is sealed.
func fileAt(orgID, studyID, fileID string) keys.Context {
	return keys.Context{OrgID: orgID, StudyID: studyID, RecordID: fileID, Field: "file"}
}

// Download answers a file of the participant at a place, with its content.
func (s *Service) Download(ctx context.Context, a gate.Actor, slug string, p Place, fileID string) (File, []byte, error) {
	var out File
	var data []byte
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "file.read", func(t *gate.Tx) error {
		org := t.Org()
		if _, err := authorize(ctx, t, authz.EntryRead, p, ""); err != nil {
			return err
		}
		if !ids.Valid(fileID) {
			return errs.E(errs.NotFound, "file not found")
		}
		t.Detail("file", fileID)
		var sealed []byte
		out.ID = fileID
		err := t.QueryRowContext(ctx, `SELECT name, media_type, size, sha256, sealed, created_at FROM files
			WHERE id = $1 AND org_id = $2 AND study_id = $3 AND participant_id = $4`, fileID, org.ID, p.StudyID, p.Participant).
			Scan(&out.Name, &out.MediaType, &out.Size, &out.SHA256, &sealed, &out.CreatedAt)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, "file not found")
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the file")
		}
		data, err = t.Vault().Open(ctx, fileAt(org.ID, p.StudyID, fileID), sealed)
		return err
	})
	return out, data, err
}

// fileOf reads a file's type and size, if it is one of the participant's.
func fileOf(ctx context.Context, q sqldb.Querier, orgID string, p Place, fileID string) (string, int64, bool, error) {
	var kind string
	var size int64
	err := q.QueryRowContext(ctx, `SELECT media_type, size FROM files WHERE id = $1 AND org_id = $2 AND study_id = $3 AND participant_id = $4`,
		fileID, orgID, p.StudyID, p.Participant).Scan(&kind, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, errs.Wrap(errs.Unavailable, err, "read the file")
	}
	return kind, size, true, nil
}

// checkFiles checks the files a save names against their fields: each one
// of the participant's, of an accepted type and size.
func checkFiles(ctx context.Context, q sqldb.Querier, orgID string, p Place, f *forms.Form, next map[cell]string) error {
	var list []forms.FieldError
	for c, v := range next {
		fd, ok := f.FieldNamed(c.field)
		if !ok || fd.Type != forms.File {
			continue
		}
		kind, size, found, err := fileOf(ctx, q, orgID, p, v)
		if err != nil {
			return err
		}
		switch {
		case !found:
			list = append(list, forms.FieldError{Field: c.field, Row: c.row, Error: "no such file uploaded for this participant"})
		case !fd.Accepts(kind, size):
			list = append(list, forms.FieldError{Field: c.field, Row: c.row, Error: "the file's type or size is not what the field takes"})
		default:
			// Named by the save, the file is attached, in the save's
			// transaction: kept from now on (PurgeUnattachedFiles).
			if _, err := q.ExecContext(ctx, `UPDATE files SET attached_at = $1 WHERE id = $2 AND org_id = $3 AND attached_at IS NULL`,
				sqldb.Now(), v, orgID); err != nil {
				return errs.Wrap(errs.Unavailable, err, "attach the file")
			}
		}
	}
	if len(list) > 0 {
		return problems(list)
	}
	return nil
}

// UnattachedFor is how long a file uploaded for a participant waits for a
// save to name it before PurgeUnattachedFiles erases it.
const UnattachedFor = 24 * time.Hour

// PurgeUnattachedFiles erases the files that no saved entry named within
// UnattachedFor of their upload (a save refused after its files were sent,
// an upload never used), a page at a time, each page a transaction
// recorded as file.purge in each organization's trail with the count. It
// answers how many it erased. Several nodes may purge at once.
func (s *Service) PurgeUnattachedFiles(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-UnattachedFor).UnixMicro()
	n := 0
	for {
		type file struct{ id, org string }
		var page []file
		err := s.Gate.Operate(ctx, "file.purge", func(o *gate.OpTx) error {
			o.Nothing()
			rows, err := o.QueryContext(ctx, `SELECT id, org_id FROM files WHERE attached_at IS NULL AND created_at < $1
				ORDER BY created_at, id LIMIT $2`, cutoff, purgePage)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var f file
				if err := rows.Scan(&f.id, &f.org); err != nil {
					return err
				}
				page = append(page, f)
			}
			return rows.Err()
		})
		if err != nil {
			return n, errs.Wrap(errs.Unavailable, err, "purge: read the unattached files")
		}
		byOrg := map[string][]string{}
		for _, f := range page {
			byOrg[f.org] = append(byOrg[f.org], f.id)
		}
		for org, list := range byOrg {
			err := s.Gate.Operate(ctx, "file.purge", func(o *gate.OpTx) error {
				o.Org(org)
				purged := 0
				for _, id := range list {
					res, err := o.ExecContext(ctx, `DELETE FROM files WHERE id = $1 AND org_id = $2 AND attached_at IS NULL AND created_at < $3`,
						id, org, cutoff)
					if err != nil {
						return err
					}
					if k, err := res.RowsAffected(); err == nil {
						purged += int(k)
					}
				}
				if purged == 0 {
					o.Nothing() // purged by another node, or attached meanwhile
					return nil
				}
				o.Detail("files_count", strconv.Itoa(purged))
				n += purged
				return nil
			})
			if err != nil {
				return n, errs.Wrap(errs.Unavailable, err, "purge the unattached files")
			}
		}
		if len(page) < purgePage {
			return n, nil
		}
	}
}

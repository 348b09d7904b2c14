package forms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// The forms of a study, stored (tables forms and form_versions): a form is
// named by its key in its study; its versions are at most one draft, which
// its designer replaces until it is published, and published versions,
// which never change and may be retired. The functions run in the caller's
// transaction (the gate's), and the caller authorizes.

// State is where a form version stands.
type State string

const (
	Draft     State = "draft"
	Published State = "published"
	Retired   State = "retired"
)

// MaxDefinition bounds a form definition as JSON.
const MaxDefinition = 512 << 10

// Problems is the refusal of a definition or of an entry: every problem,
// each naming its field. It is of kind Invalid.
type Problems struct {
	Fields []FieldError
}

func (p *Problems) Error() string {
	if len(p.Fields) == 0 {
		return "invalid"
	}
	first := p.Fields[0]
	msg := first.Error
	if first.Field != "" {
		msg = first.Field + ": " + msg
	}
	if len(p.Fields) > 1 {
		return fmt.Sprintf("%s (and %d more problems)", msg, len(p.Fields)-1)
	}
	return msg
}

// problems wraps a list of problems as an Invalid error.
func problems(list []FieldError) error {
	p := &Problems{Fields: list}
	return errs.Wrap(errs.Invalid, p, p.Error())
}

// ParseForm reads a form definition from JSON, strictly (unknown or repeated
// keys, trailing data and wrong types are refused), and checks it.
func ParseForm(definition []byte) (*Form, error) {
	if len(definition) > MaxDefinition {
		return nil, errs.E(errs.Invalid, "a form definition is at most %d bytes", MaxDefinition)
	}
	dec := json.NewDecoder(bytes.NewReader(definition))
	dec.DisallowUnknownFields()
	var f Form
	if err := dec.Decode(&f); err != nil {
		return nil, errs.E(errs.Invalid, "the form definition is not a form: %s", errs.Clip(strings.TrimPrefix(err.Error(), "json: "), 200))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errs.E(errs.Invalid, "the form definition holds more than one JSON value")
	}
	if err := f.Ready(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Ready checks f (Check) and answers its problems as one Invalid error.
func (f *Form) Ready() error {
	if list := f.Check(); len(list) > 0 {
		return problems(list)
	}
	return nil
}

// canonical is a checked form as stored, and its digest: the SHA-256 of
// exactly those bytes, in hex.
func (f *Form) canonical() ([]byte, string, error) {
	c := *f
	c.Version = 0
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, "", errs.Wrap(errs.Internal, err, "encode the form")
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}

// Summary is one form of a study, as its list shows it.
type Summary struct {
	ID        string
	Key       string
	Title     string // of the newest version
	Published int    // the newest published version, 0 if none
	Draft     int    // the draft's version, 0 if none
	CreatedAt int64
}

// Version is one version of a form. Form is its definition, read only by
// VersionOf.
type Version struct {
	FormID      string
	Key         string
	Version     int
	State       State
	Title       string
	Digest      string
	SavedBy     string
	SavedAt     int64
	PublishedBy string
	PublishedAt int64
	RetiredAt   int64
	Form        *Form
}

// Create adds form f (checked) to a study, after its other forms, as the
// draft of its version 1.
func Create(ctx context.Context, q sqldb.Querier, orgID, studyID, accountID string, f *Form) (Version, error) {
	if err := f.Ready(); err != nil {
		return Version{}, err
	}
	id, now := ids.New(), sqldb.Now()
	_, err := q.ExecContext(ctx, `INSERT INTO forms (id, org_id, study_id, form_key, position, created_by, created_at)
		VALUES ($1, $2, $3, $4, (SELECT coalesce(max(position) + 1, 0) FROM forms WHERE org_id = $2 AND study_id = $3), $5, $6)`,
		id, orgID, studyID, f.Key, accountID, now)
	if sqldb.IsUniqueViolation(err) {
		return Version{}, errs.E(errs.Conflict, "the study has a form %s already", f.Key)
	}
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "store the form")
	}
	return insertDraft(ctx, q, orgID, studyID, id, f.Key, 1, accountID, f)
}

func insertDraft(ctx context.Context, q sqldb.Querier, orgID, studyID, formID, key string, version int, accountID string, f *Form) (Version, error) {
	def, digest, err := f.canonical()
	if err != nil {
		return Version{}, err
	}
	now := sqldb.Now()
	_, err = q.ExecContext(ctx, `INSERT INTO form_versions
		(org_id, study_id, form_id, version, title, definition, digest, state, saved_by, saved_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'draft', $8, $9)`,
		orgID, studyID, formID, version, f.Title, string(def), digest, accountID, now)
	if sqldb.IsUniqueViolation(err) {
		return Version{}, errs.E(errs.Conflict, "someone else saved a draft of form %s meanwhile; load it and try again", key)
	}
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "store the form's draft")
	}
	return Version{FormID: formID, Key: key, Version: version, State: Draft, Title: f.Title, Digest: digest, SavedBy: accountID, SavedAt: now, Form: f}, nil
}

// formID finds a form of a study by its key.
func formID(ctx context.Context, q sqldb.Querier, orgID, studyID, key string) (string, error) {
	if !ValidKey(key) {
		return "", errs.E(errs.NotFound, "form not found")
	}
	var id string
	err := q.QueryRowContext(ctx, `SELECT id FROM forms WHERE org_id = $1 AND study_id = $2 AND form_key = $3`,
		orgID, studyID, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errs.E(errs.NotFound, "form not found")
	}
	if err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "read the form")
	}
	return id, nil
}

// SaveDraft saves f as the draft of form key: it replaces the draft there
// is, or starts one after the newest version. base is the digest of the
// draft the designer started from ("" when there was none): a draft saved
// meanwhile by someone else is a conflict, never overwritten. A form's
// key never changes.
func SaveDraft(ctx context.Context, q sqldb.Querier, orgID, studyID, key, accountID, base string, f *Form) (Version, error) {
	if f.Key != key {
		return Version{}, problems([]FieldError{{Error: fmt.Sprintf("the form's key is %s and cannot change", key)}})
	}
	if err := f.Ready(); err != nil {
		return Version{}, err
	}
	id, err := formID(ctx, q, orgID, studyID, key)
	if err != nil {
		return Version{}, err
	}
	var (
		draft  sql.NullInt64
		digest sql.NullString
		newest int
	)
	err = q.QueryRowContext(ctx, `SELECT
		(SELECT version FROM form_versions WHERE form_id = $1 AND state = 'draft'),
		(SELECT digest FROM form_versions WHERE form_id = $1 AND state = 'draft'),
		(SELECT coalesce(max(version), 0) FROM form_versions WHERE form_id = $1)`, id).Scan(&draft, &digest, &newest)
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "read the form")
	}
	if !draft.Valid {
		if base != "" {
			return Version{}, errs.E(errs.Conflict, "the draft of form %s was published or discarded meanwhile; load the form and try again", key)
		}
		return insertDraft(ctx, q, orgID, studyID, id, key, newest+1, accountID, f)
	}
	if base != digest.String {
		return Version{}, errs.E(errs.Conflict, "someone else saved the draft of form %s meanwhile; load it and try again", key)
	}
	def, sum, err := f.canonical()
	if err != nil {
		return Version{}, err
	}
	now := sqldb.Now()
	res, err := q.ExecContext(ctx, `UPDATE form_versions SET title = $1, definition = $2, digest = $3, saved_by = $4, saved_at = $5
		WHERE form_id = $6 AND version = $7 AND state = 'draft' AND digest = $8`,
		f.Title, string(def), sum, accountID, now, id, draft.Int64, base)
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "store the form's draft")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return Version{}, errs.E(errs.Conflict, "someone else saved the draft of form %s meanwhile; load it and try again", key)
	}
	return Version{FormID: id, Key: key, Version: int(draft.Int64), State: Draft, Title: f.Title, Digest: sum, SavedBy: accountID, SavedAt: now, Form: f}, nil
}

// Publish publishes the draft of form key, which must be the one whose
// digest the publisher names: what they saw is what is published. From
// then on that version never changes.
func Publish(ctx context.Context, q sqldb.Querier, orgID, studyID, key, accountID, digest string) (Version, error) {
	id, err := formID(ctx, q, orgID, studyID, key)
	if err != nil {
		return Version{}, err
	}
	now := sqldb.Now()
	var v Version
	err = q.QueryRowContext(ctx, `UPDATE form_versions SET state = 'published', published_by = $1, published_at = $2
		WHERE form_id = $3 AND state = 'draft' AND digest = $4
		RETURNING version, title, saved_by, saved_at`, accountID, now, id, digest).Scan(&v.Version, &v.Title, &v.SavedBy, &v.SavedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, errs.E(errs.Conflict, "form %s has no draft with that digest: it was changed or published meanwhile; load it and try again", key)
	}
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "publish the form")
	}
	v.FormID, v.Key, v.State, v.Digest, v.PublishedBy, v.PublishedAt = id, key, Published, digest, accountID, now
	return v, nil
}

// Retire retires a published version of form key: no entry is saved under
// it any more; those saved under it keep it.
func Retire(ctx context.Context, q sqldb.Querier, orgID, studyID, key string, version int) error {
	id, err := formID(ctx, q, orgID, studyID, key)
	if err != nil {
		return err
	}
	var state State
	err = q.QueryRowContext(ctx, `SELECT state FROM form_versions WHERE form_id = $1 AND version = $2`, id, version).Scan(&state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errs.E(errs.NotFound, "form version not found")
	case err != nil:
		return errs.Wrap(errs.Unavailable, err, "read the form")
	case state == Draft:
		return errs.E(errs.Conflict, "version %d of form %s is a draft; only a published version is retired", version, key)
	case state == Retired:
		return errs.E(errs.Conflict, "version %d of form %s is retired already", version, key)
	}
	if _, err := q.ExecContext(ctx, `UPDATE form_versions SET state = 'retired', retired_at = $1
		WHERE form_id = $2 AND version = $3 AND state = 'published'`, sqldb.Now(), id, version); err != nil {
		return errs.Wrap(errs.Unavailable, err, "retire the form version")
	}
	return nil
}

// List lists the forms of a study in their order.
func List(ctx context.Context, q sqldb.Querier, orgID, studyID string) ([]Summary, error) {
	rows, err := q.QueryContext(ctx, `SELECT f.id, f.form_key, f.created_at,
		  (SELECT v.title FROM form_versions v WHERE v.form_id = f.id ORDER BY v.version DESC LIMIT 1),
		  (SELECT coalesce(max(v.version), 0) FROM form_versions v WHERE v.form_id = f.id AND v.state = 'published'),
		  (SELECT coalesce(max(v.version), 0) FROM form_versions v WHERE v.form_id = f.id AND v.state = 'draft')
		FROM forms f WHERE f.org_id = $1 AND f.study_id = $2 ORDER BY f.position, f.form_key`, orgID, studyID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list the forms")
	}
	defer rows.Close()
	out := []Summary{}
	for rows.Next() {
		var s Summary
		if err := rows.Scan(&s.ID, &s.Key, &s.CreatedAt, &s.Title, &s.Published, &s.Draft); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "list the forms")
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list the forms")
	}
	return out, nil
}

const versionColumns = `v.form_id, f.form_key, v.version, v.state, v.title, v.digest, v.saved_by, v.saved_at,
	coalesce(v.published_by, ''), coalesce(v.published_at, 0), coalesce(v.retired_at, 0)`

func scanVersion(r interface{ Scan(...any) error }, extra ...any) (Version, error) {
	var v Version
	err := r.Scan(append([]any{&v.FormID, &v.Key, &v.Version, &v.State, &v.Title, &v.Digest, &v.SavedBy, &v.SavedAt,
		&v.PublishedBy, &v.PublishedAt, &v.RetiredAt}, extra...)...)
	return v, err
}

// Versions lists the versions of form key, newest first, without their
// definitions.
func Versions(ctx context.Context, q sqldb.Querier, orgID, studyID, key string) ([]Version, error) {
	id, err := formID(ctx, q, orgID, studyID, key)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT `+versionColumns+` FROM form_versions v JOIN forms f ON f.id = v.form_id
		WHERE v.form_id = $1 ORDER BY v.version DESC`, id)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the form")
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the form")
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the form")
	}
	return out, nil
}

// VersionOf reads one version of form key with its definition; version 0
// is the newest published one, or the draft if none is published.
//
// The form is found by its key in the same statement; only when that finds
// nothing is the form looked up alone, to tell a missing form from a
// missing version.
func VersionOf(ctx context.Context, q sqldb.Querier, orgID, studyID, key string, version int) (Version, error) {
	if !ValidKey(key) {
		return Version{}, errs.E(errs.NotFound, "form not found")
	}
	where := `f.org_id = $1 AND f.study_id = $2 AND f.form_key = $3 AND v.version = $4`
	args := []any{orgID, studyID, key, version}
	if version == 0 {
		where = `f.org_id = $1 AND f.study_id = $2 AND f.form_key = $3
			ORDER BY CASE v.state WHEN 'published' THEN 0 WHEN 'draft' THEN 1 ELSE 2 END, v.version DESC LIMIT 1`
		args = args[:3]
	}
	var def string
	v, err := scanVersion(q.QueryRowContext(ctx, `SELECT `+versionColumns+`, v.definition
		FROM form_versions v JOIN forms f ON f.id = v.form_id WHERE `+where, args...), &def)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := formID(ctx, q, orgID, studyID, key); err != nil {
			return Version{}, err
		}
		return Version{}, errs.E(errs.NotFound, "form version not found")
	}
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "read the form")
	}
	if sum := sha256.Sum256([]byte(def)); hex.EncodeToString(sum[:]) != v.Digest {
		return Version{}, errs.E(errs.Internal, "version %d of form %s does not match its digest", v.Version, key)
	}
	if v.Form, err = ParseForm([]byte(def)); err != nil {
		return Version{}, errs.Wrap(errs.Internal, err, fmt.Sprintf("version %d of form %s does not read", v.Version, key))
	}
	v.Form.Version = v.Version
	return v, nil
}

// ValidKey reports whether key is well formed as a form's key.
func ValidKey(key string) bool { return validName(key) && len(key) <= maxFormKey }

// KeyForTrail is a form's or a visit's key as an audit event records it: a
// key that is not one (a probe) is recorded as such rather than copied.
func KeyForTrail(key string) string {
	if !ValidKey(key) {
		return "invalid"
	}
	return key
}

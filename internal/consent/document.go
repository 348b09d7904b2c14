// Package consent owns a study's electronic consent (issue 16): its consent
// documents, versioned per language like forms (a published version never
// changes: the database refuses it), the study's consent settings, and
// the consents and withdrawals participants sign.
//
// A participant signs in the portal, with their own account and a fresh
// confirmation of it (ACL-09), or in person on a site's device, where the
// investigator's confirmed session records the participant's typed name
// (and a drawn signature); a legally authorized representative may sign
// for them. They first answer the document's comprehension questions: a
// wrong answer refuses the signature and stores nothing. Each signature
// is sealed under the participant's own key (CRY-03, LIFE-03) as the
// record of what was answered and typed and as a PDF of exactly what was
// shown and signed; the PDF's SHA-256 is on the audit event (AUD-01), so
// anyone can later prove what was signed, and erasing the participant
// leaves it unreadable. Where the study says so, data entry waits for a
// valid consent (CheckEntry). Every method runs through the gate:
// authorized before anything is read, in one transaction, audited.
package consent

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Bounds of a document (docs/limits.md).
const (
	MaxTitle     = 200
	MaxSections  = 100
	MaxHeading   = 200
	MaxText      = 20000
	MaxImageNote = 500
	MaxQuestions = 20
	MaxQuestion  = 500
	MaxChoices   = 10
	MaxChoice    = 200
	// MaxContent bounds a document as JSON, in bytes, its images with it.
	MaxContent = 768 << 10
)

// Content is what a consent document shows: its title, its sections and
// the comprehension questions a signer answers first.
type Content struct {
	Title     string     `json:"title"`
	Sections  []Section  `json:"sections"`
	Questions []Question `json:"questions,omitempty"`
}

// Section is one part of a document, with an image if it has one: a PNG
// or JPEG (Image, base64; ImageType) that the page and the signed PDF
// show, described in words by ImageNote for those who cannot see it.
type Section struct {
	Heading   string `json:"heading"`
	Text      string `json:"text"`
	Image     string `json:"image,omitempty"`
	ImageType string `json:"image_type,omitempty"`
	ImageNote string `json:"image_note,omitempty"`
}

// Question is a comprehension question: its choices and the one a signer
// must pick (Answer, from 0). A reader's copy leaves Answer out.
type Question struct {
	Text    string   `json:"text"`
	Choices []string `json:"choices"`
	Answer  *int     `json:"answer,omitempty"`
}

// State is where a version stands.
type State string

const (
	Draft     State = "draft"
	Published State = "published"
)

// Version is one version of a study's consent document in one language.
type Version struct {
	Language    string
	Version     int
	State       State
	Title       string
	Digest      string
	Reconsent   bool // publishing it asked those who signed an older one to sign again
	SavedBy     string
	SavedAt     int64
	PublishedBy string
	PublishedAt int64
	Content     *Content
}

// DocumentSummary names a study's document in one language with its
// newest published and draft versions (0: none).
type DocumentSummary struct {
	Language  string
	Title     string
	Published int
	Draft     int
}

var languageTag = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$`)

// CheckLanguage checks a language tag (BCP 47 style: "en", "nl-BE").
func CheckLanguage(s string) error {
	if len(s) > 35 || !languageTag.MatchString(s) {
		return errs.E(errs.Invalid, "language must be a language tag such as en or nl-BE")
	}
	return nil
}

// text checks one text of a document: valid UTF-8, within max characters,
// without control characters but for line breaks where multiline.
func text(where, s string, max int, required, multiline bool) (string, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	switch {
	case !utf8.ValidString(s):
		return "", errs.E(errs.Invalid, "%s must be UTF-8 text", where)
	case required && s == "":
		return "", errs.E(errs.Invalid, "%s is required", where)
	case utf8.RuneCountInString(s) > max:
		return "", errs.E(errs.Invalid, "%s must be at most %d characters", where, max)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && !(multiline && r == '\n') }):
		return "", errs.E(errs.Invalid, "%s must be text without control characters", where)
	}
	return s, nil
}

// check validates c and answers its clean copy (WEB-05).
func (c Content) check() (Content, error) {
	var out Content
	var err error
	if out.Title, err = text("title", c.Title, MaxTitle, true, false); err != nil {
		return Content{}, err
	}
	if len(c.Sections) == 0 || len(c.Sections) > MaxSections {
		return Content{}, errs.E(errs.Invalid, "a document has 1 to %d sections", MaxSections)
	}
	for i, s := range c.Sections {
		var cs Section
		at := fmt.Sprintf("sections[%d]", i+1)
		if cs.Heading, err = text(at+".heading", s.Heading, MaxHeading, true, false); err != nil {
			return Content{}, err
		}
		if cs.Text, err = text(at+".text", s.Text, MaxText, true, true); err != nil {
			return Content{}, err
		}
		if cs.ImageNote, err = text(at+".image_note", s.ImageNote, MaxImageNote, false, false); err != nil {
			return Content{}, err
		}
		if cs.Image, cs.ImageType, err = sectionImage(at, s.Image); err != nil {
			return Content{}, err
		}
		if cs.Image != "" && cs.ImageNote == "" {
			return Content{}, errs.E(errs.Invalid, "%s.image_note must describe the image, for those who cannot see it", at)
		}
		out.Sections = append(out.Sections, cs)
	}
	if len(c.Questions) > MaxQuestions {
		return Content{}, errs.E(errs.Invalid, "a document has at most %d questions", MaxQuestions)
	}
	for i, q := range c.Questions {
		var cq Question
		at := fmt.Sprintf("questions[%d]", i+1)
		if cq.Text, err = text(at+".text", q.Text, MaxQuestion, true, false); err != nil {
			return Content{}, err
		}
		if len(q.Choices) < 2 || len(q.Choices) > MaxChoices {
			return Content{}, errs.E(errs.Invalid, "%s has 2 to %d choices", at, MaxChoices)
		}
		for j, ch := range q.Choices {
			s, err := text(fmt.Sprintf("%s.choices[%d]", at, j+1), ch, MaxChoice, true, false)
			if err != nil {
				return Content{}, err
			}
			cq.Choices = append(cq.Choices, s)
		}
		if q.Answer == nil || *q.Answer < 0 || *q.Answer >= len(q.Choices) {
			return Content{}, errs.E(errs.Invalid, "%s.answer must name the correct choice (from 0 to %d)", at, len(q.Choices)-1)
		}
		a := *q.Answer
		cq.Answer = &a
		out.Questions = append(out.Questions, cq)
	}
	return out, nil
}

// canonical is c as stored, and its SHA-256.
func (c Content) canonical() ([]byte, string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, "", err
	}
	if len(b) > MaxContent {
		return nil, "", errs.E(errs.Invalid, "a document is at most %d KiB as JSON", MaxContent>>10)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}

// ForReading is c as a signer reads it: without the correct answers.
func (c Content) ForReading() Content {
	out := c
	out.Questions = make([]Question, len(c.Questions))
	for i, q := range c.Questions {
		out.Questions[i] = Question{Text: q.Text, Choices: q.Choices}
	}
	return out
}

const selectVersion = `SELECT language, version, state, title, content, digest, reconsent, saved_by, saved_at,
	coalesce(published_by, ''), coalesce(published_at, 0) FROM consent_versions `

func scanVersion(sc interface{ Scan(...any) error }) (Version, error) {
	var v Version
	var content string
	if err := sc.Scan(&v.Language, &v.Version, &v.State, &v.Title, &content, &v.Digest, &v.Reconsent, &v.SavedBy, &v.SavedAt,
		&v.PublishedBy, &v.PublishedAt); err != nil {
		return Version{}, err
	}
	v.Content = new(Content)
	if err := json.Unmarshal([]byte(content), v.Content); err != nil {
		return Version{}, fmt.Errorf("consent version %s %d: %w", v.Language, v.Version, err)
	}
	return v, nil
}

// versions lists the versions of a study's document in language, newest
// first.
func versions(ctx context.Context, q sqldb.Querier, orgID, studyID, language string) ([]Version, error) {
	rows, err := q.QueryContext(ctx, selectVersion+`WHERE org_id = $1 AND study_id = $2 AND language = $3 ORDER BY version DESC`,
		orgID, studyID, language)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the consent document")
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the consent document")
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// current finds the newest published version of a study's document in
// language.
func current(ctx context.Context, q sqldb.Querier, orgID, studyID, language string) (Version, error) {
	v, err := scanVersion(q.QueryRowContext(ctx, selectVersion+`WHERE org_id = $1 AND study_id = $2 AND language = $3 AND state = 'published'
		ORDER BY version DESC LIMIT 1`, orgID, studyID, language))
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, errs.E(errs.NotFound, "this study has no published consent document in language %s", errs.Clip(language, 35))
	}
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "read the consent document")
	}
	return v, nil
}

// listDocuments lists a study's documents by language.
func listDocuments(ctx context.Context, q sqldb.Querier, orgID, studyID string) ([]DocumentSummary, error) {
	rows, err := q.QueryContext(ctx, `SELECT language,
		  (SELECT v.title FROM consent_versions v WHERE v.org_id = c.org_id AND v.study_id = c.study_id AND v.language = c.language ORDER BY v.version DESC LIMIT 1),
		  coalesce(max(CASE WHEN state = 'published' THEN version END), 0),
		  coalesce(max(CASE WHEN state = 'draft' THEN version END), 0)
		FROM consent_versions c WHERE org_id = $1 AND study_id = $2 GROUP BY org_id, study_id, language ORDER BY language`, orgID, studyID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list the consent documents")
	}
	defer rows.Close()
	out := []DocumentSummary{}
	for rows.Next() {
		var d DocumentSummary
		if err := rows.Scan(&d.Language, &d.Title, &d.Published, &d.Draft); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "list the consent documents")
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// createDocument adds a study's document in language, c the draft of its
// version 1.
func createDocument(ctx context.Context, q sqldb.Querier, orgID, studyID, language, accountID string, c Content) (Version, error) {
	if err := CheckLanguage(language); err != nil {
		return Version{}, err
	}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM consent_versions WHERE org_id = $1 AND study_id = $2 AND language = $3`,
		orgID, studyID, language).Scan(&n); err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "read the consent documents")
	}
	if n > 0 {
		return Version{}, errs.E(errs.Conflict, "this study has a consent document in language %s already; save a draft of it instead", language)
	}
	return insertDraft(ctx, q, orgID, studyID, language, 1, accountID, c)
}

func insertDraft(ctx context.Context, q sqldb.Querier, orgID, studyID, language string, version int, accountID string, c Content) (Version, error) {
	clean, err := c.check()
	if err != nil {
		return Version{}, err
	}
	b, sum, err := clean.canonical()
	if err != nil {
		return Version{}, err
	}
	now := sqldb.Now()
	_, err = q.ExecContext(ctx, `INSERT INTO consent_versions (org_id, study_id, language, version, state, title, content, digest, saved_by, saved_at)
		VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $8, $9)`, orgID, studyID, language, version, clean.Title, string(b), sum, accountID, now)
	if sqldb.IsUniqueViolation(err) {
		return Version{}, errs.E(errs.Conflict, "someone else saved the draft of the %s document meanwhile; load it and try again", language)
	}
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "store the consent document's draft")
	}
	return Version{Language: language, Version: version, State: Draft, Title: clean.Title, Digest: sum, SavedBy: accountID, SavedAt: now, Content: &clean}, nil
}

// saveDraft saves the draft of a study's document in language; base is the
// digest of the draft the designer started from, "" for a new draft.
func saveDraft(ctx context.Context, q sqldb.Querier, orgID, studyID, language, accountID, base string, c Content) (Version, error) {
	vs, err := versions(ctx, q, orgID, studyID, language)
	if err != nil {
		return Version{}, err
	}
	if len(vs) == 0 {
		return Version{}, errs.E(errs.NotFound, "this study has no consent document in language %s", errs.Clip(language, 35))
	}
	if vs[0].State != Draft {
		if base != "" {
			return Version{}, errs.E(errs.Conflict, "the draft of the %s document was published meanwhile; load it and try again", language)
		}
		return insertDraft(ctx, q, orgID, studyID, language, vs[0].Version+1, accountID, c)
	}
	if base != vs[0].Digest {
		return Version{}, errs.E(errs.Conflict, "someone else saved the draft of the %s document meanwhile; load it and try again", language)
	}
	clean, err := c.check()
	if err != nil {
		return Version{}, err
	}
	b, sum, err := clean.canonical()
	if err != nil {
		return Version{}, err
	}
	now := sqldb.Now()
	res, err := q.ExecContext(ctx, `UPDATE consent_versions SET title = $1, content = $2, digest = $3, saved_by = $4, saved_at = $5
		WHERE org_id = $6 AND study_id = $7 AND language = $8 AND version = $9 AND state = 'draft' AND digest = $10`,
		clean.Title, string(b), sum, accountID, now, orgID, studyID, language, vs[0].Version, base)
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "store the consent document's draft")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return Version{}, errs.E(errs.Conflict, "someone else saved the draft of the %s document meanwhile; load it and try again", language)
	}
	return Version{Language: language, Version: vs[0].Version, State: Draft, Title: clean.Title, Digest: sum, SavedBy: accountID, SavedAt: now, Content: &clean}, nil
}

// publish publishes the draft of a study's document in language whose
// digest the publisher names: what they saw is what is published, and
// never changes from then on. reconsent asks everyone who signed an older
// version to sign this one.
func publish(ctx context.Context, q sqldb.Querier, orgID, studyID, language, accountID, digest string, reconsent bool) (Version, error) {
	now := sqldb.Now()
	v, err := scanVersion(q.QueryRowContext(ctx, `UPDATE consent_versions SET state = 'published', published_by = $1, published_at = $2, reconsent = $3
		WHERE org_id = $4 AND study_id = $5 AND language = $6 AND state = 'draft' AND digest = $7
		RETURNING language, version, state, title, content, digest, reconsent, saved_by, saved_at, coalesce(published_by, ''), coalesce(published_at, 0)`,
		accountID, now, reconsent, orgID, studyID, language, digest))
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, errs.E(errs.Conflict, "the %s document has no draft with that digest: it was changed or published meanwhile; load it and try again", errs.Clip(language, 35))
	}
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "publish the consent document")
	}
	return v, nil
}

// Settings are a study's consent settings.
type Settings struct {
	// EntryRequiresConsent: no data entry for a participant without a
	// valid consent.
	EntryRequiresConsent bool
	// CountersignRequired: an investigator countersigns each consent,
	// which is valid only then.
	CountersignRequired bool
	UpdatedBy           string
	UpdatedAt           int64
}

// settingsOf reads a study's settings; a study that set none requires
// neither.
func settingsOf(ctx context.Context, q sqldb.Querier, orgID, studyID string) (Settings, error) {
	var s Settings
	err := q.QueryRowContext(ctx, `SELECT entry_requires_consent, countersign_required, updated_by, updated_at
		FROM consent_settings WHERE org_id = $1 AND study_id = $2`, orgID, studyID).Scan(&s.EntryRequiresConsent, &s.CountersignRequired, &s.UpdatedBy, &s.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Settings{}, nil
	}
	if err != nil {
		return Settings{}, errs.Wrap(errs.Unavailable, err, "read the consent settings")
	}
	return s, nil
}

func setSettings(ctx context.Context, q sqldb.Querier, orgID, studyID, accountID string, s Settings) (Settings, error) {
	s.UpdatedBy, s.UpdatedAt = accountID, sqldb.Now()
	_, err := q.ExecContext(ctx, `INSERT INTO consent_settings (org_id, study_id, entry_requires_consent, countersign_required, updated_by, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (org_id, study_id) DO UPDATE SET entry_requires_consent = excluded.entry_requires_consent,
			countersign_required = excluded.countersign_required, updated_by = excluded.updated_by, updated_at = excluded.updated_at`,
		orgID, studyID, s.EntryRequiresConsent, s.CountersignRequired, s.UpdatedBy, s.UpdatedAt)
	if err != nil {
		return Settings{}, errs.Wrap(errs.Unavailable, err, "store the consent settings")
	}
	return s, nil
}

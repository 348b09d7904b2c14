package consent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// Bounds of a signature (docs/limits.md).
const (
	MaxName     = 200
	MaxRelation = 100
	// MaxDrawing bounds a drawn signature, a PNG image, in bytes, and
	// MaxDrawingSide its width and height in pixels.
	MaxDrawing     = 256 << 10
	MaxDrawingSide = 2000
)

// Kind is what a signature records.
type Kind string

const (
	KindConsent    Kind = "consent"
	KindWithdrawal Kind = "withdrawal"
)

// Method is how a signature was given: by the participant's own account in
// the portal, or in person on a site's device in an investigator's
// session.
type Method string

const (
	Portal   Method = "portal"
	InPerson Method = "in_person"
)

// Status is where a participant's consent stands.
type Status string

const (
	// None: the participant never consented.
	None Status = "none"
	// PendingCountersignature: consented; the study's investigator has
	// yet to countersign.
	PendingCountersignature Status = "pending_countersignature"
	// Valid: consented to a version that is still current enough.
	Valid Status = "valid"
	// ReconsentRequired: consented to a version that a newer one, published
	// with re-consent, replaced.
	ReconsentRequired Status = "reconsent_required"
	// Withdrawn: the latest signature withdrew the consent.
	Withdrawn Status = "withdrawn"
)

// Place names a participant at a site of a study.
type Place struct {
	StudyID, SiteID, Participant string
}

func (p Place) resource(orgID string) authz.Resource {
	return authz.Resource{OrgID: orgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Participant}
}

// Representative is a legally authorized representative who signs for a
// participant: their name and how they are related (parent, guardian…).
type Representative struct {
	Name     string `json:"name"`
	Relation string `json:"relation"`
}

// Signature is what a signer gives.
type Signature struct {
	// Language and Version name the document version signed: the newest
	// published one, which the signer read (a withdrawal names none).
	Language string
	Version  int
	// Answers are the choices picked for the comprehension questions, in
	// order, from 0.
	Answers []int
	// Name is the participant's name as typed by the signer.
	Name string
	// Representative is set when a representative signs for the
	// participant.
	Representative *Representative
	// Drawing is a drawn signature: a PNG image, raw or as a data: URL or
	// base64 text.
	Drawing string
}

// Consent is one signature as a reader sees it: never the typed names or
// answers, which stay sealed in the PDF and its record.
type Consent struct {
	ID                  string
	StudyID, SiteID     string
	Participant         string
	Language            string
	Version             int
	Kind                Kind
	Method              Method
	Representative      bool
	SignedBy            string
	SignedAt            int64
	CountersignRequired bool
	CountersignedBy     string
	CountersignedAt     int64
	PDFSHA256           string
}

// ParticipantStatus is a participant's consent status.
type ParticipantStatus struct {
	Participant string
	SiteID      string
	Status      Status
	// Latest is the participant's latest signature, if any.
	Latest *Consent
}

// record is what a signature holds, sealed (CRY-03): enough to render its
// PDF again once it is countersigned.
type record struct {
	Kind            Kind            `json:"kind"`
	Language        string          `json:"language"`
	Version         int             `json:"version"`
	Digest          string          `json:"digest"`
	Answers         []int           `json:"answers,omitempty"`
	Name            string          `json:"name"`
	Representative  *Representative `json:"representative,omitempty"`
	Drawing         []byte          `json:"drawing,omitempty"`
	Method          Method          `json:"method"`
	SignedBy        string          `json:"signed_by"`
	SignedAt        int64           `json:"signed_at"`
	Countersigner   string          `json:"countersigner,omitempty"`
	CountersignedBy string          `json:"countersigned_by,omitempty"`
	CountersignedAt int64           `json:"countersigned_at,omitempty"`
}

// sealedAt is where a signature's sealed values belong: they open only
// for this organization, study, signature and field (CRY-05), under the
// participant's key.
func sealedAt(orgID, studyID, consentID, field string) keys.Context {
	return keys.Context{OrgID: orgID, StudyID: studyID, RecordID: consentID, Field: "consent." + field}
}

// authorize allows action on the participant a request names, then finds
// them at the place's study and site. Refused, the request is answered not
// found when the requester may not read the participant's consents either;
// forbidden when they may read them but not take the action.
func authorize(ctx context.Context, t *gate.Tx, action authz.Action, p Place, refusal string) (participants.Participant, error) {
	t.Object("participant", p.Participant)
	if ids.Valid(p.Participant) {
		t.Participant(p.Participant)
	}
	r := p.resource(t.Org().ID)
	forbidden := action != authz.ConsentRead && !t.Allowed(action, r) && t.Allowed(authz.ConsentRead, r)
	if !forbidden {
		if err := t.Authorize(action, r); err != nil {
			return participants.Participant{}, err
		}
	}
	pt, err := participants.ByPseudonym(ctx, t, t.Org().ID, p.Participant)
	if err != nil {
		return participants.Participant{}, err
	}
	if pt.StudyID != p.StudyID || pt.SiteID != p.SiteID {
		return participants.Participant{}, errs.E(errs.NotFound, "participant not found")
	}
	if forbidden {
		return participants.Participant{}, errs.E(errs.Forbidden, "%s", refusal)
	}
	return pt, nil
}

// asThemselves reports whether the requester takes action on r only
// through the participant role: as the participant, with their own
// account (ACL-05).
func asThemselves(t *gate.Tx, action authz.Action, r authz.Resource) bool {
	staff := t.Subject
	staff.Assignments = slices.DeleteFunc(slices.Clone(staff.Assignments), func(a authz.Assignment) bool { return a.Role == authz.Participant })
	return !authz.Decide(staff, action, r).Allow
}

// latest reads a participant's latest signature.
func latest(ctx context.Context, q sqldb.Querier, orgID, participant string) (*Consent, error) {
	list, err := list(ctx, q, orgID, participant, 1)
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return &list[0], nil
}

const selectConsent = `SELECT id, study_id, site_id, participant_id, language, version, kind, method, representative, signed_by, signed_at,
	countersign_required, coalesce(countersigned_by, ''), coalesce(countersigned_at, 0), pdf_sha256 FROM consents `

func scanConsent(sc interface{ Scan(...any) error }) (Consent, error) {
	var c Consent
	err := sc.Scan(&c.ID, &c.StudyID, &c.SiteID, &c.Participant, &c.Language, &c.Version, &c.Kind, &c.Method, &c.Representative,
		&c.SignedBy, &c.SignedAt, &c.CountersignRequired, &c.CountersignedBy, &c.CountersignedAt, &c.PDFSHA256)
	return c, err
}

// list reads a participant's signatures, newest first; limit 0 is all.
func list(ctx context.Context, q sqldb.Querier, orgID, participant string, limit int) ([]Consent, error) {
	query := selectConsent + `WHERE org_id = $1 AND participant_id = $2 ORDER BY signed_at DESC, id DESC`
	if limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(limit)
	}
	rows, err := q.QueryContext(ctx, query, orgID, participant)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the consents")
	}
	defer rows.Close()
	out := []Consent{}
	for rows.Next() {
		c, err := scanConsent(rows)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the consents")
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// statusOf says where a participant stands, given their latest signature.
func statusOf(ctx context.Context, q sqldb.Querier, orgID string, c *Consent) (Status, error) {
	switch {
	case c == nil:
		return None, nil
	case c.Kind == KindWithdrawal:
		return Withdrawn, nil
	}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM consent_versions WHERE org_id = $1 AND study_id = $2 AND language = $3
		AND state = 'published' AND reconsent AND version > $4`, orgID, c.StudyID, c.Language, c.Version).Scan(&n); err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "read the consent documents")
	}
	switch {
	case n > 0:
		return ReconsentRequired, nil
	case c.CountersignRequired && c.CountersignedAt == 0:
		return PendingCountersignature, nil
	}
	return Valid, nil
}

// IsValid reports, in q, whether a participant of a study holds a valid
// consent: signed (and countersigned where that was required), not
// withdrawn, and not replaced by a version that asked for re-consent.
func IsValid(ctx context.Context, q sqldb.Querier, orgID, studyID, participant string) (bool, error) {
	c, err := latest(ctx, q, orgID, participant)
	if err != nil {
		return false, err
	}
	if c != nil && c.StudyID != studyID {
		return false, nil
	}
	st, err := statusOf(ctx, q, orgID, c)
	return st == Valid, err
}

// CheckEntry refuses, in q, data entry for a participant of a study that
// requires a valid consent before it, unless the participant holds one:
// entries.Service.Save calls it.
func CheckEntry(ctx context.Context, q sqldb.Querier, orgID, studyID, participant string) error {
	s, err := settingsOf(ctx, q, orgID, studyID)
	if err != nil || !s.EntryRequiresConsent {
		return err
	}
	c, err := latest(ctx, q, orgID, participant)
	if err != nil {
		return err
	}
	st, err := statusOf(ctx, q, orgID, c)
	if err != nil {
		return err
	}
	switch st {
	case Valid:
		return nil
	case Withdrawn:
		return errs.E(errs.Conflict, "this participant withdrew their consent; this study records no data without it")
	case PendingCountersignature:
		return errs.E(errs.Conflict, "this participant's consent awaits the investigator's countersignature; this study records no data before it")
	case ReconsentRequired:
		return errs.E(errs.Conflict, "this participant must consent to the new version of the consent document first; this study records no data before it")
	}
	return errs.E(errs.Conflict, "this participant has not consented yet; this study records no data before a valid consent")
}

// cleanName checks a typed name.
func cleanName(where, s string, max int) (string, error) {
	return text(where, s, max, true, false)
}

// drawing checks a drawn signature by its content: a PNG image within
// bounds, whatever it claims to be; it answers the image re-encoded, opaque
// on white, so that nothing but its pixels is kept.
func drawing(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	s = strings.TrimPrefix(s, "data:image/png;base64,")
	if len(s) > MaxDrawing*4/3+4 {
		return nil, errs.E(errs.Invalid, "drawn_signature must be a PNG image of at most %d KiB", MaxDrawing>>10)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errs.E(errs.Invalid, "drawn_signature must be a PNG image in base64")
	}
	bad := errs.E(errs.Invalid, "drawn_signature must be a PNG image of at most %dx%d pixels and %d KiB", MaxDrawingSide, MaxDrawingSide, MaxDrawing>>10)
	if len(b) > MaxDrawing || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		return nil, bad
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil || cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxDrawingSide || cfg.Height > MaxDrawingSide {
		return nil, bad
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, bad
	}
	flat := image.NewRGBA(img.Bounds())
	draw.Draw(flat, flat.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(flat, flat.Bounds(), img, img.Bounds().Min, draw.Over)
	var out bytes.Buffer
	if err := png.Encode(&out, flat); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "re-encode the drawn signature")
	}
	return out.Bytes(), nil
}

// signer checks what a signer typed and drew.
func signer(in Signature) (name string, rep *Representative, drawn []byte, err error) {
	if name, err = cleanName("name", in.Name, MaxName); err != nil {
		return "", nil, nil, err
	}
	if in.Representative != nil {
		var r Representative
		if r.Name, err = cleanName("representative.name", in.Representative.Name, MaxName); err != nil {
			return "", nil, nil, err
		}
		if r.Relation, err = cleanName("representative.relation", in.Representative.Relation, MaxRelation); err != nil {
			return "", nil, nil, err
		}
		rep = &r
	}
	drawn, err = drawing(in.Drawing)
	return name, rep, drawn, err
}

// seal seals a signature's record and renders and seals its PDF under the
// participant's key in the identity database (CRY-03, CRY-09, LIFE-03).
func (s *Service) seal(ctx context.Context, t *gate.Tx, p participants.Participant, consentID string, rec record, v Version) (sealedRec, sealedPDF []byte, digest string, err error) {
	st, err := orgs.StudyByID(ctx, t, p.OrgID, p.StudyID)
	if err != nil {
		return nil, nil, "", err
	}
	pdf, err := render(sheet{Org: t.Org().Name, Study: st.Name, Participant: p.Pseudonym, ConsentID: consentID, Content: *v.Content, Record: rec})
	if err != nil {
		return nil, nil, "", err
	}
	sum := sha256.Sum256(pdf)
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, nil, "", err
	}
	it, err := t.Identity(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	scope := keys.ParticipantScope(p.OrgID, p.Pseudonym)
	if sealedRec, err = it.Vault().Seal(ctx, scope, sealedAt(p.OrgID, p.StudyID, consentID, "record"), b); err != nil {
		return nil, nil, "", erased(err)
	}
	if sealedPDF, err = it.Vault().Seal(ctx, scope, sealedAt(p.OrgID, p.StudyID, consentID, "pdf"), pdf); err != nil {
		return nil, nil, "", erased(err)
	}
	return sealedRec, sealedPDF, hex.EncodeToString(sum[:]), nil
}

// erased answers a participant whose key was destroyed (LIFE-03).
func erased(err error) error {
	if errors.Is(err, keys.ErrKeyDestroyed) {
		return errs.E(errs.Conflict, "this participant's personal data were erased; their consent can no longer be recorded or read")
	}
	return err
}

// signing prepares a signature: allowed, confirmed (ACL-09), and made by
// the participant themselves (portal) or in person in an investigator's
// session.
func signing(ctx context.Context, t *gate.Tx, p Place) (participants.Participant, Method, error) {
	pt, err := authorize(ctx, t, authz.ConsentSign, p, "this role reads consents; it does not record them")
	if err != nil {
		return pt, "", err
	}
	if err := t.RequireStepUp(); err != nil {
		return pt, "", err
	}
	if pt.Identity == participants.IdentityErased {
		return pt, "", erased(keys.ErrKeyDestroyed)
	}
	method := InPerson
	if asThemselves(t, authz.ConsentSign, p.resource(t.Org().ID)) {
		method = Portal
	}
	return pt, method, nil
}

// Sign records a participant's consent to the newest published version of
// the study's document in the signature's language, once every
// comprehension question is answered correctly; otherwise, or for an
// outdated version, nothing is stored.
func (s *Service) Sign(ctx context.Context, a gate.Actor, slug string, p Place, in Signature) (Consent, error) {
	var out Consent
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "consent.sign", func(t *gate.Tx) error {
		pt, method, err := signing(ctx, t, p)
		if err != nil {
			return err
		}
		if err := CheckLanguage(in.Language); err != nil {
			return err
		}
		v, err := current(ctx, t, pt.OrgID, pt.StudyID, in.Language)
		if err != nil {
			return err
		}
		t.Detail("language", in.Language)
		t.Detail("version", strconv.Itoa(in.Version))
		if in.Version != v.Version {
			return errs.E(errs.Conflict, "version %d is not the current version of the consent document (%d is); read the current version and sign it", in.Version, v.Version)
		}
		if len(in.Answers) != len(v.Content.Questions) {
			return errs.E(errs.Invalid, "answer each of the %d comprehension questions (answers)", len(v.Content.Questions))
		}
		for i, q := range v.Content.Questions {
			if in.Answers[i] != *q.Answer {
				return errs.E(errs.Invalid, "the answer to question %d is not correct; read the document again and answer anew", i+1)
			}
		}
		name, rep, drawn, err := signer(in)
		if err != nil {
			return err
		}
		last, err := latest(ctx, t, pt.OrgID, pt.Pseudonym)
		if err != nil {
			return err
		}
		if last != nil && last.Kind == KindConsent && last.Language == v.Language && last.Version == v.Version {
			return errs.E(errs.Conflict, "this participant consented to this version already")
		}
		settings, err := settingsOf(ctx, t, pt.OrgID, pt.StudyID)
		if err != nil {
			return err
		}
		out = Consent{ID: ids.New(), StudyID: pt.StudyID, SiteID: pt.SiteID, Participant: pt.Pseudonym, Language: v.Language, Version: v.Version,
			Kind: KindConsent, Method: method, Representative: rep != nil, SignedBy: t.Subject.AccountID, SignedAt: s.now().UnixMicro(),
			CountersignRequired: settings.CountersignRequired}
		rec := record{Kind: KindConsent, Language: v.Language, Version: v.Version, Digest: v.Digest, Answers: slices.Clone(in.Answers),
			Name: name, Representative: rep, Drawing: drawn, Method: method, SignedBy: out.SignedBy, SignedAt: out.SignedAt}
		return s.insert(ctx, t, pt, &out, rec, v)
	})
	return out, err
}

// Withdraw records a participant's withdrawal of their consent, signed as
// a consent is (without questions); from then on data entry stops where
// the study requires consent.
func (s *Service) Withdraw(ctx context.Context, a gate.Actor, slug string, p Place, in Signature) (Consent, error) {
	var out Consent
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "consent.withdraw", func(t *gate.Tx) error {
		pt, method, err := signing(ctx, t, p)
		if err != nil {
			return err
		}
		last, err := latest(ctx, t, pt.OrgID, pt.Pseudonym)
		if err != nil {
			return err
		}
		if last == nil || last.Kind != KindConsent {
			return errs.E(errs.Conflict, "this participant has no consent to withdraw")
		}
		v, err := versionOf(ctx, t, pt.OrgID, pt.StudyID, last.Language, last.Version)
		if err != nil {
			return err
		}
		name, rep, drawn, err := signer(in)
		if err != nil {
			return err
		}
		out = Consent{ID: ids.New(), StudyID: pt.StudyID, SiteID: pt.SiteID, Participant: pt.Pseudonym, Language: v.Language, Version: v.Version,
			Kind: KindWithdrawal, Method: method, Representative: rep != nil, SignedBy: t.Subject.AccountID, SignedAt: s.now().UnixMicro()}
		rec := record{Kind: KindWithdrawal, Language: v.Language, Version: v.Version, Digest: v.Digest,
			Name: name, Representative: rep, Drawing: drawn, Method: method, SignedBy: out.SignedBy, SignedAt: out.SignedAt}
		t.Detail("language", v.Language)
		t.Detail("version", strconv.Itoa(v.Version))
		t.Detail("withdraws", last.ID)
		return s.insert(ctx, t, pt, &out, rec, v)
	})
	return out, err
}

// insert seals and stores a new signature, and names it and its PDF's
// digest on the audit event.
func (s *Service) insert(ctx context.Context, t *gate.Tx, pt participants.Participant, c *Consent, rec record, v Version) error {
	sealedRec, sealedPDF, digest, err := s.seal(ctx, t, pt, c.ID, rec, v)
	if err != nil {
		return err
	}
	c.PDFSHA256 = digest
	if _, err := t.ExecContext(ctx, `INSERT INTO consents (id, org_id, study_id, site_id, participant_id, language, version, kind, method,
		representative, signed_by, signed_at, countersign_required, record, pdf, pdf_sha256)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		c.ID, pt.OrgID, c.StudyID, c.SiteID, c.Participant, c.Language, c.Version, string(c.Kind), string(c.Method),
		c.Representative, c.SignedBy, c.SignedAt, c.CountersignRequired, sealedRec, sealedPDF, digest); err != nil {
		return errs.Wrap(errs.Unavailable, err, "store the consent")
	}
	t.Object("consent", c.ID)
	t.Detail("participant", pt.Pseudonym)
	t.Detail("kind", string(c.Kind))
	t.Detail("method", string(c.Method))
	t.Detail("representative", strconv.FormatBool(c.Representative))
	t.Detail("pdf_sha256", digest)
	return nil
}

// versionOf reads one published version of a document.
func versionOf(ctx context.Context, q sqldb.Querier, orgID, studyID, language string, version int) (Version, error) {
	v, err := scanVersion(q.QueryRowContext(ctx, selectVersion+`WHERE org_id = $1 AND study_id = $2 AND language = $3 AND version = $4`,
		orgID, studyID, language, version))
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, errs.E(errs.NotFound, "consent document version not found")
	}
	if err != nil {
		return Version{}, errs.Wrap(errs.Unavailable, err, "read the consent document")
	}
	return v, nil
}

// one reads one signature of a participant, with its sealed values.
func one(ctx context.Context, q sqldb.Querier, orgID, participant, consentID string) (Consent, []byte, []byte, error) {
	if !ids.Valid(consentID) {
		return Consent{}, nil, nil, errs.E(errs.NotFound, "consent not found")
	}
	var rec, pdf []byte
	var c Consent
	err := q.QueryRowContext(ctx, `SELECT id, study_id, site_id, participant_id, language, version, kind, method, representative, signed_by, signed_at,
		countersign_required, coalesce(countersigned_by, ''), coalesce(countersigned_at, 0), pdf_sha256, record, pdf
		FROM consents WHERE org_id = $1 AND participant_id = $2 AND id = $3`, orgID, participant, consentID).Scan(
		&c.ID, &c.StudyID, &c.SiteID, &c.Participant, &c.Language, &c.Version, &c.Kind, &c.Method, &c.Representative,
		&c.SignedBy, &c.SignedAt, &c.CountersignRequired, &c.CountersignedBy, &c.CountersignedAt, &c.PDFSHA256, &rec, &pdf)
	if errors.Is(err, sql.ErrNoRows) {
		return Consent{}, nil, nil, errs.E(errs.NotFound, "consent not found")
	}
	if err != nil {
		return Consent{}, nil, nil, errs.Wrap(errs.Unavailable, err, "read the consent")
	}
	return c, rec, pdf, nil
}

// Countersign records the investigator's countersignature, with their
// typed name, of a participant's consent that the study asked to be
// countersigned: the consent's PDF is made anew with it, and the new PDF's
// digest is on the audit event.
func (s *Service) Countersign(ctx context.Context, a gate.Actor, slug string, p Place, consentID, name string) (Consent, error) {
	var out Consent
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "consent.countersign", func(t *gate.Tx) error {
		pt, err := authorize(ctx, t, authz.ConsentCountersign, p, "only the study's investigator countersigns a consent")
		if err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		c, sealedRec, _, err := one(ctx, t, pt.OrgID, pt.Pseudonym, consentID)
		if err != nil {
			return err
		}
		t.Object("consent", c.ID)
		switch {
		case c.Kind != KindConsent:
			return errs.E(errs.Conflict, "a withdrawal is not countersigned")
		case !c.CountersignRequired:
			return errs.E(errs.Conflict, "this study did not ask for this consent to be countersigned")
		case c.CountersignedAt != 0:
			return errs.E(errs.Conflict, "this consent is countersigned already")
		}
		last, err := latest(ctx, t, pt.OrgID, pt.Pseudonym)
		if err != nil {
			return err
		}
		if last.ID != c.ID {
			return errs.E(errs.Conflict, "this consent was withdrawn or replaced meanwhile")
		}
		typed, err := cleanName("name", name, MaxName)
		if err != nil {
			return err
		}
		it, err := t.Identity(ctx)
		if err != nil {
			return err
		}
		b, err := it.Vault().Open(ctx, sealedAt(pt.OrgID, pt.StudyID, c.ID, "record"), sealedRec)
		if err != nil {
			return erased(err)
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			return errs.Wrap(errs.Internal, err, "read the consent's record")
		}
		v, err := versionOf(ctx, t, pt.OrgID, pt.StudyID, c.Language, c.Version)
		if err != nil {
			return err
		}
		rec.Countersigner, rec.CountersignedBy, rec.CountersignedAt = typed, t.Subject.AccountID, s.now().UnixMicro()
		newRec, newPDF, digest, err := s.seal(ctx, t, pt, c.ID, rec, v)
		if err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, `UPDATE consents SET countersigned_by = $1, countersigned_at = $2, record = $3, pdf = $4, pdf_sha256 = $5
			WHERE org_id = $6 AND id = $7 AND countersigned_at IS NULL`, rec.CountersignedBy, rec.CountersignedAt, newRec, newPDF, digest, pt.OrgID, c.ID)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "store the countersignature")
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errs.E(errs.Conflict, "this consent was countersigned meanwhile")
		}
		t.Detail("previous_pdf_sha256", c.PDFSHA256)
		t.Detail("pdf_sha256", digest)
		c.CountersignedBy, c.CountersignedAt, c.PDFSHA256 = rec.CountersignedBy, rec.CountersignedAt, digest
		out = c
		return nil
	})
	return out, err
}

// Status reads where a participant's consent stands.
func (s *Service) Status(ctx context.Context, a gate.Actor, slug string, p Place) (ParticipantStatus, error) {
	var out ParticipantStatus
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "consent.status", func(t *gate.Tx) error {
		pt, err := authorize(ctx, t, authz.ConsentRead, p, "")
		if err != nil {
			return err
		}
		c, err := latest(ctx, t, pt.OrgID, pt.Pseudonym)
		if err != nil {
			return err
		}
		st, err := statusOf(ctx, t, pt.OrgID, c)
		out = ParticipantStatus{Participant: pt.Pseudonym, SiteID: pt.SiteID, Status: st, Latest: c}
		return err
	})
	return out, err
}

// List lists a participant's signatures, newest first.
func (s *Service) List(ctx context.Context, a gate.Actor, slug string, p Place) ([]Consent, error) {
	var out []Consent
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "consent.list", func(t *gate.Tx) error {
		pt, err := authorize(ctx, t, authz.ConsentRead, p, "")
		if err != nil {
			return err
		}
		out, err = list(ctx, t, pt.OrgID, pt.Pseudonym, 0)
		return err
	})
	return out, err
}

// Document reads, for signing, the newest published version of the
// study's document in language, as a signer reads it: without the correct
// answers.
func (s *Service) Document(ctx context.Context, a gate.Actor, slug string, p Place, language string) (Version, error) {
	var out Version
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "consent.document.read", func(t *gate.Tx) error {
		pt, err := authorize(ctx, t, authz.ConsentRead, p, "")
		if err != nil {
			return err
		}
		if err := CheckLanguage(language); err != nil {
			return err
		}
		if out, err = current(ctx, t, pt.OrgID, pt.StudyID, language); err != nil {
			return err
		}
		reading := out.Content.ForReading()
		out.Content = &reading
		t.Detail("language", language)
		t.Detail("version", strconv.Itoa(out.Version))
		return nil
	})
	return out, err
}

// Download answers the signed PDF of a participant's signature: to the
// participant themselves, and to staff who may re-identify the participant
// (the PDF bears their typed name: identity.reveal, with a fresh
// confirmation, ACL-09). Its SHA-256 is on the audit event.
func (s *Service) Download(ctx context.Context, a gate.Actor, slug string, p Place, consentID string) (Consent, []byte, error) {
	var (
		out Consent
		pdf []byte
	)
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "consent.download", func(t *gate.Tx) error {
		pt, err := authorize(ctx, t, authz.ConsentRead, p, "")
		if err != nil {
			return err
		}
		r := p.resource(pt.OrgID)
		if !asThemselves(t, authz.ConsentRead, r) {
			if !t.Allowed(authz.IdentityReveal, r) {
				return errs.E(errs.Forbidden, "a signed consent names the participant; reading it takes the permission to re-identify them")
			}
			if err := t.RequireStepUp(); err != nil {
				return err
			}
		}
		c, _, sealedPDF, err := one(ctx, t, pt.OrgID, pt.Pseudonym, consentID)
		if err != nil {
			return err
		}
		t.Object("consent", c.ID)
		it, err := t.Identity(ctx)
		if err != nil {
			return err
		}
		if pdf, err = it.Vault().Open(ctx, sealedAt(pt.OrgID, pt.StudyID, c.ID, "pdf"), sealedPDF); err != nil {
			return erased(err)
		}
		sum := sha256.Sum256(pdf)
		if hex.EncodeToString(sum[:]) != c.PDFSHA256 {
			return errs.E(errs.Unavailable, "the signed consent does not match its recorded digest, so it was not served")
		}
		t.Detail("pdf_sha256", c.PDFSHA256)
		out = c
		return nil
	})
	return out, pdf, err
}

// Pending lists the participants of a study, at the sites the requester
// reaches, whose consent is not valid: never given, withdrawn, awaiting
// the countersignature, or to be given anew for a newer version.
func (s *Service) Pending(ctx context.Context, a gate.Actor, slug, studyID string) ([]ParticipantStatus, error) {
	out := []ParticipantStatus{}
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "consent.pending", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		if err := t.AuthorizeList(authz.ConsentRead, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		if _, err := orgs.StudyByID(ctx, t, org.ID, studyID); err != nil {
			return err
		}
		rows, err := t.QueryContext(ctx, `SELECT p.id, p.site_id FROM participants p WHERE p.org_id = $1 AND p.study_id = $2
			AND NOT EXISTS (SELECT 1 FROM participant_deletions d WHERE d.org_id = p.org_id AND d.participant_id = p.id)
			ORDER BY p.site_id, p.id`, org.ID, studyID)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "list the participants")
		}
		var found []ParticipantStatus
		for rows.Next() {
			var ps ParticipantStatus
			if err := rows.Scan(&ps.Participant, &ps.SiteID); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "list the participants")
			}
			if t.Allowed(authz.ConsentRead, authz.Resource{OrgID: org.ID, StudyID: studyID, SiteID: ps.SiteID, ParticipantID: ps.Participant}) {
				found = append(found, ps)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "list the participants")
		}
		for _, ps := range found {
			c, err := latest(ctx, t, org.ID, ps.Participant)
			if err != nil {
				return err
			}
			if ps.Status, err = statusOf(ctx, t, org.ID, c); err != nil {
				return err
			}
			if ps.Status != Valid {
				ps.Latest = c
				out = append(out, ps)
			}
		}
		t.Detail("count", strconv.Itoa(len(out)))
		return nil
	})
	return out, err
}

// times formats a time of a signature for the PDF.
func times(us int64) string {
	return time.UnixMicro(us).UTC().Format("2006-01-02 15:04:05 UTC")
}

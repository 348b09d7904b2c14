package consent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
)

// SubjectConsent is one consent or withdrawal as a data subject's export
// holds it: what was signed and answered, the typed names, and the signed
// PDF, whose content goes to the export's sink under PDF. Erased is set,
// and the rest left out, when the participant's key was destroyed
// (LIFE-03): what was sealed under it no longer opens.
type SubjectConsent struct {
	ID                  string          `json:"id"`
	StudyID             string          `json:"study_id"`
	Language            string          `json:"language"`
	Version             int             `json:"version"`
	Kind                Kind            `json:"kind"`
	Method              Method          `json:"method"`
	Representative      bool            `json:"representative"`
	SignedBy            string          `json:"signed_by"`
	SignedAt            time.Time       `json:"signed_at"`
	CountersignRequired bool            `json:"countersign_required"`
	CountersignedBy     string          `json:"countersigned_by,omitempty"`
	CountersignedAt     *time.Time      `json:"countersigned_at,omitempty"`
	PDFSHA256           string          `json:"pdf_sha256"`
	Record              json.RawMessage `json:"record,omitempty"`
	PDF                 string          `json:"pdf,omitempty"`
	Erased              bool            `json:"erased,omitempty"`
}

// ReadSubjectConsents reads, for a data subject's export, every consent
// and withdrawal of p with its sealed record opened, and hands each signed
// PDF to put (path, content) after checking it against its recorded
// digest. The work must be allowed authz.SubjectExport on p.
func ReadSubjectConsents(ctx context.Context, t *gate.Tx, p participants.Participant, put func(path string, content []byte) error) ([]SubjectConsent, error) {
	r := authz.Resource{OrgID: p.OrgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Pseudonym}
	if !t.Allowed(authz.SubjectExport, r) {
		return nil, gate.ErrDenied
	}
	signed, err := list(ctx, t, p.OrgID, p.Pseudonym, 0)
	if err != nil {
		return nil, err
	}
	out := []SubjectConsent{}
	var it *gate.IdentityTx
	// Oldest first, as they were signed.
	for i := len(signed) - 1; i >= 0; i-- {
		c := signed[i]
		sc := SubjectConsent{ID: c.ID, StudyID: c.StudyID, Language: c.Language, Version: c.Version, Kind: c.Kind,
			Method: c.Method, Representative: c.Representative, SignedBy: c.SignedBy, SignedAt: time.UnixMicro(c.SignedAt).UTC(),
			CountersignRequired: c.CountersignRequired, CountersignedBy: c.CountersignedBy, PDFSHA256: c.PDFSHA256}
		if c.CountersignedAt != 0 {
			at := time.UnixMicro(c.CountersignedAt).UTC()
			sc.CountersignedAt = &at
		}
		_, sealedRec, sealedPDF, err := one(ctx, t, p.OrgID, p.Pseudonym, c.ID)
		if err != nil {
			return nil, err
		}
		if it == nil {
			if it, err = t.Identity(ctx); err != nil {
				return nil, err
			}
		}
		rec, err := it.Vault().Open(ctx, sealedAt(p.OrgID, c.StudyID, c.ID, "record"), sealedRec)
		if errors.Is(err, keys.ErrKeyDestroyed) {
			sc.Erased = true
			out = append(out, sc)
			continue
		}
		if err != nil {
			return nil, err
		}
		pdf, err := it.Vault().Open(ctx, sealedAt(p.OrgID, c.StudyID, c.ID, "pdf"), sealedPDF)
		if err != nil {
			return nil, erased(err)
		}
		sum := sha256.Sum256(pdf)
		if hex.EncodeToString(sum[:]) != c.PDFSHA256 {
			return nil, errs.E(errs.Unavailable, "a signed consent does not match its recorded digest, so nothing was exported")
		}
		sc.Record, sc.PDF = json.RawMessage(rec), "consents/"+string(c.Kind)+"-"+c.ID+".pdf"
		if err := put(sc.PDF, pdf); err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

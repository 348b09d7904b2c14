package api

import (
	"mime"
	"net/http"
	"strconv"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
)

// A study's electronic consent (issue 16): its documents per language and
// their versions, its settings, and the consents of its participants,
// signed by the participant (their own account) or in person at a site.

// maxConsentBody bounds a request with a document or a drawn signature.
const maxConsentBody = 1 << 20

type consentVersionJSON struct {
	Language    string           `json:"language"`
	Version     int              `json:"version"`
	State       string           `json:"state"`
	Title       string           `json:"title"`
	Digest      string           `json:"digest"`
	Reconsent   bool             `json:"reconsent"`
	SavedBy     string           `json:"saved_by,omitempty"`
	SavedAt     string           `json:"saved_at,omitempty"`
	PublishedBy string           `json:"published_by,omitempty"`
	PublishedAt string           `json:"published_at,omitempty"`
	Content     *consent.Content `json:"content,omitempty"`
}

func consentVersionOut(v consent.Version) consentVersionJSON {
	return consentVersionJSON{Language: v.Language, Version: v.Version, State: string(v.State), Title: v.Title, Digest: v.Digest,
		Reconsent: v.Reconsent, SavedBy: v.SavedBy, SavedAt: micros(v.SavedAt), PublishedBy: v.PublishedBy,
		PublishedAt: micros(v.PublishedAt), Content: v.Content}
}

type consentJSON struct {
	ID                  string `json:"id"`
	Participant         string `json:"participant"`
	Language            string `json:"language"`
	Version             int    `json:"version"`
	Kind                string `json:"kind"`
	Method              string `json:"method"`
	Representative      bool   `json:"representative"`
	SignedBy            string `json:"signed_by"`
	SignedAt            string `json:"signed_at"`
	CountersignRequired bool   `json:"countersign_required"`
	CountersignedBy     string `json:"countersigned_by,omitempty"`
	CountersignedAt     string `json:"countersigned_at,omitempty"`
	PDFSHA256           string `json:"pdf_sha256"`
}

func consentOut(c consent.Consent) consentJSON {
	return consentJSON{ID: c.ID, Participant: c.Participant, Language: c.Language, Version: c.Version, Kind: string(c.Kind),
		Method: string(c.Method), Representative: c.Representative, SignedBy: c.SignedBy, SignedAt: micros(c.SignedAt),
		CountersignRequired: c.CountersignRequired, CountersignedBy: c.CountersignedBy, CountersignedAt: micros(c.CountersignedAt),
		PDFSHA256: c.PDFSHA256}
}

type consentStatusJSON struct {
	Participant string       `json:"participant"`
	Site        string       `json:"site"`
	Status      string       `json:"status"`
	Latest      *consentJSON `json:"latest,omitempty"`
}

func consentStatusOut(s consent.ParticipantStatus) consentStatusJSON {
	out := consentStatusJSON{Participant: s.Participant, Site: s.SiteID, Status: string(s.Status)}
	if s.Latest != nil {
		c := consentOut(*s.Latest)
		out.Latest = &c
	}
	return out
}

func consentPlace(r *http.Request) consent.Place {
	return consent.Place{StudyID: r.PathValue("study"), SiteID: r.PathValue("site"), Participant: r.PathValue("participant")}
}

func handleListConsentDocuments(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Consent.Documents(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"))
		if err != nil {
			return err
		}
		type doc struct {
			Language  string `json:"language"`
			Title     string `json:"title"`
			Published int    `json:"published_version,omitempty"`
			Draft     int    `json:"draft_version,omitempty"`
		}
		out := make([]doc, len(list))
		for i, x := range list {
			out[i] = doc{x.Language, x.Title, x.Published, x.Draft}
		}
		writeJSON(w, http.StatusOK, map[string]any{"documents": out})
		return nil
	})
}

func handleCreateConsentDocument(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Language string          `json:"language"`
			Content  consent.Content `json:"content"`
		}
		if err := decodeUpTo(r, &req, maxConsentBody); err != nil {
			return err
		}
		v, err := d.Consent.Create(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), req.Language, req.Content)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, consentVersionOut(v))
		return nil
	})
}

func handleGetConsentDocument(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		vs, err := d.Consent.Versions(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("language"))
		if err != nil {
			return err
		}
		out := make([]consentVersionJSON, len(vs))
		for i, v := range vs {
			out[i] = consentVersionOut(v)
		}
		writeJSON(w, http.StatusOK, map[string]any{"language": r.PathValue("language"), "versions": out})
		return nil
	})
}

func handleSaveConsentDraft(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			BaseDigest string          `json:"base_digest"`
			Content    consent.Content `json:"content"`
		}
		if err := decodeUpTo(r, &req, maxConsentBody); err != nil {
			return err
		}
		v, err := d.Consent.SaveDraft(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("language"), req.BaseDigest, req.Content)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, consentVersionOut(v))
		return nil
	})
}

func handlePublishConsentDocument(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Digest    string `json:"digest"`
			Reconsent bool   `json:"reconsent"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if req.Digest == "" {
			return errs.E(errs.Invalid, "name the digest of the draft to publish (digest)")
		}
		v, err := d.Consent.Publish(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("language"), req.Digest, req.Reconsent)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, consentVersionOut(v))
		return nil
	})
}

type consentSettingsJSON struct {
	EntryRequiresConsent bool   `json:"entry_requires_consent"`
	CountersignRequired  bool   `json:"countersign_required"`
	UpdatedBy            string `json:"updated_by,omitempty"`
	UpdatedAt            string `json:"updated_at,omitempty"`
}

func handleGetConsentSettings(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		s, err := d.Consent.Settings(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, consentSettingsJSON{s.EntryRequiresConsent, s.CountersignRequired, s.UpdatedBy, micros(s.UpdatedAt)})
		return nil
	})
}

func handleSetConsentSettings(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			EntryRequiresConsent *bool `json:"entry_requires_consent"`
			CountersignRequired  *bool `json:"countersign_required"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if req.EntryRequiresConsent == nil || req.CountersignRequired == nil {
			return errs.E(errs.Invalid, "give both settings (entry_requires_consent, countersign_required)")
		}
		s, err := d.Consent.SetSettings(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"),
			consent.Settings{EntryRequiresConsent: *req.EntryRequiresConsent, CountersignRequired: *req.CountersignRequired})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, consentSettingsJSON{s.EntryRequiresConsent, s.CountersignRequired, s.UpdatedBy, micros(s.UpdatedAt)})
		return nil
	})
}

func handleListPendingConsents(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Consent.Pending(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"))
		if err != nil {
			return err
		}
		out := make([]consentStatusJSON, len(list))
		for i, s := range list {
			out[i] = consentStatusOut(s)
		}
		writeJSON(w, http.StatusOK, map[string]any{"participants": out})
		return nil
	})
}

func handleGetConsentStatus(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		s, err := d.Consent.Status(r.Context(), actor(d, r), r.PathValue("org"), consentPlace(r))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, consentStatusOut(s))
		return nil
	})
}

// handleGetConsentToSign answers the document a participant signs: the
// current version in ?language=, without the correct answers.
func handleGetConsentToSign(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		v, err := d.Consent.Document(r.Context(), actor(d, r), r.PathValue("org"), consentPlace(r), r.URL.Query().Get("language"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, consentVersionOut(consent.Version{Language: v.Language, Version: v.Version, State: v.State,
			Title: v.Title, Digest: v.Digest, Reconsent: v.Reconsent, PublishedAt: v.PublishedAt, Content: v.Content}))
		return nil
	})
}

type signatureJSON struct {
	Language       string                  `json:"language"`
	Version        int                     `json:"version"`
	Answers        []int                   `json:"answers"`
	Name           string                  `json:"name"`
	Representative *consent.Representative `json:"representative"`
	DrawnSignature string                  `json:"drawn_signature"`
}

func (s signatureJSON) signature() consent.Signature {
	return consent.Signature{Language: s.Language, Version: s.Version, Answers: s.Answers, Name: s.Name,
		Representative: s.Representative, Drawing: s.DrawnSignature}
}

func handleSignConsent(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req signatureJSON
		if err := decodeUpTo(r, &req, maxConsentBody); err != nil {
			return err
		}
		c, err := d.Consent.Sign(r.Context(), actor(d, r), r.PathValue("org"), consentPlace(r), req.signature())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, consentOut(c))
		return nil
	})
}

func handleWithdrawConsent(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req signatureJSON
		if err := decodeUpTo(r, &req, maxConsentBody); err != nil {
			return err
		}
		c, err := d.Consent.Withdraw(r.Context(), actor(d, r), r.PathValue("org"), consentPlace(r), req.signature())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, consentOut(c))
		return nil
	})
}

func handleListConsents(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Consent.List(r.Context(), actor(d, r), r.PathValue("org"), consentPlace(r))
		if err != nil {
			return err
		}
		out := make([]consentJSON, len(list))
		for i, c := range list {
			out[i] = consentOut(c)
		}
		writeJSON(w, http.StatusOK, map[string]any{"consents": out})
		return nil
	})
}

func handleCountersignConsent(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Name string `json:"name"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		c, err := d.Consent.Countersign(r.Context(), actor(d, r), r.PathValue("org"), consentPlace(r), r.PathValue("consent"), req.Name)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, consentOut(c))
		return nil
	})
}

// handleDownloadConsent answers a signed consent's PDF, as an attachment,
// with its SHA-256 (as on the audit trail) in a header.
func handleDownloadConsent(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		c, pdf, err := d.Consent.Download(r.Context(), actor(d, r), r.PathValue("org"), consentPlace(r), r.PathValue("consent"))
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/pdf")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": string(c.Kind) + "-" + c.ID + ".pdf"}))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Content-SHA256", c.PDFSHA256)
		w.Header().Set("Content-Length", strconv.Itoa(len(pdf)))
		w.WriteHeader(http.StatusOK)
		w.Write(pdf)
		return nil
	})
}

package web

// Consent in the browser: a study's consent documents (their content as
// JSON, drafts, publishing, re-consent) and settings, for those who design
// them; a participant's consent on their page: the document to read and
// sign (in the portal by the participant, or in person with the
// investigator), the investigator's countersignature, withdrawal, and the
// signed PDF. The service decides who may do what, as over the API.

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
)

func consentPath(slug, study string) string { return studyPath(slug, study) + "/consent" }

var consentNotices = map[string]string{
	"document-created": "The document is created as a draft.",
	"draft-saved":      "The draft is saved.",
	"published":        "The version is published: new consents are signed on it.",
	"settings-saved":   "The consent settings are saved.",
	"signed":           "The consent is signed.",
	"withdrawn":        "The withdrawal is recorded. Data entry stops where the study requires consent.",
	"countersigned":    "The consent is countersigned.",
}

func consentNotice(r *http.Request) string {
	if n, ok := consentNotices[r.URL.Query().Get("done")]; ok {
		return n
	}
	return workspaceNotice(r)
}

// readContent reads a document's content posted as JSON, strictly.
func readContent(s string) (consent.Content, error) {
	var c consent.Content
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, errs.E(errs.Invalid, "the content is not a consent document's JSON: title, sections (heading, text, image_note), questions (text, choices, answer)")
	}
	return c, nil
}

// documentView is one document of the study's consent page, with its
// newest version's content to edit.
type documentView struct {
	consent.DocumentSummary
	Newest  consent.Version
	Content string
}

func consentAdminPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a, slug, studyID := r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study")
	st, err := d.Orgs.Study(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	docs, err := d.Consent.Documents(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	views := make([]documentView, 0, len(docs))
	for _, doc := range docs {
		vs, err := d.Consent.Versions(ctx, a, slug, studyID, doc.Language)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		v := documentView{DocumentSummary: doc}
		if len(vs) > 0 {
			v.Newest = vs[0]
			if vs[0].Content != nil {
				b, _ := json.MarshalIndent(vs[0].Content, "", "  ")
				v.Content = string(b)
			}
		}
		views = append(views, v)
	}
	settings, err := d.Consent.Settings(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	// Who waits to sign, for the roles that read participants' consents.
	if pending, err := d.Consent.Pending(ctx, a, slug, studyID); err == nil {
		data["Pending"] = pending
	}
	data["Title"], data["Slug"], data["Study"], data["Documents"], data["Settings"] = "Consent of "+st.Name, slug, st, views, settings
	data["Path"], data["Back"] = consentPath(slug, studyID), studyPath(slug, studyID)
	if data["Notice"] == nil {
		data["Notice"] = consentNotice(r)
	}
	if data["Form"] == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "consentadmin", data)
}

func handleConsentAdmin(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		consentAdminPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// consentChange runs a change of the study's consent page and leads back
// to it, or answers the page again with the refusal.
func consentChange(d Deps, change func(r *http.Request) (string, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), consentAdminPage, data)
			return
		}
		data["Form"] = r.PostForm
		done, err := change(r)
		if err != nil {
			adminError(w, r, d, err, consentAdminPage, data)
			return
		}
		http.Redirect(w, r, withDone(consentPath(r.PathValue("org"), r.PathValue("study")), done), http.StatusSeeOther)
	})
}

func handleCreateConsentDocument(d Deps) http.Handler {
	return consentChange(d, func(r *http.Request) (string, error) {
		c, err := readContent(r.PostForm.Get("content"))
		if err != nil {
			return "", err
		}
		_, err = d.Consent.Create(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), strings.TrimSpace(r.PostForm.Get("language")), c)
		return "document-created", err
	})
}

func handleSaveConsentDraft(d Deps) http.Handler {
	return consentChange(d, func(r *http.Request) (string, error) {
		c, err := readContent(r.PostForm.Get("content"))
		if err != nil {
			return "", err
		}
		_, err = d.Consent.SaveDraft(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("language"), r.PostForm.Get("base"), c)
		return "draft-saved", err
	})
}

func handlePublishConsent(d Deps) http.Handler {
	return consentChange(d, func(r *http.Request) (string, error) {
		_, err := d.Consent.Publish(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("language"),
			r.PostForm.Get("digest"), r.PostForm.Get("reconsent") == "1")
		return "published", err
	})
}

func handleConsentSettings(d Deps) http.Handler {
	return consentChange(d, func(r *http.Request) (string, error) {
		_, err := d.Consent.SetSettings(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), consent.Settings{
			EntryRequiresConsent: r.PostForm.Get("entry_requires_consent") == "1",
			CountersignRequired:  r.PostForm.Get("countersign_required") == "1"})
		return "settings-saved", err
	})
}

func consentPlace(r *http.Request) consent.Place {
	return consent.Place{StudyID: r.PathValue("study"), SiteID: r.PathValue("site"), Participant: r.PathValue("participant")}
}

// signPage renders the document to read and sign.
func signPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	slug, p := r.PathValue("org"), consentPlace(r)
	language := r.FormValue("language")
	if language == "" {
		language = "en"
	}
	v, err := d.Consent.Document(r.Context(), actor(d, r), slug, p, language)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	data["Title"] = v.Title
	data["Slug"], data["Version"], data["Language"] = slug, v, language
	data["Signs"] = true // the drawn signature (static/signature.js)
	// The sections' images, as data: URLs: checked and encoded again by
	// the service, so they are images and nothing else.
	images := map[int]template.URL{}
	if v.Content != nil {
		for i, sec := range v.Content.Sections {
			if sec.Image != "" && (sec.ImageType == consent.ImagePNG || sec.ImageType == consent.ImageJPEG) {
				images[i] = template.URL("data:" + sec.ImageType + ";base64," + sec.Image)
			}
		}
	}
	data["Images"] = images
	data["Path"] = participantPath(slug, p.StudyID, p.SiteID, p.Participant)
	if data["Form"] == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "sign", data)
}

func handleSignForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		signPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// signatureOf reads the signature of the signing page: the answers q.0,
// q.1, … and the name, and a representative's name and relation.
func signatureOf(form url.Values) (consent.Signature, error) {
	in := consent.Signature{Language: form.Get("language"), Name: form.Get("name"), Drawing: form.Get("drawing")}
	v, err := strconv.Atoi(form.Get("version"))
	if err != nil {
		return in, errs.E(errs.Invalid, "the document's version is missing; read it again")
	}
	in.Version = v
	for i := 0; form.Has("q." + strconv.Itoa(i)); i++ {
		n, err := strconv.Atoi(form.Get("q." + strconv.Itoa(i)))
		if err != nil {
			return in, errs.E(errs.Invalid, "answer question %d", i+1)
		}
		in.Answers = append(in.Answers, n)
	}
	if rep := strings.TrimSpace(form.Get("representative")); rep != "" {
		in.Representative = &consent.Representative{Name: rep, Relation: form.Get("relation")}
	}
	return in, nil
}

// signError answers a refused signature: a wanted confirmation leads to
// the confirmation page and back to the document; what the signer can
// mend comes back on the page.
func signError(w http.ResponseWriter, r *http.Request, d Deps, err error, page func(http.ResponseWriter, *http.Request, Deps, int, map[string]any), data map[string]any) {
	if errs.Is(err, errs.StepUpRequired) {
		fail(w, r, d, err)
		return
	}
	adminError(w, r, d, err, page, data)
}

func handleSign(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), signPage, data)
			return
		}
		data["Form"] = r.PostForm
		slug, p := r.PathValue("org"), consentPlace(r)
		in, err := signatureOf(r.PostForm)
		if err == nil {
			_, err = d.Consent.Sign(r.Context(), actor(d, r), slug, p, in)
		}
		if err != nil {
			signError(w, r, d, err, signPage, data)
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, p.StudyID, p.SiteID, p.Participant), "signed"), http.StatusSeeOther)
	})
}

func handleWithdraw(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), participantPage, data)
			return
		}
		slug, p := r.PathValue("org"), consentPlace(r)
		in := consent.Signature{Name: r.PostForm.Get("name")}
		if rep := strings.TrimSpace(r.PostForm.Get("representative")); rep != "" {
			in.Representative = &consent.Representative{Name: rep, Relation: r.PostForm.Get("relation")}
		}
		if _, err := d.Consent.Withdraw(r.Context(), actor(d, r), slug, p, in); err != nil {
			signError(w, r, d, err, participantPage, data)
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, p.StudyID, p.SiteID, p.Participant), "withdrawn"), http.StatusSeeOther)
	})
}

func handleCountersign(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), participantPage, data)
			return
		}
		slug, p := r.PathValue("org"), consentPlace(r)
		if _, err := d.Consent.Countersign(r.Context(), actor(d, r), slug, p, r.PathValue("consent"), r.PostForm.Get("name")); err != nil {
			signError(w, r, d, err, participantPage, data)
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, p.StudyID, p.SiteID, p.Participant), "countersigned"), http.StatusSeeOther)
	})
}

// handleConsentPDF downloads a signed consent's PDF, with its SHA-256.
func handleConsentPDF(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, pdf, err := d.Consent.Download(r.Context(), actor(d, r), r.PathValue("org"), consentPlace(r), r.PathValue("consent"))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		w.Header().Set("Content-Type", "application/pdf")
		w.Header().Set("Content-Disposition", `attachment; filename="consent-`+c.ID+`.pdf"`)
		w.Header().Set("X-Content-SHA256", c.PDFSHA256)
		w.Header().Set("Content-Length", strconv.Itoa(len(pdf)))
		w.WriteHeader(http.StatusOK)
		w.Write(pdf)
	})
}

// consentOnPage adds a participant's consent, as far as the requester may
// read it, to their page.
func consentOnPage(r *http.Request, d Deps, data map[string]any) {
	if d.Consent == nil {
		return
	}
	slug, p := r.PathValue("org"), consentPlace(r)
	st, err := d.Consent.Status(r.Context(), actor(d, r), slug, p)
	if err != nil {
		return // a role that reads no consent sees none
	}
	data["Consent"] = st
	if list, err := d.Consent.List(r.Context(), actor(d, r), slug, p); err == nil {
		data["Consents"] = list
	}
}

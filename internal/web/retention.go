package web

// Retention and data subjects' requests (LIFE-02) in the browser: the
// organization's accounts and participants noticed for the purge of
// inactive data and its legal holds, for its administrators; and the
// export of everything about one participant, from the participant's
// page. The services decide who may, as over the API.

import (
	"mime"
	"net/http"
	"net/url"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/retention"
)

// retentionNotices are the retention page's messages after a redirect.
var retentionNotices = map[string]string{
	"held":   "The legal hold is placed: it is not purged for inactivity while the hold stands.",
	"lifted": "The legal hold is lifted: when inactive, it is noticed again, and purged a notice period later.",
}

func retentionPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/retention" }

// retentionPage shows the organization's notices and holds, with data
// (an error, the form as posted) and status.
func retentionPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	slug := r.PathValue("org")
	ov, err := d.Retention.List(r.Context(), actor(d, r), slug)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	data["Title"] = "Inactive data"
	data["Slug"] = slug
	data["Overview"] = ov
	data["Next"] = retentionPath(slug)
	if data["Notice"] == nil {
		data["Notice"] = retentionNotices[r.URL.Query().Get("done")]
	}
	render(w, r, d.Log, status, "retention", data)
}

func handleRetention(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		retentionPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// handleSetHold places a legal hold on the account or participant the
// form names, with its reason (retention.Service.SetHold).
func handleSetHold(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), retentionPage, data)
			return
		}
		data["Form"] = r.PostForm
		slug := r.PathValue("org")
		kind, err := retention.ParseKind(r.PostForm.Get("kind"))
		if err == nil {
			_, err = d.Retention.SetHold(r.Context(), actor(d, r), slug, kind, r.PostForm.Get("subject"), r.PostForm.Get("reason"))
		}
		if errs.Is(err, errs.NotFound) {
			err = errs.E(errs.Invalid, "no account or participant of this organization has that id")
		}
		if err != nil {
			signError(w, r, d, err, retentionPage, data)
			return
		}
		http.Redirect(w, r, withDone(retentionPath(slug), "held"), http.StatusSeeOther)
	})
}

// handleLiftHold lifts a legal hold (retention.Service.LiftHold).
func handleLiftHold(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		kind, err := retention.ParseKind(r.PathValue("kind"))
		if err == nil {
			err = d.Retention.LiftHold(r.Context(), actor(d, r), slug, kind, r.PathValue("subject"))
		}
		if err != nil {
			signError(w, r, d, err, retentionPage, map[string]any{})
			return
		}
		http.Redirect(w, r, withDone(retentionPath(slug), "lifted"), http.StatusSeeOther)
	})
}

// handleSubjectExport sends the zip of everything about a participant
// (retention.Service.Export): a confirmation first, if the session's is
// not fresh, which leads back here.
func handleSubjectExport(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
		b, err := d.Retention.Export(r.Context(), actor(d, r), slug, studyID, siteID, pseudonym)
		if err != nil {
			signError(w, r, d, err, participantPage, map[string]any{})
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": b.Name}))
		w.Header().Set("Content-Length", strconv.FormatInt(b.Size(), 10))
		w.Header().Set("X-Content-SHA256", b.SHA256)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		b.WriteTo(w)
	})
}

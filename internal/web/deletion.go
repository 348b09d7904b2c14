package web

// Deletion (LIFE-01) in the browser: a participant, or an entry, deleted
// with a reason, hidden and locked; restored by an organization admin
// within the organization's retention period. The services decide who
// may, as over the API.

import (
	"net/http"
	"net/url"

	"github.com/custodia/custodia/internal/errs"
)

func handleDeleteParticipant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), participantPage, data)
			return
		}
		slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
		if err := d.Participants.Delete(r.Context(), actor(d, r), slug, studyID, siteID, pseudonym, r.PostForm.Get("reason")); err != nil {
			signError(w, r, d, err, participantPage, data)
			return
		}
		// The site's page offers to undo it, for those who may.
		next := sitePath(slug, studyID, siteID) + "?" + url.Values{"done": {"participant-deleted"}, "deleted": {pseudonym}}.Encode()
		http.Redirect(w, r, next, http.StatusSeeOther)
	})
}

func handleRestoreParticipant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
		if _, err := d.Participants.Restore(r.Context(), actor(d, r), slug, studyID, siteID, pseudonym); err != nil {
			adminError(w, r, d, err, sitePage, map[string]any{})
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, studyID, siteID, pseudonym), "participant-restored"), http.StatusSeeOther)
	})
}

func handleDeleteEntry(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), participantPage, data)
			return
		}
		slug, p := r.PathValue("org"), placeOf(r)
		if err := d.Entries.Delete(r.Context(), actor(d, r), slug, p, r.PostForm.Get("reason")); err != nil {
			adminError(w, r, d, err, participantPage, data)
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, p.StudyID, p.SiteID, p.Participant), "entry-deleted"), http.StatusSeeOther)
	})
}

func handleRestoreEntry(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, p := r.PathValue("org"), placeOf(r)
		if _, err := d.Entries.Restore(r.Context(), actor(d, r), slug, p); err != nil {
			adminError(w, r, d, err, participantPage, map[string]any{})
			return
		}
		http.Redirect(w, r, withDone(entryPath(slug, p), "entry-restored"), http.StatusSeeOther)
	})
}

package web

// A study's access page, for those who manage it: decrypt grants (CRY-06)
// given and revoked, the rules that hide fields from roles (ACL-04), and
// care providers assigned to participants (ACL-05); and, on a
// participant's page, a pending invitation to the portal withdrawn. The
// services decide who may, as over the API.

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/participants"
)

func studyAccessPath(slug, study string) string { return studyPath(slug, study) + "/access" }

var studyAccessNotices = map[string]string{
	"granted":      "The decrypt grant is given.",
	"revoked":      "The decrypt grant is revoked.",
	"rules-saved":  "The field rules are saved: they apply from the next request on.",
	"care-given":   "The care provider is assigned.",
	"care-removed": "The care provider is no longer assigned.",
}

func studyAccessPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a, slug, studyID := r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study")
	st, err := d.Orgs.Study(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	grants, err := d.Participants.Grants(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	data["Title"], data["Slug"], data["Study"], data["Grants"] = "Access to "+st.Name, slug, st, grants
	data["Path"], data["Back"] = studyAccessPath(slug, studyID), studyPath(slug, studyID)
	if data["Notice"] == nil {
		if n, ok := studyAccessNotices[r.URL.Query().Get("done")]; ok {
			data["Notice"] = n
		}
	}
	if data["Form"] == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "studyaccess", data)
}

func handleStudyAccess(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		studyAccessPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// accessChange runs a change of the access page and leads back to it.
func accessChange(d Deps, change func(r *http.Request) (string, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), studyAccessPage, data)
			return
		}
		data["Form"] = r.PostForm
		done, err := change(r)
		if err != nil {
			signError(w, r, d, err, studyAccessPage, data)
			return
		}
		http.Redirect(w, r, withDone(studyAccessPath(r.PathValue("org"), r.PathValue("study")), done), http.StatusSeeOther)
	})
}

func handleGrantPage(d Deps) http.Handler {
	return accessChange(d, func(r *http.Request) (string, error) {
		pf := r.PostForm
		req := participants.GrantRequest{AccountID: strings.TrimSpace(pf.Get("account")), SiteID: strings.TrimSpace(pf.Get("site")),
			Reason: pf.Get("reason")}
		for _, f := range strings.Split(pf.Get("fields"), ",") {
			if f = strings.TrimSpace(f); f != "" {
				req.Fields = append(req.Fields, f)
			}
		}
		if s := strings.TrimSpace(pf.Get("expires")); s != "" {
			day, err := time.Parse("2006-01-02", s)
			if err != nil {
				return "", errs.E(errs.Invalid, "the end of the grant is a date, YYYY-MM-DD")
			}
			req.ExpiresAt = day.Add(24 * time.Hour)
		}
		_, err := d.Participants.Grant(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), req)
		return "granted", err
	})
}

func handleRevokePage(d Deps) http.Handler {
	return accessChange(d, func(r *http.Request) (string, error) {
		return "revoked", d.Participants.Revoke(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("grant"))
	})
}

// handleFieldRulesPage replaces the study's field rules: one a line,
// "form.field: role, role" (or identity.<field>).
func handleFieldRulesPage(d Deps) http.Handler {
	return accessChange(d, func(r *http.Request) (string, error) {
		rules := authz.FieldRules{}
		for i, line := range strings.Split(r.PostForm.Get("rules"), "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			field, roles, ok := strings.Cut(line, ":")
			if !ok {
				return "", errs.E(errs.Invalid, "line %d: write form.field: role, role", i+1)
			}
			list := []authz.Role{}
			for _, role := range strings.Split(roles, ",") {
				if role = strings.TrimSpace(role); role != "" {
					list = append(list, authz.Role(role))
				}
			}
			rules[strings.TrimSpace(field)] = list
		}
		_, err := d.Roles.SetFieldVisibility(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), rules)
		return "rules-saved", err
	})
}

func handleAssignCarePage(d Deps) http.Handler {
	return accessChange(d, func(r *http.Request) (string, error) {
		_, err := d.Roles.AssignCare(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"),
			strings.TrimSpace(r.PostForm.Get("participant")), strings.TrimSpace(r.PostForm.Get("account")))
		return "care-given", err
	})
}

func handleUnassignCarePage(d Deps) http.Handler {
	return accessChange(d, func(r *http.Request) (string, error) {
		return "care-removed", d.Roles.UnassignCare(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"),
			strings.TrimSpace(r.PostForm.Get("participant")), strings.TrimSpace(r.PostForm.Get("account")))
	})
}

// handleWithdrawInvitation withdraws a participant's pending invitation
// to the portal: its link stops working.
func handleWithdrawInvitation(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
		if err := d.Participants.WithdrawAccountInvitation(r.Context(), actor(d, r), slug, studyID, siteID, pseudonym); err != nil {
			adminError(w, r, d, err, participantPage, map[string]any{})
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, studyID, siteID, pseudonym), "invitation-withdrawn"), http.StatusSeeOther)
	})
}

// handleEraseIdentity erases a participant's identifying data for good
// (LIFE-03, participants.Service.Erase, the API's call): after a fresh
// confirmation; their pseudonymous record stays.
func handleEraseIdentity(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
		if _, err := d.Participants.Erase(r.Context(), actor(d, r), slug, studyID, siteID, pseudonym); err != nil {
			signError(w, r, d, err, participantPage, map[string]any{})
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, studyID, siteID, pseudonym), "identity-erased"), http.StatusSeeOther)
	})
}

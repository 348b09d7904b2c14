package web

// The study workspace: the studies a person may reach, a study's sites,
// forms and schedule, a site's participants and enrolment, a
// participant's grid of visits × forms and their identity after a
// confirmation and under a decrypt grant, and exports. Every page asks
// the same services the API does; what a role may not do, the service
// refuses, as it refuses the API.

import (
	"bufio"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/router"
)

func studiesPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/studies" }

func studyPath(slug, study string) string { return studiesPath(slug) + "/" + url.PathEscape(study) }

func sitePath(slug, study, site string) string {
	return studyPath(slug, study) + "/sites/" + url.PathEscape(site)
}

func participantPath(slug, study, site, p string) string {
	return sitePath(slug, study, site) + "/participants/" + url.PathEscape(p)
}

// workspaceNotices are the notices of the workspace's pages, by the "done"
// of the address.
var workspaceNotices = map[string]string{
	"study-created":        "The study is created. Add its sites, forms and schedule.",
	"site-created":         "The site is added.",
	"enrolled":             "The participant is enrolled.",
	"arm-assigned":         "The arm is assigned. The participant's visits are those of their arm.",
	"signed":               "The consent is signed.",
	"withdrawn":            "The withdrawal is recorded. Data entry stops where the study requires consent.",
	"countersigned":        "The consent is countersigned.",
	"participant-deleted":  "The participant is deleted: hidden and locked. An organization admin may restore them within the organization's retention period; then they are erased for good.",
	"participant-restored": "The participant is restored.",
	"entry-deleted":        "The entry is deleted: hidden and locked. An organization admin may restore it within the organization's retention period.",
	"entry-restored":       "The entry is restored.",
	"invitation-withdrawn": "The invitation is withdrawn: its link no longer works.",
	"identity-erased":      "The participant's identity is erased for good: its key is destroyed, in backups too. The pseudonymous record stays.",
	"version-deleted":      "The version is deleted with its entries: hidden and locked, restorable by an organization admin within the retention period.",
	"version-restored":     "The version's entries are restored.",
	"invited":              "The invitation is sent. The participant chooses a password with its link, then fills in their forms in the portal.",
	"form-created":         "The form is created as a draft. Add its fields, then publish it.",
	"draft-saved":          "The draft is saved.",
	"published":            "The version is published. New entries are saved under it.",
	"retired":              "The version is retired. Entries saved under it keep it.",
	"schedule-saved":       "The schedule is saved.",
	"saved":                "The entry is saved.",
	"unchanged":            "Nothing changed, so nothing was saved.",
}

func workspaceNotice(r *http.Request) string {
	if n, ok := workspaceNotices[r.URL.Query().Get("done")]; ok {
		return n
	}
	return notice(r)
}

// membershipIn is the signed-in person's membership of the organization
// (its name defaults to the slug when there is none).
func membershipIn(d Deps, r *http.Request, slug string) membership {
	for _, m := range memberships(d, r) {
		if m.Slug == slug {
			return m
		}
	}
	return membership{Name: slug, Slug: slug}
}

// designs reports whether a membership holds a role that designs forms,
// for the links a page offers; the service decides what they may do.
func (m membership) designs() bool {
	return slices.Contains(m.Roles, string(authz.OrgAdmin)) || slices.Contains(m.Roles, string(authz.StudyAdmin))
}

func studiesPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	slug := r.PathValue("org")
	list, err := d.Orgs.ListStudies(r.Context(), actor(d, r), slug)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	m := membershipIn(d, r, slug)
	data["Title"], data["Slug"], data["OrgName"], data["Studies"] = "Studies", slug, m.Name, list
	data["Kinds"] = []orgs.StudyKind{orgs.KindStudy, orgs.KindRegistry, orgs.KindCareProgram}
	data["Design"] = m.designs()
	if data["Notice"] == nil {
		data["Notice"] = workspaceNotice(r)
	}
	if data["Form"] == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "studies", data)
}

func handleStudies(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		studiesPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

func handleCreateStudy(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), studiesPage, data)
			return
		}
		data["Form"] = r.PostForm
		st, err := d.Orgs.CreateStudy(r.Context(), actor(d, r), r.PathValue("org"),
			orgs.StudyKind(r.PostForm.Get("kind")), strings.TrimSpace(r.PostForm.Get("name")))
		if err != nil {
			adminError(w, r, d, err, studiesPage, data)
			return
		}
		http.Redirect(w, r, withDone(studyPath(r.PathValue("org"), st.ID), "study-created"), http.StatusSeeOther)
	})
}

func studyPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a, slug, studyID := r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study")
	st, err := d.Orgs.Study(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	sites, err := d.Orgs.ListSites(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	// Forms and the schedule are for the roles that read forms; another
	// sees the sites only.
	list, err := d.Forms.List(ctx, a, slug, studyID)
	switch {
	case err == nil:
		data["Forms"] = list
		visits, err := d.Forms.Schedule(ctx, a, slug, studyID)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		data["Visits"], data["ReadsForms"] = visits, true
	case errs.Is(err, errs.Forbidden), errs.Is(err, errs.NotFound):
	default:
		fail(w, r, d, err)
		return
	}
	data["Title"], data["Slug"], data["Study"], data["Sites"] = st.Name, slug, st, sites
	data["Design"] = membershipIn(d, r, slug).designs()
	data["FieldTypes"] = forms.Types
	data["Exports"] = true // the export's progress (static/export.js)
	data["Formats"] = []string{entries.FormatCSV, entries.FormatJSONL, entries.FormatODM, entries.FormatREDCap}
	if data["Notice"] == nil {
		data["Notice"] = workspaceNotice(r)
	}
	if data["Form"] == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "study", data)
}

func handleStudy(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		studyPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

func handleCreateSite(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), studyPage, data)
			return
		}
		data["Form"] = r.PostForm
		slug, studyID := r.PathValue("org"), r.PathValue("study")
		if _, err := d.Orgs.CreateSite(r.Context(), actor(d, r), slug, studyID, strings.TrimSpace(r.PostForm.Get("name"))); err != nil {
			adminError(w, r, d, err, studyPage, data)
			return
		}
		http.Redirect(w, r, withDone(studyPath(slug, studyID), "site-created"), http.StatusSeeOther)
	})
}

// handleExport downloads a study's entries as the API's export does: the
// caller's sites and visible fields only, after a recent confirmation of
// identity (ACL-09), audited with the SHA-256 of what was sent.
func handleExport(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID := r.PathValue("org"), r.PathValue("study")
		format := r.URL.Query().Get("format")
		ct, ext := "text/csv; charset=utf-8", format
		switch format {
		case entries.FormatCSV:
		case entries.FormatJSONL:
			ct = "application/x-ndjson"
		case entries.FormatODM:
			ct, ext = "application/xml", "odm.xml"
		case entries.FormatREDCap:
			ext = "redcap.csv"
		default:
			fail(w, r, d, errs.E(errs.Invalid, "format must be csv, jsonl, odm or redcap"))
			return
		}
		var out *bufio.Writer
		err := d.Entries.Export(r.Context(), actor(d, r), slug, studyID, format, func() (io.Writer, error) {
			w.Header().Set("Content-Type", ct)
			w.Header().Set("Content-Disposition", `attachment; filename="entries.`+ext+`"`)
			w.WriteHeader(http.StatusOK)
			out = bufio.NewWriterSize(router.Stream(w), 64<<10)
			return out, nil
		})
		switch {
		case out != nil:
			if err != nil {
				d.Log.ErrorContext(r.Context(), "export interrupted", "err", err)
			}
			out.Flush()
		case errs.Is(err, errs.StepUpRequired):
			router.RecordRefusal(r, errs.KindOf(err).String())
			confirmPage(w, r, d, http.StatusForbidden, map[string]any{"Next": studyPath(slug, studyID), "Error": errs.SafeMessage(err)})
		case err != nil:
			fail(w, r, d, err)
		}
	})
}

func sitePage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a := r.Context(), actor(d, r)
	slug, studyID, siteID := r.PathValue("org"), r.PathValue("study"), r.PathValue("site")
	st, err := d.Orgs.Study(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	site, err := d.Orgs.Site(ctx, a, slug, studyID, siteID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	q := r.URL.Query()
	search, state := strings.TrimSpace(q.Get("q")), q.Get("status")
	// The participants are for the roles that work with them; a study
	// admin sees the site, not who is enrolled at it.
	list, err := d.Participants.List(ctx, a, slug, studyID, siteID, q.Get("after"), participants.MaxPage)
	switch {
	case err == nil:
		data["Enrols"] = true
	case errs.Is(err, errs.Forbidden), errs.Is(err, errs.NotFound):
		list = nil
	default:
		fail(w, r, d, err)
		return
	}
	if len(list) == participants.MaxPage {
		data["More"] = list[len(list)-1].Pseudonym
	}
	list = slices.DeleteFunc(list, func(p participants.Participant) bool {
		return search != "" && !strings.HasPrefix(strings.ToLower(p.Pseudonym), strings.ToLower(search)) ||
			state != "" && p.Status != state
	})
	data["Title"], data["Slug"], data["Study"], data["Site"], data["Participants"] = site.Name, slug, st, site, list
	data["Search"], data["Status"] = search, state
	if deleted := q.Get("deleted"); deleted != "" && q.Get("done") == "participant-deleted" {
		data["Deleted"] = deleted
	}
	data["Statuses"] = []string{"enrolled"}
	if data["Notice"] == nil {
		data["Notice"] = workspaceNotice(r)
	}
	if data["Form"] == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "site", data)
}

func handleSite(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sitePage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// handleEnrol enrols a participant at a site, with the identity fields
// given (sealed in the identity database, as over the API).
func handleEnrolParticipant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), sitePage, data)
			return
		}
		data["Form"] = r.PostForm
		slug, studyID, siteID := r.PathValue("org"), r.PathValue("study"), r.PathValue("site")
		id := participants.Identity{}
		for _, f := range []participants.Field{participants.Name, participants.BirthDate, participants.Email, participants.Phone, participants.NationalID} {
			id[f] = r.PostForm.Get(string(f))
		}
		p, err := d.Participants.Enrol(r.Context(), actor(d, r), slug, studyID, siteID, id)
		if err != nil {
			adminError(w, r, d, err, sitePage, data)
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, studyID, siteID, p.Pseudonym), "enrolled"), http.StatusSeeOther)
	})
}

func participantPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a := r.Context(), actor(d, r)
	slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
	grid, err := d.Entries.Grid(ctx, a, slug, studyID, siteID, pseudonym)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	// The record itself is the study team's to read; a participant in the
	// portal sees their grid only.
	if p, err := d.Participants.Get(ctx, a, slug, studyID, siteID, pseudonym); err == nil {
		data["Participant"] = p
		// The arms to choose from, for those who read the schedule.
		if visits, err := d.Forms.Schedule(ctx, a, slug, studyID); err == nil {
			data["Arms"] = forms.Arms(visits)
		}
	}
	var cols []string
	for _, v := range grid {
		for _, f := range v.Forms {
			if !slices.Contains(cols, f.Form) {
				cols = append(cols, f.Form)
			}
		}
	}
	consentOnPage(r, d, data)
	data["Title"] = "Participant " + pseudonym
	data["Slug"], data["StudyID"], data["SiteID"], data["Pseudonym"] = slug, studyID, siteID, pseudonym
	data["Grid"], data["Columns"] = grid, cols
	data["Path"] = participantPath(slug, studyID, siteID, pseudonym)
	data["Back"] = sitePath(slug, studyID, siteID)
	if data["Notice"] == nil {
		data["Notice"] = workspaceNotice(r)
	}
	render(w, r, d.Log, status, "participant", data)
}

func handleParticipant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		participantPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// identityRow is one identity field as the participant's page shows it.
type identityRow struct {
	Field    participants.Field
	Value    string
	Withheld bool
}

// handleRevealIdentity shows a participant's identity on their page: a
// re-identification, so it needs a recent confirmation (ACL-09), a
// decrypt grant for the sensitive fields (CRY-06), and is on the audit
// trail and in the participant's access log.
func handleRevealIdentity(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
		rv, err := d.Participants.Reveal(r.Context(), actor(d, r), slug, studyID, siteID, pseudonym)
		if err != nil {
			if errs.Is(err, errs.StepUpRequired) {
				router.RecordRefusal(r, errs.KindOf(err).String())
				confirmPage(w, r, d, http.StatusForbidden, map[string]any{"Next": participantPath(slug, studyID, siteID, pseudonym), "Error": errs.SafeMessage(err)})
				return
			}
			adminError(w, r, d, err, participantPage, map[string]any{})
			return
		}
		var rows []identityRow
		for _, f := range rv.Shown {
			rows = append(rows, identityRow{Field: f, Value: rv.Values[f]})
		}
		for _, f := range rv.Withheld {
			rows = append(rows, identityRow{Field: f, Withheld: true})
		}
		for _, name := range slices.Sorted(maps.Keys(rv.Identifiers)) {
			rows = append(rows, identityRow{Field: participants.Field(name), Value: rv.Identifiers[name]})
		}
		for _, name := range rv.IdentifiersWithheld {
			rows = append(rows, identityRow{Field: participants.Field(name), Withheld: true})
		}
		participantPage(w, r, d, http.StatusOK, map[string]any{"Identity": rows, "IdentityState": rv.State})
	})
}

// handleInviteParticipant invites a participant to an account of their
// own, for the portal (links.Service.InviteParticipant, the API's call):
// the e-mail carries a one-time link; the address is sealed with their
// identity.
func handleInviteParticipant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), participantPage, data)
			return
		}
		slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
		if err := d.Links.InviteParticipant(r.Context(), d.Participants, actor(d, r), slug, studyID, siteID, pseudonym,
			strings.TrimSpace(r.PostForm.Get("email"))); err != nil {
			adminError(w, r, d, err, participantPage, data)
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, studyID, siteID, pseudonym), "invited"), http.StatusSeeOther)
	})
}

// handleAssignArm assigns the participant to an arm of the study
// (entries.Service.AssignArm, the API's call).
func handleAssignArm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), participantPage, data)
			return
		}
		slug, studyID, siteID, pseudonym := r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")
		if _, err := d.Entries.AssignArm(r.Context(), actor(d, r), slug, studyID, siteID, pseudonym, r.PostForm.Get("arm")); err != nil {
			var pr *forms.Problems
			if errors.As(err, &pr) {
				data["Problems"] = pr.Fields
			}
			adminError(w, r, d, err, participantPage, data)
			return
		}
		http.Redirect(w, r, withDone(participantPath(slug, studyID, siteID, pseudonym), "arm-assigned"), http.StatusSeeOther)
	})
}

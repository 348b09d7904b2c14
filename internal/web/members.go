package web

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/authz/authzadmin"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/router"
)

// adminNotices are the notices of the organization's administration pages
// (people, roles, network ranges), by the "done" of the address.
var adminNotices = map[string]string{
	"role-assigned": "The role is given. It takes effect at that person's next request.",
	"role-revoked":  "The role is taken away. It ends at that person's next request.",
	"role-created":  "The role is defined. It grants nothing until it is given to someone.",
	"role-deleted":  "The role is deleted.",
	"network-saved": "The network ranges are saved. They apply from the next request on.",
}

func adminNotice(r *http.Request) string {
	if n, ok := adminNotices[r.URL.Query().Get("done")]; ok {
		return n
	}
	return notice(r)
}

func membersPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/members" }

// holding is one role assignment as the people page shows it.
type holding struct {
	ID        string
	Role      authz.Role
	Where     string
	Revocable bool
}

type memberRow struct {
	Account  accounts.Account
	Holdings []holding
}

// scopeOption is one place a role can be given: the organization, a study
// or a site, as the scope field's value (see grantOf).
type scopeOption struct {
	Value, Label string
	Site         bool
}

// membersPage renders the people page with status and data's extra fields
// (an error, the form as posted).
func membersPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	p, err := d.Roles.People(r.Context(), actor(d, r), r.PathValue("org"))
	if err != nil {
		fail(w, r, d, err)
		return
	}
	studyName, siteName := map[string]string{}, map[string]string{}
	var scopes []scopeOption
	for _, st := range p.Studies {
		studyName[st.Study.ID] = st.Study.Name
		scopes = append(scopes, scopeOption{Value: "study:" + st.Study.ID, Label: "Study " + st.Study.Name})
		for _, site := range st.Sites {
			siteName[site.ID] = site.Name
			scopes = append(scopes, scopeOption{Value: "site:" + site.ID, Label: site.Name + " (" + st.Study.Name + ")", Site: true})
		}
	}
	rows := make([]memberRow, 0, len(p.Members))
	for _, m := range p.Members {
		row := memberRow{Account: m.Account}
		for _, as := range m.Assignments {
			where := "the organization"
			switch {
			case as.SiteID != "":
				where = "site " + siteName[as.SiteID] + " (" + studyName[as.StudyID] + ")"
			case as.StudyID != "":
				where = "study " + studyName[as.StudyID]
			}
			row.Holdings = append(row.Holdings, holding{ID: as.ID, Role: as.Role, Where: where, Revocable: p.Revocable[as.ID]})
		}
		rows = append(rows, row)
	}
	data["Title"] = "People"
	data["Org"], data["Members"], data["Grantable"], data["Scopes"] = p.Org, rows, p.Grantable, scopes
	data["Invited"] = p.Invited
	data["Next"] = membersPath(p.Org.Slug)
	if data["Notice"] == nil {
		data["Notice"] = adminNotice(r)
	}
	if data["Form"] == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "members", data)
}

func handleMembers(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		membersPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// grantOf reads the role and the scope of the assignment form. The scope
// is "" for the organization, "study:<id>" or "site:<id>"; whether the
// study or site is the organization's is the service's question.
func grantOf(form url.Values) (authzadmin.Grant, error) {
	g := authzadmin.Grant{Role: authz.Role(strings.TrimSpace(form.Get("role")))}
	if g.Role == "" {
		return authzadmin.Grant{}, errs.E(errs.Invalid, "choose a role to give")
	}
	switch kind, id, _ := strings.Cut(form.Get("scope"), ":"); {
	case kind == "" && id == "":
	case kind == "study" && id != "":
		g.StudyID = id
	case kind == "site" && id != "":
		g.SiteID = id
	default:
		return authzadmin.Grant{}, errs.E(errs.Invalid, "choose where the role applies: the organization, a study or a site")
	}
	return g, nil
}

// adminError answers a refused change on the page it came from, with the
// service's message (an invalid form, a role one may not give, the last
// administrator); a wanted confirmation leads to the confirmation page and
// back, and what the page cannot help with gets the error page.
func adminError(w http.ResponseWriter, r *http.Request, d Deps, err error, page func(http.ResponseWriter, *http.Request, Deps, int, map[string]any), data map[string]any) {
	switch errs.KindOf(err) {
	case errs.Invalid, errs.Forbidden, errs.Conflict:
		router.RecordRefusal(r, errs.KindOf(err).String())
		data["Error"] = message(d, r, err)
		page(w, r, d, statusOf(err), data)
	default:
		fail(w, r, d, err)
	}
}

// handleAssignRole gives a member a role (authzadmin.Service.Assign, the API's
// call): the subset rule, the scope's checks and the step-up are the
// service's.
func handleAssignRole(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), membersPage, data)
			return
		}
		data["Form"] = r.PostForm
		slug := r.PathValue("org")
		g, err := grantOf(r.PostForm)
		if err == nil {
			_, err = d.Roles.Assign(r.Context(), actor(d, r), slug, r.PostForm.Get("account"), g)
		}
		if err != nil {
			adminError(w, r, d, err, membersPage, data)
			return
		}
		http.Redirect(w, r, membersPath(slug)+"?done=role-assigned", http.StatusSeeOther)
	})
}

// handleRevokeRole takes one assignment away (authzadmin.Service.Unassign); the
// organization keeps its last administrator.
func handleRevokeRole(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), membersPage, map[string]any{})
			return
		}
		slug := r.PathValue("org")
		_, err := d.Roles.Unassign(r.Context(), actor(d, r), slug, r.PathValue("account"), r.PathValue("assignment"))
		if err != nil {
			adminError(w, r, d, err, membersPage, map[string]any{})
			return
		}
		http.Redirect(w, r, membersPath(slug)+"?done=role-revoked", http.StatusSeeOther)
	})
}

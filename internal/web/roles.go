package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/authz/authzadmin"
	"github.com/custodia/custodia/internal/errs"
)

func rolesPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/roles" }

// levelNames are the levels a custom role can be held at, as the form
// names them.
var levelNames = []string{authz.LevelOrg.String(), authz.LevelStudy.String(), authz.LevelSite.String()}

// rolesPage renders the roles page with status and data's extra fields (an
// error, the form as posted).
func rolesPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	c, err := d.Roles.Catalogue(r.Context(), actor(d, r), r.PathValue("org"))
	if err != nil {
		fail(w, r, d, err)
		return
	}
	var builtin, custom []authzadmin.Definition
	for _, def := range c.Roles {
		if def.Builtin {
			builtin = append(builtin, def)
		} else {
			custom = append(custom, def)
		}
	}
	data["Title"] = "Roles"
	data["Org"], data["Builtin"], data["Custom"], data["Manage"] = c.Org, builtin, custom, c.Manage
	form, _ := data["Form"].(url.Values)
	var actions []string
	for _, a := range c.Actions {
		actions = append(actions, string(a))
	}
	data["Levels"], data["Actions"] = checks(levelNames, form["level"]), checks(actions, form["permission"])
	data["Next"] = rolesPath(c.Org.Slug)
	if data["Notice"] == nil {
		data["Notice"] = adminNotice(r)
	}
	if form == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "roles", data)
}

// check is one checkbox of a form: its value and whether it is ticked.
type check struct {
	Value   string
	Checked bool
}

// checks is a checkbox for each of values, ticked if posted holds it.
func checks(values, posted []string) []check {
	out := make([]check, len(values))
	for i, v := range values {
		out[i] = check{Value: v, Checked: slices.Contains(posted, v)}
	}
	return out
}

func handleRoles(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rolesPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// handleCreateRole defines a custom role (authzadmin.Service.CreateRole): the
// name, its levels and its permissions are checked by the service, which
// stores nothing on a refusal.
func handleCreateRole(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), rolesPage, data)
			return
		}
		data["Form"] = r.PostForm
		slug := r.PathValue("org")
		spec := authzadmin.Spec{
			Name:        strings.TrimSpace(r.PostForm.Get("name")),
			Levels:      r.PostForm["level"],
			Permissions: r.PostForm["permission"],
		}
		if _, err := d.Roles.CreateRole(r.Context(), actor(d, r), slug, spec); err != nil {
			adminError(w, r, d, err, rolesPage, data)
			return
		}
		http.Redirect(w, r, rolesPath(slug)+"?done=role-created", http.StatusSeeOther)
	})
}

// handleDeleteRole deletes a custom role no one holds
// (authzadmin.Service.DeleteRole); one in use is refused with the number of
// assignments that hold it.
func handleDeleteRole(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), rolesPage, map[string]any{})
			return
		}
		slug := r.PathValue("org")
		if err := d.Roles.DeleteRole(r.Context(), actor(d, r), slug, r.PathValue("role")); err != nil {
			adminError(w, r, d, err, rolesPage, map[string]any{})
			return
		}
		http.Redirect(w, r, rolesPath(slug)+"?done=role-deleted", http.StatusSeeOther)
	})
}

package api

import (
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/authz/authzadmin"
)

// roleJSON describes a role the organization can assign.
type roleJSON struct {
	ID          string   `json:"id,omitempty"` // custom roles only
	Name        string   `json:"name"`
	Builtin     bool     `json:"builtin"`
	About       string   `json:"about,omitempty"`
	Levels      []string `json:"levels"`
	Permissions []string `json:"permissions"`
	CreatedAt   string   `json:"created_at,omitempty"`
}

func roleOut(d authzadmin.Definition) roleJSON {
	out := roleJSON{ID: d.ID, Name: string(d.Name), Builtin: d.Builtin, About: d.About,
		Levels: []string{}, Permissions: []string{}}
	for _, l := range d.Levels {
		out.Levels = append(out.Levels, l.String())
	}
	for _, p := range d.Permissions {
		out.Permissions = append(out.Permissions, string(p))
	}
	if !d.Builtin {
		out.CreatedAt = d.CreatedAt.UTC().Format(time.RFC3339)
	}
	return out
}

// handleListRoles answers the assignable roles and every permission a
// custom role may hold.
func handleListRoles(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Roles.Roles(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		out := make([]roleJSON, len(list))
		for i, def := range list {
			out[i] = roleOut(def)
		}
		perms := []string{}
		for _, a := range authz.Actions() {
			perms = append(perms, string(a))
		}
		writeJSON(w, http.StatusOK, map[string]any{"roles": out, "permissions": perms})
		return nil
	})
}

// handleCreateRole defines a custom role:
// {"name", "levels": [...], "permissions": [...]}.
func handleCreateRole(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Name        string   `json:"name"`
			Levels      []string `json:"levels"`
			Permissions []string `json:"permissions"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		def, err := d.Roles.CreateRole(r.Context(), actor(d, r), r.PathValue("org"),
			authzadmin.Spec{Name: req.Name, Levels: req.Levels, Permissions: req.Permissions})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, roleOut(def))
		return nil
	})
}

func handleDeleteRole(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := d.Roles.DeleteRole(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("role")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

type careRequest struct {
	Account string `json:"account"`
}

// handleAssignCare makes a member the care provider of a participant:
// {"account"}.
func handleAssignCare(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req careRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		rel, err := d.Roles.AssignCare(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"),
			r.PathValue("participant"), req.Account)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, map[string]string{
			"id": rel.ID, "participant": rel.ParticipantID, "account": rel.AccountID,
			"created_at": time.UnixMicro(rel.CreatedAt).UTC().Format(time.RFC3339),
		})
		return nil
	})
}

// handleUnassignCare ends a care provider's assignment: {"account"}.
func handleUnassignCare(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req careRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		if err := d.Roles.UnassignCare(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"),
			r.PathValue("participant"), req.Account); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// handleSetFieldVisibility replaces a study's field-visibility rules:
// {"hidden": {"form.field": ["role", ...], ...}}.
func handleSetFieldVisibility(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Hidden map[string][]string `json:"hidden"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		rules := authz.FieldRules{}
		for f, rs := range req.Hidden {
			list := []authz.Role{}
			for _, role := range rs {
				list = append(list, authz.Role(role))
			}
			rules[f] = list
		}
		set, err := d.Roles.SetFieldVisibility(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), rules)
		if err != nil {
			return err
		}
		out := map[string][]string{}
		for f, rs := range set {
			for _, role := range rs {
				out[f] = append(out[f], string(role))
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"hidden": out})
		return nil
	})
}

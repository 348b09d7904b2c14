package api

import (
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/authz/authzadmin"
)

// assignmentJSON is one role a person holds, at its scope.
type assignmentJSON struct {
	ID        string `json:"id"`
	Role      string `json:"role"`
	Custom    bool   `json:"custom,omitempty"`
	Level     string `json:"level"`
	StudyID   string `json:"study_id,omitempty"`
	SiteID    string `json:"site_id,omitempty"`
	CreatedAt string `json:"created_at"`
}

type memberJSON struct {
	Account     string           `json:"account"`
	Email       string           `json:"email"`
	DisplayName string           `json:"display_name"`
	Roles       []assignmentJSON `json:"roles"`
}

func assignmentOut(a authz.Assignment) assignmentJSON {
	return assignmentJSON{
		ID: a.ID, Role: string(a.Role), Custom: a.CustomRoleID != "", Level: a.Level().String(),
		StudyID: a.StudyID, SiteID: a.SiteID, CreatedAt: time.UnixMicro(a.CreatedAt).UTC().Format(time.RFC3339),
	}
}

func handleListMembers(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, invited, err := d.Roles.Members(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		out := make([]memberJSON, len(list))
		for i, m := range list {
			out[i] = memberJSON{Account: m.Account.ID, Email: m.Account.Email, DisplayName: m.Account.DisplayName,
				Roles: make([]assignmentJSON, len(m.Assignments))}
			for j, a := range m.Assignments {
				out[i].Roles[j] = assignmentOut(a)
			}
		}
		inv := make([]invitationJSON, len(invited))
		for i, x := range invited {
			inv[i] = invitationJSON{ID: x.ID, Email: x.Email, Role: string(x.Grant.Role), Study: x.Grant.StudyID,
				Site: x.Grant.SiteID, CreatedAt: x.CreatedAt.UTC(), ExpiresAt: x.ExpiresAt.UTC()}
		}
		writeJSON(w, http.StatusOK, map[string]any{"members": out, "invited": inv})
		return nil
	})
}

// invitationJSON is an invitation waiting for an answer: the address the
// inviter typed and what it offers, never the account behind it.
type invitationJSON struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	Study     string    `json:"study,omitempty"`
	Site      string    `json:"site,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// handleAssignRole gives a member a role: {"role", "study"?, "site"?}.
func handleAssignRole(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Role  string `json:"role"`
			Study string `json:"study"`
			Site  string `json:"site"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		g := authzadmin.Grant{Role: authz.Role(req.Role), StudyID: req.Study, SiteID: req.Site}
		a, err := d.Roles.Assign(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("account"), g)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, assignmentOut(a))
		return nil
	})
}

func handleUnassignRole(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if _, err := d.Roles.Unassign(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("account"), r.PathValue("assignment")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

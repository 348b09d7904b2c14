package api

import (
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/audit/auditadmin"
)

// accessJSON is one access to the requester's own participant record, as
// the participant may learn it (auditadmin.Access): no names, account ids
// or addresses.
type accessJSON struct {
	Time         string   `json:"time"`
	Organization string   `json:"organization"`
	Who          string   `json:"who"`
	Roles        []string `json:"roles"`
	Action       string   `json:"action"`
	What         string   `json:"what"`
	Refused      bool     `json:"refused"`
}

func accessOut(a auditadmin.Access) accessJSON {
	roles := a.Roles
	if roles == nil {
		roles = []string{}
	}
	return accessJSON{
		Time: a.Time.UTC().Format(time.RFC3339Nano), Organization: a.Organization, Who: a.Who,
		Roles: roles, Action: a.Action, What: a.What, Refused: a.Refused,
	}
}

// handleAccessLog lists who accessed the requester's own participant
// record(s), newest first: GET /api/v1/me/access-log?cursor=&limit=. It
// takes no participant: the requester's own are the only ones there are.
func handleAccessLog(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		cursor, limit, err := pageQuery(r.URL.Query(), "cursor", auditadmin.MaxAccessPage)
		if err != nil {
			return err
		}
		list, next, err := d.Oversight.AccessLog(r.Context(), actor(d, r), cursor, limit)
		if err != nil {
			return err
		}
		out := make([]accessJSON, len(list))
		for i, a := range list {
			out[i] = accessOut(a)
		}
		writeJSON(w, http.StatusOK, map[string]any{"accesses": out, "next": next})
		return nil
	})
}

// membershipJSON is an organization the requester belongs to, with their
// roles there.
type membershipJSON struct {
	ID    string           `json:"id"`
	Slug  string           `json:"slug"`
	Name  string           `json:"name"`
	Roles []assignmentJSON `json:"roles"`
}

// handleMyOrganizations lists every organization the requester holds a
// role in: GET /api/v1/account/organizations.
func handleMyOrganizations(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Orgs.Memberships(r.Context(), actor(d, r))
		if err != nil {
			return err
		}
		out := make([]membershipJSON, len(list))
		for i, m := range list {
			out[i] = membershipJSON{ID: m.Org.ID, Slug: m.Org.Slug, Name: m.Org.Name, Roles: make([]assignmentJSON, len(m.Assignments))}
			for j, a := range m.Assignments {
				out[i].Roles[j] = assignmentOut(a)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"organizations": out})
		return nil
	})
}

// handleLeaveOrganization ends the requester's staff roles in an
// organization: POST /api/v1/account/organizations/{org}/leave, 204; 409
// for its last administrator.
func handleLeaveOrganization(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := d.Orgs.Leave(r.Context(), actor(d, r), r.PathValue("org")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

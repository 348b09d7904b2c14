package web

import (
	"net/http"
)

// handleMyRecords is the participant portal's start: the records that are
// the signed-in person's own, each leading to its visits and the forms
// they fill in themselves (entries.Service.Records, the API's call).
func handleMyRecords(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list, err := d.Entries.Records(r.Context(), actor(d, r))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		type record struct {
			OrgName, Participant, Path string
		}
		var out []record
		for _, rec := range list {
			out = append(out, record{OrgName: rec.OrgName, Participant: rec.Participant,
				Path: participantPath(rec.Org, rec.StudyID, rec.SiteID, rec.Participant)})
		}
		render(w, r, d.Log, http.StatusOK, "records", map[string]any{"Title": "Your records", "Records": out})
	})
}

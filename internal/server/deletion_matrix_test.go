package server

import "net/url"

// The deletion routes (LIFE-01) in the route×role matrix. Their rows come
// after every other row of matrix_test.go, so that a cell's participant is
// deleted, and restored, only once the cell's other requests are through.
//
//   - Deleting a participant: organization admins (participant.delete, the
//     session is fresh); those who read the participant are told they may
//     not (403). Restoring: organization admins (entry.restore), 403 for
//     those who read the participant. Each cell works on its own
//     participant, which the admin deletes and then restores.
//   - Deleting a form version: the cell's published form p_<cell>, version
//     1, which holds no entries and so is retired, as by the retire route
//     (its designers; the version may be retired already). Restoring it:
//     nothing was deleted with data, so 404 for an organization admin, 403
//     for those who read the study's forms.
func init() {
	matrix = append(matrix,
		matrixRow{Route: "DELETE /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}", Grid: `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   403 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		matrixRow{Route: "POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/restore", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   403 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		matrixRow{Route: "DELETE /api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		matrixRow{Route: "POST /api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}/restore", Grid: `
		org-admin           404 404 404 404
		org-manager         404 404 404 404
		study-admin         403 403 404 404
		data-manager        403 403 404 404
		site-investigator   403 403 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	)
	participant := func(tg target, tag string) string {
		return "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/sites/" + tg.site + "/participants/" + adminTargetOf(tag).participant
	}
	targetedProbes["DELETE /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}"] = func(tg target, tag string) probe {
		return jsonProbe(participant(tg, tag), map[string]string{"reason": "matrix " + tag})
	}
	targetedProbes["POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/restore"] = func(tg target, tag string) probe {
		return probe{path: participant(tg, tag) + "/restore"}
	}
	version := func(tg target, tag string) string {
		return "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/forms/p_" + formTag(tag) + "/versions/1"
	}
	targetedProbes["DELETE /api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}"] = func(tg target, tag string) probe {
		return jsonProbe(version(tg, tag), map[string]string{"reason": "matrix " + tag})
	}
	targetedProbes["POST /api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}/restore"] = func(tg target, tag string) probe {
		return probe{path: version(tg, tag) + "/restore"}
	}
	// The security page's form has a field for every policy field, the
	// retention of deleted data among them.
	targetedProbes["POST /orgs/{org}/security"] = func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/security", url.Values{
			"password_min_length": {"12"}, "password_rotation_days": {"0"},
			"session_idle_minutes": {"20"}, "session_absolute_hours": {"12"},
			"deletion_retention_days": {"30"},
		})
	}
}

package server

import "net/url"

// The routes of retention and data subjects' requests (LIFE-02) in the
// route×role matrix. Their rows come after the rows of matrix_test.go and
// of the deletion's API rows, before the pages' deletions.
//
//   - The organization's notices and holds: organization admins only
//     (retention.manage, held at organization level), 404 for everyone
//     else, as for the other organization. A hold is placed, then lifted,
//     on the cell's participant (the session is fresh), over the API and
//     then on the page.
//   - A data subject's export of the cell's participant: organization
//     admins (subject.export, step-up); those who read the participant are
//     told they may not (403), as for erasure.
//
// The security page's form has a field for every policy field, the
// periods of inactive data among them: its request gains them, whatever
// the files before this one put in it.
func init() {
	adminOnly := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	lifts := `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	exports := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   403 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	const (
		api  = "/api/v1/orgs/{org}"
		part = "/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}"
	)
	matrix = append(matrix,
		matrixRow{Route: "GET " + api + "/retention", Grid: adminOnly},
		matrixRow{Route: "PUT " + api + "/retention/holds/{kind}/{subject}", Grid: adminOnly},
		matrixRow{Route: "DELETE " + api + "/retention/holds/{kind}/{subject}", Grid: lifts},
		matrixRow{Route: "GET /api/v1" + part + "/subject-export", Grid: exports},
		matrixRow{Route: "GET /orgs/{org}/retention", Grid: adminOnly},
		matrixRow{Route: "POST /orgs/{org}/retention/holds", Grid: adminOnly},
		matrixRow{Route: "POST /orgs/{org}/retention/holds/{kind}/{subject}/lift", Grid: adminOnly},
		matrixRow{Route: "GET " + part + "/subject-export", Grid: exports},
	)
	participant := func(tg target, tag string) string { return adminTargetOf(tag).participant }
	place := func(tg target, tag string) string {
		return "/orgs/" + tg.org + "/studies/" + tg.study + "/sites/" + tg.site + "/participants/" + participant(tg, tag)
	}
	targetedProbes["GET "+api+"/retention"] = func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/retention"}
	}
	targetedProbes["PUT "+api+"/retention/holds/{kind}/{subject}"] = func(tg target, tag string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/retention/holds/participant/"+participant(tg, tag), map[string]string{"reason": "matrix " + tag})
	}
	targetedProbes["DELETE "+api+"/retention/holds/{kind}/{subject}"] = func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/retention/holds/participant/" + participant(tg, tag)}
	}
	targetedProbes["GET /api/v1"+part+"/subject-export"] = func(tg target, tag string) probe {
		return probe{path: "/api/v1" + place(tg, tag) + "/subject-export"}
	}
	targetedProbes["GET /orgs/{org}/retention"] = func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/retention"}
	}
	targetedProbes["POST /orgs/{org}/retention/holds"] = func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/retention/holds", url.Values{"kind": {"participant"}, "subject": {participant(tg, tag)},
			"reason": {"matrix page " + tag}})
	}
	targetedProbes["POST /orgs/{org}/retention/holds/{kind}/{subject}/lift"] = func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/retention/holds/participant/"+participant(tg, tag)+"/lift", url.Values{})
	}
	targetedProbes["GET "+part+"/subject-export"] = func(tg target, tag string) probe {
		return probe{path: place(tg, tag) + "/subject-export"}
	}
	security := targetedProbes["POST /orgs/{org}/security"]
	targetedProbes["POST /orgs/{org}/security"] = func(tg target, tag string) probe {
		p := security(tg, tag)
		v, err := url.ParseQuery(p.body)
		if err != nil {
			panic(err)
		}
		v.Set("inactivity_days", "730")
		v.Set("inactivity_notice_days", "30")
		return formProbe(p.path, v)
	}
}

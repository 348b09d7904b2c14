package server

import "net/url"

// Deleting and restoring on the pages (LIFE-01): the cells of the API's
// rows. They run after every other row of the pages (this file's init
// comes last), on the cell's participant, whom an organization admin
// deletes and restores at once, and on the entry the entry page saved.
func init() {
	deletes := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   403 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	entryDeletes := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	const (
		part  = "/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}"
		entry = part + "/visits/{visit}/{repeat}/forms/{form}"
	)
	matrix = append(matrix,
		matrixRow{Route: "POST " + part + "/delete", Grid: deletes},
		matrixRow{Route: "POST " + part + "/restore", Grid: deletes},
		matrixRow{Route: "POST " + entry + "/delete", Grid: entryDeletes},
		matrixRow{Route: "POST " + entry + "/restore", Grid: deletes},
	)
	page := func(tg target, tag string) string {
		return "/orgs/" + tg.org + "/studies/" + tg.study + "/sites/" + tg.site + "/participants/" + adminTargetOf(tag).participant
	}
	targetedProbes["POST "+part+"/delete"] = func(tg target, tag string) probe {
		return formProbe(page(tg, tag)+"/delete", url.Values{"reason": {"matrix page " + tag}})
	}
	targetedProbes["POST "+part+"/restore"] = func(tg target, tag string) probe {
		return formProbe(page(tg, tag)+"/restore", url.Values{})
	}
	targetedProbes["POST "+entry+"/delete"] = func(tg target, tag string) probe {
		return formProbe(page(tg, tag)+"/visits/entryvisit/1/forms/entryform/delete", url.Values{"reason": {"matrix page " + tag}})
	}
	targetedProbes["POST "+entry+"/restore"] = func(tg target, tag string) probe {
		return formProbe(page(tg, tag)+"/visits/entryvisit/1/forms/entryform/restore", url.Values{})
	}
}

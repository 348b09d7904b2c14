package server

import (
	"encoding/json"
	"net/url"
)

// The consent pages: the cells of their API counterparts
// (consent_matrix_test.go), tried after them on the same participants: a
// page signs again once the API's row withdrew, countersigns and
// downloads that signature and withdraws it; a designer's page changes
// drafts of its own (seedConsent's dw and fw).
func init() {
	reads := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	designs := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	participantReads := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	signs := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	const (
		study = "/orgs/{org}/studies/{study}"
		part  = study + "/sites/{site}/participants/{participant}"
	)
	matrix = append(matrix,
		matrixRow{Route: "GET " + study + "/consent", Grid: reads},
		matrixRow{Route: "POST " + study + "/consent/documents", Grid: designs},
		matrixRow{Route: "POST " + study + "/consent/documents/{language}/draft", Grid: designs},
		matrixRow{Route: "POST " + study + "/consent/documents/{language}/publish", Grid: designs},
		matrixRow{Route: "POST " + study + "/consent/settings", Grid: designs},
		matrixRow{Route: "GET " + part + "/consent", Grid: participantReads},
		matrixRow{Route: "POST " + part + "/consent", Grid: signs},
		matrixRow{Route: "POST " + part + "/consents/{consent}/countersign", Grid: signs},
		matrixRow{Route: "GET " + part + "/consents/{consent}/pdf", Grid: signs},
		matrixRow{Route: "POST " + part + "/consent/withdraw", Grid: signs},
	)
	studyPage := func(tg target) string { return "/orgs/" + tg.org + "/studies/" + tg.study + "/consent" }
	partPage := func(tg target, tag string) string {
		return "/orgs/" + tg.org + "/studies/" + tg.study + "/sites/" + tg.site + "/participants/" + consentTargetOf(tag)
	}
	content, _ := json.Marshal(map[string]any{"title": "Matrix consent", "sections": []map[string]string{{"heading": "About", "text": "Text"}}})
	targetedProbes["GET "+study+"/consent"] = func(tg target, _ string) probe { return probe{path: studyPage(tg)} }
	targetedProbes["POST "+study+"/consent/documents"] = func(tg target, tag string) probe {
		return formProbe(studyPage(tg)+"/documents", url.Values{"language": {consentLanguage("iw", tag)}, "content": {string(content)}})
	}
	targetedProbes["POST "+study+"/consent/documents/{language}/draft"] = func(tg target, tag string) probe {
		lang := consentLanguage("dw", tag)
		return formProbe(studyPage(tg)+"/documents/"+lang+"/draft", url.Values{"base": {consentDigests[lang]}, "content": {string(content)}})
	}
	targetedProbes["POST "+study+"/consent/documents/{language}/publish"] = func(tg target, tag string) probe {
		lang := consentLanguage("fw", tag)
		return formProbe(studyPage(tg)+"/documents/"+lang+"/publish", url.Values{"digest": {consentDigests[lang]}})
	}
	targetedProbes["POST "+study+"/consent/settings"] = func(tg target, _ string) probe {
		return formProbe(studyPage(tg)+"/settings", url.Values{"countersign_required": {"1"}})
	}
	targetedProbes["GET "+part+"/consent"] = func(tg target, tag string) probe {
		return probe{path: partPage(tg, tag) + "/consent?language=en"}
	}
	targetedProbes["POST "+part+"/consent"] = func(tg target, tag string) probe {
		return formProbe(partPage(tg, tag)+"/consent", url.Values{"language": {"en"}, "version": {"1"}, "q.0": {"0"}, "name": {"Matrix Participant"}})
	}
	targetedProbes["POST "+part+"/consents/{consent}/countersign"] = func(tg target, tag string) probe {
		return formProbe(partPage(tg, tag)+"/consents/"+consentOf(tag)+"/countersign", url.Values{"name": {"Matrix Investigator"}})
	}
	targetedProbes["GET "+part+"/consents/{consent}/pdf"] = func(tg target, tag string) probe {
		return probe{path: partPage(tg, tag) + "/consents/" + consentOf(tag) + "/pdf"}
	}
	targetedProbes["POST "+part+"/consent/withdraw"] = func(tg target, tag string) probe {
		return formProbe(partPage(tg, tag)+"/consent/withdraw", url.Values{"name": {"Matrix Participant"}})
	}
}

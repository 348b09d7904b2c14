package server

import (
	"bytes"
	"mime/multipart"
	"net/url"
)

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
	imports := `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 400 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	versionRestores := `
		org-admin           404 404 404 404
		org-manager         404 404 404 404
		study-admin         403 403 404 404
		data-manager        403 403 404 404
		site-investigator   403 403 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	const study = "/orgs/{org}/studies/{study}"
	matrix = append(matrix,
		matrixRow{Route: "POST " + study + "/forms/redcap-dictionary", Grid: designGrid},
		matrixRow{Route: "GET " + study + "/forms/redcap-dictionary", Grid: formReadGrid},
		matrixRow{Route: "POST " + study + "/forms/odm", Grid: designGrid},
		matrixRow{Route: "POST " + study + "/import", Grid: imports},
		matrixRow{Route: "POST " + study + "/forms/{form}/versions/{version}/delete", Grid: designGrid},
		matrixRow{Route: "POST " + study + "/forms/{form}/versions/{version}/restore", Grid: versionRestores},
		matrixRow{Route: "GET /orgs/{org}/security-statement", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		matrixRow{Route: "GET " + study + "/access", Grid: designGrid},
		matrixRow{Route: "POST " + study + "/decrypt-grants", Grid: designGrid},
		matrixRow{Route: "POST " + study + "/decrypt-grants/{grant}/revoke", Grid: designGrid},
		matrixRow{Route: "POST " + study + "/field-visibility", Grid: designGrid},
		matrixRow{Route: "POST " + study + "/care-providers", Grid: designGrid},
		matrixRow{Route: "POST " + study + "/care-providers/remove", Grid: designGrid},
		matrixRow{Route: "POST " + part + "/account/withdraw", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		matrixRow{Route: "POST " + part + "/identity/erase", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   403 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		matrixRow{Route: "POST " + part + "/delete", Grid: deletes},
		matrixRow{Route: "POST " + part + "/restore", Grid: deletes},
		matrixRow{Route: "POST " + entry + "/delete", Grid: entryDeletes},
		matrixRow{Route: "POST " + entry + "/restore", Grid: deletes},
	)
	page := func(tg target, tag string) string {
		return "/orgs/" + tg.org + "/studies/" + tg.study + "/sites/" + tg.site + "/participants/" + adminTargetOf(tag).participant
	}
	studyPage := func(tg target) string { return "/orgs/" + tg.org + "/studies/" + tg.study }
	upload := func(path string, fields map[string]string, file string) probe {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		for k, v := range fields {
			mw.WriteField(k, v)
		}
		w, _ := mw.CreateFormFile("file", "upload")
		w.Write([]byte(file))
		mw.Close()
		return probe{path: path, ctype: mw.FormDataContentType(), body: b.String()}
	}
	targetedProbes["POST "+study+"/forms/redcap-dictionary"] = func(tg target, tag string) probe {
		return upload(studyPage(tg)+"/forms/redcap-dictionary", nil,
			"Variable / Field Name,Form Name,Field Type,Field Label\nrecord_id,rw_"+formTag(tag)+",text,Record ID\nweight,rw_"+formTag(tag)+",text,Weight\n")
	}
	targetedProbes["GET "+study+"/forms/redcap-dictionary"] = func(tg target, _ string) probe {
		return probe{path: studyPage(tg) + "/forms/redcap-dictionary"}
	}
	targetedProbes["POST "+study+"/forms/odm"] = func(tg target, tag string) probe {
		key := "ow_" + formTag(tag)
		return upload(studyPage(tg)+"/forms/odm", nil,
			`<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileType="Snapshot" FileOID="F.1" CreationDateTime="2026-12-06T18:00:00Z"><Study OID="S.1">`+
				`<GlobalVariables><StudyName>M</StudyName><StudyDescription>M</StudyDescription><ProtocolName>M</ProtocolName></GlobalVariables>`+
				`<MetaDataVersion OID="MDV.1" Name="M"><FormDef OID="F.`+key+`" Name="Imported" Repeating="No"><ItemGroupRef ItemGroupOID="IG.`+key+`" Mandatory="Yes"/></FormDef>`+
				`<ItemGroupDef OID="IG.`+key+`" Name="g" Repeating="No"><ItemRef ItemOID="I.`+key+`.w" Mandatory="No"/></ItemGroupDef>`+
				`<ItemDef OID="I.`+key+`.w" Name="w" DataType="float"><Question><TranslatedText>Weight</TranslatedText></Question></ItemDef>`+
				`</MetaDataVersion></Study></ODM>`)
	}
	targetedProbes["POST "+study+"/import"] = func(tg target, tag string) probe {
		return upload(studyPage(tg)+"/import", map[string]string{"format": "csv"},
			"participant,site,visit,repeat,form,form_version,field,row,value\n"+
				adminTargetOf(tag).participant+","+tg.site+",pageimportvisit,1,entryform,1,note,0,imported on the page "+tag+"\n")
	}
	targetedProbes["POST "+study+"/forms/{form}/versions/{version}/delete"] = func(tg target, tag string) probe {
		return formProbe(studyPage(tg)+"/forms/wv_"+formTag(tag)+"/versions/1/delete", url.Values{"reason": {"matrix page " + tag}})
	}
	targetedProbes["POST "+study+"/forms/{form}/versions/{version}/restore"] = func(tg target, tag string) probe {
		return formProbe(studyPage(tg)+"/forms/wv_"+formTag(tag)+"/versions/1/restore", url.Values{})
	}
	targetedProbes["GET /orgs/{org}/security-statement"] = func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/security-statement"}
	}
	targetedProbes["GET "+study+"/access"] = func(tg target, _ string) probe { return probe{path: studyPage(tg) + "/access"} }
	targetedProbes["POST "+study+"/decrypt-grants"] = func(tg target, tag string) probe {
		return formProbe(studyPage(tg)+"/decrypt-grants", url.Values{"account": {matrixGrants["grantee"]}, "fields": {"national_id"}, "reason": {"matrix page " + tag}})
	}
	targetedProbes["POST "+study+"/decrypt-grants/{grant}/revoke"] = func(tg target, tag string) probe {
		g, ok := matrixGrants["page-"+tag]
		if !ok {
			g = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
		}
		return formProbe(studyPage(tg)+"/decrypt-grants/"+g+"/revoke", url.Values{})
	}
	targetedProbes["POST "+study+"/field-visibility"] = func(tg target, _ string) probe {
		return formProbe(studyPage(tg)+"/field-visibility", url.Values{"rules": {"identity.national_id: monitor, care-provider"}})
	}
	targetedProbes["POST "+study+"/care-providers"] = func(tg target, tag string) probe {
		at := adminTargetOf(tag)
		return formProbe(studyPage(tg)+"/care-providers", url.Values{"participant": {at.participant}, "account": {at.carer}})
	}
	targetedProbes["POST "+study+"/care-providers/remove"] = func(tg target, tag string) probe {
		at := adminTargetOf(tag)
		return formProbe(studyPage(tg)+"/care-providers/remove", url.Values{"participant": {at.participant}, "account": {at.carer}})
	}
	targetedProbes["POST "+part+"/account/withdraw"] = func(tg target, tag string) probe {
		return formProbe(page(tg, tag)+"/account/withdraw", url.Values{})
	}
	targetedProbes["POST "+part+"/identity/erase"] = func(tg target, tag string) probe {
		return formProbe(page(tg, tag)+"/identity/erase", url.Values{})
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

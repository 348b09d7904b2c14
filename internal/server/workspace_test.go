package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"

	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/orgs"
)

// webForms holds, per matrix cell, the digests of the drafts the designer
// pages change: one form each for adding a field, taking one away, adding
// a repeating group, saving the whole definition and publishing; filled
// by seedWorkspace.
var webForms = map[string]struct{ add, remove, group, definition, publish string }{}

// The study workspace's pages (the browser's counterparts of the studies,
// participants, forms, schedule and entries routes): the same cells as
// their API routes, a change leading to the page that shows it. Each cell
// works on its own participant (adminTargets) and its own forms
// (webForms); the entry page saves revision 2 of the entry the API's row
// saved as revision 1.
func init() {
	rows := []matrixRow{
		{Route: "GET /orgs/{org}/studies", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         200 200 200 404
		data-manager        200 200 200 404
		site-investigator   200 200 200 404
		monitor             200 200 200 404
		care-provider       200 200 200 404
		participant         200 200 200 404`},
		{Route: "POST /orgs/{org}/studies", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "GET /orgs/{org}/studies/{study}", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       200 200 404 404
		participant         404 404 404 404`},
		{Route: "POST /orgs/{org}/studies/{study}/sites", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "GET /orgs/{org}/studies/{study}/export", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "GET /orgs/{org}/studies/{study}/sites/{site}", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       200 404 404 404
		participant         404 404 404 404`},
		{Route: "POST /orgs/{org}/studies/{study}/sites/{site}/participants", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "GET /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "POST /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/identity", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "POST /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/account", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		// A participant's arm, over the API and on their page: by those
		// who enrol at the participant's site; a monitor, who reads the
		// participant, is told they may not.
		{Route: "PUT /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/arm", Grid: armGrid},
		// A participant's file, downloaded from their entry page: as over
		// the API.
		{Route: "GET /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files/{file}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "POST /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/arm", Grid: armGrid},
		{Route: "GET /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/visits/{visit}/{repeat}/forms/{form}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "POST /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/visits/{visit}/{repeat}/forms/{form}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "GET /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/visits/{visit}/{repeat}/forms/{form}/history", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
		{Route: "POST /orgs/{org}/studies/{study}/forms", Grid: designGrid},
		{Route: "GET /orgs/{org}/studies/{study}/forms/{form}", Grid: formReadGrid},
		{Route: "POST /orgs/{org}/studies/{study}/forms/{form}/fields", Grid: designGrid},
		{Route: "POST /orgs/{org}/studies/{study}/forms/{form}/fields/{field}/remove", Grid: designGrid},
		{Route: "POST /orgs/{org}/studies/{study}/forms/{form}/groups", Grid: designGrid},
		{Route: "POST /orgs/{org}/studies/{study}/forms/{form}/definition", Grid: designGrid},
		{Route: "POST /orgs/{org}/studies/{study}/forms/{form}/publish", Grid: designGrid},
		{Route: "POST /orgs/{org}/studies/{study}/forms/{form}/versions/{version}/retire", Grid: designGrid},
		{Route: "GET /orgs/{org}/studies/{study}/schedule", Grid: formReadGrid},
		{Route: "POST /orgs/{org}/studies/{study}/schedule", Grid: designGrid},
	}
	matrix = append(matrix, rows...)
	// One's own records, tried with the other rows of one's own before
	// those that end the session.
	i := slices.IndexFunc(matrix, func(r matrixRow) bool { return r.Route == "GET /api/v1/me/records" })
	matrix = slices.Insert(matrix, i+1, matrixRow{Route: "GET /me/records", Any: 200},
		// How one is told that something waits (WEB-07): one's own.
		matrixRow{Route: "GET /api/v1/account/notifications", Any: 200},
		matrixRow{Route: "PUT /api/v1/account/notifications", Any: 200},
		matrixRow{Route: "POST /account/notifications", Any: 200})

	study := func(tg target) string { return "/orgs/" + tg.org + "/studies/" + tg.study }
	participant := func(tg target, tag string) string {
		return study(tg) + "/sites/" + tg.site + "/participants/" + adminTargetOf(tag).participant
	}
	entry := func(tg target, tag string) string {
		return participant(tg, tag) + "/visits/entryvisit/1/forms/entryform"
	}
	form := func(tg target, prefix, tag string) string { return study(tg) + "/forms/" + prefix + formTag(tag) }
	for route, mk := range map[string]func(tg target, tag string) probe{
		"GET /orgs/{org}/studies": func(tg target, _ string) probe { return probe{path: "/orgs/" + tg.org + "/studies"} },
		"POST /orgs/{org}/studies": func(tg target, tag string) probe {
			return formProbe("/orgs/"+tg.org+"/studies", url.Values{"kind": {"study"}, "name": {"Web matrix " + tag}})
		},
		"GET /orgs/{org}/studies/{study}": func(tg target, _ string) probe { return probe{path: study(tg)} },
		"POST /orgs/{org}/studies/{study}/sites": func(tg target, tag string) probe {
			return formProbe(study(tg)+"/sites", url.Values{"name": {"Web matrix " + tag}})
		},
		"GET /orgs/{org}/studies/{study}/export": func(tg target, _ string) probe {
			return probe{path: study(tg) + "/export?format=csv"}
		},
		"GET /orgs/{org}/studies/{study}/sites/{site}": func(tg target, _ string) probe {
			return probe{path: study(tg) + "/sites/" + tg.site}
		},
		"POST /orgs/{org}/studies/{study}/sites/{site}/participants": func(tg target, tag string) probe {
			return formProbe(study(tg)+"/sites/"+tg.site+"/participants", url.Values{"name": {"Web matrix " + tag}})
		},
		"GET /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}": func(tg target, tag string) probe {
			return probe{path: participant(tg, tag)}
		},
		"POST /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/identity": func(tg target, tag string) probe {
			return formProbe(participant(tg, tag)+"/identity", url.Values{})
		},
		"POST /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/account": func(tg target, tag string) probe {
			return formProbe(participant(tg, tag)+"/account", url.Values{"email": {"web-" + tag + "@participants.matrix.example"}})
		},
		"PUT /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/arm": func(tg target, tag string) probe {
			return jsonProbe("/api/v1"+participant(tg, tag)+"/arm", map[string]string{"arm": ""})
		},
		"GET /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files/{file}": func(tg target, tag string) probe {
			file := formTargets[tag].file
			if file == "" {
				file = "aaaaaaaaaaaaaaaaaaaaaaaaaa" // a request made outside the grid
			}
			return probe{path: participant(tg, tag) + "/files/" + file}
		},
		"POST /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/arm": func(tg target, tag string) probe {
			return formProbe(participant(tg, tag)+"/arm", url.Values{"arm": {""}})
		},
		"GET /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/visits/{visit}/{repeat}/forms/{form}": func(tg target, tag string) probe {
			return probe{path: entry(tg, tag)}
		},
		"POST /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/visits/{visit}/{repeat}/forms/{form}": func(tg target, tag string) probe {
			return formProbe(entry(tg, tag), url.Values{"revision": {"1"}, "v.note": {"seen on the page " + tag},
				"reason": {"matrix " + tag}, "action": {"save"}})
		},
		"GET /orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/visits/{visit}/{repeat}/forms/{form}/history": func(tg target, tag string) probe {
			return probe{path: entry(tg, tag) + "/history"}
		},
		"POST /orgs/{org}/studies/{study}/forms": func(tg target, tag string) probe {
			return formProbe(study(tg)+"/forms", url.Values{"key": {"wn_" + formTag(tag)}, "title": {"Web " + tag},
				"field": {"weight"}, "label": {"Weight"}, "type": {"decimal"}})
		},
		"GET /orgs/{org}/studies/{study}/forms/{form}": func(tg target, tag string) probe {
			return probe{path: form(tg, "p_", tag)}
		},
		"POST /orgs/{org}/studies/{study}/forms/{form}/fields": func(tg target, tag string) probe {
			return formProbe(form(tg, "wa_", tag)+"/fields", url.Values{"base": {webForms[tag].add},
				"name": {"height"}, "label": {"Height"}, "type": {"integer"}, "min": {"30"}})
		},
		"POST /orgs/{org}/studies/{study}/forms/{form}/fields/{field}/remove": func(tg target, tag string) probe {
			return formProbe(form(tg, "wr_", tag)+"/fields/smoker/remove", url.Values{"base": {webForms[tag].remove}})
		},
		"POST /orgs/{org}/studies/{study}/forms/{form}/groups": func(tg target, tag string) probe {
			return formProbe(form(tg, "wg_", tag)+"/groups", url.Values{"base": {webForms[tag].group},
				"name": {"meds"}, "label": {"Medications"}, "max": {"5"}})
		},
		"POST /orgs/{org}/studies/{study}/forms/{form}/definition": func(tg target, tag string) probe {
			f := matrixForm("wd_" + formTag(tag))
			f.Survey = true
			def, _ := json.Marshal(f)
			return formProbe(form(tg, "wd_", tag)+"/definition", url.Values{"base": {webForms[tag].definition}, "definition": {string(def)}})
		},
		"POST /orgs/{org}/studies/{study}/forms/{form}/publish": func(tg target, tag string) probe {
			return formProbe(form(tg, "wp_", tag)+"/publish", url.Values{"digest": {webForms[tag].publish}})
		},
		"POST /orgs/{org}/studies/{study}/forms/{form}/versions/{version}/retire": func(tg target, tag string) probe {
			return formProbe(form(tg, "wt_", tag)+"/versions/1/retire", url.Values{})
		},
		"GET /orgs/{org}/studies/{study}/schedule": func(tg target, _ string) probe {
			return probe{path: study(tg) + "/schedule"}
		},
		"POST /orgs/{org}/studies/{study}/schedule": func(tg target, tag string) probe {
			day := 0
			v := url.Values{}
			for i, visit := range []forms.Visit{
				{Key: "baseline", Label: "Baseline", Day: &day, Forms: []string{"p_" + formTag(tag)}},
				entryVisit, importVisit, pageImportVisit, deleteVisit, restoreVisit,
			} {
				n := strconv.Itoa(i)
				v.Set("key."+n, visit.Key)
				v.Set("label."+n, visit.Label)
				if visit.Day != nil {
					v.Set("day."+n, strconv.Itoa(*visit.Day))
				}
				v["forms."+n] = visit.Forms
			}
			return formProbe(study(tg)+"/schedule", v)
		},
	} {
		targetedProbes[route] = mk
	}
	// Each a request alone (the element type of accountSteps, req set).
	for route, req := range map[string]func(*accountState) probe{
		"GET /me/records":                   func(*accountState) probe { return probe{path: "/me/records"} },
		"GET /api/v1/account/notifications": func(*accountState) probe { return probe{path: "/api/v1/account/notifications"} },
		"PUT /api/v1/account/notifications": func(*accountState) probe {
			return jsonProbe("/api/v1/account/notifications", map[string]string{"mode": "daily"})
		},
		"POST /account/notifications": func(*accountState) probe {
			return formProbe("/account/notifications", url.Values{"mode": {"immediate"}})
		},
	} {
		step := accountSteps[route]
		step.req = req
		accountSteps[route] = step
	}
}

// The cells of the designer's routes: those of the API's, by whoever
// designs forms, and of reading them.
const (
	designGrid = `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	armGrid = `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	formReadGrid = `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
)

// seedWorkspace gives every cell of the demo organization the forms the
// designer's pages change (webForms): drafts to add a field to, take one
// from, add a group to, replace and publish, and a published version to
// retire.
func seedWorkspace(t *testing.T, ts *testServer, f matrixFixture) {
	t.Helper()
	ctx := context.Background()
	clear(webForms)
	seedCells(t, ts, f, true, func(tx *sql.Tx, tag string, tg target) error {
		o, err := orgs.OrganizationBySlug(ctx, tx, tg.org)
		if err != nil {
			return err
		}
		acc, err := accounts.ByEmail(ctx, tx, ts.logins[authz.OrgAdmin].Email)
		if err != nil {
			return err
		}
		digest := map[string]string{}
		for _, prefix := range []string{"wa_", "wr_", "wg_", "wd_", "wp_", "wt_", "wv_"} {
			v, err := forms.Create(ctx, tx, o.ID, tg.study, acc.ID, matrixForm(prefix+formTag(tag)))
			if err != nil {
				return err
			}
			digest[prefix] = v.Digest
		}
		for _, prefix := range []string{"wt_", "wv_"} {
			if _, err := forms.Publish(ctx, tx, o.ID, tg.study, prefix+formTag(tag), acc.ID, digest[prefix]); err != nil {
				return err
			}
		}
		webForms[tag] = struct{ add, remove, group, definition, publish string }{
			digest["wa_"], digest["wr_"], digest["wg_"], digest["wd_"], digest["wp_"]}
		return nil
	})
}

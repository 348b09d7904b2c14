package server

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/orgs"
)

// demoStudy is the id of the demo organization's study "Demo Study".
func demoStudy(t *testing.T, ts *testServer) string {
	t.Helper()
	ctx := context.Background()
	o, err := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	studies, err := orgs.Studies(ctx, ts.inst.Clinical, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range studies {
		if st.Name == "Demo Study" {
			return st.ID
		}
	}
	t.Fatal("no Demo Study")
	return ""
}

// TestWEB05_FormsOverTheAPI designs a form over HTTP as the study's admin:
// a definition with problems is answered 400 with each problem naming its
// field and nothing stored; a good one is 201; what an investigator reads
// back is the definition as published, with a script payload in a label
// kept as text and sent JSON-escaped, never as markup.
func TestWEB05_FormsOverTheAPI(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	study := demoStudy(t, ts)
	base := "/api/v1/orgs/" + demo.Slug + "/studies/" + study + "/forms"
	designer := signInOwn(t, ts, authz.StudyAdmin)

	payload := `<script>alert(1)</script>'; DROP TABLE forms; --`
	bad := map[string]any{"key": "vitals", "title": "Vitals", "fields": []map[string]any{
		{"name": "pulse", "label": "Pulse", "type": "integer", "min": 200, "max": 20},
		{"name": "Pulse2", "label": "Bad name", "type": "text"},
		{"name": "bp", "label": "BP", "type": "single_choice"},
	}}
	code, body := send(t, designer, ts.URL, "POST", jsonProbe(base, bad))
	if code != http.StatusBadRequest {
		t.Fatalf("a definition with problems: %d %s", code, body)
	}
	var refusal struct {
		Error struct {
			Code   string
			Fields []struct{ Field, Error string }
		}
	}
	if err := json.Unmarshal(body, &refusal); err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, f := range refusal.Error.Fields {
		named[f.Field] = true
	}
	if refusal.Error.Code != "invalid" || !named["pulse"] || !named["Pulse2"] || !named["bp"] {
		t.Errorf("the refusal names %+v, want pulse, Pulse2 and bp", refusal.Error.Fields)
	}
	code, body = send(t, designer, ts.URL, "GET", probe{path: base})
	if code != http.StatusOK || strings.Contains(string(body), "vitals") {
		t.Fatalf("the forms after the refusal: %d %s", code, body)
	}
	// Unknown keys in a definition are refused too.
	code, _ = send(t, designer, ts.URL, "POST", probe{path: base, ctype: "application/json",
		body: `{"key":"vitals","title":"Vitals","fields":[{"name":"a","label":"A","type":"text","colour":"red"}]}`})
	if code != http.StatusBadRequest {
		t.Errorf("a field with an unknown key: %d", code)
	}

	good := map[string]any{"key": "vitals", "title": "Vitals", "fields": []map[string]any{
		{"name": "pulse", "label": payload, "type": "integer", "min": 20, "max": 250, "unit": "bpm"},
	}}
	code, body = send(t, designer, ts.URL, "POST", jsonProbe(base, good))
	if code != http.StatusCreated {
		t.Fatalf("a good definition: %d %s", code, body)
	}
	var created struct {
		Version int
		State   string
		Digest  string
	}
	if err := json.Unmarshal(body, &created); err != nil || created.Version != 1 || created.State != "draft" {
		t.Fatalf("created %s: %v", body, err)
	}
	code, body = send(t, designer, ts.URL, "POST", jsonProbe(base+"/vitals/publish", map[string]string{"digest": created.Digest}))
	if code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	reader := signInOwn(t, ts, authz.SiteInvestigator)
	code, body = send(t, reader, ts.URL, "GET", probe{path: base + "/vitals/versions/1"})
	if code != http.StatusOK {
		t.Fatalf("the investigator reads version 1: %d %s", code, body)
	}
	if strings.Contains(string(body), "<script>") {
		t.Errorf("the definition came back with markup unescaped: %s", body)
	}
	var read struct {
		State      string
		Definition struct {
			Fields []struct{ Label string }
		}
	}
	if err := json.Unmarshal(body, &read); err != nil || read.State != "published" || len(read.Definition.Fields) != 1 ||
		read.Definition.Fields[0].Label != payload {
		t.Fatalf("read back %s: %v", body, err)
	}
	// Publishing again, retiring a draft, and versions that do not exist.
	if code, _ = send(t, designer, ts.URL, "POST", jsonProbe(base+"/vitals/publish", map[string]string{"digest": created.Digest})); code != http.StatusConflict {
		t.Errorf("publishing a published version again: %d", code)
	}
	for _, v := range []string{"0", "-1", "2", "x", "99999999999"} {
		if code, _ = send(t, reader, ts.URL, "GET", probe{path: base + "/vitals/versions/" + v}); code != http.StatusNotFound {
			t.Errorf("version %s: %d, want 404", v, code)
		}
	}
	if code, _ = send(t, reader, ts.URL, "GET", probe{path: base + "/Not-A-Key"}); code != http.StatusNotFound {
		t.Errorf("a malformed form key: %d, want 404", code)
	}
}

// TestWEB05_EntriesOverTheAPI records a form about a participant over
// HTTP: the study admin designs and schedules it, the investigator enrols
// a participant at their site and saves; a save with problems is 400 with
// each problem's field and row and stores nothing; a good one is revision
// 1; a script payload comes back as text, JSON-escaped; a change without
// a reason is 400, a save from an older revision 409.
func TestWEB05_EntriesOverTheAPI(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	ctx := context.Background()
	study := demoStudy(t, ts)
	o, err := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	sites, err := orgs.Sites(ctx, ts.inst.Clinical, o.ID, study)
	if err != nil {
		t.Fatal(err)
	}
	site := ""
	for _, s := range sites {
		if s.Name == "North Clinic" {
			site = s.ID
		}
	}
	base := "/api/v1/orgs/" + demo.Slug + "/studies/" + study
	designer := signInOwn(t, ts, authz.StudyAdmin)
	def := map[string]any{"key": "ae", "title": "Adverse events",
		"groups": []map[string]any{{"name": "events", "label": "Events", "max": 5}},
		"fields": []map[string]any{
			{"name": "any", "label": "Any adverse event?", "type": "yes_no", "required": true},
			{"name": "term", "label": "Term", "type": "text", "group": "events", "required": true},
			{"name": "grade", "label": "Grade", "type": "integer", "group": "events", "min": 1, "max": 5},
		}}
	code, body := send(t, designer, ts.URL, "POST", jsonProbe(base+"/forms", def))
	if code != http.StatusCreated {
		t.Fatalf("create the form: %d %s", code, body)
	}
	var v struct{ Digest string }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if code, body = send(t, designer, ts.URL, "POST", jsonProbe(base+"/forms/ae/publish", map[string]string{"digest": v.Digest})); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	day := 0
	if code, body = send(t, designer, ts.URL, "PUT", jsonProbe(base+"/schedule", map[string]any{"visits": []map[string]any{
		{"key": "baseline", "label": "Baseline", "day": day, "forms": []string{"ae"}}}})); code != http.StatusOK {
		t.Fatalf("schedule: %d %s", code, body)
	}
	inv := signInOwn(t, ts, authz.SiteInvestigator)
	code, body = send(t, inv, ts.URL, "POST", jsonProbe(base+"/sites/"+site+"/participants", map[string]string{}))
	if code != http.StatusCreated {
		t.Fatalf("enrol: %d %s", code, body)
	}
	var p struct{ Pseudonym string }
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	entry := base + "/sites/" + site + "/participants/" + p.Pseudonym + "/entries/baseline/1/ae"
	code, body = send(t, inv, ts.URL, "PUT", jsonProbe(entry, map[string]any{"revision": 0, "complete": true,
		"values": map[string]string{"any": "yes"},
		"rows":   map[string][]map[string]string{"events": {{"term": "rash", "grade": "2"}, {"grade": "9"}}}}))
	if code != http.StatusBadRequest {
		t.Fatalf("a save with problems: %d %s", code, body)
	}
	var refusal struct {
		Error struct {
			Fields []struct {
				Field string
				Row   int
			}
		}
	}
	if err := json.Unmarshal(body, &refusal); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range refusal.Error.Fields {
		got[f.Field+"/"+strconv.Itoa(f.Row)] = true
	}
	if !got["any/0"] || !got["term/2"] || !got["grade/2"] || len(got) != 3 {
		t.Errorf("the refusal names %v, want any, and term and grade of row 2", refusal.Error.Fields)
	}
	payload := `<img src=x onerror=alert(1)>"; DROP TABLE entries; --`
	code, body = send(t, inv, ts.URL, "PUT", jsonProbe(entry, map[string]any{"revision": 0, "complete": true,
		"values": map[string]string{"any": "1"},
		"rows":   map[string][]map[string]string{"events": {{"term": payload, "grade": "2"}}}}))
	if code != http.StatusOK {
		t.Fatalf("a good save: %d %s", code, body)
	}
	if strings.Contains(string(body), "<img") {
		t.Errorf("the answer holds markup unescaped: %s", body)
	}
	var saved struct {
		Revision int
		Rows     map[string][]map[string]string
	}
	if err := json.Unmarshal(body, &saved); err != nil || saved.Revision != 1 || saved.Rows["events"][0]["term"] != payload {
		t.Fatalf("saved %s: %v", body, err)
	}
	change := map[string]any{"revision": 1, "complete": true, "values": map[string]string{"any": "0"}}
	if code, _ = send(t, inv, ts.URL, "PUT", jsonProbe(entry, change)); code != http.StatusBadRequest {
		t.Errorf("a change without a reason: %d", code)
	}
	change["reason"] = "the event was before consent"
	if code, body = send(t, inv, ts.URL, "PUT", jsonProbe(entry, change)); code != http.StatusOK {
		t.Fatalf("a change with a reason: %d %s", code, body)
	}
	if code, _ = send(t, inv, ts.URL, "PUT", jsonProbe(entry, change)); code != http.StatusConflict {
		t.Errorf("a save from revision 1 after revision 2: %d", code)
	}
	code, body = send(t, inv, ts.URL, "GET", probe{path: entry + "/history"})
	if code != http.StatusOK || !strings.Contains(string(body), "the event was before consent") || !strings.Contains(string(body), `"removed":true`) {
		t.Errorf("history: %d %s", code, body)
	}
	code, body = send(t, inv, ts.URL, "GET", probe{path: base + "/sites/" + site + "/participants/" + p.Pseudonym + "/entries"})
	if code != http.StatusOK || !strings.Contains(string(body), `"status":"complete"`) {
		t.Errorf("grid: %d %s", code, body)
	}
	// The export, one value a line; the history keeps the removed row,
	// the export only what the entry holds now.
	code, body = send(t, inv, ts.URL, "GET", probe{path: base + "/export?format=csv"})
	if code != http.StatusOK || !strings.HasPrefix(string(body), "participant,site,visit,repeat,form,form_version,field,row,value\n") ||
		!strings.Contains(string(body), p.Pseudonym+","+site+",baseline,1,ae,1,any,0,0\n") || strings.Contains(string(body), "rash") {
		t.Errorf("export: %d\n%s", code, body)
	}
	for _, q := range []string{"?format=xml", "?format=csv&format=csv", "?limit=5"} {
		if code, _ = send(t, inv, ts.URL, "GET", probe{path: base + "/export" + q}); code != http.StatusBadRequest {
			t.Errorf("export%s: %d, want 400", q, code)
		}
	}
	if code, _ = send(t, signInOwn(t, ts, authz.OrgManager), ts.URL, "GET", probe{path: base + "/export"}); code != http.StatusNotFound {
		t.Errorf("an organization manager's export: %d, want 404", code)
	}
}

// TestWEB05_REDCapDictionaryOverTheAPI imports a REDCap dictionary of
// every field type into a study as drafts, with the report of what did not
// map, exports it back as the same dictionary, refuses a second import
// over the unpublished drafts, and refuses a dictionary with an unknown
// column naming its line, saving nothing.
func TestWEB05_REDCapDictionaryOverTheAPI(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	study := demoStudy(t, ts)
	url := "/api/v1/orgs/" + demo.Slug + "/studies/" + study + "/forms/redcap-dictionary"
	designer := signInOwn(t, ts, authz.StudyAdmin)
	dict, err := os.ReadFile("../forms/testdata/redcap_every_type.csv")
	if err != nil {
		t.Fatal(err)
	}
	bad := "Variable / Field Name,Form Name,Field Type,Field Label,Colour\nrecord_id,f,text,ID,red\n"
	code, body := send(t, designer, ts.URL, "POST", probe{path: url, ctype: "text/csv", body: bad})
	if code != http.StatusBadRequest || !strings.Contains(string(body), `"row":1`) || !strings.Contains(string(body), "Colour") {
		t.Fatalf("a dictionary with an unknown column: %d %s", code, body)
	}
	if code, _ = send(t, designer, ts.URL, "POST", probe{path: url, ctype: "application/json", body: "{}"}); code != http.StatusBadRequest {
		t.Errorf("a dictionary sent as JSON: %d", code)
	}
	code, body = send(t, designer, ts.URL, "POST", probe{path: url, ctype: "text/csv", body: string(dict)})
	if code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	var imported struct {
		Forms []struct {
			Form    string
			Version int
			State   string
		}
		Report []struct {
			Line  int
			Field string
		}
	}
	if err := json.Unmarshal(body, &imported); err != nil {
		t.Fatal(err)
	}
	if len(imported.Forms) != 2 || imported.Forms[0].Form != "demographics" || imported.Forms[0].State != "draft" || len(imported.Report) != 3 {
		t.Fatalf("imported %s", body)
	}
	reader := signInOwn(t, ts, authz.DataManager)
	code, body = send(t, reader, ts.URL, "GET", probe{path: url})
	if code != http.StatusOK || !strings.HasPrefix(string(body), "Variable / Field Name,Form Name,") ||
		!strings.Contains(string(body), "\nmood_b,demographics,,radio,Felt anxious,\"1, Never | 2, Sometimes | 3, Often\",,,,,,,,,,mood,y,\n") ||
		strings.Contains(string(body), "fu_query") {
		t.Fatalf("export: %d\n%s", code, body)
	}
	if code, _ = send(t, designer, ts.URL, "POST", probe{path: url, ctype: "text/csv", body: string(dict)}); code != http.StatusConflict {
		t.Errorf("a second import over unpublished drafts: %d, want 409", code)
	}
}

// TestLIFE04_AStudyMovesOutAndInAsODM exports a study whose forms have a
// repeating group, code lists and a calculation as CDISC ODM, imports the
// file's metadata into a new study, and reads back the same forms and
// schedule there.
func TestLIFE04_AStudyMovesOutAndInAsODM(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	study := demoStudy(t, ts)
	admin := signInOwn(t, ts, authz.OrgAdmin)
	base := "/api/v1/orgs/" + demo.Slug + "/studies/"
	def := map[string]any{"key": "ae", "title": "Adverse events",
		"groups": []map[string]any{{"name": "events", "label": "Events", "max": 5}},
		"fields": []map[string]any{
			{"name": "any", "label": "Any adverse event?", "type": "yes_no", "required": true},
			{"name": "term", "label": "Term", "type": "text", "group": "events", "required": true},
			{"name": "grade", "label": "Grade", "type": "single_choice", "group": "events",
				"choices": []map[string]string{{"code": "1", "label": "Mild"}, {"code": "2", "label": "Moderate"}}},
			{"name": "total", "label": "Total", "type": "calculated", "calc": "[any] * 2"},
		}}
	if code, body := send(t, admin, ts.URL, "POST", jsonProbe(base+study+"/forms", def)); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	day := 0
	if code, body := send(t, admin, ts.URL, "PUT", jsonProbe(base+study+"/schedule", map[string]any{"visits": []map[string]any{
		{"key": "baseline", "label": "Baseline", "day": day, "forms": []string{"ae"}}}})); code != http.StatusOK {
		t.Fatalf("schedule: %d %s", code, body)
	}
	code, file := send(t, admin, ts.URL, "GET", probe{path: base + study + "/export?format=odm"})
	if code != http.StatusOK || !strings.Contains(string(file), `<FormDef OID="F.ae"`) {
		t.Fatalf("export: %d %s", code, file)
	}
	code, body := send(t, admin, ts.URL, "POST", jsonProbe(strings.TrimSuffix(base, "/"), map[string]string{"kind": "study", "name": "Moved in"}))
	if code != http.StatusCreated {
		t.Fatalf("new study: %d %s", code, body)
	}
	var moved struct{ ID string }
	if err := json.Unmarshal(body, &moved); err != nil {
		t.Fatal(err)
	}
	code, body = send(t, admin, ts.URL, "POST", probe{path: base + moved.ID + "/forms/odm", ctype: "application/xml", body: string(file)})
	if code != http.StatusOK || !strings.Contains(string(body), `"schedule_set":true`) {
		t.Fatalf("import: %d %s", code, body)
	}
	read := func(studyID, path string) string {
		t.Helper()
		code, body := send(t, admin, ts.URL, "GET", probe{path: base + studyID + path})
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var v struct {
			Definition json.RawMessage
			Visits     json.RawMessage
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		return string(v.Definition) + string(v.Visits)
	}
	if a, b := read(study, "/forms/ae/versions/1"), read(moved.ID, "/forms/ae/versions/1"); a != b {
		t.Errorf("the form moved in:\n%s\nwant\n%s", b, a)
	}
	if a, b := read(study, "/schedule"), read(moved.ID, "/schedule"); a != b {
		t.Errorf("the schedule moved in:\n%s\nwant\n%s", b, a)
	}
}

// TestWEB05_ABulkImportTakesALargerBody: a bulk import's body may pass the
// 1 MiB every other request keeps to (up to MaxImportBody); a file of 2 MiB
// is read and judged line by line, while the same body to another route is
// refused as too large.
func TestWEB05_ABulkImportTakesALargerBody(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	study := demoStudy(t, ts)
	admin := signInOwn(t, ts, authz.OrgAdmin)
	var b strings.Builder
	b.WriteString("participant,site,visit,repeat,form,form_version,field,row,value\n")
	for b.Len() < 2<<20 {
		b.WriteString("aaaaaaaaaaaaaaaaaaaaaaaaaa,aaaaaaaaaaaaaaaaaaaaaaaaaa,v,1,f,1,x,0,padding padding padding\n")
	}
	code, body := send(t, admin, ts.URL, "POST", probe{path: "/api/v1/orgs/" + demo.Slug + "/studies/" + study + "/import", ctype: "text/csv", body: b.String()})
	if code != http.StatusBadRequest || !strings.Contains(string(body), `"row":2`) {
		t.Fatalf("a 2 MiB import: %d %.300s", code, body)
	}
	code, _ = send(t, admin, ts.URL, "POST", probe{path: "/api/v1/orgs/" + demo.Slug + "/studies/" + study + "/forms/redcap-dictionary", ctype: "text/csv", body: b.String()})
	if code != http.StatusRequestEntityTooLarge && code != http.StatusBadRequest {
		t.Errorf("2 MiB to another route: %d", code)
	}
}

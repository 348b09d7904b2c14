package server

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/orgs"
)

// multipartProbe is a POST of fields and files (name → filename, content)
// as multipart/form-data.
func multipartProbe(t *testing.T, path string, fields map[string]string, files map[string][2]string) probe {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for k, f := range files {
		w, err := mw.CreateFormFile(k, f[0])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f[1]))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return probe{path: path, ctype: mw.FormDataContentType(), body: b.String()}
}

// A file field on the entry page (WEB-05): the file sent with the page is
// judged by its content, sealed and named by the entry; the page then
// offers it for download, byte for byte. A file of a type the field does
// not take, whatever its name says, is refused and the entry stays as it
// was; so is a file for a field that is not a file field.
func TestWEB05_AnEntryPageTakesAFileForAFileField(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	study := demoStudy(t, ts)
	o, err := orgs.OrganizationBySlug(t.Context(), ts.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	sites, err := orgs.Sites(t.Context(), ts.inst.Clinical, o.ID, study)
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
	def := map[string]any{"key": "scan", "title": "Scan",
		"groups": []map[string]any{{"name": "pages", "label": "Pages", "max": 3}},
		"fields": []map[string]any{
			{"name": "report", "label": "Report", "type": "file", "accept": []string{"application/pdf"}},
			{"name": "note", "label": "Note", "type": "text"},
			{"name": "page", "label": "Page", "type": "file", "group": "pages"},
		}}
	code, body := send(t, designer, ts.URL, "POST", jsonProbe(base+"/forms", def))
	if code != http.StatusCreated {
		t.Fatalf("create the form: %d %s", code, body)
	}
	var v struct{ Digest string }
	json.Unmarshal(body, &v)
	if code, body = send(t, designer, ts.URL, "POST", jsonProbe(base+"/forms/scan/publish", map[string]string{"digest": v.Digest})); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	if code, body = send(t, designer, ts.URL, "PUT", jsonProbe(base+"/schedule", map[string]any{"visits": []map[string]any{
		{"key": "baseline", "label": "Baseline", "forms": []string{"scan"}}}})); code != http.StatusOK {
		t.Fatalf("schedule: %d %s", code, body)
	}
	inv := signInOwn(t, ts, authz.SiteInvestigator)
	code, body = send(t, inv, ts.URL, "POST", jsonProbe(base+"/sites/"+site+"/participants", map[string]string{}))
	if code != http.StatusCreated {
		t.Fatalf("enrol: %d %s", code, body)
	}
	var p struct{ Pseudonym string }
	json.Unmarshal(body, &p)
	participant := "/orgs/" + demo.Slug + "/studies/" + study + "/sites/" + site + "/participants/" + p.Pseudonym
	page := participant + "/visits/baseline/1/forms/scan"
	entry := base + "/sites/" + site + "/participants/" + p.Pseudonym + "/entries/baseline/1/scan"
	read := func() (values map[string]string, revision int) {
		t.Helper()
		code, body := send(t, inv, ts.URL, "GET", probe{path: entry})
		var e struct {
			Revision int
			Values   map[string]string
		}
		if err := json.Unmarshal(body, &e); code != http.StatusOK || err != nil {
			t.Fatalf("read the entry: %d %v", code, err)
		}
		return e.Values, e.Revision
	}

	// Refused: a PNG named as a PDF, for a field that takes PDFs only;
	// and a file for the text field.
	png := "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
	for name, files := range map[string]map[string][2]string{
		"a PNG named report.pdf":  {"upload.report": {"report.pdf", png}},
		"a file for a text field": {"upload.note": {"note.pdf", "%PDF-1.4 note"}},
	} {
		code, body = send(t, inv, ts.URL, "POST", multipartProbe(t, page, map[string]string{"revision": "0", "action": "save"}, files))
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400\n%s", name, code, body)
		}
		if _, rev := read(); rev != 0 {
			t.Fatalf("%s was saved (revision %d)", name, rev)
		}
	}

	pdf := "%PDF-1.4\n% a scan of the participant's report\n%%EOF\n"
	code, body = send(t, inv, ts.URL, "POST", multipartProbe(t, page,
		map[string]string{"revision": "0", "v.note": "scanned", "action": "save"},
		map[string][2]string{"upload.report": {"report.pdf", pdf}}))
	if code != http.StatusOK || !strings.Contains(string(body), "The entry is saved") {
		t.Fatalf("save with a PDF: %d %s", code, body)
	}
	values, rev := read()
	if rev != 1 || values["note"] != "scanned" || values["report"] == "" {
		t.Fatalf("saved %v at revision %d", values, rev)
	}
	if !strings.Contains(string(body), "/files/"+values["report"]) {
		t.Error("the entry page does not offer the file saved")
	}
	code, body = send(t, inv, ts.URL, "GET", probe{path: participant + "/files/" + values["report"]})
	if code != http.StatusOK || string(body) != pdf {
		t.Errorf("the file downloaded from the page: %d %q", code, body)
	}
	// Saved again without a new file, the entry keeps the one it has.
	code, _ = send(t, inv, ts.URL, "POST", multipartProbe(t, page,
		map[string]string{"revision": "1", "v.report": values["report"], "v.note": "scanned twice", "reason": "typo", "action": "save"}, nil))
	if again, rev := read(); code != http.StatusOK || rev != 2 || again["report"] != values["report"] {
		t.Errorf("a save without a new file: %d, revision %d, %v", code, rev, again)
	}

	// A file in a row of a repeating group, the row holding nothing else.
	code, body = send(t, inv, ts.URL, "POST", multipartProbe(t, page,
		map[string]string{"revision": "2", "v.report": values["report"], "v.note": "scanned twice", "rows.pages": "1", "reason": "a page", "action": "save"},
		map[string][2]string{"upload.r.pages.1.page": {"page1.pdf", "%PDF-1.4 page one"}}))
	if code != http.StatusOK {
		t.Fatalf("a file in a row: %d %s", code, body)
	}
	code, body = send(t, inv, ts.URL, "GET", probe{path: entry})
	var rows struct {
		Rows map[string][]map[string]string
	}
	if err := json.Unmarshal(body, &rows); code != http.StatusOK || err != nil || len(rows.Rows["pages"]) != 1 || rows.Rows["pages"][0]["page"] == "" {
		t.Fatalf("the row's file: %d %s", code, body)
	}
	code, body = send(t, inv, ts.URL, "GET", probe{path: participant + "/files/" + rows.Rows["pages"][0]["page"]})
	if code != http.StatusOK || string(body) != "%PDF-1.4 page one" {
		t.Errorf("the row's file downloaded: %d %q", code, body)
	}
	if code, body = send(t, inv, ts.URL, "GET", probe{path: page}); !strings.Contains(string(body), `name="upload.r.pages.1.page"`) ||
		!strings.Contains(string(body), "/files/"+rows.Rows["pages"][0]["page"]) {
		t.Errorf("the page does not offer the row's file and a new one: %d", code)
	}
}

package server

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/orgs"
)

// Payloads of SQL injection and of script, typed into every text field of
// a form (a text, a long text and a text of a repeating group), are stored
// as given and come back inert everywhere they are shown or sent (WEB-01,
// WEB-02): the tables they name still stand, the entry and history pages
// hold them escaped, never as markup, the API sends them JSON-escaped, and
// the CSV and ODM exports give them back exactly, as data, in files that
// parse.
func TestWEB02_PayloadsInEveryTextFieldComeBackInert(t *testing.T) {
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
	def := map[string]any{"key": "notes", "title": "Notes",
		"groups": []map[string]any{{"name": "items", "label": "Items", "max": 3}},
		"fields": []map[string]any{
			{"name": "short", "label": "Short", "type": "text"},
			{"name": "long", "label": "Long", "type": "long_text"},
			{"name": "item", "label": "Item", "type": "text", "group": "items"},
		}}
	code, body := send(t, designer, ts.URL, "POST", jsonProbe(base+"/forms", def))
	if code != http.StatusCreated {
		t.Fatalf("create the form: %d %s", code, body)
	}
	var v struct{ Digest string }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if code, body = send(t, designer, ts.URL, "POST", jsonProbe(base+"/forms/notes/publish", map[string]string{"digest": v.Digest})); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	if code, body = send(t, designer, ts.URL, "PUT", jsonProbe(base+"/schedule", map[string]any{"visits": []map[string]any{
		{"key": "baseline", "label": "Baseline", "forms": []string{"notes"}}}})); code != http.StatusOK {
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
	payloads := map[string]string{
		"short": `'; DROP TABLE entries; --`,
		"long":  "<script>alert(document.cookie)</script>\n\" onmouseover=\"alert(1)",
		"item":  `<img src=x onerror=alert(1)>' OR '1'='1`,
	}
	page := "/orgs/" + demo.Slug + "/studies/" + study + "/sites/" + site + "/participants/" + p.Pseudonym + "/visits/baseline/1/forms/notes"
	code, body = send(t, inv, ts.URL, "POST", formProbe(page, url.Values{
		"revision": {"0"}, "v.short": {payloads["short"]}, "v.long": {payloads["long"]},
		"rows.items": {"1"}, "r.items.1.item": {payloads["item"]}, "action": {"save"}}))
	if code != http.StatusOK || !strings.Contains(string(body), "The entry is saved") {
		t.Fatalf("save on the page: %d %s", code, body)
	}

	// Stored as given, and the tables stand.
	entry := base + "/sites/" + site + "/participants/" + p.Pseudonym + "/entries/baseline/1/notes"
	code, body = send(t, inv, ts.URL, "GET", probe{path: entry})
	var got struct {
		Values map[string]string
		Rows   map[string][]map[string]string
	}
	if err := json.Unmarshal(body, &got); code != http.StatusOK || err != nil {
		t.Fatalf("read back: %d %v %s", code, err, body)
	}
	if got.Values["short"] != payloads["short"] || got.Values["long"] != payloads["long"] || len(got.Rows["items"]) != 1 || got.Rows["items"][0]["item"] != payloads["item"] {
		t.Errorf("read back %+v, want the payloads as given", got)
	}
	for _, table := range []string{"entries", "entry_values", "forms"} {
		var n int
		if err := ts.inst.Clinical.QueryRowContext(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil || n == 0 {
			t.Errorf("table %s after the payloads: %d rows, %v", table, n, err)
		}
	}
	if bytes.Contains(body, []byte("<script")) || bytes.Contains(body, []byte("<img")) {
		t.Errorf("the API's answer holds markup unescaped: %s", body)
	}

	// The pages: escaped text, never markup.
	for _, path := range []string{page, page + "/history"} {
		code, body = send(t, inv, ts.URL, "GET", probe{path: path})
		if code != http.StatusOK {
			t.Fatalf("%s: %d", path, code)
		}
		for _, raw := range []string{"<script>alert", "<img src=x", `" onmouseover="alert`} {
			if bytes.Contains(body, []byte(raw)) {
				t.Errorf("%s holds %q unescaped", path, raw)
			}
		}
		if !bytes.Contains(body, []byte("&lt;script&gt;alert(document.cookie)&lt;/script&gt;")) {
			t.Errorf("%s does not show the script as text", path)
		}
	}

	// The CSV export gives the values back exactly, in a file that parses.
	code, body = send(t, inv, ts.URL, "GET", probe{path: base + "/export?format=csv"})
	if code != http.StatusOK {
		t.Fatalf("CSV export: %d %s", code, body)
	}
	records, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("the CSV export does not parse: %v", err)
	}
	exported := map[string]string{}
	for _, r := range records[1:] {
		exported[r[6]] = r[8]
	}
	for field, want := range payloads {
		if exported[field] != want {
			t.Errorf("CSV export of %s: %q, want %q", field, exported[field], want)
		}
	}

	// The ODM export: well-formed XML whose item values are the payloads.
	code, body = send(t, inv, ts.URL, "GET", probe{path: base + "/export?format=odm"})
	if code != http.StatusOK {
		t.Fatalf("ODM export: %d %s", code, body)
	}
	if bytes.Contains(body, []byte("<script")) || bytes.Contains(body, []byte("<img")) {
		t.Error("the ODM export holds a payload as markup")
	}
	values := map[string]bool{}
	dec := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the ODM export does not parse: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "ItemData" {
			for _, a := range se.Attr {
				if a.Name.Local == "Value" {
					values[a.Value] = true
				}
			}
		}
	}
	for field, want := range payloads {
		if !values[want] {
			t.Errorf("the ODM export lacks %s's value as given", field)
		}
	}
}

package server

import (
	"context"
	"encoding/json"
	"net/http"
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

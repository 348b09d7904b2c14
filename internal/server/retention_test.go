package server

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/orgs"
)

// TestLIFE02_PagesListHoldAndExport: on the pages, an organization admin
// finds the participant page's export, which, confirmed by the fresh
// sign-in, downloads the zip of the participant (its digest in the
// answer's header); places a legal hold on the page Inactive data and lifts
// it; a data manager finds neither page, and is told the export is not
// theirs.
func TestLIFE02_PagesListHoldAndExport(t *testing.T) {
	ts := newServerWith(t, nil)
	ctx := context.Background()
	demoOrg, err := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	var study orgs.Study
	studies, err := orgs.Studies(ctx, ts.inst.Clinical, demoOrg.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range studies {
		if st.Name == "Demo Study" {
			study = st
		}
	}
	sites, err := orgs.Sites(ctx, ts.inst.Clinical, demoOrg.ID, study.ID)
	if err != nil || len(sites) == 0 {
		t.Fatalf("sites: %v, %v", sites, err)
	}
	admin := signInOwn(t, ts, authz.OrgAdmin)
	base := "/orgs/" + demo.Slug + "/studies/" + study.ID + "/sites/" + sites[0].ID + "/participants"
	code, body := send(t, admin, ts.URL, "POST", jsonProbe("/api/v1"+base, map[string]string{"name": "Henrietta Pagefield"}))
	if code != http.StatusCreated {
		t.Fatalf("enrol: %d %s", code, body)
	}
	var p struct{ Pseudonym string }
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	page := base + "/" + p.Pseudonym
	code, body = send(t, admin, ts.URL, "GET", probe{path: page})
	link := page + "/subject-export?next=" + url.QueryEscape(page+"/subject-export")
	if code != http.StatusOK || !bytes.Contains(body, []byte(`id="subject-export-link"`)) {
		t.Fatalf("the participant page: %d, export link present %v", code, bytes.Contains(body, []byte("subject-export-link")))
	}
	req, _ := http.NewRequest("GET", ts.URL+link, nil)
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	zipped, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(zipped)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zip" ||
		resp.Header.Get("X-Content-SHA256") != hex.EncodeToString(sum[:]) {
		t.Fatalf("the export: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-SHA256"))
	}
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range zr.File {
		if f.Name != "subject.json" {
			continue
		}
		rc, _ := f.Open()
		doc, _ := io.ReadAll(rc)
		rc.Close()
		found = bytes.Contains(doc, []byte("Henrietta Pagefield")) && bytes.Contains(doc, []byte(p.Pseudonym))
	}
	if !found {
		t.Errorf("the bundle's subject.json does not hold the participant")
	}

	retention := "/orgs/" + demo.Slug + "/retention"
	if code, body := send(t, admin, ts.URL, "GET", probe{path: retention}); code != http.StatusOK || !bytes.Contains(body, []byte(`id="no-holds"`)) {
		t.Fatalf("the page Inactive data: %d", code)
	}
	code, body = send(t, admin, ts.URL, "POST", formProbe(retention+"/holds", url.Values{"kind": {"participant"}, "subject": {p.Pseudonym},
		"reason": {"a complaint under review"}, "next": {retention}}))
	if code != http.StatusOK || !bytes.Contains(body, []byte("a complaint under review")) || !bytes.Contains(body, []byte(p.Pseudonym)) {
		t.Fatalf("placing a hold: %d %s", code, body)
	}
	code, body = send(t, admin, ts.URL, "POST", formProbe(retention+"/holds", url.Values{"kind": {"participant"}, "subject": {"aaaaaaaaaaaaaaaaaaaaaaaaaa"},
		"reason": {"nobody"}}))
	if code != http.StatusBadRequest || bytes.Contains(body, []byte("aaaaaaaaaaaaaaaaaaaaaaaaaa</td>")) {
		t.Errorf("a hold on nobody: %d", code)
	}
	code, body = send(t, admin, ts.URL, "POST", formProbe(retention+"/holds/participant/"+p.Pseudonym+"/lift", url.Values{"next": {retention}}))
	if code != http.StatusOK || !bytes.Contains(body, []byte(`id="no-holds"`)) {
		t.Errorf("lifting the hold: %d", code)
	}

	manager := signInOwn(t, ts, authz.DataManager)
	if code, _ := send(t, manager, ts.URL, "GET", probe{path: retention}); code != http.StatusNotFound {
		t.Errorf("a data manager's page Inactive data: %d", code)
	}
	if code, body := send(t, manager, ts.URL, "GET", probe{path: page + "/subject-export"}); code != http.StatusForbidden ||
		!strings.Contains(string(body), "not among your permissions") {
		t.Errorf("a data manager's export: %d", code)
	}
}

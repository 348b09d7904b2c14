package forms_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
)

// odmStudy is a form set with every field type and attribute.
func odmStudy(t *testing.T) forms.ODMStudy {
	t.Helper()
	in, err := os.ReadFile("testdata/redcap_every_type.csv")
	if err != nil {
		t.Fatal(err)
	}
	d, err := forms.ReadREDCap(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := 1.0, 5.0
	ae := &forms.Form{Key: "ae", Title: "Adverse events", Groups: []forms.Group{{Name: "events", Label: "Events", Max: 12}},
		Fields: []forms.Field{
			{Name: "any", Label: "Any?", Type: forms.YesNo, Required: true},
			{Name: "term", Label: "Term", Type: forms.Text, Group: "events", Required: true, MaxLength: 200, MinLength: 2, Sensitive: true},
			{Name: "grade", Label: "Grade", Type: forms.Integer, Group: "events", Min: &lo, Max: &hi},
			{Name: "outcome", Label: "Outcome", Type: forms.Multiple, Group: "events", Choices: []forms.Choice{{Code: "r", Label: "Recovered"}, {Code: "s", Label: "Sequelae"}}},
			{Name: "count", Label: "Events", Type: forms.Calculated, Calc: "[any] * 1", Decimals: 2},
		}}
	day0, day28 := 0, 28
	return forms.ODMStudy{OID: "S.x", Name: "Trial & <co>", Forms: append(d.Forms, ae), Visits: []forms.Visit{
		{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"demographics", "ae"}},
		{Key: "week4", Label: "Week 4", Day: &day28, WindowBefore: 3, WindowAfter: 2, Forms: []string{"followup"}},
		{Key: "unscheduled", Label: "Unscheduled", Repeating: true, Forms: []string{"ae"}},
	}}
}

func odmFileOf(t *testing.T, s forms.ODMStudy) []byte {
	t.Helper()
	var b bytes.Buffer
	x := &forms.XMLWriter{W: &b}
	x.Raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.Open("ODM", false, "xmlns", forms.ODMNamespace, "FileType", "Snapshot", "FileOID", "F.1", "CreationDateTime", "2026-12-06T18:00:00Z", "ODMVersion", "1.3.2")
	forms.WriteODMStudy(x, s)
	x.Close("ODM")
	if x.Err != nil {
		t.Fatal(x.Err)
	}
	return b.Bytes()
}

// TestLIFE04_ODMMetadataReadsBackIntoAnEqualFormSet writes a form set with
// every field type and attribute, repeating groups, code lists, units,
// ranges and calculations, and a schedule, as ODM 1.3.2 metadata; the file
// validates against the schema (where xmllint is installed) and reads back
// into equal forms and visits.
func TestLIFE04_ODMMetadataReadsBackIntoAnEqualFormSet(t *testing.T) {
	s := odmStudy(t)
	file := odmFileOf(t, s)
	if lint, err := exec.LookPath("xmllint"); err == nil {
		path := filepath.Join(t.TempDir(), "study.xml")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(lint, "--noout", "--nonet", "--schema", "../entries/testdata/odm-1.3.2/ODM1-3-2.xsd", path).CombinedOutput(); err != nil {
			t.Fatalf("xmllint: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("xmllint is not installed (Debian: libxml2-utils)")
	}
	got, err := forms.ReadODM(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Report) != 0 {
		t.Errorf("report: %+v", got.Report)
	}
	if got.Name != s.Name {
		t.Errorf("name %q", got.Name)
	}
	for i, f := range s.Forms {
		if i >= len(got.Forms) {
			t.Fatalf("%d forms read, want %d", len(got.Forms), len(s.Forms))
		}
		w, _ := json.Marshal(f)
		g, _ := json.Marshal(got.Forms[i])
		if string(w) != string(g) {
			t.Errorf("form %s read back as\n%s\nwant\n%s", f.Key, g, w)
		}
	}
	w, _ := json.Marshal(s.Visits)
	g, _ := json.Marshal(got.Visits)
	if string(w) != string(g) {
		t.Errorf("visits read back as\n%s\nwant\n%s", g, w)
	}
}

// TestLIFE04_AnODMFileThatIsNotOneIsRefused: not XML, XML of another
// namespace, no metadata, an item group or code list not defined, and a
// document type with an entity (never expanded) are refused.
func TestLIFE04_AnODMFileThatIsNotOneIsRefused(t *testing.T) {
	good := string(odmFileOf(t, odmStudy(t)))
	for name, c := range map[string]string{
		"not XML":            "ODM,Study\n1,2\n",
		"another namespace":  `<ODM xmlns="urn:other"><Study OID="S"/></ODM>`,
		"no metadata":        `<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileType="Snapshot"><Study OID="S"/></ODM>`,
		"an undefined group": strings.Replace(good, `<ItemGroupDef OID="IG.ae.events"`, `<ItemGroupDef OID="IG.ae.gone"`, 1),
		"an undefined list":  strings.Replace(good, `<CodeList OID="CL.ae.outcome"`, `<CodeList OID="CL.ae.gone"`, 1),
		"an external entity": `<?xml version="1.0"?><!DOCTYPE ODM [<!ENTITY x SYSTEM "file:///etc/passwd">]><ODM xmlns="http://www.cdisc.org/ns/odm/v1.3">&x;</ODM>`,
		"truncated":          good[:len(good)/2],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := forms.ReadODM(strings.NewReader(c))
			if errs.KindOf(err) != errs.Invalid {
				t.Fatalf("got %v", err)
			}
			if strings.Contains(err.Error(), "root:") {
				t.Errorf("the refusal shows a file's content: %v", err)
			}
			var p *forms.Problems
			_ = errors.As(err, &p)
		})
	}
}

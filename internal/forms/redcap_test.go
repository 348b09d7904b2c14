package forms_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
)

func records(t *testing.T, b []byte) [][]string {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	out, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWEB05_REDCapDictionaryRoundTrips reads a REDCap data dictionary with
// every REDCap field type and writes it back: every row that maps comes
// back as it was, every attribute intact, branching on another form's
// field included; the report names what did not map (the record
// identifier, a sql field, a validation without equivalent) and those rows
// come back without it.
func TestWEB05_REDCapDictionaryRoundTrips(t *testing.T) {
	in, err := os.ReadFile("testdata/redcap_every_type.csv")
	if err != nil {
		t.Fatal(err)
	}
	d, err := forms.ReadREDCap(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if d.RecordID != "record_id" || len(d.Forms) != 2 || d.Forms[0].Key != "demographics" || d.Forms[1].Key != "followup" {
		t.Fatalf("read %q and forms %v", d.RecordID, d.Forms)
	}
	reported := map[string]string{}
	for _, n := range d.Report {
		reported[n.Field] += n.Note
	}
	for _, f := range []string{"record_id", "fu_query", "fu_ssn"} {
		if reported[f] == "" {
			t.Errorf("the report does not name %s: %+v", f, d.Report)
		}
	}
	if len(reported) != 3 {
		t.Errorf("the report names %d fields, want 3: %+v", len(reported), d.Report)
	}
	// Branching on another form's field reads it there.
	if got := d.Forms[1].Fields[1].ShowIf; got != "[demographics.smoker] = '1'" {
		t.Errorf("fu_note shows if %q", got)
	}
	var out bytes.Buffer
	if err := forms.WriteREDCap(&out, d.RecordID, d.Forms); err != nil {
		t.Fatal(err)
	}
	want := records(t, in)
	// What the report names comes back without it.
	want = slices.DeleteFunc(want, func(r []string) bool { return r[0] == "fu_query" })
	for _, r := range want {
		if r[0] == "fu_ssn" {
			r[7] = ""
		}
	}
	got := records(t, out.Bytes())
	if len(got) != len(want) {
		t.Fatalf("%d rows written, want %d:\n%s", len(got), len(want), out.String())
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("row %d:\n got %q\nwant %q", i+1, got[i], want[i])
		}
	}
	// And what was written reads back to the same forms.
	again, err := forms.ReadREDCap(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var twice bytes.Buffer
	if err := forms.WriteREDCap(&twice, again.RecordID, again.Forms); err != nil {
		t.Fatal(err)
	}
	if twice.String() != out.String() {
		t.Errorf("a second round trip differs:\n%s\nwant\n%s", twice.String(), out.String())
	}
}

// TestWEB05_AREDCapDictionaryThatIsNotOneIsRefusedWhole: unknown and
// missing columns, unknown field types, bad names, choices and branching
// that do not parse, a variable twice and text that is not CSV are each
// refused naming the line (and the field), with nothing read.
func TestWEB05_AREDCapDictionaryThatIsNotOneIsRefusedWhole(t *testing.T) {
	head := "Variable / Field Name,Form Name,Field Type,Field Label,\"Choices, Calculations, OR Slider Labels\",Branching Logic (Show field only if...)\n"
	first := "record_id,f,text,ID,,\n"
	for name, c := range map[string]struct {
		csv  string
		line int
		want string
	}{
		"an unknown column":    {"Variable / Field Name,Form Name,Field Type,Field Label,Colour\n", 1, "unknown column"},
		"a missing column":     {"Variable / Field Name,Form Name,Field Label\n", 1, "Field Type"},
		"an unknown type":      {head + first + "a,f,hologram,A,,\n", 3, "unknown field type"},
		"a bad variable":       {head + first + "Bad-Name,f,text,A,,\n", 3, "variable name"},
		"a bad form name":      {head + first + "a,Form 1,text,A,,\n", 3, "form name"},
		"choices without code": {head + first + "a,f,radio,A,Yes | No,\n", 3, "code, label"},
		"malformed branching":  {head + first + "a,f,text,A,,\"[b] = '1\"\n", 3, "branching logic"},
		"a variable twice":     {head + first + "a,f,text,A,,\na,f,text,B,,\n", 4, "line 3"},
		"not CSV":              {head + first + "a,f,text,\"A,,\n", 3, "not CSV"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := forms.ReadREDCap(strings.NewReader(c.csv))
			var p *forms.Problems
			if errs.KindOf(err) != errs.Invalid || !errors.As(err, &p) {
				t.Fatalf("got %v", err)
			}
			found := false
			for _, fe := range p.Fields {
				found = found || fe.Row == c.line && strings.Contains(fe.Error, c.want)
			}
			if !found {
				t.Errorf("no problem at line %d saying %q: %+v", c.line, c.want, p.Fields)
			}
		})
	}
}

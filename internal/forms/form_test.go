package forms

import (
	"encoding/json"
	"strings"
	"testing"
)

func ptr(f float64) *float64 { return &f }

// vitals is a form with a field of every kind that takes a typed value,
// a branch, a calculation and a repeating group.
func vitals(t *testing.T) *Form {
	t.Helper()
	f := &Form{Key: "vitals", Title: "Vital signs", Groups: []Group{{Name: "meds", Label: "Medications", Max: 10}}, Fields: []Field{
		{Name: "visit_date", Label: "Date of visit", Type: Date, Required: true, MinDate: "2020-01-01"},
		{Name: "weight", Label: "Weight", Type: Decimal, Unit: "kg", Decimals: 1, Min: ptr(1), Max: ptr(500), Required: true},
		{Name: "height", Label: "Height", Type: Integer, Unit: "cm", Min: ptr(30), Max: ptr(250)},
		{Name: "bmi", Label: "BMI", Type: Calculated, Decimals: 1, Calc: "[weight] / ([height] / 100) ^ 2"},
		{Name: "smoker", Label: "Smokes", Type: YesNo},
		{Name: "packs", Label: "Packs a day", Type: Decimal, Decimals: 1, ShowIf: "[smoker] = '1'", Required: true},
		{Name: "sex", Label: "Sex", Type: Single, Choices: []Choice{{"1", "Female"}, {"2", "Male"}, {"9", "Unknown"}}},
		{Name: "symptoms", Label: "Symptoms", Type: Multiple, Choices: []Choice{{"a", "Cough"}, {"b", "Fever"}, {"c", "Fatigue"}}},
		{Name: "pain", Label: "Pain", Type: Slider, Min: ptr(0), Max: ptr(10)},
		{Name: "initials", Label: "Initials", Type: Text, Pattern: "[A-Z]{2,3}", MaxLength: 3},
		{Name: "notes", Label: "Notes", Type: LongText, MaxLength: 2000},
		{Name: "seen_at", Label: "Seen at", Type: Time},
		{Name: "intro", Label: "Please weigh the participant without shoes.", Type: Descriptive},
		{Name: "drug", Label: "Drug", Type: Text, Group: "meds", Required: true},
		{Name: "dose", Label: "Dose", Type: Decimal, Group: "meds", Min: ptr(0)},
	}}
	if problems := f.Check(); len(problems) > 0 {
		t.Fatalf("Check: %v", problems)
	}
	return f
}

// A whole entry is validated at once: stored forms of every kind,
// calculations computed, a hidden field dropped; any problem refuses the
// whole entry, naming every field that has one (WEB-05).
func TestWEB05_FormEntryIsValidatedWhole(t *testing.T) {
	f := vitals(t)
	out, problems := f.Validate(map[string]string{
		"visit_date": "2026-03-14", "weight": "81.5", "height": "180", "smoker": "0",
		"sex": "2", "symptoms": "c, a", "pain": "3", "initials": "AB", "notes": "first line\nsecond line", "seen_at": "09:30",
	})
	if len(problems) > 0 {
		t.Fatalf("a good entry: %v", problems)
	}
	want := map[string]string{"visit_date": "2026-03-14", "weight": "81.5", "height": "180", "bmi": "25.2", "smoker": "0",
		"sex": "2", "symptoms": "a,c", "pain": "3", "initials": "AB", "notes": "first line\nsecond line", "seen_at": "09:30"}
	if a, b := mustJSON(out), mustJSON(want); a != b {
		t.Fatalf("stored %s\nwant   %s", a, b)
	}

	_, problems = f.Validate(map[string]string{
		"weight": "abc", "height": "12.5", "smoker": "1", "sex": "3", "symptoms": "a,z", "pain": "11",
		"initials": "abc", "seen_at": "25:00", "bmi": "20", "drug": "x", "nope": "1",
	})
	got := map[string]bool{}
	for _, p := range problems {
		got[p.Field] = true
	}
	// Unknown and computed fields are refused first, on their own.
	if !got["bmi"] || !got["drug"] || !got["nope"] || len(problems) != 3 {
		t.Fatalf("fields that take no value: %v", problems)
	}
	_, problems = f.Validate(map[string]string{
		"weight": "abc", "height": "12.5", "smoker": "1", "sex": "3", "symptoms": "a,z", "pain": "11",
		"initials": "abc", "seen_at": "25:00", "visit_date": "2019-12-31",
	})
	got = map[string]bool{}
	for _, p := range problems {
		got[p.Field] = true
		if strings.Contains(p.Error, "abc") || strings.Contains(p.Error, "12.5") {
			t.Errorf("a problem echoes the value: %+v", p)
		}
	}
	for _, field := range []string{"visit_date", "weight", "height", "packs", "sex", "symptoms", "pain", "initials", "seen_at"} {
		if !got[field] {
			t.Errorf("no problem named %s: %v", field, problems)
		}
	}
	if _, problems := f.Validate(map[string]string{"visit_date": "2026-03-14", "weight": "80", "smoker": "0", "packs": "2"}); len(problems) != 1 || problems[0].Field != "packs" {
		t.Errorf("a value for a field that is not asked: %v", problems)
	}
	if _, problems := f.Validate(map[string]string{"visit_date": "2026-03-14", "weight": "80.25"}); len(problems) != 1 || problems[0].Field != "weight" {
		t.Errorf("too many decimals: %v", problems)
	}
	if _, problems := f.Validate(map[string]string{"visit_date": "2026-03-14", "weight": "80", "initials": "A\nB"}); len(problems) != 1 {
		t.Errorf("a line break in a one-line text: %v", problems)
	}
	// A row of the repeating group.
	if row, problems := f.ValidateRow("meds", map[string]string{"drug": "Aspirin", "dose": "0.5"}); len(problems) > 0 || row["drug"] != "Aspirin" {
		t.Errorf("a row: %v %v", row, problems)
	}
	if _, problems := f.ValidateRow("meds", map[string]string{"dose": "-1", "weight": "80"}); len(problems) != 1 {
		t.Errorf("a row with a field of the form: %v", problems)
	}
	if _, problems := f.ValidateRow("meds", map[string]string{"dose": "-1"}); len(problems) != 2 {
		t.Errorf("a row without its required drug and a negative dose: %v", problems)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A definition that cannot be kept is refused, every problem naming its
// field: unknown types, duplicate names, bad bounds, choices, patterns and
// expressions, a calculation that depends on itself.
func TestWEB05_FormDefinitionIsChecked(t *testing.T) {
	f := &Form{Key: "Bad Key", Title: "", Groups: []Group{{Name: "g", Max: 0}}, Fields: []Field{
		{Name: "a", Label: "A", Type: "blob"},
		{Name: "b", Label: "B", Type: Text},
		{Name: "b", Label: "B again", Type: Text},
		{Name: "c", Label: "C", Type: Integer, Min: ptr(5), Max: ptr(1)},
		{Name: "d", Label: "D", Type: Single},
		{Name: "e", Label: "E", Type: Single, Choices: []Choice{{"1", "x"}, {"1", "y"}}},
		{Name: "f", Label: "F", Type: Text, Pattern: "("},
		{Name: "g1", Label: "G", Type: Calculated, Calc: "[g2] + 1"},
		{Name: "g2", Label: "G", Type: Calculated, Calc: "[g1] + 1"},
		{Name: "h", Label: "H", Type: Text, ShowIf: "[nowhere] = 1"},
		{Name: "i", Label: "I", Type: Text, ShowIf: "rm -rf"},
		{Name: "j", Label: "J", Type: Slider},
		{Name: "k", Label: "K", Type: Descriptive, Required: true},
		{Name: "l", Label: "L", Type: Text, Group: "nogroup"},
		{Name: "m", Label: "M", Type: Integer, Pattern: "x"},
		{Name: "Not-a-name", Label: "N", Type: Text},
		{Name: "o", Label: "", Type: Text},
	}}
	problems := f.Check()
	got := map[string]bool{}
	for _, p := range problems {
		got[p.Field] = true
	}
	for _, field := range []string{"", "g", "a", "b", "c", "d", "e", "f", "g1", "h", "i", "j", "k", "l", "m", "Not-a-name", "o"} {
		if !got[field] {
			t.Errorf("no problem named %q", field)
		}
	}
	if good := vitals(t); len(good.Check()) != 0 {
		t.Error("a good form is refused")
	}
}

// TestWEB05_AConditionMayReadAnotherFormOfTheVisit: a show-if may name a
// field of another form of the same visit as [form.field]; validation asks
// for its value, and a calculation may not reach outside its form.
func TestWEB05_AConditionMayReadAnotherFormOfTheVisit(t *testing.T) {
	f := &Form{Key: "followup", Title: "Follow-up", Fields: []Field{
		{Name: "packs", Label: "Packs a day", Type: Integer, Required: true, ShowIf: "[baseline.smoker] = '1'"},
		{Name: "own", Label: "Own", Type: Integer, ShowIf: "[followup.packs] > 1"},
	}}
	if p := f.Check(); len(p) != 0 {
		t.Fatalf("check: %v", p)
	}
	if got := f.Outside(); len(got) != 1 || got[0] != "baseline.smoker" {
		t.Errorf("Outside = %v", got)
	}
	smoker := "1"
	outside := func(ref string) string {
		if ref == "baseline.smoker" {
			return smoker
		}
		return ""
	}
	if _, p := f.ValidateWith("", map[string]string{}, true, outside); len(p) != 1 || p[0].Field != "packs" {
		t.Errorf("a smoker without packs: %v", p)
	}
	smoker = "0"
	if _, p := f.ValidateWith("", map[string]string{"packs": "2"}, true, outside); len(p) != 1 || p[0].Field != "packs" {
		t.Errorf("a non-smoker with packs: %v", p)
	}
	if _, p := f.ValidateWith("", map[string]string{}, true, outside); len(p) != 0 {
		t.Errorf("a non-smoker without packs: %v", p)
	}
	bad := &Form{Key: "x", Title: "X", Fields: []Field{{Name: "c", Label: "C", Type: Calculated, Calc: "[other.n] * 2"}}}
	if p := bad.Check(); len(p) != 1 {
		t.Errorf("a calculation reading another form: %v", p)
	}
}

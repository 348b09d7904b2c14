package forms

import "testing"

// A page previews what is typed as a save would take it: a branch opens
// when its condition holds and closes when it does not, a calculation
// follows its inputs, a field not asked reads as blank to what follows,
// and invalid values are previewed, not refused (WEB-05 checks on save).
func TestWEB05_APagePreviewsBranchesAndCalculations(t *testing.T) {
	f := vitals(t)
	p := f.Preview("", map[string]string{"weight": "81.5", "height": "180", "smoker": "1"}, nil)
	if !p.Asked["packs"] || !p.Asked["weight"] || p.Calc["bmi"] != "25.2" {
		t.Fatalf("smoker, 81.5 kg at 180 cm: %+v", p)
	}
	if _, ok := p.Asked["drug"]; ok {
		t.Errorf("a field of a repeating group is previewed with the form's: %+v", p)
	}
	p = f.Preview("", map[string]string{"weight": "abc", "smoker": "0", "packs": "2"}, nil)
	if p.Asked["packs"] || p.Calc["bmi"] != "" {
		t.Fatalf("not a smoker, weight not a number: %+v", p)
	}

	chain := &Form{Key: "chain", Title: "Chain", Fields: []Field{
		{Name: "a", Label: "A", Type: YesNo},
		{Name: "b", Label: "B", Type: Text, ShowIf: "[a] = '1'"},
		{Name: "c", Label: "C", Type: Text, ShowIf: "[b] = 'x'"},
		{Name: "d", Label: "D", Type: Text, ShowIf: "[other.q] = '2'"},
	}}
	if problems := chain.Check(); len(problems) > 0 {
		t.Fatal(problems)
	}
	// b holds "x" but is not asked, so c, which reads b, is not asked.
	if p := chain.Preview("", map[string]string{"a": "0", "b": "x"}, nil); p.Asked["b"] || p.Asked["c"] {
		t.Errorf("a closed branch still opens the next: %+v", p)
	}
	if p := chain.Preview("", map[string]string{"a": "1", "b": "x"}, nil); !p.Asked["b"] || !p.Asked["c"] || p.Asked["d"] {
		t.Errorf("an open branch: %+v", p)
	}
	outside := func(ref string) string {
		if ref == "other.q" {
			return "2"
		}
		return ""
	}
	if p := chain.Preview("", nil, outside); !p.Asked["d"] {
		t.Errorf("a condition on another form of the visit: %+v", p)
	}
	if p := f.Preview("meds", map[string]string{"drug": "Aspirin"}, nil); !p.Asked["drug"] || !p.Asked["dose"] || len(p.Asked) != 2 {
		t.Errorf("a row of the repeating group: %+v", p)
	}
}

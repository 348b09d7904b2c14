package forms

import (
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
)

func values(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// The language computes and compares as REDCap's branching logic and
// calculations do, over text values, with blanks that stay blank.
func TestFormExpressionsEvaluate(t *testing.T) {
	v := values(map[string]string{
		"age": "42", "sex": "1", "weight": "80", "height": "180", "smoker": "1", "packs": "1.5", "years": "20",
		"visit": "2026-03-14", "birth": "1984-03-14", "name": "O'Hara", "zero": "0",
	})
	for src, want := range map[string]string{
		"[age] + 1": "43",
		"round([weight] / ([height] / 100) ^ 2, 1)":                "24.7",
		"if([smoker] = '1', [packs] * [years], 0)":                 "30",
		"if([smoker] = 1, 'yes', 'no')":                            "yes",
		"[age] >= 18 and [sex] = '1'":                              "1",
		"not ([age] < 18)":                                         "1",
		"[missing] + 1":                                            "",
		"[missing] = ''":                                           "1",
		"[missing] <> ''":                                          "0",
		"[missing] > 3":                                            "0",
		"isblank([missing])":                                       "1",
		"[age] / [zero]":                                           "",
		"datediff([visit], [birth], 'd')":                          "15340",
		"round(datediff([visit], [birth], 'y'))":                   "42",
		"min(3, [age], 7) + max(1, 2) + sum(1, 2, 3) + mean(2, 4)": "14",
		"abs(-4) + sqrt(9)":                                        "7",
		"sqrt(-1)":                                                 "",
		"-[age]":                                                   "-42",
		"2 * 3 + 4":                                                "10",
		"2 * (3 + 4)":                                              "14",
		"[name] = \"O'Hara\"":                                      "1",
		"[age] != 42":                                              "0",
		"TRUE or false":                                            "1",
	} {
		e, err := Parse(src)
		if err != nil {
			t.Errorf("Parse(%s): %v", src, err)
			continue
		}
		if got := e.Eval(v); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
	e, _ := Parse("if([a] > [b], [c], [a] + [b])")
	if got := strings.Join(e.Refs(), ","); got != "a,b,c" {
		t.Errorf("Refs = %s", got)
	}
}

// Anything outside the grammar is refused with where it goes wrong: no
// name is looked up anywhere, nothing runs (WEB-05).
func TestFormExpressionsRefuseWhatIsNotTheLanguage(t *testing.T) {
	for src, want := range map[string]string{
		"":                   "ends too soon",
		"[age] +":            "ends too soon",
		"(1 + 2":             "not closed",
		"'open":              "not closed",
		"[Age] > 1":          "a field is written [name]",
		"[age":               "a field is written [name]",
		"os.exit(1)":         "not a number",
		"system('rm -rf /')": "not a function",
		"age > 1":            "not a function",
		"round()":            "1 to 2 arguments",
		"if(1, 2)":           "3 arguments",
		"1 2":                "unexpected",
		"1.2.3":              "not a number",
		"[a] ; drop":         "not part of the language",
		"é":                  "not part of the language",
		strings.Repeat("(", 40) + "1" + strings.Repeat(")", 40): "nested more than",
		strings.Repeat("-", 40) + "1":                           "nested more than",
		strings.Repeat("not ", 40) + "1":                        "nested more than",
		strings.Repeat("1+", 600) + "1":                         "at most 1000 characters",
	} {
		_, err := Parse(src)
		if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%.30q) = %v, want an error saying %q", src, err, want)
		}
	}
}

// No input makes the parser or an evaluation panic or run long.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"[a] + 1", "if([a] = '1', round([b] / 3, 2), 'x')", "not not [a] or [b] >= -2.5", "datediff([d], '2020-01-01', 'M')", "((", "'", "[a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			if !errs.Is(err, errs.Invalid) {
				t.Fatalf("Parse(%q): %v, want Invalid", src, err)
			}
			return
		}
		e.Eval(values(map[string]string{"a": "1", "b": "x", "d": "2021-05-01"}))
		e.True(values(nil))
	})
}

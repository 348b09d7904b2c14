package forms

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
)

// REDCap data dictionaries: the CSV in which REDCap keeps a project's
// instruments, one row a field. ReadREDCap maps one into forms, with a
// report of what could not be mapped and why; WriteREDCap writes forms as
// one. What maps (field types, validations, choices, branching logic,
// calculations, identifier and required flags, and every display
// attribute) comes back unchanged.

// The columns of a dictionary, as REDCap names them; a short name of each
// is read as well.
var redcapColumns = []struct{ name, short string }{
	{"Variable / Field Name", "Variable"},
	{"Form Name", ""},
	{"Section Header", ""},
	{"Field Type", ""},
	{"Field Label", ""},
	{"Choices, Calculations, OR Slider Labels", "Choices/Calculations"},
	{"Field Note", ""},
	{"Text Validation Type OR Show Slider Number", "Text Validation Type"},
	{"Text Validation Min", "Min"},
	{"Text Validation Max", "Max"},
	{"Identifier?", ""},
	{"Branching Logic (Show field only if...)", "Branching Logic"},
	{"Required Field?", ""},
	{"Custom Alignment", ""},
	{"Question Number (surveys only)", "Question Number"},
	{"Matrix Group Name", ""},
	{"Matrix Ranking?", "Matrix Ranking"},
	{"Field Annotation", ""},
}

const (
	colVariable = iota
	colForm
	colSection
	colType
	colLabel
	colChoices
	colNote
	colValidation
	colMin
	colMax
	colIdentifier
	colBranching
	colRequired
	colAlign
	colNumber
	colMatrix
	colRanking
	colAnnotation
)

// MaxDictionary bounds a dictionary: bytes, and fields.
const (
	MaxDictionary       = 1 << 20
	MaxDictionaryFields = 5000
)

// Note is one thing of a dictionary that was not mapped, or not exactly,
// and why: at a line (1 is the header), about a field.
type Note struct {
	Line  int    `json:"line"`
	Field string `json:"field,omitempty"`
	Note  string `json:"note"`
}

// Dictionary is a REDCap dictionary read: its forms in order, its record
// identifier field (the first field, which Custodia does not keep: it
// names records by pseudonym), and the report.
type Dictionary struct {
	Forms    []*Form
	RecordID string
	Report   []Note
}

// redcapValidations maps a text field's validation to a type and style
// (and decimals).
var redcapValidations = map[string]struct {
	t        Type
	style    string
	decimals int
}{
	"":                     {Text, "", 0},
	"integer":              {Integer, "", 0},
	"number":               {Decimal, "", 0},
	"number_1dp":           {Decimal, "", 1},
	"number_2dp":           {Decimal, "", 2},
	"number_3dp":           {Decimal, "", 3},
	"number_4dp":           {Decimal, "", 4},
	"date_ymd":             {Date, "", 0},
	"date_mdy":             {Date, "mdy", 0},
	"date_dmy":             {Date, "dmy", 0},
	"datetime_ymd":         {DateTime, "", 0},
	"datetime_mdy":         {DateTime, "mdy", 0},
	"datetime_dmy":         {DateTime, "dmy", 0},
	"datetime_seconds_ymd": {DateTime, "seconds", 0},
	"datetime_seconds_mdy": {DateTime, "seconds_mdy", 0},
	"datetime_seconds_dmy": {DateTime, "seconds_dmy", 0},
	"time":                 {Time, "", 0},
	"email":                {Text, "email", 0},
	"phone":                {Text, "phone", 0},
	"zipcode":              {Text, "zipcode", 0},
	"alpha_only":           {Text, "alpha_only", 0},
}

// ReadREDCap reads a REDCap data dictionary. A dictionary that is not one
// (not CSV, an unknown or missing column, a field or form name REDCap
// would not make, an unknown field type, a choice list or branching logic
// that does not parse) is refused whole, each problem naming its line and
// field. What is valid REDCap but has no equivalent here is left out or
// mapped as near as it can be, and said in the report.
func ReadREDCap(r io.Reader) (Dictionary, error) {
	var d Dictionary
	data, err := io.ReadAll(io.LimitReader(r, MaxDictionary+1))
	if err != nil {
		return d, errs.Wrap(errs.Invalid, err, "the dictionary could not be read")
	}
	if len(data) > MaxDictionary {
		return d, errs.E(errs.Invalid, "a dictionary is at most %d bytes", MaxDictionary)
	}
	if !utf8.Valid(data) {
		return d, errs.E(errs.Invalid, "the dictionary is not UTF-8 text")
	}
	text := strings.TrimPrefix(string(data), "\ufeff")
	cr := csv.NewReader(strings.NewReader(text))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return d, errs.E(errs.Invalid, "the dictionary has no header line: %s", csvProblem(err))
	}
	index := make([]int, len(redcapColumns)) // column -> position, -1 if absent
	for i := range index {
		index[i] = -1
	}
	var bad []FieldError
	for pos, h := range header {
		h = strings.TrimSpace(h)
		found := false
		for c, col := range redcapColumns {
			if strings.EqualFold(h, col.name) || col.short != "" && strings.EqualFold(h, col.short) {
				if index[c] >= 0 {
					bad = append(bad, FieldError{Row: 1, Error: fmt.Sprintf("column %q is named twice", col.name)})
				}
				index[c], found = pos, true
			}
		}
		if !found {
			bad = append(bad, FieldError{Row: 1, Error: fmt.Sprintf("unknown column %q", errs.Clip(h, 64))})
		}
	}
	for _, c := range []int{colVariable, colForm, colType, colLabel} {
		if index[c] < 0 {
			bad = append(bad, FieldError{Row: 1, Error: fmt.Sprintf("column %q is missing", redcapColumns[c].name)})
		}
	}
	if len(bad) > 0 {
		return d, problems(bad)
	}
	byKey := map[string]*Form{}
	lines := map[string]int{} // field name -> line
	fieldNames := map[string]int{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bad = append(bad, FieldError{Row: line, Error: "not CSV: " + csvProblem(err)})
			break
		}
		get := func(c int) string {
			if index[c] < 0 || index[c] >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[index[c]])
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line
		}
		if len(fieldNames) >= MaxDictionaryFields {
			bad = append(bad, FieldError{Row: line, Error: fmt.Sprintf("a dictionary has at most %d fields", MaxDictionaryFields)})
			break
		}
		name, formKey := get(colVariable), get(colForm)
		fail := func(format string, args ...any) {
			bad = append(bad, FieldError{Field: errs.Clip(name, 64), Row: line, Error: fmt.Sprintf(format, args...)})
		}
		note := func(format string, args ...any) {
			d.Report = append(d.Report, Note{Line: line, Field: name, Note: fmt.Sprintf(format, args...)})
		}
		if !validName(name) {
			fail("a variable name is a lower-case letter, then up to 63 lower-case letters, digits and _")
			continue
		}
		if prev, dup := fieldNames[name]; dup {
			fail("variable %s is named on line %d already", name, prev)
			continue
		}
		fieldNames[name] = line
		if !ValidKey(formKey) {
			fail("a form name is a lower-case letter, then up to 63 lower-case letters, digits and _")
			continue
		}
		if d.RecordID == "" {
			d.RecordID = name
			note("the record identifier: Custodia names records by pseudonym, so it is not a field here")
			continue
		}
		fd, ok := redcapField(get, note, fail)
		if !ok {
			continue
		}
		fd.Name = name
		f := byKey[formKey]
		if f == nil {
			f = &Form{Key: formKey, Title: titleOf(formKey)}
			byKey[formKey] = f
			d.Forms = append(d.Forms, f)
		}
		f.Fields = append(f.Fields, fd)
		lines[name] = line
	}
	if len(bad) > 0 {
		return Dictionary{}, problems(bad)
	}
	if len(d.Forms) == 0 {
		return Dictionary{}, errs.E(errs.Invalid, "the dictionary holds no field besides the record identifier")
	}
	// Each form must now check. Branching on a field of another form
	// becomes [form.field], which a visit's other forms answer; a
	// calculation reads its own form only, so one that names another
	// form's field is dropped and reported; anything else is a problem of
	// the dictionary.
	formOf := map[string]string{}
	for _, f := range d.Forms {
		for _, fd := range f.Fields {
			formOf[fd.Name] = f.Key
		}
	}
	for _, f := range d.Forms {
		lineOf := func(name string) int { return lines[name] }
		for i := range f.Fields {
			fd := &f.Fields[i]
			for _, e := range []*string{&fd.ShowIf, &fd.Calc} {
				if *e == "" {
					continue
				}
				x, err := Parse(*e)
				if err != nil {
					continue // reported when read
				}
				for _, ref := range x.Refs() {
					other, known := formOf[ref]
					switch {
					case known && other == f.Key:
					case known && e == &fd.ShowIf:
						*e = strings.ReplaceAll(*e, "["+ref+"]", "["+other+"."+ref+"]")
					default:
						why := "a field of another form"
						if !known {
							why = "no field of the dictionary"
						}
						d.Report = append(d.Report, Note{Line: lineOf(fd.Name), Field: fd.Name,
							Note: fmt.Sprintf("%q names [%s], %s: left out", *e, ref, why)})
						*e = ""
					}
					if *e == "" {
						break
					}
				}
			}
			if fd.Type == Calculated && fd.Calc == "" {
				fd.Type = Descriptive
				d.Report = append(d.Report, Note{Line: lineOf(fd.Name), Field: fd.Name, Note: "a calculation without its expression is shown as descriptive text"})
			}
		}
		for _, p := range f.Check() {
			bad = append(bad, FieldError{Field: p.Field, Row: lineOf(p.Field), Error: p.Error})
		}
	}
	if len(bad) > 0 {
		return Dictionary{}, problems(bad)
	}
	return d, nil
}

func csvProblem(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// titleOf makes a form's title of its REDCap name: demographics_v2 is
// "Demographics v2".
func titleOf(key string) string {
	t := strings.ReplaceAll(key, "_", " ")
	return strings.ToUpper(t[:1]) + t[1:]
}

// redcapField maps one row of a dictionary (but its name) to a field.
func redcapField(get func(int) string, note, fail func(string, ...any)) (Field, bool) {
	fd := Field{Label: get(colLabel), Note: get(colNote), Section: get(colSection), Number: get(colNumber),
		Matrix: get(colMatrix), Annotation: get(colAnnotation)}
	validation, choices := get(colValidation), get(colChoices)
	kind := strings.ToLower(get(colType))
	switch kind {
	case "text":
		v, ok := redcapValidations[strings.ToLower(validation)]
		if !ok {
			note("validation %q has no equivalent here: the field is plain text", errs.Clip(validation, 40))
			v = redcapValidations[""]
		}
		fd.Type, fd.Style, fd.Decimals = v.t, v.style, v.decimals
	case "notes":
		fd.Type = LongText
	case "dropdown", "radio", "checkbox":
		fd.Type = Single
		if kind == "dropdown" {
			fd.Style = "dropdown"
		}
		if kind == "checkbox" {
			fd.Type = Multiple
		}
		list, err := redcapChoices(choices)
		if err != nil {
			fail("%s", err)
			return fd, false
		}
		fd.Choices = list
	case "yesno":
		fd.Type = YesNo
	case "truefalse":
		fd.Type, fd.Style = YesNo, "truefalse"
	case "calc":
		fd.Type, fd.Calc = Calculated, choices
		if _, err := Parse(choices); err != nil {
			if !balanced(choices) {
				fail("the calculation does not parse: %s", errs.SafeMessage(err))
				return fd, false
			}
			note("calculation %q has no equivalent here (%s): left out", errs.Clip(choices, 200), errs.SafeMessage(err))
			fd.Calc = ""
		}
	case "file":
		fd.Type = File
		switch strings.ToLower(validation) {
		case "":
		case "signature":
			fd.Style = "signature"
		default:
			note("file validation %q has no equivalent here", errs.Clip(validation, 40))
		}
	case "slider":
		fd.Type = Slider
		if strings.EqualFold(validation, "number") {
			fd.Style = "number"
		}
		if choices != "" {
			for a := range strings.SplitSeq(choices, "|") {
				fd.Anchors = append(fd.Anchors, strings.TrimSpace(a))
			}
		}
	case "descriptive":
		fd.Type = Descriptive
	case "sql":
		note("a field of type sql (a database query) has no equivalent here: left out")
		return fd, false
	default:
		fail("unknown field type %q", errs.Clip(kind, 32))
		return fd, false
	}
	if fd.Label == "" {
		fd.Label = "(no label)"
		note("the field has no label")
	}
	if s := get(colBranching); s != "" {
		if _, err := Parse(s); err != nil {
			if !balanced(s) {
				fail("the branching logic does not parse: %s", errs.SafeMessage(err))
				return fd, false
			}
			note("branching logic %q has no equivalent here (%s): the field is always shown", errs.Clip(s, 200), errs.SafeMessage(err))
		} else {
			fd.ShowIf = s
		}
	}
	if min, max := get(colMin), get(colMax); min != "" || max != "" {
		redcapBounds(&fd, min, max, note)
	}
	if fd.Type == Slider && fd.Min == nil && fd.Max == nil {
		lo, hi := 0.0, 100.0
		fd.Min, fd.Max = &lo, &hi
	}
	switch strings.ToLower(get(colRequired)) {
	case "", "n":
	case "y":
		if fd.Type == Calculated || fd.Type == Descriptive {
			note("a %s field is never required here: nobody enters it", fd.Type)
		} else {
			fd.Required = true
		}
	default:
		note("Required Field? is y or empty; %q was read as not required", errs.Clip(get(colRequired), 10))
	}
	switch strings.ToLower(get(colIdentifier)) {
	case "", "n":
	case "y":
		if fd.Type == Text || fd.Type == LongText || fd.Type == Date {
			fd.Identifier = true
		} else {
			note("only texts and dates are identifiers here; the flag was left out")
		}
	default:
		note("Identifier? is y or empty; %q was read as not an identifier", errs.Clip(get(colIdentifier), 10))
	}
	switch a := strings.ToUpper(get(colAlign)); a {
	case "", "RH", "RV", "LH", "LV":
		fd.Align = a
	default:
		note("alignment %q is not RH, RV, LH or LV: left out", errs.Clip(a, 10))
	}
	if fd.Matrix != "" && !validName(fd.Matrix) {
		note("matrix group %q is not a name: left out", errs.Clip(fd.Matrix, 64))
		fd.Matrix = ""
	}
	if strings.EqualFold(get(colRanking), "y") {
		if fd.Matrix != "" {
			fd.MatrixRanking = true
		} else {
			note("matrix ranking applies to a matrix group: left out")
		}
	}
	return fd, true
}

// redcapChoices reads "1, Yes | 2, No".
func redcapChoices(s string) ([]Choice, error) {
	if s == "" {
		return nil, errors.New("a choice field needs its choices (code, label | code, label)")
	}
	var out []Choice
	for part := range strings.SplitSeq(s, "|") {
		code, label, ok := strings.Cut(part, ",")
		if !ok {
			return nil, fmt.Errorf("choice %q is not written code, label", errs.Clip(strings.TrimSpace(part), 64))
		}
		out = append(out, Choice{Code: strings.TrimSpace(code), Label: strings.TrimSpace(label)})
	}
	return out, nil
}

// redcapBounds reads a field's min and max.
func redcapBounds(fd *Field, min, max string, note func(string, ...any)) {
	switch fd.Type {
	case Integer, Decimal, Slider:
		for _, b := range []struct {
			s   string
			dst **float64
		}{{min, &fd.Min}, {max, &fd.Max}} {
			if b.s == "" {
				continue
			}
			x, err := strconv.ParseFloat(b.s, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				note("bound %q is not a number: left out", errs.Clip(b.s, 40))
				continue
			}
			*b.dst = &x
		}
	case Date, DateTime:
		for _, b := range []struct {
			s   string
			dst *string
		}{{min, &fd.MinDate}, {max, &fd.MaxDate}} {
			if b.s == "" {
				continue
			}
			day := b.s
			if len(day) > 10 {
				day = day[:10]
			}
			if _, err := time.Parse("2006-01-02", day); err != nil {
				note("bound %q is not a date (YYYY-MM-DD): left out", errs.Clip(b.s, 40))
				continue
			}
			if day != b.s {
				note("bound %q is kept as the day %s", errs.Clip(b.s, 40), day)
			}
			*b.dst = day
		}
	default:
		note("min and max apply to numbers and dates here: left out")
	}
}

// balanced reports whether an expression's brackets, parentheses and
// quotes close: one that does not is malformed, not merely unsupported.
func balanced(s string) bool {
	var stack []rune
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '(' || r == '[':
			stack = append(stack, r)
		case r == ')' || r == ']':
			want := '('
			if r == ']' {
				want = '['
			}
			if len(stack) == 0 || stack[len(stack)-1] != want {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return quote == 0 && len(stack) == 0
}

// WriteREDCap writes forms as a REDCap data dictionary, recordID (record_id
// if empty) its first field. Repeating groups have no place in a
// dictionary: their fields are written as the form's.
func WriteREDCap(w io.Writer, recordID string, forms []*Form) error {
	if recordID == "" {
		recordID = "record_id"
	}
	cw := csv.NewWriter(w)
	header := make([]string, len(redcapColumns))
	for i, c := range redcapColumns {
		header[i] = c.name
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	first := ""
	if len(forms) > 0 {
		first = forms[0].Key
	}
	row := make([]string, len(redcapColumns))
	row[colVariable], row[colForm], row[colType], row[colLabel] = recordID, first, "text", "Record ID"
	if err := cw.Write(row); err != nil {
		return err
	}
	for _, f := range forms {
		for _, fd := range f.Fields {
			if err := cw.Write(redcapRow(f.Key, fd)); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// redcapRefs finds [form.field], which REDCap writes [field].
var redcapRefs = regexp.MustCompile(`\[([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\]`)

func redcapRow(form string, fd Field) []string {
	row := make([]string, len(redcapColumns))
	row[colVariable], row[colForm], row[colSection], row[colLabel], row[colNote] = fd.Name, form, fd.Section, fd.Label, fd.Note
	row[colBranching], row[colNumber], row[colMatrix], row[colAnnotation], row[colAlign] = redcapRefs.ReplaceAllString(fd.ShowIf, "[$2]"), fd.Number, fd.Matrix, fd.Annotation, fd.Align
	yes := func(b bool) string {
		if b {
			return "y"
		}
		return ""
	}
	row[colRequired], row[colIdentifier], row[colRanking] = yes(fd.Required), yes(fd.Identifier), yes(fd.MatrixRanking)
	num := func(x *float64) string {
		if x == nil {
			return ""
		}
		return strconv.FormatFloat(*x, 'f', -1, 64)
	}
	choices := func() string {
		parts := make([]string, len(fd.Choices))
		for i, c := range fd.Choices {
			parts[i] = c.Code + ", " + c.Label
		}
		return strings.Join(parts, " | ")
	}
	validation := func() string {
		for name, v := range redcapValidations {
			if v.t == fd.Type && v.style == fd.Style && v.decimals == fd.Decimals && name != "" {
				return name
			}
		}
		return ""
	}
	switch fd.Type {
	case Text, Integer, Decimal, Date, DateTime, Time:
		row[colType], row[colValidation] = "text", validation()
		row[colMin], row[colMax] = num(fd.Min), num(fd.Max)
		if fd.Type == Date || fd.Type == DateTime {
			row[colMin], row[colMax] = fd.MinDate, fd.MaxDate
		}
	case LongText:
		row[colType] = "notes"
	case Single:
		row[colType], row[colChoices] = "radio", choices()
		if fd.Style == "dropdown" {
			row[colType] = "dropdown"
		}
	case Multiple:
		row[colType], row[colChoices] = "checkbox", choices()
	case YesNo:
		row[colType] = "yesno"
		if fd.Style == "truefalse" {
			row[colType] = "truefalse"
		}
	case Calculated:
		row[colType], row[colChoices] = "calc", fd.Calc
	case File:
		row[colType] = "file"
		if fd.Style == "signature" {
			row[colValidation] = "signature"
		}
	case Slider:
		row[colType], row[colChoices] = "slider", strings.Join(fd.Anchors, " | ")
		if fd.Style == "number" {
			row[colValidation] = "number"
		}
		if fd.Min == nil || fd.Max == nil || *fd.Min != 0 || *fd.Max != 100 {
			row[colMin], row[colMax] = num(fd.Min), num(fd.Max)
		}
	case Descriptive:
		row[colType] = "descriptive"
	}
	return row
}

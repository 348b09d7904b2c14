// Package forms holds what a study records about its participants: forms
// (instruments, CRFs) as versioned definitions of fields, and the rules a
// form's values must keep before anything is stored (WEB-05). It is the
// domain below the gate: it parses, checks and validates, and stores
// nothing itself.
package forms

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
)

// Type is a field's kind.
type Type string

const (
	Text        Type = "text"
	LongText    Type = "long_text"
	Integer     Type = "integer"
	Decimal     Type = "decimal"
	Date        Type = "date"
	DateTime    Type = "datetime"
	Time        Type = "time"
	Single      Type = "single_choice"
	Multiple    Type = "multiple_choice"
	YesNo       Type = "yes_no"
	Slider      Type = "slider"
	File        Type = "file"
	Calculated  Type = "calculated"
	Descriptive Type = "descriptive"
)

// Types lists the field types in a stable order.
var Types = []Type{Text, LongText, Integer, Decimal, Date, DateTime, Time, Single, Multiple, YesNo, Slider, File, Calculated, Descriptive}

// Bounds of a definition and of the values it takes.
const (
	MaxFields      = 500
	MaxChoices     = 500
	MaxLabel       = 1000
	MaxTextValue   = 4000
	MaxLongValue   = 64000
	maxPattern     = 500
	maxChoiceCode  = 64
	maxNote        = 2000
	maxUnit        = 32
	maxDecimals    = 10
	maxFormKey     = 64
	maxFormTitle   = 200
	maxGroupRepeat = 100
)

// Choice is one answer of a choice list: a code, which is stored, and a
// label, which is shown.
type Choice struct {
	Code  string `json:"code"`
	Label string `json:"label"`
}

// Field is one question of a form.
type Field struct {
	Name     string   `json:"name"`
	Label    string   `json:"label"`
	Type     Type     `json:"type"`
	Note     string   `json:"note,omitempty"`
	Required bool     `json:"required,omitempty"`
	Min      *float64 `json:"min,omitempty"` // numbers, sliders; dates as YYYY-MM-DD in MinDate
	Max      *float64 `json:"max,omitempty"`
	MinDate  string   `json:"min_date,omitempty"`
	MaxDate  string   `json:"max_date,omitempty"`
	// MinLength and MaxLength bound a text, in characters.
	MinLength int      `json:"min_length,omitempty"`
	MaxLength int      `json:"max_length,omitempty"`
	Pattern   string   `json:"pattern,omitempty"` // a regular expression (RE2) a text must match whole
	Decimals  int      `json:"decimals,omitempty"`
	Unit      string   `json:"unit,omitempty"`
	Choices   []Choice `json:"choices,omitempty"`
	// ShowIf is a condition (expr.go): the field is asked, and takes a
	// value, only when it holds. Calc computes a calculated field.
	ShowIf string `json:"show_if,omitempty"`
	Calc   string `json:"calc,omitempty"`
	// Group names the repeating group the field belongs to.
	Group string `json:"group,omitempty"`
	// Sensitive values are sealed with the study key and open only under
	// a decrypt grant (CRY-06); Identifier values belong to the identity
	// database.
	Sensitive  bool `json:"sensitive,omitempty"`
	Identifier bool `json:"identifier,omitempty"`

	// How the field is shown, which changes nothing of what it takes but
	// Style's text formats: Section is a header shown before it; Style a
	// variant of its type (Styles); Align where its label and answer go
	// (RH, RV, LH or LV: right or left, horizontal or vertical); Number a
	// question's number; Matrix the matrix its choices are shown in, with
	// other fields of the same choices (ranked: no choice taken twice);
	// Anchors the labels under a slider; Annotation notes for designers
	// (REDCap's action tags).
	Section       string   `json:"section,omitempty"`
	Style         string   `json:"style,omitempty"`
	Align         string   `json:"align,omitempty"`
	Number        string   `json:"number,omitempty"`
	Matrix        string   `json:"matrix,omitempty"`
	MatrixRanking bool     `json:"matrix_ranking,omitempty"`
	Anchors       []string `json:"anchors,omitempty"`
	Annotation    string   `json:"annotation,omitempty"`

	// A file field's accepted media types (FileTypes; none: all of them)
	// and largest size in bytes (none: DefaultFileBytes). A file is
	// judged by its content, not by its name.
	Accept   []string `json:"accept,omitempty"`
	MaxBytes int      `json:"max_bytes,omitempty"`

	re     *regexp.Regexp
	showIf *Expr
	calc   *Expr
}

// FileTypes are the media types a file field may accept, as the content of
// a file shows them (SniffFile).
var FileTypes = []string{"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"}

// Sizes of files.
const (
	DefaultFileBytes = 10 << 20
	MaxFileBytes     = 20 << 20
)

// Styles lists the variants each type may be shown in ("" is the
// default). A text's style is also a format its value must have.
var Styles = map[Type][]string{
	Text:     {"email", "phone", "zipcode", "alpha_only"},
	Date:     {"mdy", "dmy"},
	DateTime: {"mdy", "dmy", "seconds", "seconds_mdy", "seconds_dmy"},
	Single:   {"dropdown"},
	YesNo:    {"truefalse"},
	Slider:   {"number"},
	File:     {"signature"},
}

// textFormats are the patterns of the text styles.
var textFormats = map[string]*regexp.Regexp{
	"email":      regexp.MustCompile(`\A[^@\s]+@[^@\s]+\.[^@\s]+\z`),
	"phone":      regexp.MustCompile(`\A\+?[0-9 ()./-]{5,32}\z`),
	"zipcode":    regexp.MustCompile(`\A[0-9]{5}(-[0-9]{4})?\z`),
	"alpha_only": regexp.MustCompile(`\A\pL+\z`),
}

// Bounds of the display attributes.
const (
	maxSection    = 2000
	maxNumber     = 20
	maxAnnotation = 2000
	maxAnchors    = 3
)

// Group is a repeating group: fields entered several times (medications,
// adverse events), up to Max rows.
type Group struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	Max   int    `json:"max"`
}

// Form is a form's definition, as a study designs it and as it is
// published: a published version never changes.
type Form struct {
	Key     string `json:"key"`
	Title   string `json:"title"`
	Version int    `json:"version,omitempty"`
	// Survey forms are filled in by the participants themselves, in the
	// portal (ePRO); a participant reads and fills no other form.
	Survey bool    `json:"survey,omitempty"`
	Groups []Group `json:"groups,omitempty"`
	Fields []Field `json:"fields"`

	byName map[string]int
}

// Accepts reports whether a file field takes a file of mediaType and size.
func (fd *Field) Accepts(mediaType string, size int64) bool {
	max := int64(fd.MaxBytes)
	if max == 0 {
		max = DefaultFileBytes
	}
	return size <= max && (len(fd.Accept) == 0 || slices.Contains(fd.Accept, mediaType))
}

// SniffFile names the media type of a file by its first bytes, among
// FileTypes, or "" for none of them.
func SniffFile(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("%PDF-")):
		return "application/pdf"
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png"
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		return "image/jpeg"
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return "image/gif"
	case len(b) >= 12 && bytes.HasPrefix(b, []byte("RIFF")) && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	if len(b) == 0 || !utf8.Valid(b) {
		return ""
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return ""
		}
	}
	return "text/plain"
}

// FieldNamed returns the field of a checked form by its name.
func (f *Form) FieldNamed(name string) (*Field, bool) {
	i, ok := f.byName[name]
	if !ok {
		return nil, false
	}
	return &f.Fields[i], true
}

// FieldError is a refusal that names its field.
type FieldError struct {
	Field string `json:"field"`
	Row   int    `json:"row,omitempty"` // 1-based row of a repeating group
	Error string `json:"error"`
}

// Check checks a definition and prepares it for Validate: names, types,
// bounds, choice lists, patterns, and expressions that name only fields of
// the form, with no calculation that depends on itself. Every problem is
// reported, each naming its field.
func (f *Form) Check() []FieldError {
	var out []FieldError
	bad := func(field, format string, args ...any) {
		out = append(out, FieldError{Field: field, Error: fmt.Sprintf(format, args...)})
	}
	if !validName(f.Key) || len(f.Key) > maxFormKey {
		bad("", "the form's key must be a lower-case letter, then up to 63 lower-case letters, digits and _")
	}
	if strings.TrimSpace(f.Title) == "" || utf8.RuneCountInString(f.Title) > maxFormTitle {
		bad("", "the form's title must be 1 to %d characters", maxFormTitle)
	}
	if len(f.Fields) == 0 || len(f.Fields) > MaxFields {
		bad("", "a form has 1 to %d fields", MaxFields)
	}
	groups := map[string]bool{}
	for _, g := range f.Groups {
		switch {
		case !validName(g.Name):
			bad(g.Name, "a group's name must be a lower-case letter, then lower-case letters, digits and _")
		case groups[g.Name]:
			bad(g.Name, "two groups are named %s", g.Name)
		case g.Max < 1 || g.Max > maxGroupRepeat:
			bad(g.Name, "a group repeats 1 to %d times", maxGroupRepeat)
		}
		groups[g.Name] = true
	}
	f.byName = map[string]int{}
	for i := range f.Fields {
		fd := &f.Fields[i]
		if !validName(fd.Name) {
			bad(fd.Name, "a field's name must be a lower-case letter, then up to 63 lower-case letters, digits and _")
			continue
		}
		if _, dup := f.byName[fd.Name]; dup {
			bad(fd.Name, "two fields are named %s", fd.Name)
			continue
		}
		f.byName[fd.Name] = i
		for _, p := range fd.check(groups) {
			bad(fd.Name, "%s", p)
		}
	}
	// Expressions name fields of the form; calculations do not loop.
	for i := range f.Fields {
		fd := &f.Fields[i]
		for _, e := range []*Expr{fd.showIf, fd.calc} {
			if e == nil {
				continue
			}
			for _, r := range e.Refs() {
				if form, name, qualified := strings.Cut(r, "."); qualified {
					switch {
					case e == fd.calc:
						bad(fd.Name, "%s names [%s]: a calculation reads fields of its own form, as [name]", e, r)
						continue
					case form == f.Key:
						r = name
					default:
						// A condition on a field of another form of the
						// same visit (Outside), which the form cannot check.
						continue
					}
				}
				j, ok := f.byName[r]
				switch {
				case !ok:
					bad(fd.Name, "%s names [%s], which is not a field of this form", e, r)
				case f.Fields[j].Group != fd.Group:
					// A row reads its own row; the form reads no row.
					bad(fd.Name, "%s names [%s], which is not in the same repeating group", e, r)
				}
			}
		}
	}
	if cyc := f.calcCycle(); cyc != "" {
		bad(cyc, "its calculation depends on itself")
	}
	return out
}

func (fd *Field) check(groups map[string]bool) []string {
	var out []string
	p := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	known := false
	for _, t := range Types {
		known = known || fd.Type == t
	}
	if !known {
		p("unknown type %q", errs.Clip(string(fd.Type), 32))
		return out
	}
	if strings.TrimSpace(fd.Label) == "" || utf8.RuneCountInString(fd.Label) > MaxLabel {
		p("a label of 1 to %d characters is required", MaxLabel)
	}
	if utf8.RuneCountInString(fd.Note) > maxNote || utf8.RuneCountInString(fd.Unit) > maxUnit {
		p("the note holds at most %d characters, the unit %d", maxNote, maxUnit)
	}
	if fd.Group != "" && !groups[fd.Group] {
		p("group %q is not a group of this form", errs.Clip(fd.Group, 64))
	}
	numeric := fd.Type == Integer || fd.Type == Decimal || fd.Type == Slider
	if (fd.Min != nil || fd.Max != nil) && !numeric {
		p("min and max apply to numbers and sliders; dates take min_date and max_date")
	}
	if fd.Min != nil && fd.Max != nil && *fd.Min > *fd.Max {
		p("min is above max")
	}
	if fd.Type == Slider && (fd.Min == nil || fd.Max == nil) {
		p("a slider needs min and max")
	}
	for _, b := range []*float64{fd.Min, fd.Max} {
		if b != nil && (math.IsNaN(*b) || math.IsInf(*b, 0)) {
			p("min and max must be numbers")
		}
	}
	if fd.MinDate != "" || fd.MaxDate != "" {
		if fd.Type != Date && fd.Type != DateTime {
			p("min_date and max_date apply to dates")
		}
		for _, d := range []string{fd.MinDate, fd.MaxDate} {
			if _, err := time.Parse("2006-01-02", d); d != "" && err != nil {
				p("min_date and max_date are written YYYY-MM-DD")
			}
		}
	}
	text := fd.Type == Text || fd.Type == LongText
	if (fd.MinLength != 0 || fd.MaxLength != 0 || fd.Pattern != "") && !text {
		p("min_length, max_length and pattern apply to texts")
	}
	if fd.MinLength < 0 || fd.MaxLength < 0 || fd.MaxLength != 0 && fd.MinLength > fd.MaxLength || fd.MaxLength > fd.maxText() {
		p("lengths run from 0 to %d, min_length not above max_length", fd.maxText())
	}
	if fd.Pattern != "" {
		if len(fd.Pattern) > maxPattern {
			p("a pattern holds at most %d characters", maxPattern)
		} else if re, err := regexp.Compile(`\A(?:` + fd.Pattern + `)\z`); err != nil {
			p("the pattern is not a regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		} else {
			fd.re = re
		}
	}
	if fd.Decimals < 0 || fd.Decimals > maxDecimals || fd.Decimals != 0 && fd.Type != Decimal && fd.Type != Calculated {
		p("decimals apply to decimals and calculations, 0 to %d", maxDecimals)
	}
	choice := fd.Type == Single || fd.Type == Multiple
	switch {
	case choice && (len(fd.Choices) == 0 || len(fd.Choices) > MaxChoices):
		p("a choice field has 1 to %d choices", MaxChoices)
	case !choice && len(fd.Choices) > 0:
		p("choices apply to single and multiple choice fields")
	}
	codes := map[string]bool{}
	for _, c := range fd.Choices {
		switch {
		case c.Code == "" || len(c.Code) > maxChoiceCode || strings.ContainsAny(c.Code, ",|\n\r\t"):
			p("a choice's code is 1 to %d characters, without , | or line breaks", maxChoiceCode)
		case codes[c.Code]:
			p("two choices have the code %q", c.Code)
		case strings.TrimSpace(c.Label) == "" || utf8.RuneCountInString(c.Label) > MaxLabel:
			p("choice %q needs a label of 1 to %d characters", c.Code, MaxLabel)
		}
		codes[c.Code] = true
	}
	if fd.ShowIf != "" {
		if e, err := Parse(fd.ShowIf); err != nil {
			p("show_if: %s", errs.SafeMessage(err))
		} else {
			fd.showIf = e
		}
	}
	switch {
	case fd.Type == Calculated && fd.Calc == "":
		p("a calculated field needs calc")
	case fd.Type != Calculated && fd.Calc != "":
		p("calc applies to calculated fields")
	case fd.Calc != "":
		if e, err := Parse(fd.Calc); err != nil {
			p("calc: %s", errs.SafeMessage(err))
		} else {
			fd.calc = e
		}
	}
	if (fd.Type == Descriptive || fd.Type == Calculated) && fd.Required {
		p("a %s field is never required: nobody enters it", fd.Type)
	}
	if fd.Identifier && fd.Type != Text && fd.Type != Date && fd.Type != LongText {
		p("identifiers are texts or dates")
	}
	if fd.Style != "" && !slices.Contains(Styles[fd.Type], fd.Style) {
		p("a %s field's style is one of: %s", fd.Type, strings.Join(append([]string{`""`}, Styles[fd.Type]...), ", "))
	}
	switch fd.Align {
	case "", "RH", "RV", "LH", "LV":
	default:
		p("align is RH, RV, LH or LV")
	}
	if utf8.RuneCountInString(fd.Section) > maxSection || utf8.RuneCountInString(fd.Annotation) > maxAnnotation || utf8.RuneCountInString(fd.Number) > maxNumber {
		p("a section holds at most %d characters, an annotation %d, a number %d", maxSection, maxAnnotation, maxNumber)
	}
	if fd.Matrix != "" && (!validName(fd.Matrix) || fd.Type != Single && fd.Type != Multiple) {
		p("a matrix is named as a field is, and holds choice fields")
	}
	if fd.MatrixRanking && fd.Matrix == "" {
		p("matrix_ranking applies to fields of a matrix")
	}
	if (len(fd.Accept) > 0 || fd.MaxBytes != 0) && fd.Type != File {
		p("accept and max_bytes apply to file fields")
	}
	for _, t := range fd.Accept {
		if !slices.Contains(FileTypes, t) {
			p("a file field accepts %s, not %q", strings.Join(FileTypes, ", "), errs.Clip(t, 64))
		}
	}
	if fd.MaxBytes < 0 || fd.MaxBytes > MaxFileBytes {
		p("max_bytes is at most %d", MaxFileBytes)
	}
	if len(fd.Anchors) > 0 && (fd.Type != Slider || len(fd.Anchors) > maxAnchors) {
		p("anchors apply to sliders, at most %d", maxAnchors)
	}
	for _, a := range fd.Anchors {
		if utf8.RuneCountInString(a) > MaxLabel {
			p("an anchor holds at most %d characters", MaxLabel)
		}
	}
	return out
}

func (fd *Field) maxText() int {
	if fd.Type == LongText {
		return MaxLongValue
	}
	return MaxTextValue
}

// calcCycle names a calculated field whose calculation depends on itself,
// directly or through others; "" if none does.
func (f *Form) calcCycle() string {
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) bool
	visit = func(name string) bool {
		i, ok := f.byName[name]
		if !ok || f.Fields[i].calc == nil {
			return false
		}
		switch state[name] {
		case 1:
			return true
		case 2:
			return false
		}
		state[name] = 1
		for _, r := range f.Fields[i].calc.Refs() {
			if visit(r) {
				return true
			}
		}
		state[name] = 2
		return false
	}
	for _, fd := range f.Fields {
		if visit(fd.Name) {
			return fd.Name
		}
	}
	return ""
}

// Validate checks one entry of the form: values by field name, as text (a
// multiple choice's codes separated by commas). It returns the values to
// store, with calculated fields computed and fields hidden by their
// show-if left out, or every problem, each naming its field; then nothing
// may be stored. Check must have passed. The fields of repeating groups
// are not among them: each row is checked by ValidateRow.
func (f *Form) Validate(in map[string]string) (map[string]string, []FieldError) {
	return f.validate("", in, true, nil)
}

// ValidateRow checks one row of the repeating group group, as Validate
// checks the form's other fields.
func (f *Form) ValidateRow(group string, in map[string]string) (map[string]string, []FieldError) {
	return f.validate(group, in, true, nil)
}

// ValidateAs is Validate (group "") or ValidateRow for an entry saved as
// complete or not: an incomplete entry may leave required fields empty,
// and every value it holds is checked all the same.
func (f *Form) ValidateAs(group string, in map[string]string, complete bool) (map[string]string, []FieldError) {
	return f.validate(group, in, complete, nil)
}

// ValidateWith is ValidateAs for a form whose conditions read fields of
// other forms of the same visit ([form.field], Outside): outside answers
// their values ("" for none).
func (f *Form) ValidateWith(group string, in map[string]string, complete bool, outside func(ref string) string) (map[string]string, []FieldError) {
	return f.validate(group, in, complete, outside)
}

// Outside lists the fields of other forms that the form's conditions read
// ([form.field]), each once.
func (f *Form) Outside() []string {
	var out []string
	for _, fd := range f.Fields {
		if fd.showIf == nil {
			continue
		}
		for _, r := range fd.showIf.Refs() {
			if form, _, ok := strings.Cut(r, "."); ok && form != f.Key && !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

func (f *Form) validate(group string, in map[string]string, complete bool, outside func(ref string) string) (map[string]string, []FieldError) {
	var problems []FieldError
	for name := range in {
		i, ok := f.byName[name]
		switch {
		case !ok || f.Fields[i].Group != group:
			problems = append(problems, FieldError{Field: errs.Clip(name, 64), Error: "not a field of this form or group"})
		case f.Fields[i].Type == Calculated || f.Fields[i].Type == Descriptive:
			problems = append(problems, FieldError{Field: name, Error: "computed or shown, never entered"})
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	out := map[string]string{}
	read := func(name string) string {
		if form, field, qualified := strings.Cut(name, "."); qualified {
			if form != f.Key {
				if outside == nil {
					return ""
				}
				return outside(name)
			}
			name = field
		}
		if v, ok := out[name]; ok {
			return v
		}
		return strings.TrimSpace(in[name])
	}
	for i := range f.Fields {
		fd := &f.Fields[i]
		if fd.Group != group || fd.Type == Descriptive || fd.Type == Calculated {
			continue
		}
		v := strings.TrimSpace(in[fd.Name])
		if fd.showIf != nil && !fd.showIf.True(read) {
			if v != "" {
				problems = append(problems, FieldError{Field: fd.Name, Error: "is not asked here (its condition does not hold), so it takes no value"})
			}
			continue
		}
		clean, problem := fd.value(v)
		if v == "" && !complete {
			problem = ""
		}
		if problem != "" {
			problems = append(problems, FieldError{Field: fd.Name, Error: problem})
			continue
		}
		if clean != "" {
			out[fd.Name] = clean
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	// Calculations, each once its calculated inputs are done (Check ruled
	// out loops).
	done := map[string]bool{}
	for progress := true; progress; {
		progress = false
		for i := range f.Fields {
			fd := &f.Fields[i]
			if fd.calc == nil || fd.Group != group || done[fd.Name] {
				continue
			}
			ready := true
			for _, r := range fd.calc.Refs() {
				if f.Fields[f.byName[r]].calc != nil && !done[r] {
					ready = false
				}
			}
			if !ready {
				continue
			}
			done[fd.Name], progress = true, true
			if fd.showIf != nil && !fd.showIf.True(read) {
				continue
			}
			if v := fd.calc.Eval(read); v != "" {
				out[fd.Name] = roundTo(v, fd.Decimals)
			}
		}
	}
	return out, nil
}

func roundTo(v string, decimals int) string {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return v
	}
	m := math.Pow(10, float64(decimals))
	return strconv.FormatFloat(math.Round(f*m)/m, 'f', -1, 64)
}

// Clean checks one value of the field as a save does, on its own (no
// condition is read), and returns its stored form or the problem: a blank
// value is refused only when the field is required and the entry complete.
func (fd *Field) Clean(v string, complete bool) (string, string) {
	v = strings.TrimSpace(v)
	clean, problem := fd.value(v)
	if v == "" && !complete {
		problem = ""
	}
	return clean, problem
}

// value checks one entered value of fd and returns its stored form, or a
// problem. An empty value is "" (blank), refused only when required.
func (fd *Field) value(v string) (string, string) {
	if v == "" {
		if fd.Required {
			return "", "is required"
		}
		return "", ""
	}
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return "", "is not valid text"
	}
	switch fd.Type {
	case Text, LongText:
		n := utf8.RuneCountInString(v)
		max := fd.maxText()
		if fd.MaxLength > 0 {
			max = fd.MaxLength
		}
		if n > max || n < fd.MinLength {
			return "", fmt.Sprintf("must be %d to %d characters", fd.MinLength, max)
		}
		if re := textFormats[fd.Style]; fd.Type == Text && re != nil && !re.MatchString(v) {
			return "", "is not in the field's format (" + fd.Style + ")"
		}
		if fd.Type == Text && strings.ContainsAny(v, "\r\n") {
			return "", "is one line; a long text field takes several"
		}
		if fd.re != nil && !fd.re.MatchString(v) {
			return "", "does not have the expected form"
		}
		return v, ""
	case Integer, Slider:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1<<53 || n > 1<<53 {
			return "", "must be a whole number"
		}
		return fd.inRange(float64(n), strconv.FormatInt(n, 10))
	case Decimal:
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) || strings.ContainsAny(v, "eExXpP_") {
			return "", "must be a number, with a point for decimals"
		}
		if i := strings.IndexByte(v, '.'); i >= 0 && len(v)-i-1 > fd.Decimals && fd.Decimals > 0 {
			return "", fmt.Sprintf("takes at most %d decimals", fd.Decimals)
		}
		return fd.inRange(x, strconv.FormatFloat(x, 'f', -1, 64))
	case Date:
		t, err := time.Parse("2006-01-02", v)
		if err != nil {
			return "", "must be a date, YYYY-MM-DD"
		}
		return fd.inDates(t, t.Format("2006-01-02"))
	case DateTime:
		layout, want := "2006-01-02T15:04", "YYYY-MM-DDTHH:MM"
		if strings.HasPrefix(fd.Style, "seconds") {
			layout, want = "2006-01-02T15:04:05", "YYYY-MM-DDTHH:MM:SS"
		}
		t, err := time.Parse(layout, v)
		if err != nil {
			if t, err = time.Parse(time.RFC3339, v); err != nil {
				return "", "must be a date and time, " + want
			}
			t = t.UTC()
		}
		return fd.inDates(t, t.Format(layout))
	case Time:
		t, err := time.Parse("15:04", v)
		if err != nil {
			return "", "must be a time, HH:MM"
		}
		return t.Format("15:04"), ""
	case YesNo:
		if v != "1" && v != "0" {
			return "", "must be 1 (yes) or 0 (no)"
		}
		return v, ""
	case Single:
		if !fd.hasChoice(v) {
			return "", "is not one of the field's choices"
		}
		return v, ""
	case Multiple:
		seen := map[string]bool{}
		for _, c := range strings.Split(v, ",") {
			c = strings.TrimSpace(c)
			if !fd.hasChoice(c) {
				return "", "holds a code that is not one of the field's choices"
			}
			seen[c] = true
		}
		// Stored in the order of the choice list: one value, one text.
		var ordered []string
		for _, ch := range fd.Choices {
			if seen[ch.Code] {
				ordered = append(ordered, ch.Code)
			}
		}
		return strings.Join(ordered, ","), ""
	case File:
		if !ids.Valid(v) {
			return "", "takes the id of a file uploaded for this participant"
		}
		return v, ""
	}
	return "", "takes no value"
}

func (fd *Field) hasChoice(code string) bool {
	for _, c := range fd.Choices {
		if c.Code == code {
			return true
		}
	}
	return false
}

func (fd *Field) inRange(x float64, clean string) (string, string) {
	if fd.Min != nil && x < *fd.Min || fd.Max != nil && x > *fd.Max {
		return "", fmt.Sprintf("must be %s", rangeText(fd.Min, fd.Max))
	}
	return clean, ""
}

func rangeText(min, max *float64) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	switch {
	case min != nil && max != nil:
		return "from " + f(*min) + " to " + f(*max)
	case min != nil:
		return "at least " + f(*min)
	}
	return "at most " + f(*max)
}

func (fd *Field) inDates(t time.Time, clean string) (string, string) {
	day := t.Format("2006-01-02")
	if fd.MinDate != "" && day < fd.MinDate || fd.MaxDate != "" && day > fd.MaxDate {
		return "", fmt.Sprintf("must be within %s to %s", orOpen(fd.MinDate), orOpen(fd.MaxDate))
	}
	return clean, ""
}

func orOpen(s string) string {
	if s == "" {
		return "…"
	}
	return s
}

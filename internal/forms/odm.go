package forms

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// CDISC ODM 1.3.2: a study's metadata (its schedule and forms) as the
// Study element of an ODM file. The clinical data follow in package
// entries. Object identifiers: S.<study>, SE.<visit>, F.<form>,
// IG.<form> (a form's fields outside repeating groups), IG.<form>.<group>,
// I.<form>.<field>, CL.<form>.<field>, MU.<n>, M.<form>.<field>.

// ODMNamespace is ODM 1.3's XML namespace.
const ODMNamespace = "http://www.cdisc.org/ns/odm/v1.3"

// ODMMetaDataVersion is the OID of the one metadata version an export
// describes.
const ODMMetaDataVersion = "MDV.1"

// XMLWriter writes escaped XML text.
type XMLWriter struct {
	W   io.Writer
	Err error
}

// Raw writes s as it is.
func (x *XMLWriter) Raw(s string) {
	if x.Err == nil {
		_, x.Err = io.WriteString(x.W, s)
	}
}

// Text writes s escaped, for an attribute's value or an element's text.
func (x *XMLWriter) Text(s string) {
	if x.Err == nil {
		x.Err = xml.EscapeText(x.W, []byte(s))
	}
}

// Open writes a start tag with attributes (name, value pairs; a pair with
// an empty value is left out); empty closes it at once.
func (x *XMLWriter) Open(tag string, empty bool, attrs ...string) {
	x.Raw("<" + tag)
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] == "" {
			continue
		}
		x.Raw(" " + attrs[i] + `="`)
		x.Text(attrs[i+1])
		x.Raw(`"`)
	}
	if empty {
		x.Raw("/>")
		return
	}
	x.Raw(">")
}

// Close writes an end tag.
func (x *XMLWriter) Close(tag string) { x.Raw("</" + tag + ">") }

// Element writes <tag>text</tag>.
func (x *XMLWriter) Element(tag, text string) {
	x.Open(tag, false)
	x.Text(text)
	x.Close(tag)
}

// translated writes <tag><TranslatedText>text</TranslatedText></tag>.
func (x *XMLWriter) translated(tag, text string) {
	x.Open(tag, false)
	x.Element("TranslatedText", text)
	x.Close(tag)
}

// ODMStudy is what WriteODMStudy describes: a study's name, its schedule
// and its forms (each with every field its versions had, for the values
// saved under older versions).
type ODMStudy struct {
	OID, Name string
	Visits    []Visit
	Forms     []*Form
}

// ODMItemOID names a field's item.
func ODMItemOID(form, field string) string { return "I." + form + "." + field }

// ODMGroupOID names the item group of a form's fields outside repeating
// groups (group ""), or of a repeating group.
func ODMGroupOID(form, group string) string {
	if group == "" {
		return "IG." + form
	}
	return "IG." + form + "." + group
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func odmDataType(fd Field) string {
	switch fd.Type {
	case Integer, Slider, YesNo:
		return "integer"
	case Decimal:
		return "float"
	case Date:
		return "date"
	case DateTime:
		return "datetime"
	case Time:
		return "time"
	}
	return "text"
}

// WriteODMStudy writes s as an ODM Study element.
func WriteODMStudy(x *XMLWriter, s ODMStudy) {
	x.Open("Study", false, "OID", s.OID)
	x.Open("GlobalVariables", false)
	x.Element("StudyName", s.Name)
	x.Element("StudyDescription", s.Name)
	x.Element("ProtocolName", s.Name)
	x.Close("GlobalVariables")
	units := map[string]string{}
	var unitNames []string
	for _, f := range s.Forms {
		for _, fd := range f.Fields {
			if fd.Unit != "" && units[fd.Unit] == "" {
				units[fd.Unit] = "MU." + strconv.Itoa(len(unitNames)+1)
				unitNames = append(unitNames, fd.Unit)
			}
		}
	}
	if len(unitNames) > 0 {
		x.Open("BasicDefinitions", false)
		for _, u := range unitNames {
			x.Open("MeasurementUnit", false, "OID", units[u], "Name", u)
			x.translated("Symbol", u)
			x.Close("MeasurementUnit")
		}
		x.Close("BasicDefinitions")
	}
	x.Open("MetaDataVersion", false, "OID", ODMMetaDataVersion, "Name", s.Name)
	// A descriptive field is an item that never takes a value (its
	// Alias custodia:type says so).
	x.Open("Protocol", false)
	for i, v := range s.Visits {
		x.Open("StudyEventRef", true, "StudyEventOID", "SE."+v.Key, "OrderNumber", strconv.Itoa(i+1), "Mandatory", "No")
	}
	x.Close("Protocol")
	for _, v := range s.Visits {
		kind := "Scheduled"
		if v.Day == nil {
			kind = "Unscheduled"
		}
		x.Open("StudyEventDef", false, "OID", "SE."+v.Key, "Name", v.Label, "Repeating", yesNo(v.Repeating), "Type", kind)
		for i, f := range v.Forms {
			x.Open("FormRef", true, "FormOID", "F."+f, "OrderNumber", strconv.Itoa(i+1), "Mandatory", "No")
		}
		if v.Day != nil {
			alias(x, "day", strconv.Itoa(*v.Day))
		}
		if v.WindowBefore != 0 {
			alias(x, "window_before", strconv.Itoa(v.WindowBefore))
		}
		if v.WindowAfter != 0 {
			alias(x, "window_after", strconv.Itoa(v.WindowAfter))
		}
		x.Close("StudyEventDef")
	}
	for _, f := range s.Forms {
		x.Open("FormDef", false, "OID", "F."+f.Key, "Name", f.Title, "Repeating", "No")
		x.Open("ItemGroupRef", true, "ItemGroupOID", ODMGroupOID(f.Key, ""), "OrderNumber", "1", "Mandatory", "Yes")
		for i, g := range f.Groups {
			x.Open("ItemGroupRef", true, "ItemGroupOID", ODMGroupOID(f.Key, g.Name), "OrderNumber", strconv.Itoa(i+2), "Mandatory", "No")
		}
		if f.Survey {
			alias(x, "survey", "yes")
		}
		x.Close("FormDef")
	}
	for _, f := range s.Forms {
		groups := append([]Group{{Name: "", Label: f.Title}}, f.Groups...)
		for _, g := range groups {
			x.Open("ItemGroupDef", false, "OID", ODMGroupOID(f.Key, g.Name), "Name", groupName(f, g), "Repeating", yesNo(g.Name != ""))
			n := 0
			for _, fd := range f.Fields {
				if fd.Group != g.Name {
					continue
				}
				n++
				method := ""
				if fd.Type == Calculated {
					method = "M." + f.Key + "." + fd.Name
				}
				x.Open("ItemRef", true, "ItemOID", ODMItemOID(f.Key, fd.Name), "OrderNumber", strconv.Itoa(n),
					"Mandatory", yesNo(fd.Required), "MethodOID", method)
			}
			if g.Name != "" {
				alias(x, "max", strconv.Itoa(g.Max))
				alias(x, "label", g.Label)
			}
			x.Close("ItemGroupDef")
		}
	}
	for _, f := range s.Forms {
		for i, fd := range f.Fields {
			length, digits := "", ""
			if (fd.Type == Text || fd.Type == LongText) && fd.MaxLength > 0 {
				length = strconv.Itoa(fd.MaxLength)
			}
			if fd.Type == Decimal && fd.Decimals > 0 {
				digits = strconv.Itoa(fd.Decimals)
			}
			x.Open("ItemDef", false, "OID", ODMItemOID(f.Key, fd.Name), "Name", fd.Name, "DataType", odmDataType(fd),
				"Length", length, "SignificantDigits", digits)
			if fd.Note != "" {
				x.translated("Description", fd.Note)
			}
			x.translated("Question", fd.Label)
			if fd.Unit != "" {
				x.Open("MeasurementUnitRef", true, "MeasurementUnitOID", units[fd.Unit])
			}
			for _, b := range []struct {
				cmp string
				v   *float64
				d   string
			}{{"GE", fd.Min, fd.MinDate}, {"LE", fd.Max, fd.MaxDate}} {
				value := b.d
				if b.v != nil {
					value = strconv.FormatFloat(*b.v, 'f', -1, 64)
				}
				if value == "" {
					continue
				}
				x.Open("RangeCheck", false, "Comparator", b.cmp, "SoftHard", "Hard")
				x.Element("CheckValue", value)
				x.Close("RangeCheck")
			}
			if len(fd.Choices) > 0 || fd.Type == YesNo {
				x.Open("CodeListRef", true, "CodeListOID", "CL."+f.Key+"."+fd.Name)
			}
			itemAliases(x, fd)
			// Item groups part a form's fields; their order across groups
			// travels here.
			alias(x, "position", strconv.Itoa(i+1))
			x.Close("ItemDef")
		}
	}
	for _, f := range s.Forms {
		for _, fd := range f.Fields {
			choices := fd.Choices
			kind := "text"
			if fd.Type == YesNo {
				choices, kind = []Choice{{Code: "1", Label: "Yes"}, {Code: "0", Label: "No"}}, "integer"
			}
			if len(choices) == 0 {
				continue
			}
			x.Open("CodeList", false, "OID", "CL."+f.Key+"."+fd.Name, "Name", fd.Name, "DataType", kind)
			for i, c := range choices {
				x.Open("CodeListItem", false, "CodedValue", c.Code, "OrderNumber", strconv.Itoa(i+1))
				x.translated("Decode", c.Label)
				x.Close("CodeListItem")
			}
			x.Close("CodeList")
		}
	}
	for _, f := range s.Forms {
		for _, fd := range f.Fields {
			if fd.Type != Calculated || fd.Calc == "" {
				continue
			}
			x.Open("MethodDef", false, "OID", "M."+f.Key+"."+fd.Name, "Name", fd.Name, "Type", "Computation")
			x.translated("Description", fmt.Sprintf("Computes %s", fd.Label))
			x.Open("FormalExpression", false, "Context", "custodia")
			x.Text(fd.Calc)
			x.Close("FormalExpression")
			x.Close("MethodDef")
		}
	}
	x.Close("MetaDataVersion")
	x.Close("Study")
}

// The attributes of a field that ODM has no place for travel as Alias
// elements of context "custodia:<attribute>", so that a file read back
// (ReadODM) gives the same forms.
func alias(x *XMLWriter, name, value string) {
	if value != "" {
		x.Open("Alias", true, "Context", aliasContext+name, "Name", value)
	}
}

const aliasContext = "custodia:"

func itemAliases(x *XMLWriter, fd Field) {
	alias(x, "type", string(fd.Type))
	alias(x, "style", fd.Style)
	alias(x, "section", fd.Section)
	alias(x, "align", fd.Align)
	alias(x, "number", fd.Number)
	alias(x, "matrix", fd.Matrix)
	alias(x, "annotation", fd.Annotation)
	alias(x, "show_if", fd.ShowIf)
	alias(x, "pattern", fd.Pattern)
	for i, a := range fd.Anchors {
		alias(x, "anchor"+strconv.Itoa(i+1), a)
	}
	if fd.MinLength != 0 {
		alias(x, "min_length", strconv.Itoa(fd.MinLength))
	}
	if fd.Type == Calculated && fd.Decimals != 0 {
		alias(x, "decimals", strconv.Itoa(fd.Decimals))
	}
	alias(x, "accept", strings.Join(fd.Accept, " "))
	if fd.MaxBytes != 0 {
		alias(x, "max_bytes", strconv.Itoa(fd.MaxBytes))
	}
	flags := []struct {
		on   bool
		name string
	}{{fd.MatrixRanking, "matrix_ranking"}, {fd.Sensitive, "sensitive"}, {fd.Identifier, "identifier"}}
	for _, f := range flags {
		if f.on {
			alias(x, f.name, "yes")
		}
	}
}

func groupName(f *Form, g Group) string {
	if g.Name == "" {
		return f.Key
	}
	return strings.TrimSpace(f.Key + " " + g.Name)
}

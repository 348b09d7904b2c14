package forms

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
)

// ReadODM reads the metadata of a CDISC ODM 1.3 file (its first study's
// first metadata version): visits from StudyEventDefs, forms from
// FormDefs, repeating groups from repeating ItemGroupDefs, fields from
// ItemDefs (their question, description, data type, code list, unit,
// range checks, mandatory flag and computation method), and what
// WriteODMStudy keeps in Alias elements of context custodia:. What has no
// equivalent here is said in the report. The reader takes no DTD and no
// external entity: Go's XML decoder expands neither.

// MaxODM bounds an ODM file read for its metadata.
const MaxODM = 1 << 20

type odmText struct {
	Texts []string `xml:"TranslatedText"`
}

func (t *odmText) first() string {
	if t == nil || len(t.Texts) == 0 {
		return ""
	}
	return strings.TrimSpace(t.Texts[0])
}

type odmAlias struct {
	Context string `xml:"Context,attr"`
	Name    string `xml:"Name,attr"`
}

type odmAliases []odmAlias

func (as odmAliases) get(name string) string {
	for _, a := range as {
		if a.Context == aliasContext+name {
			return a.Name
		}
	}
	return ""
}

type odmFile struct {
	XMLName xml.Name `xml:"ODM"`
	Studies []struct {
		OID    string `xml:"OID,attr"`
		Global struct {
			StudyName string `xml:"StudyName"`
		} `xml:"GlobalVariables"`
		Units []struct {
			OID    string   `xml:"OID,attr"`
			Name   string   `xml:"Name,attr"`
			Symbol *odmText `xml:"Symbol"`
		} `xml:"BasicDefinitions>MeasurementUnit"`
		Versions []odmVersion `xml:"MetaDataVersion"`
	} `xml:"Study"`
}

type odmVersion struct {
	Events []struct {
		StudyEventOID string `xml:"StudyEventOID,attr"`
	} `xml:"Protocol>StudyEventRef"`
	EventDefs []struct {
		OID       string `xml:"OID,attr"`
		Name      string `xml:"Name,attr"`
		Repeating string `xml:"Repeating,attr"`
		Type      string `xml:"Type,attr"`
		Forms     []struct {
			FormOID string `xml:"FormOID,attr"`
		} `xml:"FormRef"`
		Aliases odmAliases `xml:"Alias"`
	} `xml:"StudyEventDef"`
	FormDefs []struct {
		OID    string `xml:"OID,attr"`
		Name   string `xml:"Name,attr"`
		Groups []struct {
			ItemGroupOID string `xml:"ItemGroupOID,attr"`
		} `xml:"ItemGroupRef"`
		Aliases odmAliases `xml:"Alias"`
	} `xml:"FormDef"`
	GroupDefs []struct {
		OID       string `xml:"OID,attr"`
		Name      string `xml:"Name,attr"`
		Repeating string `xml:"Repeating,attr"`
		Items     []struct {
			ItemOID   string `xml:"ItemOID,attr"`
			Mandatory string `xml:"Mandatory,attr"`
			MethodOID string `xml:"MethodOID,attr"`
		} `xml:"ItemRef"`
		Aliases odmAliases `xml:"Alias"`
	} `xml:"ItemGroupDef"`
	ItemDefs []struct {
		OID               string   `xml:"OID,attr"`
		Name              string   `xml:"Name,attr"`
		DataType          string   `xml:"DataType,attr"`
		Length            string   `xml:"Length,attr"`
		SignificantDigits string   `xml:"SignificantDigits,attr"`
		Description       *odmText `xml:"Description"`
		Question          *odmText `xml:"Question"`
		Unit              *struct {
			OID string `xml:"MeasurementUnitOID,attr"`
		} `xml:"MeasurementUnitRef"`
		Ranges []struct {
			Comparator string   `xml:"Comparator,attr"`
			Values     []string `xml:"CheckValue"`
		} `xml:"RangeCheck"`
		CodeList *struct {
			OID string `xml:"CodeListOID,attr"`
		} `xml:"CodeListRef"`
		Aliases odmAliases `xml:"Alias"`
	} `xml:"ItemDef"`
	CodeLists []struct {
		OID      string `xml:"OID,attr"`
		DataType string `xml:"DataType,attr"`
		Items    []struct {
			Value  string   `xml:"CodedValue,attr"`
			Decode *odmText `xml:"Decode"`
		} `xml:"CodeListItem"`
		Enumerated []struct {
			Value string `xml:"CodedValue,attr"`
		} `xml:"EnumeratedItem"`
	} `xml:"CodeList"`
	Methods []struct {
		OID         string `xml:"OID,attr"`
		Expressions []struct {
			Context string `xml:"Context,attr"`
			Text    string `xml:",chardata"`
		} `xml:"FormalExpression"`
	} `xml:"MethodDef"`
}

// ODMImport is the metadata of an ODM file, read.
type ODMImport struct {
	Name   string
	Visits []Visit
	Forms  []*Form
	Report []Note
}

// keyOf makes a key of an OID: the part after prefix if that is a key,
// else the OID (or name) in lower case with every other character _.
func keyOf(oid, prefix, name string) string {
	if k := strings.TrimPrefix(oid, prefix); k != oid && ValidKey(k) {
		return k
	}
	src := oid
	if src == "" {
		src = name
	}
	var b strings.Builder
	for _, r := range strings.ToLower(src) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	k := strings.Trim(b.String(), "_")
	if k == "" || k[0] < 'a' || k[0] > 'z' {
		k = "x_" + k
	}
	if len(k) > maxFormKey {
		k = k[:maxFormKey]
	}
	return k
}

// ReadODM reads an ODM file's metadata.
func ReadODM(r io.Reader) (ODMImport, error) {
	var out ODMImport
	data, err := io.ReadAll(io.LimitReader(r, MaxODM+1))
	if err != nil {
		return out, errs.Wrap(errs.Invalid, err, "the ODM file could not be read")
	}
	if len(data) > MaxODM {
		return out, errs.E(errs.Invalid, "an ODM file read for its metadata is at most %d bytes", MaxODM)
	}
	var f odmFile
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&f); err != nil {
		return out, errs.E(errs.Invalid, "not an ODM file: %s", errs.Clip(err.Error(), 200))
	}
	if f.XMLName.Space != ODMNamespace {
		return out, errs.E(errs.Invalid, "not an ODM 1.3 file: the root element is not in namespace %s", ODMNamespace)
	}
	if len(f.Studies) == 0 || len(f.Studies[0].Versions) == 0 {
		return out, errs.E(errs.Invalid, "the ODM file holds no study metadata (Study, MetaDataVersion)")
	}
	st := f.Studies[0]
	v := st.Versions[0]
	out.Name = strings.TrimSpace(st.Global.StudyName)
	note := func(field, format string, args ...any) {
		out.Report = append(out.Report, Note{Field: field, Note: fmt.Sprintf(format, args...)})
	}
	if len(f.Studies) > 1 || len(st.Versions) > 1 {
		note("", "only the first study's first metadata version is read")
	}
	units := map[string]string{}
	for _, u := range st.Units {
		units[u.OID] = u.Symbol.first()
		if units[u.OID] == "" {
			units[u.OID] = u.Name
		}
	}
	groups := map[string]int{}
	for i, g := range v.GroupDefs {
		groups[g.OID] = i
	}
	items := map[string]int{}
	for i, it := range v.ItemDefs {
		items[it.OID] = i
	}
	lists := map[string]int{}
	for i, cl := range v.CodeLists {
		lists[cl.OID] = i
	}
	methods := map[string]string{}
	for _, m := range v.Methods {
		for _, e := range m.Expressions {
			methods[m.OID] = strings.TrimSpace(e.Text)
			break
		}
	}
	formKeys := map[string]string{} // FormDef OID -> key
	var bad []FieldError
	for _, fd := range v.FormDefs {
		form := &Form{Key: keyOf(fd.OID, "F.", fd.Name), Title: strings.TrimSpace(fd.Name), Survey: fd.Aliases.get("survey") == "yes"}
		if form.Title == "" {
			form.Title = form.Key
		}
		formKeys[fd.OID] = form.Key
		var positions []int // of the fields, as the file's aliases give them
		for _, ref := range fd.Groups {
			gi, ok := groups[ref.ItemGroupOID]
			if !ok {
				bad = append(bad, FieldError{Field: form.Key, Error: fmt.Sprintf("item group %s is not defined", errs.Clip(ref.ItemGroupOID, 64))})
				continue
			}
			g := v.GroupDefs[gi]
			group := ""
			if g.Repeating == "Yes" {
				prefix := "IG." + form.Key + "."
				group = keyOf(g.OID, prefix, g.Name)
				max, _ := strconv.Atoi(g.Aliases.get("max"))
				if max < 1 || max > maxGroupRepeat {
					max = maxGroupRepeat
				}
				label := g.Aliases.get("label")
				if label == "" {
					label = g.Name
				}
				form.Groups = append(form.Groups, Group{Name: group, Label: label, Max: max})
			}
			for _, ir := range g.Items {
				ii, ok := items[ir.ItemOID]
				if !ok {
					bad = append(bad, FieldError{Field: form.Key, Error: fmt.Sprintf("item %s is not defined", errs.Clip(ir.ItemOID, 64))})
					continue
				}
				it := v.ItemDefs[ii]
				fld := Field{Name: keyOf(it.OID, "I."+form.Key+".", it.Name), Group: group, Required: ir.Mandatory == "Yes"}
				fld.Label = it.Question.first()
				if fld.Label == "" {
					fld.Label = it.Name
				}
				fld.Note = it.Description.first()
				a := it.Aliases
				fld.Style, fld.Section, fld.Align, fld.Number = a.get("style"), a.get("section"), a.get("align"), a.get("number")
				fld.Matrix, fld.Annotation, fld.ShowIf, fld.Pattern = a.get("matrix"), a.get("annotation"), a.get("show_if"), a.get("pattern")
				fld.MatrixRanking, fld.Sensitive, fld.Identifier = a.get("matrix_ranking") == "yes", a.get("sensitive") == "yes", a.get("identifier") == "yes"
				for i := 1; i <= maxAnchors; i++ {
					if s := a.get("anchor" + strconv.Itoa(i)); s != "" {
						fld.Anchors = append(fld.Anchors, s)
					}
				}
				fld.MinLength, _ = strconv.Atoi(a.get("min_length"))
				fld.Accept = strings.Fields(a.get("accept"))
				fld.MaxBytes, _ = strconv.Atoi(a.get("max_bytes"))
				if it.Unit != nil {
					fld.Unit = units[it.Unit.OID]
				}
				switch it.DataType {
				case "integer":
					fld.Type = Integer
				case "float", "double":
					fld.Type = Decimal
					fld.Decimals, _ = strconv.Atoi(it.SignificantDigits)
				case "date":
					fld.Type = Date
				case "datetime":
					fld.Type = DateTime
				case "time":
					fld.Type = Time
				case "boolean":
					fld.Type = YesNo
				case "text", "string", "":
					fld.Type = Text
				default:
					fld.Type = Text
					note(fld.Name, "data type %s has no equivalent here: read as text", errs.Clip(it.DataType, 32))
				}
				if fld.Type == Text {
					fld.MaxLength, _ = strconv.Atoi(it.Length)
				}
				if it.CodeList != nil {
					ci, ok := lists[it.CodeList.OID]
					if !ok {
						bad = append(bad, FieldError{Field: fld.Name, Error: fmt.Sprintf("code list %s is not defined", errs.Clip(it.CodeList.OID, 64))})
						continue
					}
					cl := v.CodeLists[ci]
					for _, c := range cl.Items {
						label := c.Decode.first()
						if label == "" {
							label = c.Value
						}
						fld.Choices = append(fld.Choices, Choice{Code: c.Value, Label: label})
					}
					for _, c := range cl.Enumerated {
						fld.Choices = append(fld.Choices, Choice{Code: c.Value, Label: c.Value})
					}
					fld.Type = Single
					if len(fld.Choices) == 2 && fld.Choices[0].Code == "1" && fld.Choices[1].Code == "0" && cl.DataType == "integer" {
						fld.Type, fld.Choices = YesNo, nil
					}
				}
				if t := Type(a.get("type")); t != "" {
					fld.Type = t
					if t != Single && t != Multiple {
						fld.Choices = nil
					}
				}
				if ir.MethodOID != "" {
					fld.Type, fld.Calc = Calculated, methods[ir.MethodOID]
					fld.Decimals, _ = strconv.Atoi(a.get("decimals"))
					if fld.Calc == "" {
						fld.Type = Descriptive
						note(fld.Name, "the computation %s has no expression here: shown as descriptive text", errs.Clip(ir.MethodOID, 64))
					}
				}
				for _, rc := range it.Ranges {
					if len(rc.Values) != 1 {
						note(fld.Name, "a range check of %d values was left out", len(rc.Values))
						continue
					}
					val := strings.TrimSpace(rc.Values[0])
					if fld.Type == Date || fld.Type == DateTime {
						switch rc.Comparator {
						case "GE", "GT":
							fld.MinDate = val
						case "LE", "LT":
							fld.MaxDate = val
						}
						continue
					}
					x, err := strconv.ParseFloat(val, 64)
					if err != nil {
						note(fld.Name, "range check %q is not a number: left out", errs.Clip(val, 40))
						continue
					}
					switch rc.Comparator {
					case "GE", "GT":
						fld.Min = &x
					case "LE", "LT":
						fld.Max = &x
					default:
						note(fld.Name, "range check %s was left out", errs.Clip(rc.Comparator, 8))
					}
				}
				if fld.Type == Descriptive || fld.Type == Calculated {
					fld.Required = false
				}
				form.Fields = append(form.Fields, fld)
				pos, err := strconv.Atoi(a.get("position"))
				if err != nil {
					pos = 0
				}
				positions = append(positions, pos)
			}
		}
		if !slices.Contains(positions, 0) {
			order := make([]int, len(form.Fields))
			for i := range order {
				order[i] = i
			}
			sort.SliceStable(order, func(a, b int) bool { return positions[order[a]] < positions[order[b]] })
			sorted := make([]Field, len(form.Fields))
			for i, j := range order {
				sorted[i] = form.Fields[j]
			}
			form.Fields = sorted
		}
		out.Forms = append(out.Forms, form)
	}
	for _, e := range v.EventDefs {
		vis := Visit{Key: keyOf(e.OID, "SE.", e.Name), Label: strings.TrimSpace(e.Name), Repeating: e.Repeating == "Yes", Forms: []string{}}
		if vis.Label == "" {
			vis.Label = vis.Key
		}
		if d, err := strconv.Atoi(e.Aliases.get("day")); err == nil {
			vis.Day = &d
			vis.WindowBefore, _ = strconv.Atoi(e.Aliases.get("window_before"))
			vis.WindowAfter, _ = strconv.Atoi(e.Aliases.get("window_after"))
		} else if e.Type == "Scheduled" {
			note(vis.Key, "the visit's day is not in the file: it is unscheduled here until one is set")
		}
		for _, fr := range e.Forms {
			if k, ok := formKeys[fr.FormOID]; ok {
				vis.Forms = append(vis.Forms, k)
			} else {
				bad = append(bad, FieldError{Field: vis.Key, Error: fmt.Sprintf("form %s is not defined", errs.Clip(fr.FormOID, 64))})
			}
		}
		out.Visits = append(out.Visits, vis)
	}
	for _, form := range out.Forms {
		for _, p := range form.Check() {
			bad = append(bad, FieldError{Field: form.Key + "." + p.Field, Error: p.Error})
		}
	}
	if len(bad) > 0 {
		return ODMImport{}, problems(bad)
	}
	if err := CheckSchedule(out.Visits); err != nil {
		return ODMImport{}, err
	}
	return out, nil
}

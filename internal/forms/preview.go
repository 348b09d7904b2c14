package forms

import "strings"

// Preview is what a page shows of values being entered: which fields are
// asked, and what the calculated fields come to.
type Preview struct {
	Asked map[string]bool
	Calc  map[string]string
}

// Preview evaluates the form's conditions and calculations over values as
// typed (in, possibly invalid; for group "" the fields outside repeating
// groups, else one row of group), as Validate would: a field that is not
// asked reads as blank to the conditions after it. outside answers the
// fields of the visit's other forms ([form.field]); nil reads them blank.
// Nothing is checked: a save still validates the whole form. Check must
// have passed.
func (f *Form) Preview(group string, in map[string]string, outside func(ref string) string) Preview {
	p := Preview{Asked: map[string]bool{}, Calc: map[string]string{}}
	skipped := map[string]bool{}
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
		if skipped[name] {
			return ""
		}
		if v, ok := p.Calc[name]; ok {
			return v
		}
		return strings.TrimSpace(in[name])
	}
	for i := range f.Fields {
		fd := &f.Fields[i]
		if fd.Group != group {
			continue
		}
		asked := fd.showIf == nil || fd.showIf.True(read)
		p.Asked[fd.Name] = asked
		if !asked {
			skipped[fd.Name] = true
		}
	}
	// Calculations in the order their inputs are ready, as in validate.
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
				if j, ok := f.byName[r]; ok && f.Fields[j].calc != nil && !done[r] {
					ready = false
				}
			}
			if !ready {
				continue
			}
			done[fd.Name], progress = true, true
			if !p.Asked[fd.Name] {
				continue
			}
			if v := fd.calc.Eval(read); v != "" {
				p.Calc[fd.Name] = roundTo(v, fd.Decimals)
			}
		}
	}
	return p
}

package entries

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
)

// takeIdentifiers takes the values of the form's identifier fields out of
// a save (in.Values is replaced, not changed): they identify the
// participant, so they are kept with the participant's identity
// (participants.StoreIdentifiers), never among the entry's values, and
// exports never hold them. Each is checked by its field's rules, on its
// own; one hidden from the writer or of a repeating group is refused
// (validate names it).
func takeIdentifiers(f *forms.Form, in *Save, hidden map[string]bool) (map[string]participants.Identifier, error) {
	var out map[string]participants.Identifier
	var list []forms.FieldError
	rest := make(map[string]string, len(in.Values))
	for name, v := range in.Values {
		fd, ok := f.FieldNamed(name)
		if !ok || !fd.Identifier || hidden[name] || fd.Group != "" {
			rest[name] = v
			continue
		}
		clean, problem := fd.Clean(v, in.Complete)
		if problem != "" {
			list = append(list, forms.FieldError{Field: name, Error: problem})
			continue
		}
		if out == nil {
			out = map[string]participants.Identifier{}
		}
		out[f.Key+"."+name] = participants.Identifier{Value: clean, Sensitive: fd.Sensitive}
	}
	if len(list) > 0 {
		return nil, problems(list)
	}
	in.Values = rest
	return out, nil
}

// storeIdentifiers records the identifier values of a save with the
// participant's identity, naming the fields (never the values) on the
// audit event.
func storeIdentifiers(ctx context.Context, t *gate.Tx, orgID, participant string, values map[string]participants.Identifier) error {
	if len(values) == 0 {
		return nil
	}
	if err := participants.StoreIdentifiers(ctx, t, orgID, participant, values); err != nil {
		return err
	}
	t.Detail("identifiers", strings.Join(slices.Sorted(maps.Keys(values)), ","))
	return nil
}

// withIdentifiers prepares a save's validation around its identifier
// values: the form with its identifier fields not required (a value kept
// with the identity is not sent again with every save), and the values
// sent passed as values the writer does not send among the entry's
// (hidden, old), so that conditions read them. withoutIdentifiers then
// takes them out of what validation answers.
func withIdentifiers(f *forms.Form, idents map[string]participants.Identifier, hidden map[string]bool, old map[cell]string) (*forms.Form, map[string]bool, map[cell]string) {
	if !slices.ContainsFunc(f.Fields, func(fd forms.Field) bool { return fd.Identifier }) {
		return f, hidden, old
	}
	g := *f
	g.Fields = slices.Clone(f.Fields)
	hidden, old = maps.Clone(hidden), maps.Clone(old)
	if hidden == nil {
		hidden = map[string]bool{}
	}
	if old == nil {
		old = map[cell]string{}
	}
	for i := range g.Fields {
		fd := &g.Fields[i]
		if !fd.Identifier || fd.Group != "" {
			continue
		}
		fd.Required = false
		hidden[fd.Name] = true
		if v, ok := idents[f.Key+"."+fd.Name]; ok && v.Value != "" {
			old[cell{fd.Name, 0}] = v.Value
		}
	}
	return &g, hidden, old
}

// withoutIdentifiers takes the identifier fields' values out of what a
// save stores among the entry's.
func withoutIdentifiers(f *forms.Form, next map[cell]string) {
	for c := range next {
		if fd, ok := f.FieldNamed(c.field); ok && fd.Identifier {
			delete(next, c)
		}
	}
}

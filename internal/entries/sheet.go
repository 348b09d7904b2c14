package entries

import (
	"context"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
)

// Sheet is what a page needs to show an entry and take a save of it.
type Sheet struct {
	// Entry is the entry as the reader reads it.
	Entry Entry
	// Form is the version a save is checked against: the form's newest
	// published one.
	Form *forms.Form
	// Hidden are the fields of Form the reader does not see (ACL-04);
	// Locked those they see but may not change.
	Hidden, Locked map[string]bool
	// Writable: the reader may save the entry.
	Writable bool
	// Preview is what the fields outside repeating groups come to (which
	// are asked, the calculations), Rows the same for each row of each
	// group: over the values a page was sent, else the entry's.
	Preview forms.Preview
	Rows    map[string][]forms.Preview
}

// Sheet reads the entry at a place with what a page needs to show it and
// take a save: the form, which fields the reader sees and may change, and
// a preview of its branches and calculations over draft (values being
// entered, not yet saved) or, when draft is nil, over the entry's values.
// It reads as Get does, and is recorded as a read of the entry.
func (s *Service) Sheet(ctx context.Context, a gate.Actor, slug string, p Place, draft *Save) (Sheet, error) {
	var out Sheet
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "entry.read", func(t *gate.Tx) error {
		org := t.Org()
		sc, err := place(ctx, t, authz.EntryRead, p, "", false)
		if err != nil {
			return err
		}
		v, err := forms.VersionOf(ctx, t, org.ID, p.StudyID, p.Form, 0)
		if err != nil {
			return err
		}
		r := p.resource(org.ID)
		asParticipant := onlyAsParticipant(t, authz.EntryRead, r)
		if !v.Form.Survey && asParticipant {
			return notTheirs(p)
		}
		if v.State != forms.Published {
			return errs.E(errs.NotFound, "form %s has no published version yet", p.Form)
		}
		if out.Entry, err = s.read(ctx, t, org.ID, p, sc, v.Form); err != nil {
			return err
		}
		rules, err := fieldRules(ctx, t, org.ID, p.StudyID)
		if err != nil {
			return err
		}
		out.Form = v.Form
		out.Hidden = hiddenFrom(t, rules, authz.EntryRead, r, v.Form)
		out.Writable = t.Allowed(authz.EntryWrite, r) && (v.Form.Survey || !onlyAsParticipant(t, authz.EntryWrite, r))
		out.Locked = map[string]bool{}
		if out.Writable {
			for name := range hiddenFrom(t, rules, authz.EntryWrite, r, v.Form) {
				if !out.Hidden[name] {
					out.Locked[name] = true
				}
			}
		}
		outside, err := outsideValues(ctx, t, org.ID, p, sc.visitID, v.Form.Outside())
		if err != nil {
			return err
		}
		values, rows := out.Entry.Values, out.Entry.Rows
		if draft != nil {
			values, rows = draft.Values, draft.Rows
		}
		out.Preview = v.Form.Preview("", values, outside)
		out.Rows = map[string][]forms.Preview{}
		for _, g := range v.Form.Groups {
			for _, row := range rows[g.Name] {
				out.Rows[g.Name] = append(out.Rows[g.Name], v.Form.Preview(g.Name, row, outside))
			}
		}
		return nil
	})
	return out, err
}

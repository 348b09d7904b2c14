// Package entries records what a study learns about its participants: the
// values of its forms, per participant, visit and form (an entry). Every
// save is a revision that keeps who, when, under which form version and
// why (a reason is required for every save after the first), and what it
// changed; a save is validated whole against the form and stores nothing
// when any value is refused, naming each field (WEB-05); two people saving
// the same entry are told of each other, never overwritten.
//
// A sensitive field's value is sealed with the study's key and opens only
// for a reader with a decrypt grant naming it (CRY-06); a field hidden
// from a role (ACL-04) is absent from what that role reads, and kept as it
// was when that role saves. Every method runs through the gate: authorized
// before anything is read, in one transaction, audited.
package entries

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// Service records and reads entries.
type Service struct {
	Gate *gate.Gate
	// Now is the clock of decrypt grants' expiry and of deletions; nil
	// means time.Now.
	Now func() time.Time
	// MaxExports bounds the exports the service runs at once;
	// MaxConcurrentExports when 0.
	MaxExports int
	exports    exports
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Status is where an entry stands.
type Status string

const (
	NotStarted Status = "not_started"
	Incomplete Status = "incomplete"
	Complete   Status = "complete"
	// Deleted is the status a participant's grid shows of a deleted
	// entry (LIFE-01); its values are hidden until it is restored.
	Deleted Status = "deleted"
)

// Bounds.
const (
	// MaxRepeat bounds the times a repeating visit is held.
	MaxRepeat = 1000
	// MaxReason bounds the reason of a change, in characters.
	MaxReason = 500
)

// Place names an entry: a participant at a site of a study, a visit (and
// the time it was held, for a repeating one: Repeat, from 1) and a form,
// by their keys.
type Place struct {
	StudyID, SiteID, Participant string
	Visit                        string
	Repeat                       int
	Form                         string
}

// Entry is what a reader sees of an entry: the values of the fields they
// may see; Sealed lists the sensitive fields that hold a value they may not
// open.
type Entry struct {
	Place
	FormVersion int
	Status      Status
	Revision    int // 0: nothing saved yet
	Values      map[string]string
	Rows        map[string][]map[string]string // repeating group -> rows
	Sealed      []string                       // field, or group.field#row
	SavedBy     string
	SavedAt     int64
}

// Save is one save of an entry.
type Save struct {
	// Revision is the revision the writer started from, 0 for a new
	// entry: another is a conflict.
	Revision int
	Values   map[string]string
	Rows     map[string][]map[string]string
	// Complete marks the entry complete: required fields must then hold
	// a value.
	Complete bool
	// Reason says why the values change; required for every save after
	// the first.
	Reason string
}

// Revision is one save in an entry's history.
type Revision struct {
	Revision    int
	FormVersion int
	Status      Status
	SavedBy     string
	SavedAt     int64
	Reason      string
	Changes     []Change
}

// Change is one value a save set or removed. A value the reader may not
// open is Sealed; a removed value is Removed.
type Change struct {
	Field   string
	Row     int // 0 outside a repeating group
	Value   string
	Sealed  bool
	Removed bool
}

// cell is one stored value: a field's at row (0 outside a group).
type cell struct {
	field string
	row   int
}

// scheduled is what a request's visit and form are, found in the study.
type scheduled struct {
	visitID   string
	repeating bool
	formID    string
	arms      string // the visit's arms, separated by commas; "": every arm
}

// visit is the scheduled visit as far as its arms go.
func (s scheduled) visit() forms.Visit {
	if s.arms == "" {
		return forms.Visit{}
	}
	return forms.Visit{Arms: strings.Split(s.arms, ",")}
}

func (p Place) resource(orgID string) authz.Resource {
	return authz.Resource{OrgID: orgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Participant}
}

// authorize allows action on the participant a request names, then finds
// them at the place's study and site. Refused, the request is answered not
// found when the requester may not read the participant's entries either;
// forbidden when they may read them but not take the action.
func authorize(ctx context.Context, t *gate.Tx, action authz.Action, p Place, refusal string) (participants.Participant, error) {
	t.Object("participant", p.Participant)
	if ids.Valid(p.Participant) {
		t.Participant(p.Participant)
	}
	r := p.resource(t.Org().ID)
	forbidden := action != authz.EntryRead && !t.Allowed(action, r) && t.Allowed(authz.EntryRead, r)
	if !forbidden {
		if err := t.Authorize(action, r); err != nil {
			return participants.Participant{}, err
		}
	}
	pt, err := participants.ByPseudonym(ctx, t, t.Org().ID, p.Participant)
	if err != nil {
		return participants.Participant{}, err
	}
	if pt.StudyID != p.StudyID || pt.SiteID != p.SiteID {
		return participants.Participant{}, errs.E(errs.NotFound, "participant not found")
	}
	if forbidden {
		return participants.Participant{}, errs.E(errs.Forbidden, "%s", refusal)
	}
	return pt, nil
}

// onlyAsParticipant reports whether the requester may take action on r
// only through the participant role (their own record): then only survey
// forms are theirs to read and fill.
func onlyAsParticipant(t *gate.Tx, action authz.Action, r authz.Resource) bool {
	staff := t.Subject
	staff.Assignments = slices.DeleteFunc(slices.Clone(staff.Assignments), func(a authz.Assignment) bool { return a.Role == authz.Participant })
	return !authz.Decide(staff, action, r).Allow
}

// notTheirs answers a participant who names a form that is not a survey:
// as if it were not there.
func notTheirs(p Place) error {
	return errs.E(errs.NotFound, "no form %s at visit %s", errs.Clip(p.Form, 64), errs.Clip(p.Visit, 64))
}

// place authorizes action on the participant a request names (see
// authorize), names its visit, form and repeat on the audit event, and
// finds the visit and form in the study (see find).
func place(ctx context.Context, t *gate.Tx, action authz.Action, p Place, refusal string, scheduledOnly bool) (scheduled, error) {
	pt, err := authorize(ctx, t, action, p, refusal)
	if err != nil {
		return scheduled{}, err
	}
	t.Detail("visit", forms.KeyForTrail(p.Visit))
	t.Detail("form", forms.KeyForTrail(p.Form))
	sc, err := find(ctx, t, t.Org().ID, p, scheduledOnly)
	if err != nil {
		return scheduled{}, err
	}
	if scheduledOnly && !sc.visit().For(pt.Arm) {
		return scheduled{}, errs.E(errs.Invalid, "visit %s is not held in this participant's arm", p.Visit)
	}
	t.Detail("repeat", strconv.Itoa(p.Repeat))
	return sc, nil
}

// find finds a place's visit and form in the study: the visit by its key
// (its repeat within bounds: 1 unless it repeats) and the form by its key.
// scheduledOnly requires the visit to collect the form.
func find(ctx context.Context, q sqldb.Querier, orgID string, p Place, scheduledOnly bool) (scheduled, error) {
	notFound := errs.E(errs.NotFound, "no form %s at visit %s", errs.Clip(p.Form, 64), errs.Clip(p.Visit, 64))
	if !forms.ValidKey(p.Visit) || !forms.ValidKey(p.Form) || p.Repeat < 1 || p.Repeat > MaxRepeat {
		return scheduled{}, notFound
	}
	var s scheduled
	var rep int
	var collected int
	err := q.QueryRowContext(ctx, `SELECT v.id, v.repeating, f.id, v.arms,
		  (SELECT count(*) FROM visit_forms vf WHERE vf.visit_id = v.id AND vf.form_id = f.id)
		FROM visits v JOIN forms f ON f.org_id = v.org_id AND f.study_id = v.study_id
		WHERE v.org_id = $1 AND v.study_id = $2 AND v.visit_key = $3 AND f.form_key = $4`,
		orgID, p.StudyID, p.Visit, p.Form).Scan(&s.visitID, &rep, &s.formID, &s.arms, &collected)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return scheduled{}, notFound
	case err != nil:
		return scheduled{}, errs.Wrap(errs.Unavailable, err, "read the schedule")
	}
	s.repeating = rep == 1
	if !s.repeating && p.Repeat != 1 {
		return scheduled{}, notFound
	}
	if scheduledOnly && collected == 0 {
		return scheduled{}, errs.E(errs.Invalid, "visit %s does not collect form %s", p.Visit, p.Form)
	}
	return s, nil
}

// stored is an entry as stored, its values opened.
type stored struct {
	id          string
	formVersion int
	status      Status
	revision    int
	savedBy     string
	savedAt     int64
	deletedAt   int64 // 0: not deleted
	values      map[cell]string
	cells       []packedCell // as stored, sealed values sealed
}

// sealedAt is where a value of an entry is sealed: the entry, and the
// form-qualified field with its row.
func sealedAt(orgID, studyID, entryID, form string, c cell) keys.Context {
	return keys.Context{OrgID: orgID, StudyID: studyID, RecordID: entryID, Field: form + "." + c.field + "#" + strconv.Itoa(c.row)}
}

// load reads the entry at a place, or reports found == false. Sealed
// values are opened when open says so, else left out and listed.
func load(ctx context.Context, t *gate.Tx, orgID string, p Place, s scheduled, open func(field string) bool) (stored, []cell, bool, error) {
	var e stored
	var packed string
	err := t.QueryRowContext(ctx, `SELECT id, form_version, status, revision, saved_by, saved_at, coalesce(deleted_at, 0), cells FROM entries
		WHERE participant_id = $1 AND visit_id = $2 AND visit_repeat = $3 AND form_id = $4 AND org_id = $5`,
		p.Participant, s.visitID, p.Repeat, s.formID, orgID).Scan(&e.id, &e.formVersion, &e.status, &e.revision, &e.savedBy, &e.savedAt, &e.deletedAt, &packed)
	if errors.Is(err, sql.ErrNoRows) {
		return stored{}, nil, false, nil
	}
	if err != nil {
		return stored{}, nil, false, errs.Wrap(errs.Unavailable, err, "read the entry")
	}
	if e.deletedAt != 0 {
		return e, nil, true, nil // hidden: its values are not read
	}
	if e.cells, err = unpackCells(packed, nil); err != nil {
		return stored{}, nil, false, errs.Wrap(errs.Internal, err, "read the entry")
	}
	e.values = map[cell]string{}
	var closed []cell
	for _, r := range e.cells {
		if r.clear {
			e.values[r.c] = r.value
			continue
		}
		if !open(r.c.field) {
			closed = append(closed, r.c)
			continue
		}
		sealed, err := r.ciphertext()
		if err != nil {
			return stored{}, nil, false, errs.Wrap(errs.Internal, err, "read the entry")
		}
		b, err := t.Vault().Open(ctx, sealedAt(orgID, p.StudyID, e.id, p.Form, r.c), sealed)
		if err != nil {
			return stored{}, nil, false, err
		}
		e.values[r.c] = string(b)
	}
	return e, closed, true, nil
}

// fieldRules loads the study's field-visibility rules (ACL-04), once for
// a request, whatever the number of forms it judges by them.
func fieldRules(ctx context.Context, t *gate.Tx, orgID, studyID string) (authz.FieldRules, error) {
	return authz.FieldRulesOf(ctx, t, orgID, studyID)
}

// hiddenFrom lists the fields of form f that the requester may not see
// when taking action on r, under the study's rules (ACL-04).
func hiddenFrom(t *gate.Tx, rules authz.FieldRules, action authz.Action, r authz.Resource, f *forms.Form) map[string]bool {
	names := make([]string, len(f.Fields))
	for i, fd := range f.Fields {
		names[i] = f.Key + "." + fd.Name
	}
	seen := map[string]bool{}
	for _, n := range authz.VisibleFields(t.Subject, action, r, rules, names) {
		seen[n] = true
	}
	hidden := map[string]bool{}
	for _, fd := range f.Fields {
		if !seen[f.Key+"."+fd.Name] {
			hidden[fd.Name] = true
		}
	}
	return hidden
}

// outsideValues answers the values of fields of other forms (form.field)
// that a form's conditions read, as saved at the same participant, visit
// and time it was held ("" for none, and for an entry deleted).
func outsideValues(ctx context.Context, t *gate.Tx, orgID string, p Place, visitID string, refs []string) (func(string) string, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	values := map[string]string{}
	for _, ref := range refs {
		form, field, _ := strings.Cut(ref, ".")
		var id, packed string
		err := t.QueryRowContext(ctx, `SELECT e.id, e.cells FROM entries e
			JOIN forms f ON f.id = e.form_id
			WHERE e.org_id = $1 AND e.participant_id = $2 AND e.visit_id = $3 AND e.visit_repeat = $4 AND f.form_key = $5
			AND e.deleted_at IS NULL`, orgID, p.Participant, visitID, p.Repeat, form).Scan(&id, &packed)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return nil, errs.Wrap(errs.Unavailable, err, "read the visit's other forms")
		}
		cells, err := unpackCells(packed, nil)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "read the visit's other forms")
		}
		for _, pc := range cells {
			switch {
			case pc.c != (cell{field, 0}):
			case pc.clear:
				values[ref] = pc.value
			default:
				sealed, err := pc.ciphertext()
				if err != nil {
					return nil, errs.Wrap(errs.Internal, err, "read the visit's other forms")
				}
				b, err := t.Vault().Open(ctx, sealedAt(orgID, p.StudyID, id, form, pc.c), sealed)
				if err != nil {
					return nil, err
				}
				values[ref] = string(b)
			}
		}
	}
	return func(ref string) string { return values[ref] }, nil
}

// checkReason checks the reason of a change.
func checkReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", errs.E(errs.Invalid, "a reason is required to change saved values")
	case !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxReason:
		return "", errs.E(errs.Invalid, "the reason must be text of at most %d characters", MaxReason)
	case strings.ContainsFunc(reason, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }):
		return "", errs.E(errs.Invalid, "the reason may not contain control characters")
	}
	return reason, nil
}

func problems(list []forms.FieldError) error {
	p := &forms.Problems{Fields: list}
	return errs.Wrap(errs.Invalid, p, p.Error())
}

// validate checks a save against the form, with the stored values of the
// fields hidden from the writer kept as they are, and answers the values
// to store by cell.
func validate(f *forms.Form, in Save, hidden map[string]bool, old map[cell]string, outside func(string) string) (map[cell]string, error) {
	var list []forms.FieldError
	values := map[string]string{}
	for name, v := range in.Values {
		if hidden[name] {
			list = append(list, forms.FieldError{Field: errs.Clip(name, 64), Error: "not a field of this form or group"})
			continue
		}
		if fd, ok := f.FieldNamed(name); ok && fd.Identifier {
			list = append(list, forms.FieldError{Field: name, Error: "identifies the participant, so it is recorded with their identity, not here"})
			continue
		}
		values[name] = v
	}
	for c, v := range old {
		if c.row == 0 && hidden[c.field] {
			values[c.field] = v
		}
	}
	out := map[cell]string{}
	clean, problems1 := f.ValidateWith("", values, in.Complete, outside)
	list = append(list, problems1...)
	for k, v := range clean {
		out[cell{k, 0}] = v
	}
	groups := map[string]forms.Group{}
	for _, g := range f.Groups {
		groups[g.Name] = g
	}
	for name, rows := range in.Rows {
		g, ok := groups[name]
		if !ok {
			list = append(list, forms.FieldError{Field: errs.Clip(name, 64), Error: "not a repeating group of this form"})
			continue
		}
		if len(rows) > g.Max {
			list = append(list, forms.FieldError{Field: name, Error: fmt.Sprintf("holds at most %d rows", g.Max)})
			continue
		}
		for i, row := range rows {
			values := map[string]string{}
			for k, v := range row {
				if hidden[k] {
					list = append(list, forms.FieldError{Field: errs.Clip(k, 64), Row: i + 1, Error: "not a field of this form or group"})
					continue
				}
				values[k] = v
			}
			for c, v := range old {
				if c.row == i+1 && hidden[c.field] {
					if fd, ok := f.FieldNamed(c.field); ok && fd.Group == name {
						values[c.field] = v
					}
				}
			}
			clean, rowProblems := f.ValidateWith(name, values, in.Complete, outside)
			for _, p := range rowProblems {
				p.Row = i + 1
				list = append(list, p)
			}
			for k, v := range clean {
				out[cell{k, i + 1}] = v
			}
		}
	}
	if len(list) > 0 {
		return nil, problems(list)
	}
	return out, nil
}

// Save validates and stores a save of the entry at a place, under the
// form's newest published version, and answers the entry as the writer
// now reads it.
func (s *Service) Save(ctx context.Context, a gate.Actor, slug string, p Place, in Save) (Entry, error) {
	var out Entry
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "entry.save", func(t *gate.Tx) error {
		org := t.Org()
		sc, err := place(ctx, t, authz.EntryWrite, p, "this role reads entries; it does not enter them", true)
		if err != nil {
			return err
		}
		// Where the study says so, no data before a valid consent.
		if err := consent.CheckEntry(ctx, t, org.ID, p.StudyID, p.Participant); err != nil {
			return err
		}
		v, err := forms.VersionOf(ctx, t, org.ID, p.StudyID, p.Form, 0)
		if err != nil {
			return err
		}
		if v.State != forms.Published {
			return errs.E(errs.Invalid, "form %s has no published version to record under", p.Form)
		}
		if !v.Form.Survey && onlyAsParticipant(t, authz.EntryWrite, p.resource(org.ID)) {
			return notTheirs(p)
		}
		old, _, found, err := load(ctx, t, org.ID, p, sc, func(string) bool { return true })
		if err != nil {
			return err
		}
		switch {
		case found && old.deletedAt != 0:
			return errs.E(errs.Conflict, "this entry was deleted; an administrator may restore it")
		case !found && in.Revision != 0:
			return errs.E(errs.Conflict, "this entry has not been saved yet; start from revision 0")
		case found && in.Revision != old.revision:
			return errs.E(errs.Conflict, "someone else saved this entry meanwhile (revision %d); reload it and save again", old.revision)
		}
		reason := strings.TrimSpace(in.Reason)
		if found {
			if reason, err = checkReason(in.Reason); err != nil {
				return err
			}
		} else if reason != "" {
			if reason, err = checkReason(in.Reason); err != nil {
				return err
			}
		}
		r := p.resource(org.ID)
		rules, err := fieldRules(ctx, t, org.ID, p.StudyID)
		if err != nil {
			return err
		}
		hidden := hiddenFrom(t, rules, authz.EntryWrite, r, v.Form)
		outside, err := outsideValues(ctx, t, org.ID, p, sc.visitID, v.Form.Outside())
		if err != nil {
			return err
		}
		idents, err := takeIdentifiers(v.Form, &in, hidden)
		if err != nil {
			return err
		}
		asked, unsent, known := withIdentifiers(v.Form, idents, hidden, old.values)
		next, err := validate(asked, in, unsent, known, outside)
		if err != nil {
			return err
		}
		withoutIdentifiers(v.Form, next)
		if err := checkFiles(ctx, t, org.ID, p, v.Form, next); err != nil {
			return err
		}
		if err := storeIdentifiers(ctx, t, org.ID, p.Participant, idents); err != nil {
			return err
		}
		status := Incomplete
		if in.Complete {
			status = Complete
		}
		var changes []cell
		for c, val := range next {
			if was, ok := old.values[c]; !ok || was != val {
				changes = append(changes, c)
			}
		}
		for c := range old.values {
			if _, ok := next[c]; !ok {
				changes = append(changes, c)
			}
		}
		if found && len(changes) == 0 && status == old.status && v.Version == old.formVersion {
			t.Detail("revision", strconv.Itoa(old.revision))
			t.Detail("changed", "0")
			out, err = s.read(ctx, t, org.ID, p, sc, v.Form)
			return err
		}
		id, revision, now := old.id, old.revision+1, sqldb.Now()
		account := t.Subject.AccountID
		if !found {
			id = ids.New()
		}
		// The values now and what this save changed, packed: a value
		// changed sealed anew, the others kept as stored.
		kept := make(map[cell]packedCell, len(old.cells)+len(changes))
		for _, pc := range old.cells {
			kept[pc.c] = pc
		}
		history := make([]packedCell, 0, len(changes))
		for _, c := range changes {
			pc := packedCell{c: c}
			if val, set := next[c]; set {
				if fd, _ := v.Form.FieldNamed(c.field); fd != nil && fd.Sensitive {
					b, err := t.Vault().Seal(ctx, keys.StudyScope(org.ID, p.StudyID), sealedAt(org.ID, p.StudyID, id, p.Form, c), []byte(val))
					if err != nil {
						return err
					}
					pc = sealedCell(c, b)
				} else {
					pc.value, pc.clear = val, true
				}
				kept[c] = pc
			} else {
				delete(kept, c)
			}
			history = append(history, pc)
		}
		current := make([]packedCell, 0, len(kept))
		for _, pc := range kept {
			current = append(current, pc)
		}
		cells, changed := packCells(current), packCells(history)
		if !found {
			_, err = t.ExecContext(ctx, `INSERT INTO entries (id, org_id, study_id, site_id, participant_id, visit_id, visit_repeat,
				form_id, form_version, status, revision, created_by, created_at, saved_by, saved_at, cells)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12, $11, $12, $13)`,
				id, org.ID, p.StudyID, p.SiteID, p.Participant, sc.visitID, p.Repeat, sc.formID, v.Version, string(status), account, now, cells)
			if sqldb.IsUniqueViolation(err) {
				return errs.E(errs.Conflict, "someone else saved this entry meanwhile; reload it and save again")
			}
		} else {
			var res sql.Result
			res, err = t.ExecContext(ctx, `UPDATE entries SET form_version = $1, status = $2, revision = $3, saved_by = $4, saved_at = $5, cells = $6
				WHERE id = $7 AND revision = $8`, v.Version, string(status), revision, account, now, cells, id, old.revision)
			if err == nil {
				if n, rerr := res.RowsAffected(); rerr != nil || n != 1 {
					return errs.E(errs.Conflict, "someone else saved this entry meanwhile; reload it and save again")
				}
			}
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "store the entry")
		}
		var why any
		if reason != "" {
			why = reason
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO entry_revisions (entry_id, revision, form_version, status, saved_by, saved_at, reason, changes)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, revision, v.Version, string(status), account, now, why, changed); err != nil {
			return errs.Wrap(errs.Unavailable, err, "store the entry's history")
		}
		t.Detail("revision", strconv.Itoa(revision))
		t.Detail("form_version", strconv.Itoa(v.Version))
		t.Detail("changed", strconv.Itoa(len(changes)))
		// The answer is what was saved, as the writer may read it: no
		// need to read it back.
		out = Entry{Place: p, FormVersion: v.Version, Status: status, Revision: revision, SavedBy: account, SavedAt: now,
			Values: map[string]string{}, Rows: map[string][]map[string]string{}, Sealed: []string{}}
		seen := hiddenFrom(t, rules, authz.EntryRead, r, v.Form)
		open, err := s.opener(ctx, t, p, p.Form)
		if err != nil {
			return err
		}
		for c, val := range next {
			fd, _ := v.Form.FieldNamed(c.field)
			switch {
			case seen[c.field]:
			case fd != nil && fd.Sensitive && !open(c.field):
				name := c.field
				if c.row > 0 {
					name = fmt.Sprintf("%s#%d", c.field, c.row)
				}
				out.Sealed = append(out.Sealed, name)
			default:
				out.put(v.Form, c, val)
			}
		}
		slices.Sort(out.Sealed)
		return nil
	})
	return out, err
}

// opener says which sensitive fields of a form the requester may open:
// those their live decrypt grants name (CRY-06).
func (s *Service) opener(ctx context.Context, t *gate.Tx, p Place, form string) (func(string) bool, error) {
	granted, err := participants.GrantedFormFields(ctx, t, t.Subject.AccountID, t.Org().ID, p.StudyID, p.SiteID, s.now())
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read decrypt grants")
	}
	return func(field string) bool { return granted[form+"."+field] }, nil
}

// read answers the entry at a place as the requester may read it, under
// the form version it was saved with (f when nothing is saved yet).
func (s *Service) read(ctx context.Context, t *gate.Tx, orgID string, p Place, sc scheduled, f *forms.Form) (Entry, error) {
	open, err := s.opener(ctx, t, p, p.Form)
	if err != nil {
		return Entry{}, err
	}
	e, closed, found, err := load(ctx, t, orgID, p, sc, open)
	if err != nil {
		return Entry{}, err
	}
	out := Entry{Place: p, Status: NotStarted, Values: map[string]string{}, Rows: map[string][]map[string]string{}, Sealed: []string{}}
	if !found {
		return out, nil
	}
	if e.deletedAt != 0 {
		return Entry{}, errs.E(errs.NotFound, "this entry was deleted")
	}
	if f == nil || e.formVersion != f.Version {
		v, err := forms.VersionOf(ctx, t, orgID, p.StudyID, p.Form, e.formVersion)
		if err != nil {
			return Entry{}, err
		}
		f = v.Form
	}
	rules, err := fieldRules(ctx, t, orgID, p.StudyID)
	if err != nil {
		return Entry{}, err
	}
	hidden := hiddenFrom(t, rules, authz.EntryRead, p.resource(orgID), f)
	out.FormVersion, out.Status, out.Revision, out.SavedBy, out.SavedAt = e.formVersion, e.status, e.revision, e.savedBy, e.savedAt
	for c, v := range e.values {
		if hidden[c.field] {
			continue
		}
		out.put(f, c, v)
	}
	for _, c := range closed {
		if hidden[c.field] {
			continue
		}
		name := c.field
		if c.row > 0 {
			name = fmt.Sprintf("%s#%d", c.field, c.row)
		}
		out.Sealed = append(out.Sealed, name)
	}
	return out, nil
}

// put places a value in the entry: a field's, or a group row's.
func (e *Entry) put(f *forms.Form, c cell, v string) {
	if c.row == 0 {
		e.Values[c.field] = v
		return
	}
	fd, ok := f.FieldNamed(c.field)
	if !ok || fd.Group == "" {
		return // a field of another version's group: in the history
	}
	rows := e.Rows[fd.Group]
	for len(rows) < c.row {
		rows = append(rows, map[string]string{})
	}
	rows[c.row-1][c.field] = v
	e.Rows[fd.Group] = rows
}

// Get reads the entry at a place.
func (s *Service) Get(ctx context.Context, a gate.Actor, slug string, p Place) (Entry, error) {
	var out Entry
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
		if !v.Form.Survey && onlyAsParticipant(t, authz.EntryRead, p.resource(org.ID)) {
			return notTheirs(p)
		}
		out, err = s.read(ctx, t, org.ID, p, sc, v.Form)
		return err
	})
	return out, err
}

// History reads every save of the entry at a place, oldest first, with
// what each changed, as the requester may read it.
func (s *Service) History(ctx context.Context, a gate.Actor, slug string, p Place) ([]Revision, error) {
	out := []Revision{}
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "entry.history", func(t *gate.Tx) error {
		org := t.Org()
		sc, err := place(ctx, t, authz.EntryRead, p, "", false)
		if err != nil {
			return err
		}
		if onlyAsParticipant(t, authz.EntryRead, p.resource(org.ID)) {
			cur, err := forms.VersionOf(ctx, t, org.ID, p.StudyID, p.Form, 0)
			if err != nil {
				return err
			}
			if !cur.Form.Survey {
				return notTheirs(p)
			}
		}
		var id string
		err = t.QueryRowContext(ctx, `SELECT id FROM entries WHERE participant_id = $1 AND visit_id = $2 AND visit_repeat = $3 AND form_id = $4 AND org_id = $5
			AND deleted_at IS NULL`,
			p.Participant, sc.visitID, p.Repeat, sc.formID, org.ID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the entry")
		}
		open, err := s.opener(ctx, t, p, p.Form)
		if err != nil {
			return err
		}
		// The fields hidden from the reader in any version of the form.
		versions, err := forms.Versions(ctx, t, org.ID, p.StudyID, p.Form)
		if err != nil {
			return err
		}
		rules, err := fieldRules(ctx, t, org.ID, p.StudyID)
		if err != nil {
			return err
		}
		hidden := map[string]bool{}
		for _, v := range versions {
			if v.State == forms.Draft {
				continue
			}
			full, err := forms.VersionOf(ctx, t, org.ID, p.StudyID, p.Form, v.Version)
			if err != nil {
				return err
			}
			for k := range hiddenFrom(t, rules, authz.EntryRead, p.resource(org.ID), full.Form) {
				hidden[k] = true
			}
		}
		rows, err := t.QueryContext(ctx, `SELECT revision, form_version, status, saved_by, saved_at, coalesce(reason, ''), changes
			FROM entry_revisions WHERE entry_id = $1 ORDER BY revision`, id)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the entry's history")
		}
		var packed []string
		for rows.Next() {
			var r Revision
			var changes string
			if err := rows.Scan(&r.Revision, &r.FormVersion, &r.Status, &r.SavedBy, &r.SavedAt, &r.Reason, &changes); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "read the entry's history")
			}
			r.Changes = []Change{}
			out = append(out, r)
			packed = append(packed, changes)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the entry's history")
		}
		for i, changes := range packed {
			cells, err := unpackCells(changes, nil)
			if err != nil {
				return errs.Wrap(errs.Internal, err, "read the entry's history")
			}
			for _, pc := range cells {
				if hidden[pc.c.field] {
					continue
				}
				c := Change{Field: pc.c.field, Row: pc.c.row}
				switch {
				case pc.clear:
					c.Value = pc.value
				case pc.removed():
					c.Removed = true
				case open(c.Field):
					sealed, err := pc.ciphertext()
					if err != nil {
						return errs.Wrap(errs.Internal, err, "read the entry's history")
					}
					b, err := t.Vault().Open(ctx, sealedAt(org.ID, p.StudyID, id, p.Form, pc.c), sealed)
					if err != nil {
						return err
					}
					c.Value = string(b)
				default:
					c.Sealed = true
				}
				out[i].Changes = append(out[i].Changes, c)
			}
		}
		t.Detail("revisions", strconv.Itoa(len(out)))
		return nil
	})
	return out, err
}

// GridVisit is one visit (one time it was held, for a repeating visit) of
// a participant's grid, with the status of each form it collects.
type GridVisit struct {
	Visit  string
	Label  string
	Repeat int
	Forms  []GridForm
}

// GridForm is a form's status at a visit.
type GridForm struct {
	Form     string
	Status   Status
	Revision int
}

// Grid answers a participant's visits × forms with each entry's status:
// every visit of the schedule, a repeating one once for each time it was
// held (at least once).
func (s *Service) Grid(ctx context.Context, a gate.Actor, slug, studyID, siteID, participant string) ([]GridVisit, error) {
	out := []GridVisit{}
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "entry.grid", func(t *gate.Tx) error {
		org := t.Org()
		p := Place{StudyID: studyID, SiteID: siteID, Participant: participant}
		pt, err := authorize(ctx, t, authz.EntryRead, p, "")
		if err != nil {
			return err
		}
		schedule, err := forms.Schedule(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		if onlyAsParticipant(t, authz.EntryRead, p.resource(org.ID)) {
			// A participant's grid holds their survey forms only.
			survey := map[string]bool{}
			for i := range schedule {
				schedule[i].Forms = slices.DeleteFunc(schedule[i].Forms, func(key string) bool {
					if is, ok := survey[key]; ok {
						return !is
					}
					v, err := forms.VersionOf(ctx, t, org.ID, studyID, key, 0)
					survey[key] = err == nil && v.Form.Survey
					return !survey[key]
				})
			}
		}
		type key struct {
			visit  string
			repeat int
			form   string
		}
		status := map[key]GridForm{}
		held := map[string]int{}
		rows, err := t.QueryContext(ctx, `SELECT v.visit_key, e.visit_repeat, f.form_key,
			  CASE WHEN e.deleted_at IS NULL THEN e.status ELSE 'deleted' END, e.revision
			FROM entries e JOIN visits v ON v.id = e.visit_id JOIN forms f ON f.id = e.form_id
			WHERE e.org_id = $1 AND e.participant_id = $2`, org.ID, participant)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		for rows.Next() {
			var k key
			var g GridForm
			if err := rows.Scan(&k.visit, &k.repeat, &k.form, &g.Status, &g.Revision); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "read the entries")
			}
			g.Form = k.form
			status[k] = g
			held[k.visit] = max(held[k.visit], k.repeat)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		for _, v := range schedule {
			// A visit of another arm is not the participant's, unless
			// something was recorded at it before their arm changed.
			if !v.For(pt.Arm) && held[v.Key] == 0 {
				continue
			}
			times := max(1, held[v.Key])
			for r := 1; r <= times; r++ {
				gv := GridVisit{Visit: v.Key, Label: v.Label, Repeat: r, Forms: []GridForm{}}
				for _, f := range v.Forms {
					g, ok := status[key{v.Key, r, f}]
					if !ok {
						g = GridForm{Form: f, Status: NotStarted}
					}
					gv.Forms = append(gv.Forms, g)
				}
				out = append(out, gv)
			}
		}
		return nil
	})
	return out, err
}

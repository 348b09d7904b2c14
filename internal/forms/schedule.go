package forms

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// A study's schedule: its visits (events) in order, each collecting some
// of the study's forms. A visit is planned on a day counted from enrolment
// (Day, with a window either side) or unscheduled (Day nil: held when
// needed), and may repeat.

// Bounds of a schedule.
const (
	MaxVisits        = 200
	MaxVisitForms    = 100
	maxVisitLabel    = 200
	maxVisitDay      = 36600 // a hundred years
	maxVisitWindow   = 3660
	maxVisitKeyBytes = 64
)

// Visit is one visit of a schedule.
type Visit struct {
	Key          string   `json:"key"`
	Label        string   `json:"label"`
	Day          *int     `json:"day,omitempty"` // nil: unscheduled
	WindowBefore int      `json:"window_before,omitempty"`
	WindowAfter  int      `json:"window_after,omitempty"`
	Repeating    bool     `json:"repeating,omitempty"`
	Forms        []string `json:"forms"` // form keys, in order
	// Arms are the keys of the study's arms the visit is held in; none:
	// every arm. The study's arms are those its visits name.
	Arms []string `json:"arms,omitempty"`
}

// MaxVisitArms bounds the arms a visit names.
const MaxVisitArms = 20

// For reports whether the visit is held for a participant in arm ("":
// not assigned to an arm, who has the visits of every arm only).
func (v Visit) For(arm string) bool {
	return len(v.Arms) == 0 || arm != "" && slices.Contains(v.Arms, arm)
}

// Arms lists the arms a schedule names, in the order first named.
func Arms(visits []Visit) []string {
	var out []string
	for _, v := range visits {
		for _, a := range v.Arms {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// CheckSchedule checks a schedule on its own: keys, labels, days and
// windows, no visit or form twice. Whether the forms exist is checked when
// it is stored. Every problem is reported, each naming its visit.
func CheckSchedule(visits []Visit) error {
	var out []FieldError
	bad := func(visit, format string, args ...any) {
		out = append(out, FieldError{Field: visit, Error: fmt.Sprintf(format, args...)})
	}
	if len(visits) > MaxVisits {
		bad("", "a schedule has at most %d visits", MaxVisits)
	}
	seen := map[string]bool{}
	for i := range visits {
		v := &visits[i]
		v.Label = strings.TrimSpace(v.Label)
		name := errs.Clip(v.Key, maxVisitKeyBytes)
		switch {
		case !ValidKey(v.Key):
			bad(name, "a visit's key must be a lower-case letter, then up to 63 lower-case letters, digits and _")
		case seen[v.Key]:
			bad(name, "two visits are named %s", v.Key)
		}
		seen[v.Key] = true
		if v.Label == "" || utf8.RuneCountInString(v.Label) > maxVisitLabel || !utf8.ValidString(v.Label) || hasControl(v.Label) {
			bad(name, "a visit's label is 1 to %d characters without control characters", maxVisitLabel)
		}
		if v.Day != nil && (*v.Day < -maxVisitDay || *v.Day > maxVisitDay) {
			bad(name, "a visit's day is from -%d to %d", maxVisitDay, maxVisitDay)
		}
		if v.WindowBefore < 0 || v.WindowBefore > maxVisitWindow || v.WindowAfter < 0 || v.WindowAfter > maxVisitWindow {
			bad(name, "a visit's window is 0 to %d days either side", maxVisitWindow)
		}
		if v.Day == nil && (v.WindowBefore != 0 || v.WindowAfter != 0) {
			bad(name, "an unscheduled visit (no day) has no window")
		}
		if len(v.Forms) > MaxVisitForms {
			bad(name, "a visit collects at most %d forms", MaxVisitForms)
		}
		if len(v.Arms) > MaxVisitArms {
			bad(name, "a visit names at most %d arms", MaxVisitArms)
		}
		arms := map[string]bool{}
		for _, a := range v.Arms {
			switch {
			case !ValidKey(a):
				bad(name, "%q is not an arm key (a lower-case letter, then lower-case letters, digits and _)", errs.Clip(a, maxVisitKeyBytes))
			case arms[a]:
				bad(name, "arm %s is named twice", a)
			}
			arms[a] = true
		}
		forms := map[string]bool{}
		for _, k := range v.Forms {
			switch {
			case !ValidKey(k):
				bad(name, "%q is not a form key", errs.Clip(k, maxVisitKeyBytes))
			case forms[k]:
				bad(name, "form %s is named twice", k)
			}
			forms[k] = true
		}
	}
	if len(out) > 0 {
		return problems(out)
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

// Schedule reads a study's schedule, visits in order.
func Schedule(ctx context.Context, q sqldb.Querier, orgID, studyID string) ([]Visit, error) {
	rows, err := q.QueryContext(ctx, `SELECT v.visit_key, v.label, v.day, v.window_before, v.window_after, v.repeating,
		  v.arms, coalesce(f.form_key, '')
		FROM visits v
		LEFT JOIN visit_forms vf ON vf.visit_id = v.id
		LEFT JOIN forms f ON f.id = vf.form_id
		WHERE v.org_id = $1 AND v.study_id = $2
		ORDER BY v.position, vf.position`, orgID, studyID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the schedule")
	}
	defer rows.Close()
	out := []Visit{}
	for rows.Next() {
		var (
			v    Visit
			day  *int64
			rep  int
			arms string
			form string
		)
		if err := rows.Scan(&v.Key, &v.Label, &day, &v.WindowBefore, &v.WindowAfter, &rep, &arms, &form); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the schedule")
		}
		if len(out) == 0 || out[len(out)-1].Key != v.Key {
			if day != nil {
				d := int(*day)
				v.Day = &d
			}
			v.Repeating, v.Forms = rep == 1, []string{}
			if arms != "" {
				v.Arms = strings.Split(arms, ",")
			}
			out = append(out, v)
		}
		if form != "" {
			last := &out[len(out)-1]
			last.Forms = append(last.Forms, form)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the schedule")
	}
	return out, nil
}

// SetSchedule replaces a study's schedule with visits (checked by
// CheckSchedule): a visit keeps its identity by its key, a visit left out
// is removed, and each visit's forms are those named, every one a form of
// the study.
func SetSchedule(ctx context.Context, q sqldb.Querier, orgID, studyID string, visits []Visit) error {
	if err := CheckSchedule(visits); err != nil {
		return err
	}
	known := map[string]string{} // form key -> id
	list, err := List(ctx, q, orgID, studyID)
	if err != nil {
		return err
	}
	for _, f := range list {
		known[f.Key] = f.ID
	}
	var missing []FieldError
	for _, v := range visits {
		for _, k := range v.Forms {
			if _, ok := known[k]; !ok {
				missing = append(missing, FieldError{Field: v.Key, Error: fmt.Sprintf("the study has no form %s", k)})
			}
		}
	}
	if len(missing) > 0 {
		return problems(missing)
	}
	existing := map[string]string{} // visit key -> id
	rows, err := q.QueryContext(ctx, `SELECT visit_key, id FROM visits WHERE org_id = $1 AND study_id = $2`, orgID, studyID)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the schedule")
	}
	for rows.Next() {
		var k, id string
		if err := rows.Scan(&k, &id); err != nil {
			rows.Close()
			return errs.Wrap(errs.Unavailable, err, "read the schedule")
		}
		existing[k] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the schedule")
	}
	fail := func(err error) error { return errs.Wrap(errs.Unavailable, err, "store the schedule") }
	// A visit that holds entries stays: they were recorded at it.
	named := map[string]bool{}
	for _, v := range visits {
		named[v.Key] = true
	}
	var held []FieldError
	for k, id := range existing {
		if named[k] {
			continue
		}
		var n int
		if err := q.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE visit_id = $1`, id).Scan(&n); err != nil {
			return fail(err)
		}
		if n > 0 {
			held = append(held, FieldError{Field: k, Error: fmt.Sprintf("holds %d recorded entries, so it stays in the schedule", n)})
		}
	}
	if len(held) > 0 {
		p := &Problems{Fields: held}
		return errs.Wrap(errs.Conflict, p, p.Error())
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM visit_forms WHERE org_id = $1 AND study_id = $2`, orgID, studyID); err != nil {
		return fail(err)
	}
	kept := map[string]bool{}
	for i, v := range visits {
		kept[v.Key] = true
		var day any
		if v.Day != nil {
			day = *v.Day
		}
		rep := 0
		if v.Repeating {
			rep = 1
		}
		id, ok := existing[v.Key]
		if ok {
			_, err = q.ExecContext(ctx, `UPDATE visits SET label = $1, position = $2, day = $3, window_before = $4,
				window_after = $5, repeating = $6, arms = $7 WHERE id = $8`, v.Label, i, day, v.WindowBefore, v.WindowAfter, rep,
				strings.Join(v.Arms, ","), id)
		} else {
			id = ids.New()
			_, err = q.ExecContext(ctx, `INSERT INTO visits (id, org_id, study_id, visit_key, label, position, day,
				window_before, window_after, repeating, arms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				id, orgID, studyID, v.Key, v.Label, i, day, v.WindowBefore, v.WindowAfter, rep, strings.Join(v.Arms, ","))
		}
		if err != nil {
			return fail(err)
		}
		for j, k := range v.Forms {
			if _, err := q.ExecContext(ctx, `INSERT INTO visit_forms (org_id, study_id, visit_id, form_id, position)
				VALUES ($1, $2, $3, $4, $5)`, orgID, studyID, id, known[k], j); err != nil {
				return fail(err)
			}
		}
	}
	for k, id := range existing {
		if kept[k] {
			continue
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM visits WHERE id = $1`, id); err != nil {
			return fail(err)
		}
	}
	return nil
}

package entries

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
)

// REDCap's flat records: one row a participant (record_id, the
// pseudonym), visit (redcap_event_name, the visit's key and _arm_1) and
// time the visit was held (redcap_repeat_instance, for a repeating visit),
// with the site as redcap_data_access_group, a column a field (a multiple
// choice field one column a choice, field___code, 1 if taken) and one a
// form, <form>_complete (0 incomplete, 2 complete). The columns hold the
// fields every site of the export shows the requester; fields of repeating
// groups are not in it (CSV, JSON lines and ODM hold them). An import reads
// the same layout.

// FormatREDCap is REDCap's flat records.
const FormatREDCap = "redcap"

var redcapLead = []string{"record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance", "redcap_data_access_group"}

// redcapColumn is one column of the flat records.
type redcapColumn struct {
	name, form, field, code string // code: a multiple choice's choice
	complete                bool
}

func redcapColumns(union []*forms.Form, allowed map[string]exportSite) []redcapColumn {
	everywhere := func(name string, open bool) bool {
		for _, s := range allowed {
			if !s.visible[name] || open && !s.open[name] {
				return false
			}
		}
		return len(allowed) > 0
	}
	var cols []redcapColumn
	for _, f := range union {
		for _, fd := range f.Fields {
			if fd.Group != "" || fd.Type == forms.Descriptive || !everywhere(f.Key+"."+fd.Name, fd.Sensitive) {
				continue
			}
			if fd.Type == forms.Multiple {
				for _, c := range fd.Choices {
					cols = append(cols, redcapColumn{name: fd.Name + "___" + c.Code, form: f.Key, field: fd.Name, code: c.Code})
				}
				continue
			}
			cols = append(cols, redcapColumn{name: fd.Name, form: f.Key, field: fd.Name})
		}
		cols = append(cols, redcapColumn{name: f.Key + "_complete", form: f.Key, complete: true})
	}
	return cols
}

// exportREDCap writes the flat records.
func exportREDCap(ctx context.Context, v *gate.Vault, q sqldb.Querier, orgID, studyID string, union []*forms.Form, repeating map[string]bool,
	allowed map[string]exportSite, begin func() (io.Writer, error)) (map[string]string, error) {
	h, n := newSent()
	w, err := begin()
	if err != nil {
		return h.sent(n), err
	}
	cw := csv.NewWriter(countingHash{w: w, h: h})
	cols := redcapColumns(union, allowed)
	index := map[string]int{} // form.field or form.field___code or form_complete -> column
	header := slices.Clone(redcapLead)
	for i, c := range cols {
		header = append(header, c.name)
		switch {
		case c.complete:
			index[c.form+"_complete"] = len(redcapLead) + i
		case c.code != "":
			index[c.form+"."+c.field+"___"+c.code] = len(redcapLead) + i
		default:
			index[c.form+"."+c.field] = len(redcapLead) + i
		}
	}
	if err := cw.Write(header); err != nil {
		return h.sent(n), err
	}
	rows, err := q.QueryContext(ctx, `SELECT e.id, e.participant_id, e.site_id, vi.visit_key, e.visit_repeat, f.form_key, e.status,
		  x.field, x.row_no, x.value, x.sealed
		FROM entries e
		JOIN visits vi ON vi.id = e.visit_id
		JOIN forms f ON f.id = e.form_id
		LEFT JOIN entry_values x ON x.entry_id = e.id AND x.row_no = 0
		WHERE e.org_id = $1 AND e.study_id = $2 AND `+live+`
		ORDER BY e.participant_id, vi.position, e.visit_repeat, f.position, x.field`, orgID, studyID)
	if err != nil {
		return h.sent(n), errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	defer rows.Close()
	var record []string
	key := ""
	flush := func() error {
		if record == nil {
			return nil
		}
		n++
		return cw.Write(record)
	}
	for rows.Next() {
		var (
			entryID, participant, site, visit, form, status string
			repeat                                          int
			field                                           *string
			row                                             *int
			value                                           *string
			sealed                                          []byte
		)
		if err := rows.Scan(&entryID, &participant, &site, &visit, &repeat, &form, &status, &field, &row, &value, &sealed); err != nil {
			return h.sent(n), errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		s, ok := allowed[site]
		if !ok {
			continue
		}
		if k := participant + "|" + visit + "|" + strconv.Itoa(repeat); k != key {
			if err := flush(); err != nil {
				return h.sent(n), err
			}
			key = k
			record = make([]string, len(header))
			record[0], record[1], record[4] = participant, visit+"_arm_1", site
			if repeating[visit] {
				record[3] = strconv.Itoa(repeat)
			}
		}
		if i, ok := index[form+"_complete"]; ok {
			record[i] = "0"
			if Status(status) == Complete {
				record[i] = "2"
			}
		}
		if field == nil {
			continue
		}
		name := form + "." + *field
		text := ""
		switch {
		case value != nil:
			text = *value
		case s.open[name]:
			b, err := v.Open(ctx, sealedAt(orgID, studyID, entryID, form, cell{*field, 0}), sealed)
			if err != nil {
				return h.sent(n), err
			}
			text = string(b)
		default:
			continue
		}
		if i, ok := index[name]; ok {
			record[i] = text
			continue
		}
		// A multiple choice: a column a choice.
		taken := strings.Split(text, ",")
		for _, c := range cols {
			if c.form == form && c.field == *field && c.code != "" {
				i := index[name+"___"+c.code]
				record[i] = "0"
				if slices.Contains(taken, c.code) {
					record[i] = "1"
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return h.sent(n), errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	if err := flush(); err != nil {
		return h.sent(n), err
	}
	cw.Flush()
	return h.sent(n), cw.Error()
}

// redcapLines reads REDCap's flat records as the values of entries: each
// row's values form by form, each form's an entry. fieldForm names the
// form of each field (a field name in one form only).
type redcapLines struct {
	r         *csv.Reader
	header    []string
	fieldForm map[string]string
	computed  map[string]bool // calculated fields, which REDCap exports and no one enters
	line      int
	pending   []importLine
	pendingAt int
}

func (rl *redcapLines) next() (importLine, int, error) {
	for len(rl.pending) == 0 {
		rec, err := rl.r.Read()
		rl.line++
		if errors.Is(err, io.EOF) {
			return importLine{}, rl.line, io.EOF
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return importLine{}, rl.line, fmt.Errorf("not CSV: %s", pe.Err)
			}
			return importLine{}, rl.line, err
		}
		if len(rec) != len(rl.header) {
			return importLine{}, rl.line, fmt.Errorf("a row has %d columns, the header %d", len(rec), len(rl.header))
		}
		lines, err := rl.rowLines(rec)
		if err != nil {
			return importLine{}, rl.line, err
		}
		rl.pending, rl.pendingAt = lines, rl.line
	}
	l := rl.pending[0]
	rl.pending = rl.pending[1:]
	return l, rl.pendingAt, nil
}

// rowLines makes the values of one row, form by form.
func (rl *redcapLines) rowLines(rec []string) ([]importLine, error) {
	visit, _, _ := strings.Cut(rec[1], "_arm_")
	repeat := 1
	if rec[3] != "" {
		r, err := strconv.Atoi(rec[3])
		if err != nil {
			return nil, errors.New("redcap_repeat_instance is a whole number")
		}
		repeat = r
	}
	byForm := map[string][]importLine{}
	var order []string
	multi := map[string][]string{} // form.field -> codes taken
	status := map[string]string{}  // form -> its _complete
	for i := len(redcapLead); i < len(rec); i++ {
		col, val := rl.header[i], strings.TrimSpace(rec[i])
		if form, ok := strings.CutSuffix(col, "_complete"); ok && rl.fieldForm[col] == "" {
			status[form] = val
			continue
		}
		if rl.computed[col] {
			continue
		}
		field, code, isChoice := strings.Cut(col, "___")
		form := rl.fieldForm[field]
		if form == "" {
			return nil, fmt.Errorf("column %s is not a field of a published form of the study", errs.Clip(col, 64))
		}
		if _, ok := byForm[form]; !ok {
			order = append(order, form)
			byForm[form] = nil
		}
		if isChoice {
			if val == "1" {
				multi[form+"."+field] = append(multi[form+"."+field], code)
			} else if _, ok := multi[form+"."+field]; !ok {
				multi[form+"."+field] = nil
			}
			continue
		}
		if val == "" {
			continue
		}
		byForm[form] = append(byForm[form], importLine{Field: field, Value: val})
	}
	for k, codes := range multi {
		form, field, _ := strings.Cut(k, ".")
		if len(codes) > 0 {
			byForm[form] = append(byForm[form], importLine{Field: field, Value: strings.Join(codes, ",")})
		}
	}
	var out []importLine
	for _, form := range order {
		for _, l := range byForm[form] {
			l.Participant, l.Site, l.Visit, l.Repeat, l.Form, l.status = rec[0], rec[4], visit, repeat, form, status[form]
			out = append(out, l)
		}
	}
	return out, nil
}

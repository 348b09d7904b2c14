package web

// A form's entry for a participant at a visit: shown with its fields as
// the reader may see them, its branches and calculations previewed on the
// server ("Check answers" shows what a branch opens, without saving), and
// saved whole; and its history, field by field.

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/router"
)

func entryPath(slug string, p entries.Place) string {
	return participantPath(slug, p.StudyID, p.SiteID, p.Participant) + "/visits/" + url.PathEscape(p.Visit) + "/" +
		strconv.Itoa(p.Repeat) + "/forms/" + url.PathEscape(p.Form)
}

// placeOf reads an entry's place from the page's address; a repeat that
// is not a number is 0, which no entry has.
func placeOf(r *http.Request) entries.Place {
	repeat, err := strconv.Atoi(r.PathValue("repeat"))
	if err != nil {
		repeat = 0
	}
	return entries.Place{StudyID: r.PathValue("study"), SiteID: r.PathValue("site"), Participant: r.PathValue("participant"),
		Visit: r.PathValue("visit"), Repeat: repeat, Form: r.PathValue("form")}
}

// fieldView is one field of the entry page.
type fieldView struct {
	Field  *forms.Field
	Input  string // the control's name
	ID     string // the control's id
	Value  string
	Picked map[string]bool // a multiple choice's codes
	Locked bool            // shown, not the reader's to change
	Sealed bool            // holds a value the reader may not open
	Calc   string          // a calculated field's value
	Error  string
	// A file field's: where the saved file downloads, and the name of the
	// control that sends a new one.
	FileLink, Upload string
}

// rowView is one row of a repeating group.
type rowView struct {
	N      int
	Fields []fieldView
}

// groupView is a repeating group with its rows.
type groupView struct {
	Group  forms.Group
	Rows   []rowView
	CanAdd bool
}

// entryForm is what a posted entry page holds.
type entryForm struct {
	save     entries.Save
	rowCount map[string]int
	action   string
}

// readEntryForm reads the values of a posted entry page: "v.<field>" for a
// field, "r.<group>.<row>.<field>" for a row of a repeating group, several
// values of one name for a multiple choice. A row left wholly blank is
// dropped.
func readEntryForm(r *http.Request, f *forms.Form, hidden, locked map[string]bool, uploaded map[string]string) (entryForm, error) {
	if err := r.ParseForm(); err != nil {
		return entryForm{}, errs.E(errs.Invalid, "the form could not be read")
	}
	pf := r.PostForm
	out := entryForm{action: pf.Get("action"), rowCount: map[string]int{}}
	rev, err := strconv.Atoi(pf.Get("revision"))
	if err != nil || rev < 0 {
		return entryForm{}, errs.E(errs.Invalid, "the form's revision is missing; reload the page")
	}
	out.save = entries.Save{Revision: rev, Values: map[string]string{}, Rows: map[string][]map[string]string{},
		Complete: pf.Get("complete") == "1", Reason: pf.Get("reason")}
	value := func(name string) (string, bool) {
		v, ok := pf[name]
		return strings.TrimSpace(strings.Join(v, ",")), ok
	}
	groups := map[string]forms.Group{}
	for _, g := range f.Groups {
		groups[g.Name] = g
		n, _ := strconv.Atoi(pf.Get("rows." + g.Name))
		out.rowCount[g.Name] = min(max(n, 0), g.Max)
	}
	for i := range f.Fields {
		fd := &f.Fields[i]
		if hidden[fd.Name] || locked[fd.Name] || fd.Type == forms.Calculated || fd.Type == forms.Descriptive || fd.Group != "" {
			continue
		}
		if v, ok := value("v." + fd.Name); ok && !(fd.Identifier && v == "") {
			// An identifier left blank keeps what the identity holds.
			out.save.Values[fd.Name] = v
		}
		if id, ok := uploaded[fd.Name]; ok {
			out.save.Values[fd.Name] = id
		}
	}
	for _, g := range f.Groups {
		for n := 1; n <= out.rowCount[g.Name]; n++ {
			row := map[string]string{}
			blank := true
			for i := range f.Fields {
				fd := &f.Fields[i]
				if fd.Group != g.Name || hidden[fd.Name] || locked[fd.Name] || fd.Type == forms.Calculated || fd.Type == forms.Descriptive {
					continue
				}
				key := fmt.Sprintf("r.%s.%d.%s", g.Name, n, fd.Name)
				if v, ok := value(key); ok {
					row[fd.Name] = v
					blank = blank && v == ""
				}
				if id, ok := uploaded[key]; ok {
					row[fd.Name], blank = id, false
				}
			}
			if !blank {
				out.save.Rows[g.Name] = append(out.save.Rows[g.Name], row)
			}
		}
	}
	return out, nil
}

// entryPage renders the entry page of sh: the entry's values, or those of
// posted when the page is shown again with what was typed.
func entryPage(w http.ResponseWriter, r *http.Request, d Deps, status int, sh entries.Sheet, posted *entryForm, problems []forms.FieldError, data map[string]any) {
	slug, p := r.PathValue("org"), placeOf(r)
	values, rows := sh.Entry.Values, sh.Entry.Rows
	if posted != nil {
		values, rows = posted.save.Values, posted.save.Rows
	}
	errorOf := func(field string, row int) string {
		for _, pr := range problems {
			if pr.Field == field && pr.Row == row {
				return pr.Error
			}
		}
		return ""
	}
	sealed := func(name string) bool { return slices.Contains(sh.Entry.Sealed, name) }
	view := func(fd *forms.Field, input, id, v string, row int, pv forms.Preview) fieldView {
		fv := fieldView{Field: fd, Input: input, ID: id, Value: v, Locked: sh.Locked[fd.Name] || !sh.Writable,
			Calc: pv.Calc[fd.Name], Error: errorOf(fd.Name, row)}
		if fd.Type == forms.Multiple {
			fv.Picked = map[string]bool{}
			for _, c := range strings.Split(v, ",") {
				fv.Picked[strings.TrimSpace(c)] = true
			}
		}
		name := fd.Name
		if row > 0 {
			name = fmt.Sprintf("%s#%d", fd.Name, row)
		}
		fv.Sealed = sealed(name)
		if fd.Type == forms.File {
			fv.Upload = "upload." + strings.TrimPrefix(input, "v.")
			if v != "" {
				fv.FileLink = participantPath(slug, p.StudyID, p.SiteID, p.Participant) + "/files/" + v
			}
		}
		return fv
	}
	var top []fieldView
	for i := range sh.Form.Fields {
		fd := &sh.Form.Fields[i]
		if fd.Group != "" || sh.Hidden[fd.Name] || !sh.Preview.Asked[fd.Name] {
			continue
		}
		v := values[fd.Name]
		if sh.Locked[fd.Name] {
			v = sh.Entry.Values[fd.Name]
		}
		top = append(top, view(fd, "v."+fd.Name, "f-"+fd.Name, v, 0, sh.Preview))
	}
	var groups []groupView
	for _, g := range sh.Form.Groups {
		gv := groupView{Group: g}
		n := len(rows[g.Name])
		if posted != nil && posted.action == "add:"+g.Name || sh.Writable && n == 0 {
			n++ // a blank row to fill in
		}
		n = min(n, g.Max)
		for i := 1; i <= n; i++ {
			var row map[string]string
			if i <= len(rows[g.Name]) {
				row = rows[g.Name][i-1]
			}
			pv := forms.Preview{Asked: map[string]bool{}}
			if previews := sh.Rows[g.Name]; i <= len(previews) {
				pv = previews[i-1]
			}
			rv := rowView{N: i}
			for j := range sh.Form.Fields {
				fd := &sh.Form.Fields[j]
				if fd.Group != g.Name || sh.Hidden[fd.Name] {
					continue
				}
				if asked, known := pv.Asked[fd.Name]; known && !asked {
					continue
				}
				rv.Fields = append(rv.Fields, view(fd, fmt.Sprintf("r.%s.%d.%s", g.Name, i, fd.Name), fmt.Sprintf("r-%s-%d-%s", g.Name, i, fd.Name), row[fd.Name], i, pv))
			}
			gv.Rows = append(gv.Rows, rv)
		}
		gv.CanAdd = sh.Writable && n < g.Max
		groups = append(groups, gv)
	}
	for _, fv := range top {
		if fv.Field.Type == forms.File && !fv.Locked {
			data["HasFiles"] = true
		}
	}
	for _, g := range groups {
		for _, row := range g.Rows {
			for _, fv := range row.Fields {
				if fv.Field.Type == forms.File && !fv.Locked {
					data["HasFiles"] = true
				}
			}
		}
	}
	data["Title"] = sh.Form.Title
	data["Slug"], data["Place"], data["Sheet"], data["Fields"], data["Groups"] = slug, p, sh, top, groups
	data["Files"] = participantPath(slug, p.StudyID, p.SiteID, p.Participant) + "/files/"
	data["Path"] = entryPath(slug, p)
	data["Back"] = participantPath(slug, p.StudyID, p.SiteID, p.Participant)
	data["Complete"] = sh.Entry.Status == entries.Complete
	if posted != nil {
		data["Complete"], data["Reason"] = posted.save.Complete, posted.save.Reason
	}
	if data["Notice"] == nil {
		data["Notice"] = workspaceNotice(r)
	}
	render(w, r, d.Log, status, "entry", data)
}

func handleEntry(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sh, err := d.Entries.Sheet(r.Context(), actor(d, r), r.PathValue("org"), placeOf(r), nil)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		entryPage(w, r, d, http.StatusOK, sh, nil, nil, map[string]any{})
	})
}

// handleSaveEntry saves a posted entry page; with action "check" (or
// "add:<group>", a row more) it shows the page again with the branches
// and calculations of what was typed, saving nothing. A field whose
// branch closed is not on the page, so its value is not sent, and the
// save clears it.
func handleSaveEntry(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, a, slug, p := r.Context(), actor(d, r), r.PathValue("org"), placeOf(r)
		var files map[string]upload
		if isMultipart(r) {
			var err error
			if files, err = readMultipart(r); err != nil {
				fail(w, r, d, err)
				return
			}
		}
		sh, err := d.Entries.Sheet(ctx, a, slug, p, nil)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		// Files go first: a save then names them by their ids. A file
		// whose save is refused stays unattached until the sweep purges it.
		uploaded, uerr := uploadFiles(r, d, p, sh.Form, files)
		if uerr != nil && errs.KindOf(uerr) != errs.Invalid {
			fail(w, r, d, uerr)
			return
		}
		posted, err := readEntryForm(r, sh.Form, sh.Hidden, sh.Locked, uploaded)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		if uerr != nil {
			router.RecordRefusal(r, errs.KindOf(uerr).String())
			entryPage(w, r, d, http.StatusBadRequest, sh, &posted, nil, map[string]any{"Error": message(d, r, uerr)})
			return
		}
		if posted.action != "save" {
			if sh, err = d.Entries.Sheet(ctx, a, slug, p, &posted.save); err != nil {
				fail(w, r, d, err)
				return
			}
			entryPage(w, r, d, http.StatusOK, sh, &posted, nil, map[string]any{})
			return
		}
		saved, err := d.Entries.Save(ctx, a, slug, p, posted.save)
		if err == nil {
			done := "saved"
			if saved.Revision == posted.save.Revision {
				done = "unchanged"
			}
			http.Redirect(w, r, withDone(entryPath(slug, p), done), http.StatusSeeOther)
			return
		}
		switch errs.KindOf(err) {
		case errs.Invalid, errs.Conflict, errs.Forbidden:
			router.RecordRefusal(r, errs.KindOf(err).String())
			var pr *forms.Problems
			var list []forms.FieldError
			if errors.As(err, &pr) {
				list = pr.Fields
			}
			if again, err2 := d.Entries.Sheet(ctx, a, slug, p, &posted.save); err2 == nil {
				sh = again
			}
			entryPage(w, r, d, statusOf(err), sh, &posted, list, map[string]any{"Error": message(d, r, err), "Problems": list})
		default:
			fail(w, r, d, err)
		}
	})
}

// fieldHistory is one field's values over the saves of an entry.
type fieldHistory struct {
	Field string
	Label string
	Row   int
	Steps []historyStep
}

type historyStep struct {
	Revision int
	SavedBy  string
	When     string
	Reason   string
	Value    string
	Sealed   bool
	Removed  bool
}

// handleEntryHistory shows every save of an entry, and each field's
// values over them: who, when, why.
func handleEntryHistory(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, a, slug, p := r.Context(), actor(d, r), r.PathValue("org"), placeOf(r)
		sh, err := d.Entries.Sheet(ctx, a, slug, p, nil)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		revs, err := d.Entries.History(ctx, a, slug, p)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		var fields []*fieldHistory
		byKey := map[string]*fieldHistory{}
		for _, rev := range revs {
			for _, c := range rev.Changes {
				k := fmt.Sprintf("%s#%d", c.Field, c.Row)
				fh := byKey[k]
				if fh == nil {
					fh = &fieldHistory{Field: c.Field, Label: c.Field, Row: c.Row}
					if fd, ok := sh.Form.FieldNamed(c.Field); ok {
						fh.Label = fd.Label
					}
					byKey[k] = fh
					fields = append(fields, fh)
				}
				fh.Steps = append(fh.Steps, historyStep{Revision: rev.Revision, SavedBy: rev.SavedBy, When: micro(rev.SavedAt),
					Reason: rev.Reason, Value: c.Value, Sealed: c.Sealed, Removed: c.Removed})
			}
		}
		type save struct {
			entries.Revision
			When string
		}
		saves := make([]save, len(revs))
		for i, rev := range revs {
			saves[i] = save{rev, micro(rev.SavedAt)}
		}
		render(w, r, d.Log, http.StatusOK, "history", map[string]any{
			"Title": "History of " + sh.Form.Title, "Form": sh.Form, "Place": p, "Revisions": saves, "Fields": fields,
			"Back": entryPath(slug, p),
		})
	})
}

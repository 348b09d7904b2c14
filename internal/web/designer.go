package web

// The form designer, for those who design a study's forms: a form's
// versions, its draft field by field (a field added or taken away, a
// repeating group added, or the whole definition edited as JSON), a
// preview of the draft as it will be filled in, publishing and retiring;
// and the study's schedule of visits. Every change saves the whole draft
// through the service, naming the digest of the draft it started from, so
// two designers never overwrite each other silently.

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
)

func formPath(slug, study, key string) string {
	return studyPath(slug, study) + "/forms/" + url.PathEscape(key)
}

func schedulePath(slug, study string) string { return studyPath(slug, study) + "/schedule" }

// designerPage renders a form's designer page: its versions, and its draft
// (or, without one, its newest published version) with a preview.
func designerPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a := r.Context(), actor(d, r)
	slug, studyID, key := r.PathValue("org"), r.PathValue("study"), r.PathValue("form")
	info, err := d.Forms.Form(ctx, a, slug, studyID, key)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	shown := info.Summary.Draft
	if shown == 0 {
		shown = info.Summary.Published
	}
	if shown == 0 && len(info.Versions) > 0 {
		shown = info.Versions[0].Version
	}
	v, err := d.Forms.Version(ctx, a, slug, studyID, key, shown)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	def, err := json.MarshalIndent(v.Form, "", "  ")
	if err != nil {
		fail(w, r, d, errs.Wrap(errs.Internal, err, "show the definition"))
		return
	}
	var preview []fieldView
	for i := range v.Form.Fields {
		fd := &v.Form.Fields[i]
		preview = append(preview, fieldView{Field: fd, Input: "preview." + fd.Name, ID: "p-" + fd.Name, Locked: true})
	}
	saved := map[int]string{}
	for _, x := range info.Versions {
		saved[x.Version] = micro(x.SavedAt)
	}
	data["Saved"] = saved
	data["Title"] = "Form " + v.Form.Title
	data["Slug"], data["StudyID"], data["Info"], data["Shown"], data["Preview"] = slug, studyID, info, v, preview
	data["Path"], data["Back"] = formPath(slug, studyID, key), studyPath(slug, studyID)
	data["Types"], data["FileTypes"] = forms.Types, forms.FileTypes
	if data["Definition"] == nil {
		data["Definition"] = string(def)
	}
	if data["Notice"] == nil {
		data["Notice"] = workspaceNotice(r)
	}
	if data["Form"] == nil {
		data["Form"] = url.Values{}
	}
	render(w, r, d.Log, status, "designer", data)
}

func handleDesigner(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		designerPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// designError answers a refused change on the page it came from: a
// definition's problems each with its field, a conflict with the draft
// saved meanwhile.
func designError(w http.ResponseWriter, r *http.Request, d Deps, err error, page func(http.ResponseWriter, *http.Request, Deps, int, map[string]any), data map[string]any) {
	var pr *forms.Problems
	if errors.As(err, &pr) {
		data["Problems"] = pr.Fields
	}
	adminError(w, r, d, err, page, data)
}

// fieldOf reads the field of the designer's "add a field" form.
func fieldOf(form url.Values) (forms.Field, error) {
	text := func(k string) string { return strings.TrimSpace(form.Get(k)) }
	fd := forms.Field{
		Name: text("name"), Label: text("label"), Type: forms.Type(text("type")), Note: text("note"),
		Required: form.Get("required") == "1", Sensitive: form.Get("sensitive") == "1",
		ShowIf: text("show_if"), Calc: text("calc"), Group: text("group"), Unit: text("unit"),
		Pattern: text("pattern"), Section: text("section"), MinDate: text("min_date"), MaxDate: text("max_date"),
	}
	number := func(k string) (*float64, error) {
		s := text(k)
		if s == "" {
			return nil, nil
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, errs.E(errs.Invalid, "%s must be a number", k)
		}
		return &x, nil
	}
	whole := func(k string) (int, error) {
		s := text(k)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, errs.E(errs.Invalid, "%s must be a whole number", k)
		}
		return n, nil
	}
	var err error
	if fd.Min, err = number("min"); err != nil {
		return fd, err
	}
	if fd.Max, err = number("max"); err != nil {
		return fd, err
	}
	if fd.Decimals, err = whole("decimals"); err != nil {
		return fd, err
	}
	if fd.MinLength, err = whole("min_length"); err != nil {
		return fd, err
	}
	if fd.MaxLength, err = whole("max_length"); err != nil {
		return fd, err
	}
	// Choices, one a line: "code, label".
	for _, line := range strings.Split(form.Get("choices"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		code, label, ok := strings.Cut(line, ",")
		if !ok {
			return fd, errs.E(errs.Invalid, "write each choice on its own line as: code, label")
		}
		fd.Choices = append(fd.Choices, forms.Choice{Code: strings.TrimSpace(code), Label: strings.TrimSpace(label)})
	}
	return fd, nil
}

// editDraft applies change to a copy of the form's draft (or, without one,
// of its newest published version, starting the next draft) and saves it,
// naming the digest the designer's page was showing.
func editDraft(w http.ResponseWriter, r *http.Request, d Deps, change func(f *forms.Form) error) {
	ctx, a := r.Context(), actor(d, r)
	slug, studyID, key := r.PathValue("org"), r.PathValue("study"), r.PathValue("form")
	data := map[string]any{}
	if err := r.ParseForm(); err != nil {
		designError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), designerPage, data)
		return
	}
	data["Form"] = r.PostForm
	info, err := d.Forms.Form(ctx, a, slug, studyID, key)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	from, base := info.Summary.Draft, r.PostForm.Get("base")
	if from == 0 {
		from, base = info.Summary.Published, ""
	}
	v, err := d.Forms.Version(ctx, a, slug, studyID, key, from)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	b, err := json.Marshal(v.Form)
	if err != nil {
		fail(w, r, d, errs.Wrap(errs.Internal, err, "copy the definition"))
		return
	}
	var f forms.Form
	if err := json.Unmarshal(b, &f); err != nil {
		fail(w, r, d, errs.Wrap(errs.Internal, err, "copy the definition"))
		return
	}
	f.Version = 0
	if err := change(&f); err != nil {
		designError(w, r, d, err, designerPage, data)
		return
	}
	if _, err := d.Forms.SaveDraft(ctx, a, slug, studyID, key, base, &f); err != nil {
		designError(w, r, d, err, designerPage, data)
		return
	}
	http.Redirect(w, r, withDone(formPath(slug, studyID, key), "draft-saved"), http.StatusSeeOther)
}

func handleAddField(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		editDraft(w, r, d, func(f *forms.Form) error {
			fd, err := fieldOf(r.PostForm)
			if err != nil {
				return err
			}
			f.Fields = append(f.Fields, fd)
			return nil
		})
	})
}

func handleRemoveField(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		editDraft(w, r, d, func(f *forms.Form) error {
			for i, fd := range f.Fields {
				if fd.Name == r.PathValue("field") {
					f.Fields = append(f.Fields[:i], f.Fields[i+1:]...)
					return nil
				}
			}
			return errs.E(errs.Invalid, "the draft has no field %s", errs.Clip(r.PathValue("field"), 64))
		})
	})
}

func handleAddGroup(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		editDraft(w, r, d, func(f *forms.Form) error {
			n, err := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("max")))
			if err != nil {
				return errs.E(errs.Invalid, "the most rows must be a whole number")
			}
			f.Groups = append(f.Groups, forms.Group{Name: strings.TrimSpace(r.PostForm.Get("name")),
				Label: strings.TrimSpace(r.PostForm.Get("label")), Max: n})
			return nil
		})
	})
}

// handleSaveDefinition saves the draft from its whole JSON definition,
// for what the field form does not offer (display attributes, files'
// types, survey forms).
func handleSaveDefinition(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		editDraft(w, r, d, func(f *forms.Form) error {
			def := r.PostForm.Get("definition")
			edited, err := forms.ParseForm([]byte(def))
			if err != nil {
				return err
			}
			*f = *edited
			return nil
		})
	})
}

func handlePublishDraft(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID, key := r.PathValue("org"), r.PathValue("study"), r.PathValue("form")
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			designError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), designerPage, data)
			return
		}
		if _, err := d.Forms.Publish(r.Context(), actor(d, r), slug, studyID, key, r.PostForm.Get("digest")); err != nil {
			designError(w, r, d, err, designerPage, data)
			return
		}
		http.Redirect(w, r, withDone(formPath(slug, studyID, key), "published"), http.StatusSeeOther)
	})
}

func handleRetireVersion(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID, key := r.PathValue("org"), r.PathValue("study"), r.PathValue("form")
		version, err := strconv.Atoi(r.PathValue("version"))
		if err != nil || version < 1 {
			fail(w, r, d, errs.E(errs.NotFound, "no such version"))
			return
		}
		if err := d.Forms.Retire(r.Context(), actor(d, r), slug, studyID, key, version); err != nil {
			designError(w, r, d, err, designerPage, map[string]any{})
			return
		}
		http.Redirect(w, r, withDone(formPath(slug, studyID, key), "retired"), http.StatusSeeOther)
	})
}

// handleCreateForm adds a form to a study with its first field, as a
// draft, and leads to its designer.
func handleCreateForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID := r.PathValue("org"), r.PathValue("study")
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			designError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), studyPage, data)
			return
		}
		data["Form"] = r.PostForm
		pf := r.PostForm
		f := &forms.Form{Key: strings.TrimSpace(pf.Get("key")), Title: strings.TrimSpace(pf.Get("title")), Survey: pf.Get("survey") == "1",
			Fields: []forms.Field{{Name: strings.TrimSpace(pf.Get("field")), Label: strings.TrimSpace(pf.Get("label")), Type: forms.Type(pf.Get("type"))}}}
		if _, err := d.Forms.Create(r.Context(), actor(d, r), slug, studyID, f); err != nil {
			designError(w, r, d, err, studyPage, data)
			return
		}
		http.Redirect(w, r, withDone(formPath(slug, studyID, f.Key), "form-created"), http.StatusSeeOther)
	})
}

// visitRow is one visit of the schedule's page, with a check for each of
// the study's forms.
type visitRow struct {
	N     int
	Visit forms.Visit
	Day   string
	Arms  string
	Forms []check
}

func schedulePage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a, slug, studyID := r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study")
	st, err := d.Orgs.Study(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	visits, err := d.Forms.Schedule(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	list, err := d.Forms.List(ctx, a, slug, studyID)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	if posted, ok := data["Posted"].([]forms.Visit); ok {
		visits = posted
	}
	keys := make([]string, len(list))
	for i, f := range list {
		keys[i] = f.Key
	}
	// The visits, and a blank one to add.
	var rows []visitRow
	for i, v := range append(visits, forms.Visit{}) {
		day := ""
		if v.Day != nil {
			day = strconv.Itoa(*v.Day)
		}
		rows = append(rows, visitRow{N: i, Visit: v, Day: day, Arms: strings.Join(v.Arms, ", "), Forms: checks(keys, v.Forms)})
	}
	data["Title"], data["Slug"], data["Study"], data["Visits"], data["FormList"] = "Schedule of "+st.Name, slug, st, rows, list
	data["Back"] = studyPath(slug, studyID)
	if data["Notice"] == nil {
		data["Notice"] = workspaceNotice(r)
	}
	render(w, r, d.Log, status, "schedule", data)
}

func handleSchedule(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		schedulePage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// handleSetSchedule saves the schedule's page: each visit's fields are
// numbered ("key.0", "forms.0", …); a visit with an empty key is left out,
// which is how a visit is removed and how the blank row adds nothing.
func handleSetSchedule(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID := r.PathValue("org"), r.PathValue("study")
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			designError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), schedulePage, data)
			return
		}
		pf := r.PostForm
		visits := []forms.Visit{}
		var bad error
		for i := 0; i <= forms.MaxVisits; i++ {
			n := strconv.Itoa(i)
			if !pf.Has("key." + n) {
				break
			}
			key := strings.TrimSpace(pf.Get("key." + n))
			if key == "" {
				continue
			}
			v := forms.Visit{Key: key, Label: strings.TrimSpace(pf.Get("label." + n)), Repeating: pf.Get("repeating."+n) == "1",
				Forms: pf["forms."+n]}
			if v.Forms == nil {
				v.Forms = []string{}
			}
			for _, a := range strings.Split(pf.Get("arms."+n), ",") {
				if a = strings.TrimSpace(a); a != "" {
					v.Arms = append(v.Arms, a)
				}
			}
			for _, w := range []struct {
				name string
				to   *int
			}{{"window_before.", &v.WindowBefore}, {"window_after.", &v.WindowAfter}} {
				if s := strings.TrimSpace(pf.Get(w.name + n)); s != "" {
					days, err := strconv.Atoi(s)
					if err != nil {
						bad = errs.E(errs.Invalid, "visit %s: a window is a whole number of days", errs.Clip(key, 64))
					}
					*w.to = days
				}
			}
			if s := strings.TrimSpace(pf.Get("day." + n)); s != "" {
				day, err := strconv.Atoi(s)
				if err != nil {
					bad = errs.E(errs.Invalid, "visit %s: the day must be a whole number", errs.Clip(key, 64))
				}
				v.Day = &day
			}
			visits = append(visits, v)
		}
		data["Posted"] = visits
		if bad != nil {
			designError(w, r, d, bad, schedulePage, data)
			return
		}
		if _, err := d.Forms.SetSchedule(r.Context(), actor(d, r), slug, studyID, visits); err != nil {
			designError(w, r, d, err, schedulePage, data)
			return
		}
		http.Redirect(w, r, withDone(schedulePath(slug, studyID), "schedule-saved"), http.StatusSeeOther)
	})
}

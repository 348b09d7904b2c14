package web

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/custodia/custodia/internal/errs"
)

func networkPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/network" }

// rangeForm is the form of one scope's ranges: the organization's (no
// study) or a study's.
type rangeForm struct {
	StudyID string
	Label   string
	Action  string
	Text    string
	Error   string
}

func rangesText(ranges []netip.Prefix) string {
	lines := make([]string, len(ranges))
	for i, p := range ranges {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// rangeLines reads a textarea of ranges, one a line; blank lines are
// skipped. An empty list lifts the restriction.
func rangeLines(text string) []string {
	out := []string{}
	for line := range strings.Lines(text) {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// networkPage renders the ranges the requester may change, each scope with
// its own form; failed, when set, is the scope whose change was refused,
// shown as posted with the refusal.
func networkPage(w http.ResponseWriter, r *http.Request, d Deps, status int, failed *rangeForm) {
	rs, err := d.Networks.Ranges(r.Context(), actor(d, r), r.PathValue("org"))
	if err != nil {
		fail(w, r, d, err)
		return
	}
	path := networkPath(rs.Org.Slug)
	var forms []rangeForm
	if rs.Manages {
		forms = append(forms, rangeForm{Label: "The whole organization", Action: path, Text: rangesText(rs.Organization)})
	}
	for _, st := range rs.Studies {
		forms = append(forms, rangeForm{StudyID: st.Study.ID, Label: "Study " + st.Study.Name,
			Action: path + "/studies/" + url.PathEscape(st.Study.ID), Text: rangesText(st.Ranges)})
	}
	data := map[string]any{"Title": "Network ranges", "Org": rs.Org, "Address": d.ClientAddr(r), "Next": path}
	if failed != nil {
		data["Error"] = failed.Error
		for i := range forms {
			if forms[i].StudyID == failed.StudyID {
				forms[i].Text, forms[i].Error = failed.Text, failed.Error
			}
		}
	} else {
		data["Notice"] = adminNotice(r)
	}
	data["Forms"] = forms
	render(w, r, d.Log, status, "network", data)
}

func handleNetwork(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		networkPage(w, r, d, http.StatusOK, nil)
	})
}

// handleSetNetwork replaces the organization's ranges, or a study's
// (netadmin.Service, the API's calls). A range that cannot be read, or a
// set that would shut out the requester's own address, is refused with
// the service's message and nothing changes.
func handleSetNetwork(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, studyID := r.PathValue("org"), r.PathValue("study")
		if err := r.ParseForm(); err != nil {
			networkPage(w, r, d, http.StatusBadRequest, &rangeForm{StudyID: studyID, Error: "The form could not be read."})
			return
		}
		text := r.PostForm.Get("ranges")
		var err error
		if studyID == "" {
			_, err = d.Networks.SetOrganization(r.Context(), actor(d, r), slug, rangeLines(text))
		} else {
			_, err = d.Networks.SetStudy(r.Context(), actor(d, r), slug, studyID, rangeLines(text))
		}
		switch {
		case errs.Is(err, errs.Invalid):
			networkPage(w, r, d, http.StatusBadRequest, &rangeForm{StudyID: studyID, Text: text, Error: message(d, r, err)})
		case err != nil:
			fail(w, r, d, err)
		default:
			http.Redirect(w, r, networkPath(slug)+"?done=network-saved", http.StatusSeeOther)
		}
	})
}

package web

import (
	"bufio"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/router"
)

// trailFields are the filter's fields as the search form and its links
// name them: the API's query parameters.
var trailFields = []string{"actor", "participant", "study", "action", "outcome", "security", "from", "to", "limit"}

// trailTimeLayouts are the times the form accepts: a browser's
// datetime-local value (read as UTC), with or without seconds, or RFC 3339.
var trailTimeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339}

// trailFilter reads the search form. Empty fields are no condition; the
// values are checked by the trail itself (audit.Filter.Validate), whose
// messages the page shows as the API does.
func trailFilter(q url.Values, extra ...string) (audit.Filter, error) {
	for k, vs := range q {
		if !slices.Contains(trailFields, k) && !slices.Contains(extra, k) && k != "cursor" && k != "done" {
			return audit.Filter{}, errs.E(errs.Invalid, "unknown filter %q (known: %s, cursor)", errs.Clip(k, 32), strings.Join(trailFields, ", "))
		}
		if len(vs) > 1 {
			return audit.Filter{}, errs.E(errs.Invalid, "filter %q given more than once", errs.Clip(k, 32))
		}
	}
	f := audit.Filter{
		Actor: q.Get("actor"), Participant: q.Get("participant"), Study: q.Get("study"),
		Action: q.Get("action"), Outcome: audit.Outcome(q.Get("outcome")), Cursor: q.Get("cursor"),
	}
	switch q.Get("security") {
	case "", "false":
	case "on", "true":
		f.SecurityOnly = true
	default:
		return f, errs.E(errs.Invalid, "security must be true or false")
	}
	for name, dst := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		ok := false
		for _, layout := range trailTimeLayouts {
			if t, err := time.Parse(layout, v); err == nil {
				*dst, ok = t.UTC(), true
				break
			}
		}
		if !ok {
			return f, errs.E(errs.Invalid, "%s must be a time like 2026-01-31T12:00:00Z", name)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 {
			return f, errs.E(errs.Invalid, "limit must be a number between 1 and %d", audit.MaxPage)
		}
		f.Limit = n
	}
	return f, nil
}

// trailQuery is the filter as the form gave it, without the cursor and
// without empty fields, for the page's links.
func trailQuery(q url.Values) url.Values {
	out := url.Values{}
	for _, k := range trailFields {
		if v := q.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	return out
}

// trailRow is one event as the table shows it.
type trailRow struct {
	audit.Event
	Person     string // the actor's name, if known
	StudyName  string
	ActorLink  string // the page filtered by the row's actor
	ActionLink string // … by its action
}

func trailPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/audit" }

func link(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// with returns q with k set to v.
func with(q url.Values, k, v string) url.Values {
	out := url.Values{}
	for key, vs := range q {
		out[key] = append([]string(nil), vs...)
	}
	out.Set(k, v)
	return out
}

// handleTrail is the audit search page (AUD-04): the filter form and one
// page of events, newest first, with a link to the next page by the
// trail's cursor (no total is counted, so a page costs the same on a
// trail of millions). Its authorization and audit are the API's search;
// the person may be given by account id or by a member's e-mail address.
func handleTrail(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if strings.Contains(q.Get("actor"), "@") {
			// An address in a link stays in histories and logs (ASVS
			// V14.2.1): the form posts it instead.
			slug := r.PathValue("org")
			render(w, r, d.Log, http.StatusBadRequest, "audit", map[string]any{"Title": "Audit trail", "Slug": slug,
				"Form":  formValues(url.Values{}),
				"Error": "Search for a person by e-mail address with the form: an address in a link stays in browser histories and logs."})
			return
		}
		trailPage(d, w, r, q)
	})
}

// handleTrailSearch is the search form's submission (POST, so that a
// person's e-mail address stays out of URLs, ASVS V14.2.1). A search by
// account id, or by no person, goes on to the page's address with the
// filter; one by e-mail address is answered here, and the page's links
// name the person by account id.
func handleTrailSearch(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			fail(w, r, d, errs.E(errs.Invalid, "the form could not be read"))
			return
		}
		q := trailQuery(r.PostForm)
		if !strings.Contains(q.Get("actor"), "@") {
			http.Redirect(w, r, link(trailPath(r.PathValue("org")), q), http.StatusSeeOther)
			return
		}
		trailPage(d, w, r, q)
	})
}

// trailPage answers the search page for the filter q.
func trailPage(d Deps, w http.ResponseWriter, r *http.Request, q url.Values) {
	slug := r.PathValue("org")
	data := map[string]any{"Title": "Audit trail", "Slug": slug, "Form": formValues(q), "Notice": notice(r)}
	f, err := trailFilter(q)
	var page auditadmin.TrailPage
	if err == nil {
		page, err = d.Oversight.Trail(r.Context(), actor(d, r), slug, f)
	}
	if errs.Is(err, errs.Invalid) {
		// The filter is refused before the trail is read; the page
		// says why, and shows nothing else of the trail.
		data["Error"] = message(d, r, err)
		render(w, r, d.Log, http.StatusBadRequest, "audit", data)
		return
	}
	if err != nil {
		fail(w, r, d, err)
		return
	}
	base := trailPath(page.Org.Slug)
	query := trailQuery(q)
	if strings.Contains(query.Get("actor"), "@") {
		query.Set("actor", page.Filter.Actor) // the account the address names
	}
	if page.Filter.Study != "" && query.Get("study") == "" {
		query.Set("study", page.Filter.Study) // a study-scoped reader's default
		data["Form"] = formValues(query)
	}
	rows := make([]trailRow, len(page.Events))
	for i, ev := range page.Events {
		rows[i] = trailRow{
			Event: ev, Person: page.People[ev.ActorAccount], StudyName: page.StudyNames[ev.StudyID],
			ActionLink: link(base, with(query, "action", ev.Action)),
		}
		if ev.ActorAccount != "" {
			rows[i].ActorLink = link(base, with(query, "actor", ev.ActorAccount))
		}
	}
	data["Org"] = page.Org
	data["Rows"] = rows
	data["Studies"] = page.Studies
	data["WholeOrganization"] = page.WholeOrganization
	data["Filtered"] = len(query) > 0
	if page.Next != "" {
		data["NextPage"] = link(base, with(query, "cursor", page.Next))
	}
	if q.Get("cursor") != "" {
		data["FirstPage"] = link(base, query)
	}
	export := url.Values{}
	for k, vs := range query {
		if k != "limit" {
			export[k] = vs
		}
	}
	data["ExportJSONL"] = link(base+"/export", with(export, "format", "jsonl"))
	data["ExportSyslog"] = link(base+"/export", with(export, "format", "syslog"))
	confirmed := sessionOf(r).ConfirmedAt
	data["NeedsConfirm"] = confirmed.IsZero() || time.Since(confirmed) > gate.StepUpWindow
	render(w, r, d.Log, http.StatusOK, "audit", data)
}

// formValues are the form's fields as given, to show them again.
func formValues(q url.Values) map[string]string {
	out := map[string]string{}
	for _, k := range trailFields {
		out[k] = q.Get(k)
	}
	return out
}

// handleTrailExport downloads the events the filter selects, as JSON lines
// or RFC 5424 syslog lines, like the API's export. An export needs a
// recent confirmation of identity (ACL-09): without one the confirmation
// page answers, and leads back to the search page with the same filter,
// whose export links are then those of the filtered events.
func handleTrailExport(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		q := r.URL.Query()
		format := q.Get("format")
		var err error
		switch format {
		case "", "jsonl":
			format = "jsonl"
		case "syslog":
		default:
			err = errs.E(errs.Invalid, "format must be jsonl or syslog")
		}
		var f audit.Filter
		if err == nil {
			f, err = trailFilter(q, "format")
		}
		if err == nil && (f.Limit != 0 || f.Cursor != "") {
			err = errs.E(errs.Invalid, "an export takes no limit or cursor; it returns every matching event")
		}
		if err != nil {
			fail(w, r, d, err)
			return
		}
		var out *bufio.Writer
		err = d.Oversight.Export(r.Context(), actor(d, r), slug, f, func(ev audit.Event) error {
			if out == nil {
				startDownload(w, format)
				out = bufio.NewWriter(router.Stream(w))
			}
			line, err := auditadmin.ExportLine(ev, format, r.Host)
			if err != nil {
				return err
			}
			_, err = out.Write(line)
			return err
		})
		switch {
		case out != nil:
			if err != nil {
				d.Log.ErrorContext(r.Context(), "audit export interrupted", "err", err)
			}
			out.Flush()
		case errs.Is(err, errs.StepUpRequired):
			render(w, r, d.Log, http.StatusForbidden, "confirm", map[string]any{
				"Title": "Confirm it is you", "Next": link(trailPath(slug), trailQuery(q)), "Error": errs.SafeMessage(err),
			})
		case err != nil:
			fail(w, r, d, err)
		default:
			startDownload(w, format) // nothing matched: an empty file
		}
	})
}

func startDownload(w http.ResponseWriter, format string) {
	ct := "application/x-ndjson"
	if format == "syslog" {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", `attachment; filename="audit.`+format+`"`)
	w.WriteHeader(http.StatusOK)
}

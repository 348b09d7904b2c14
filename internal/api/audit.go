package api

import (
	"bufio"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/router"
)

var filterParams = map[string]bool{
	"actor": true, "participant": true, "study": true, "action": true, "outcome": true,
	"security": true, "from": true, "to": true, "limit": true, "cursor": true,
}

// parseFilter reads an audit filter from a query string, refusing unknown
// or repeated parameters and malformed values with a clear message.
func parseFilter(q url.Values, extra ...string) (audit.Filter, error) {
	var f audit.Filter
	for k, vs := range q {
		known := filterParams[k]
		for _, e := range extra {
			known = known || k == e
		}
		if !known {
			return f, errs.E(errs.Invalid, "unknown filter %q (known: actor, participant, study, action, outcome, security, from, to, limit, cursor)", k)
		}
		if len(vs) > 1 {
			return f, errs.E(errs.Invalid, "filter %q given more than once", k)
		}
	}
	f.Actor, f.Participant, f.Study = q.Get("actor"), q.Get("participant"), q.Get("study")
	f.Action, f.Outcome, f.Cursor = q.Get("action"), audit.Outcome(q.Get("outcome")), q.Get("cursor")
	if v := q.Get("security"); v != "" {
		if v != "true" && v != "false" {
			return f, errs.E(errs.Invalid, "security must be true or false")
		}
		f.SecurityOnly = v == "true"
	}
	for name, dst := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, errs.E(errs.Invalid, "%s must be a time like 2026-01-31T12:00:00Z", name)
			}
			*dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return f, errs.E(errs.Invalid, "limit must be a number between 1 and %d", audit.MaxPage)
		}
		if n == 0 {
			n = -1 // zero is out of range, not "default"
		}
		f.Limit = n
	}
	return f, nil
}

// errEmailInURL refuses a person's e-mail address in a query string, where
// request logs, proxies and browser histories would keep it (ASVS V14.2.1).
func errEmailInURL(org string) error {
	return errs.E(errs.Invalid, "an e-mail address does not go in a URL, where logs and histories keep it: "+
		"POST the filter to /api/v1/orgs/%s/audit/search, or give the account id", org)
}

// urlFilter reads the filter of a GET: an actor is an account id there.
func urlFilter(r *http.Request, extra ...string) (audit.Filter, error) {
	f, err := parseFilter(r.URL.Query(), extra...)
	if err == nil && strings.Contains(f.Actor, "@") {
		err = errEmailInURL(r.PathValue("org"))
	}
	return f, err
}

func handleAuditSearch(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		f, err := urlFilter(r)
		if err != nil {
			return err
		}
		return searchTrail(d, w, r, f)
	})
}

// searchBody is the filter of POST …/audit/search, where an actor may be
// given by e-mail address.
type searchBody struct {
	Actor       string `json:"actor"`
	Participant string `json:"participant"`
	Study       string `json:"study"`
	Action      string `json:"action"`
	Outcome     string `json:"outcome"`
	Security    *bool  `json:"security"`
	From        string `json:"from"`
	To          string `json:"to"`
	Limit       *int   `json:"limit"`
	Cursor      string `json:"cursor"`
}

// handleAuditSearchPost is the search with its filter in the body, so that
// a person's e-mail address stays out of URLs (ASVS V14.2.1).
func handleAuditSearchPost(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var b searchBody
		if err := decode(r, &b); err != nil {
			return err
		}
		q := url.Values{}
		for k, v := range map[string]string{"actor": b.Actor, "participant": b.Participant, "study": b.Study,
			"action": b.Action, "outcome": b.Outcome, "from": b.From, "to": b.To, "cursor": b.Cursor} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if b.Security != nil {
			q.Set("security", strconv.FormatBool(*b.Security))
		}
		if b.Limit != nil {
			q.Set("limit", strconv.Itoa(*b.Limit))
		}
		f, err := parseFilter(q)
		if err != nil {
			return err
		}
		return searchTrail(d, w, r, f)
	})
}

func searchTrail(d Deps, w http.ResponseWriter, r *http.Request, f audit.Filter) error {
	events, next, err := d.Oversight.Search(r.Context(), actor(d, r), r.PathValue("org"), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next": next})
	return nil
}

// handleAuditExport streams the matching events as JSON lines or RFC 5424
// syslog lines.
func handleAuditExport(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		f, err := urlFilter(r, "format")
		if err != nil {
			return err
		}
		format := q.Get("format")
		switch format {
		case "", "jsonl":
			format = "jsonl"
		case "syslog":
		default:
			return errs.E(errs.Invalid, "format must be jsonl or syslog")
		}
		if f.Limit != 0 || f.Cursor != "" {
			return errs.E(errs.Invalid, "an export takes no limit or cursor; it returns every matching event")
		}
		var out *bufio.Writer
		started := false
		err = d.Oversight.Export(r.Context(), actor(d, r), r.PathValue("org"), f, func(ev audit.Event) error {
			if !started {
				ct := "application/x-ndjson"
				if format == "syslog" {
					ct = "text/plain; charset=utf-8"
				}
				w.Header().Set("Content-Type", ct)
				w.Header().Set("Content-Disposition", `attachment; filename="audit.`+format+`"`)
				w.WriteHeader(http.StatusOK)
				out = bufio.NewWriter(router.Stream(w))
				started = true
			}
			line, err := auditadmin.ExportLine(ev, format, r.Host)
			if err != nil {
				return err
			}
			_, err = out.Write(line)
			return err
		})
		if started {
			if err != nil {
				d.Log.ErrorContext(r.Context(), "audit export interrupted", "err", err)
			}
			return out.Flush()
		}
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		return nil
	})
}

package web

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/errs"
)

// alertNotices are the alert page's messages after a redirect.
var alertNotices = map[string]string{
	"alert-read":  "The alert is marked as read.",
	"alert-rules": "The alert rules are saved.",
}

// alertWords say what a kind of alert means.
var alertWords = map[alerts.Kind]string{
	alerts.AccountLocked:  "An account was locked after repeated failed sign-ins",
	alerts.AddressLimited: "One address made too many sign-in attempts",
	alerts.SecurityEvent:  "A security event matched an alert rule",
}

// alertRow is one alert as the list shows it.
type alertRow struct {
	alerts.Alert
	Words string
	// TrailLink leads to the audit trail of the alert's subject, where
	// the trail can be searched for it.
	TrailLink string
}

// alertRows describes the alerts, newest first as listed.
func alertRows(slug string, list []alerts.Alert) []alertRow {
	out := make([]alertRow, len(list))
	for i, a := range list {
		out[i] = alertRow{Alert: a, Words: alertWords[a.Kind]}
		if out[i].Words == "" {
			out[i].Words = string(a.Kind)
		}
		if a.Kind == alerts.AccountLocked {
			out[i].TrailLink = link(trailPath(slug), url.Values{"actor": {a.Subject}})
		}
	}
	return out
}

// alertsPage gathers the alerts page: the list and the rules.
func alertsPage(d Deps, r *http.Request, data map[string]any) error {
	slug := r.PathValue("org")
	org, list, err := d.Oversight.Alerts(r.Context(), actor(d, r), slug)
	if err != nil {
		return err
	}
	rules, err := d.Oversight.AlertRules(r.Context(), actor(d, r), slug)
	if err != nil {
		return err
	}
	unread := 0
	for _, a := range list {
		if a.ReadAt.IsZero() {
			unread++
		}
	}
	data["Org"] = org
	data["Alerts"] = alertRows(org.Slug, list)
	data["Unread"] = unread
	data["DefaultRules"] = rules.Default
	if _, posted := data["Rules"]; !posted {
		data["Rules"] = strings.Join(rules.Prefixes, "\n")
	}
	return nil
}

// handleAlerts lists the organization's alerts, newest first with the
// unread marked, and its alert rules (AUTH-12, AUD-05).
func handleAlerts(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Alerts", "Notice": alertNotices[r.URL.Query().Get("done")]}
		if err := alertsPage(d, r, data); err != nil {
			fail(w, r, d, err)
			return
		}
		render(w, r, d.Log, http.StatusOK, "alerts", data)
	})
}

func handleMarkAlertRead(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		if err := d.Oversight.MarkAlertRead(r.Context(), actor(d, r), slug, r.PathValue("alert")); err != nil {
			fail(w, r, d, err)
			return
		}
		http.Redirect(w, r, "/orgs/"+url.PathEscape(slug)+"/alerts?done=alert-read", http.StatusSeeOther)
	})
}

// ruleList reads the rules field: action prefixes separated by new lines,
// commas or spaces; none restores the default.
func ruleList(s string) []string {
	return strings.FieldsFunc(s, func(c rune) bool { return c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t' })
}

// handleSetAlertRules replaces the alert rules. A refused rule shows the
// form again as posted, with the domain's message; nothing is saved.
func handleSetAlertRules(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		data := map[string]any{"Title": "Alerts"}
		if err := r.ParseForm(); err != nil {
			fail(w, r, d, errs.E(errs.Invalid, "the form could not be read"))
			return
		}
		_, err := d.Oversight.SetAlertRules(r.Context(), actor(d, r), slug, ruleList(r.PostForm.Get("rules")))
		if errs.Is(err, errs.Invalid) {
			data["Rules"] = r.PostForm.Get("rules")
			data["Error"] = message(d, r, err)
			if perr := alertsPage(d, r, data); perr != nil {
				fail(w, r, d, perr)
				return
			}
			render(w, r, d.Log, http.StatusBadRequest, "alerts", data)
			return
		}
		if err != nil {
			fail(w, r, d, err)
			return
		}
		http.Redirect(w, r, "/orgs/"+url.PathEscape(slug)+"/alerts?done=alert-rules", http.StatusSeeOther)
	})
}

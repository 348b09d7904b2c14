package api

import (
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/alerts"
)

type alertJSON struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Subject   string `json:"subject"`
	CreatedAt string `json:"created_at"`
	ReadAt    string `json:"read_at,omitempty"`
}

func alertOut(a alerts.Alert) alertJSON {
	out := alertJSON{ID: a.ID, Kind: string(a.Kind), Subject: a.Subject, CreatedAt: a.CreatedAt.UTC().Format(time.RFC3339)}
	if !a.ReadAt.IsZero() {
		out.ReadAt = a.ReadAt.UTC().Format(time.RFC3339)
	}
	return out
}

func handleListAlerts(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		_, list, err := d.Oversight.Alerts(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		out := make([]alertJSON, len(list))
		for i, a := range list {
			out[i] = alertOut(a)
		}
		writeJSON(w, http.StatusOK, map[string]any{"alerts": out})
		return nil
	})
}

func handleMarkAlertRead(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := d.Oversight.MarkAlertRead(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("alert")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

type alertRulesJSON struct {
	Rules   []string `json:"rules"`
	Default bool     `json:"default,omitempty"`
}

func handleGetAlertRules(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		rules, err := d.Oversight.AlertRules(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, alertRulesJSON{Rules: rules.Prefixes, Default: rules.Default})
		return nil
	})
}

// handleSetAlertRules replaces the organization's alert rules:
// {"rules":["mfa.","role."]} alerts on those action prefixes, {"rules":[]}
// restores the default (every security event).
func handleSetAlertRules(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Rules []string `json:"rules"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		rules, err := d.Oversight.SetAlertRules(r.Context(), actor(d, r), r.PathValue("org"), req.Rules)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, alertRulesJSON{Rules: rules.Prefixes, Default: rules.Default})
		return nil
	})
}

package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/policy"

	"github.com/custodia/custodia/internal/errs"
)

type policyFieldJSON struct {
	Name    string `json:"name"`
	Label   string `json:"label"`
	Help    string `json:"help"`
	Kind    string `json:"kind"`
	Min     *int   `json:"min,omitempty"`
	Max     *int   `json:"max,omitempty"`
	Unit    string `json:"unit,omitempty"`
	Default string `json:"default"`
}

func policyFieldsOut() []policyFieldJSON {
	fs := policy.Fields()
	out := make([]policyFieldJSON, len(fs))
	for i, f := range fs {
		out[i] = policyFieldJSON{Name: f.Name, Label: f.Label, Help: f.Help, Kind: f.Kind, Unit: f.Unit, Default: f.Default}
		if f.Kind == "int" {
			out[i].Min, out[i].Max = &f.Min, &f.Max
		}
	}
	return out
}

func security(d Deps) error {
	if d.Security == nil {
		return errs.E(errs.Unavailable, "security settings are unavailable")
	}
	return nil
}

// handleGetPolicy answers an organization's security policy (AUTH-02,
// AUTH-09, AUTH-10) with the description of its fields, to its
// administrators; to anyone else the organization is not found.
func handleGetPolicy(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := security(d); err != nil {
			return err
		}
		_, p, err := d.Security.Policy(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"policy": p, "fields": policyFieldsOut()})
		return nil
	})
}

// handleSetPolicy replaces an organization's security policy. A field left
// out takes its default; a value out of its bounds is 400 and changes
// nothing. The change is a security event with the policy before and
// after.
func handleSetPolicy(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := security(d); err != nil {
			return err
		}
		req := struct {
			policy.Security
			// Reason is needed to lift a second factor the instance
			// requires by default.
			Reason string `json:"reason"`
		}{Security: policy.Default()}
		if err := decode(r, &req); err != nil {
			return err
		}
		if err := d.Security.SetPolicy(r.Context(), actor(d, r), r.PathValue("org"), req.Security, req.Reason); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"policy": req.Security})
		return nil
	})
}

package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/custodia/custodia/internal/policy"

	"github.com/custodia/custodia/internal/errs"
)

// policyField is one row of the policy form: the field's description
// (policy.Fields, so a new policy field appears without a change
// here) and its value as shown.
type policyField struct {
	policy.Field
	Value   string
	Checked bool
}

// policyRows pairs every policy field with its value in p.
func policyRows(p policy.Security) []policyField {
	var values map[string]any
	b, _ := json.Marshal(p)
	json.Unmarshal(b, &values)
	var out []policyField
	for _, f := range policy.Fields() {
		row := policyField{Field: f}
		switch v := values[f.Name].(type) {
		case bool:
			row.Checked = v
		case float64:
			row.Value = strconv.FormatFloat(v, 'f', -1, 64)
		}
		out = append(out, row)
	}
	return out
}

// policyFromForm reads a policy from the posted form, field by field: an
// unchecked box is false, a number must be a whole number. The bounds are
// checked by the domain (policy.Security.Validate).
func policyFromForm(form url.Values) (policy.Security, error) {
	values := map[string]any{}
	for _, f := range policy.Fields() {
		switch f.Kind {
		case "bool":
			values[f.Name] = form.Get(f.Name) == "on"
		case "int":
			n, err := strconv.Atoi(form.Get(f.Name))
			if err != nil {
				return policy.Security{}, errs.E(errs.Invalid, "%s must be a whole number", f.Label)
			}
			values[f.Name] = n
		}
	}
	b, err := json.Marshal(values)
	if err != nil {
		return policy.Security{}, errs.Wrap(errs.Internal, err, "read the policy form")
	}
	var p policy.Security
	if err := json.Unmarshal(b, &p); err != nil {
		return policy.Security{}, errs.Wrap(errs.Internal, err, "read the policy form")
	}
	return p, nil
}

func handlePolicy(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		org, p, err := d.Security.Policy(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		render(w, r, d.Log, http.StatusOK, "policy", map[string]any{
			"Title": "Security policy", "Org": org, "Fields": policyRows(p), "Notice": notice(r),
			"SecondFactorByDefault": policy.SecondFactorByDefault(),
		})
	})
}

// handleSetPolicy saves the organization's policy. A refused value shows
// the form again with the values as posted and the domain's message;
// nothing is saved.
func handleSetPolicy(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		org, current, err := d.Security.Policy(r.Context(), actor(d, r), slug)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		data := map[string]any{"Title": "Security policy", "Org": org, "Fields": policyRows(current),
			"SecondFactorByDefault": policy.SecondFactorByDefault()}
		if !form(w, r, d, "policy", data) {
			return
		}
		p, err := policyFromForm(r.PostForm)
		if err == nil {
			err = d.Security.SetPolicy(r.Context(), actor(d, r), slug, p, r.PostForm.Get("reason"))
		}
		switch {
		case errs.Is(err, errs.Invalid):
			if p != (policy.Security{}) {
				data["Fields"] = policyRows(p)
			}
			data["Error"] = message(d, r, err)
			render(w, r, d.Log, http.StatusBadRequest, "policy", data)
		case err != nil:
			fail(w, r, d, err)
		default:
			http.Redirect(w, r, "/orgs/"+url.PathEscape(org.Slug)+"/security?done=policy", http.StatusSeeOther)
		}
	})
}

func handleLocked(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		org, locked, err := d.Access.Locked(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		render(w, r, d.Log, http.StatusOK, "locked", map[string]any{
			"Title": "Locked accounts", "Org": org, "Locked": locked, "Notice": notice(r),
		})
	})
}

// handleUnlock lifts a member's lockout (accountadmin.Service.Unlock, the
// function behind `custodia user unlock`), audited as a security event.
func handleUnlock(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unlocked, err := d.Access.Unlock(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("account"))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		done := "unlocked"
		if !unlocked {
			done = "not-locked"
		}
		http.Redirect(w, r, "/orgs/"+url.PathEscape(r.PathValue("org"))+"/locked?done="+done, http.StatusSeeOther)
	})
}

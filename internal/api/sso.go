package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sso"
)

// An organization's single sign-on provider (AUTH-13), for its
// administrators (ssoadmin.Service); the client secret is written, never
// read back.

func ssoAdmin(d Deps) error {
	if d.SSOAdmin == nil {
		return errs.E(errs.Unavailable, "single sign-on settings are unavailable")
	}
	return nil
}

// handleGetSSO answers the organization's provider ("provider": null
// without one), the redirect address to register at the provider, and the
// issuers the server's operator allows.
func handleGetSSO(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := ssoAdmin(d); err != nil {
			return err
		}
		_, p, configured, err := d.SSOAdmin.Provider(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		out := map[string]any{"provider": nil, "redirect_url": d.SSOAdmin.RedirectURL, "allowed_issuers": d.SSOAdmin.Issuers}
		if configured {
			out["provider"] = p
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

// handleSetSSO sets the organization's provider: the settings of
// sso.Provider and "client_secret" (needed the first time, and when the
// issuer or client id changes; left out, the stored one stays). A refused
// setting is 400 and changes nothing; the change is a security event and
// needs a fresh confirmation.
func handleSetSSO(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := ssoAdmin(d); err != nil {
			return err
		}
		var req struct {
			sso.Provider
			ClientSecret string `json:"client_secret"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if err := d.SSOAdmin.SetProvider(r.Context(), actor(d, r), r.PathValue("org"), req.Provider, req.ClientSecret); err != nil {
			return err
		}
		_, p, _, err := d.SSOAdmin.Provider(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"provider": p})
		return nil
	})
}

// handleRemoveSSO removes the organization's provider.
func handleRemoveSSO(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := ssoAdmin(d); err != nil {
			return err
		}
		if err := d.SSOAdmin.RemoveProvider(r.Context(), actor(d, r), r.PathValue("org")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/links"
)

// The answers to reset and invitation requests never depend on whether the
// address has an account (AUTH-06).
var (
	resetAnswer  = map[string]string{"status": "if an account exists for this address, a reset link is on its way"}
	inviteAnswer = map[string]string{"status": "invitation sent"}
)

func handleResetRequest(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Email string `json:"email"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if err := d.Links.RequestReset(r.Context(), req.Email, anonymous(d, r)); err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, resetAnswer)
		return nil
	})
}

func handleResetConfirm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Token    string `json:"token"`
			Password string `json:"password"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if err := d.Links.ConfirmReset(r.Context(), req.Token, req.Password, anonymous(d, r)); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

func handleInvite(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Email string `json:"email"`
			Role  string `json:"role"`
			Study string `json:"study"`
			Site  string `json:"site"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		inv := links.Invitation{Email: req.Email, Role: authz.Role(req.Role), StudyID: req.Study, SiteID: req.Site}
		if err := d.Links.Invite(r.Context(), actor(d, r), r.PathValue("org"), inv); err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, inviteAnswer)
		return nil
	})
}

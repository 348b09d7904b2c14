package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/notify"
)

// handleGetNotices answers how the requester is told that something waits
// for them: off, immediate or daily (WEB-07).
func handleGetNotices(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		mode, err := d.Notices.Mode(r.Context(), actor(d, r))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"mode": string(mode)})
		return nil
	})
}

// handleSetNotices sets how the requester is told that something waits
// for them.
func handleSetNotices(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Mode string `json:"mode"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		mode, err := notify.ParseMode(req.Mode)
		if err != nil {
			return errs.E(errs.Invalid, "mode is off, immediate or daily")
		}
		if err := d.Notices.SetMode(r.Context(), actor(d, r), mode); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"mode": string(mode)})
		return nil
	})
}

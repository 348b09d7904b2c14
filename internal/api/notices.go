package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/notify"
)

// handleGetNotices answers how the requester is told that something waits
// for them: mode off, immediate or daily; channel email or sms (WEB-07).
func handleGetNotices(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error { return writeNotices(d, w, r) })
}

func writeNotices(d Deps, w http.ResponseWriter, r *http.Request) error {
	mode, err := d.Notices.Mode(r.Context(), actor(d, r))
	if err != nil {
		return err
	}
	ch, err := d.Notices.Channel(r.Context(), actor(d, r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"mode": string(mode), "channel": string(ch)})
	return nil
}

// handleSetNotices sets how the requester is told that something waits
// for them: {"mode": …, "channel": …}, either or both.
func handleSetNotices(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Mode    string `json:"mode"`
			Channel string `json:"channel"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if req.Mode == "" && req.Channel == "" {
			return errs.E(errs.Invalid, "name a mode (off, immediate or daily), a channel (email or sms), or both")
		}
		ctx, a := r.Context(), actor(d, r)
		if req.Channel != "" {
			ch, err := notify.ParseChannel(req.Channel)
			if err != nil {
				return err
			}
			if err := d.Notices.SetChannel(ctx, a, ch); err != nil {
				return err
			}
		}
		if req.Mode != "" {
			mode, err := notify.ParseMode(req.Mode)
			if err != nil {
				return err
			}
			if err := d.Notices.SetMode(ctx, a, mode); err != nil {
				return err
			}
		}
		return writeNotices(d, w, r)
	})
}

package api

import (
	"mime"
	"net/http"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/retention"
)

// Retention and data subjects' requests (LIFE-02): an organization's
// accounts and participants noticed for the purge of inactive data, its
// legal holds, and the export of everything about one participant.

func retentionService(d Deps) error {
	if d.Retention == nil {
		return errs.E(errs.Unavailable, "retention is unavailable")
	}
	return nil
}

// handleRetention answers the organization's retention periods, the
// notices standing and the legal holds, to its administrators.
func handleRetention(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := retentionService(d); err != nil {
			return err
		}
		ov, err := d.Retention.List(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ov)
		return nil
	})
}

// handleSetHold places a legal hold, with its reason, on an account
// ({kind} account) or a participant ({kind} participant) of the
// organization, and answers it.
func handleSetHold(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := retentionService(d); err != nil {
			return err
		}
		var req struct {
			Reason string `json:"reason"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		kind, err := retention.ParseKind(r.PathValue("kind"))
		if err != nil {
			return err
		}
		h, err := d.Retention.SetHold(r.Context(), actor(d, r), r.PathValue("org"), kind, r.PathValue("subject"), req.Reason)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"hold": h})
		return nil
	})
}

// handleLiftHold lifts a legal hold.
func handleLiftHold(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := retentionService(d); err != nil {
			return err
		}
		kind, err := retention.ParseKind(r.PathValue("kind"))
		if err != nil {
			return err
		}
		if err := d.Retention.LiftHold(r.Context(), actor(d, r), r.PathValue("org"), kind, r.PathValue("subject")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// handleSubjectExport answers the zip of everything about a participant,
// their own account with it, for a data subject's request; its SHA-256 is
// on the audit event and in X-Content-SHA256.
func handleSubjectExport(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := retentionService(d); err != nil {
			return err
		}
		b, err := d.Retention.Export(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant"))
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": b.Name}))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Content-SHA256", b.SHA256)
		w.Header().Set("Content-Length", strconv.FormatInt(b.Size(), 10))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		b.WriteTo(w)
		return nil
	})
}

package api

import (
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/keys/keyadmin"
)

type keyRequestBody struct {
	Kind     string `json:"kind"`
	KEK      bool   `json:"kek"`
	DataKeys bool   `json:"data_keys"`
	Provider string `json:"provider"`
}

type keyRequestJSON struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	KEK         bool   `json:"kek,omitempty"`
	DataKeys    bool   `json:"data_keys,omitempty"`
	Provider    string `json:"provider,omitempty"`
	Status      string `json:"status"`
	RequestedBy string `json:"requested_by"`
	RequestedAt string `json:"requested_at"`
	ExpiresAt   string `json:"expires_at"`
	ApprovedBy  string `json:"approved_by,omitempty"`
	ApprovedAt  string `json:"approved_at,omitempty"`
	UsedAt      string `json:"used_at,omitempty"`
}

func keyRequestOut(r keyadmin.Request, now time.Time) keyRequestJSON {
	out := keyRequestJSON{ID: r.ID, Kind: string(r.Kind), KEK: r.Params.KEK, DataKeys: r.Params.DataKeys,
		Provider: r.Params.Provider, Status: r.Status(now), RequestedBy: r.RequestedBy,
		RequestedAt: r.RequestedAt.Format(time.RFC3339), ExpiresAt: r.ExpiresAt.Format(time.RFC3339),
		ApprovedBy: r.ApprovedBy}
	if !r.ApprovedAt.IsZero() {
		out.ApprovedAt = r.ApprovedAt.Format(time.RFC3339)
	}
	if !r.UsedAt.IsZero() {
		out.UsedAt = r.UsedAt.Format(time.RFC3339)
	}
	return out
}

// handleKeyRequest files a key operation for a second administrator to
// approve (CRY-08); the operator carries it out with "custodia keys".
func handleKeyRequest(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req keyRequestBody
		if err := decode(r, &req); err != nil {
			return err
		}
		kind, err := keyadmin.ParseKind(req.Kind)
		if err != nil {
			return err
		}
		kr, err := d.Keys.Request(r.Context(), actor(d, r), r.PathValue("org"), kind,
			keyadmin.Params{KEK: req.KEK, DataKeys: req.DataKeys, Provider: req.Provider})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, keyRequestOut(kr, time.Now()))
		return nil
	})
}

func handleListKeyRequests(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Keys.List(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		now := time.Now()
		out := make([]keyRequestJSON, len(list))
		for i, kr := range list {
			out[i] = keyRequestOut(kr, now)
		}
		writeJSON(w, http.StatusOK, map[string]any{"key_requests": out})
		return nil
	})
}

func handleApproveKeyRequest(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		kr, err := d.Keys.Approve(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("request"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, keyRequestOut(kr, time.Now()))
		return nil
	})
}

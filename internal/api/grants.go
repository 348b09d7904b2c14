package api

import (
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/participants"
)

type grantRequest struct {
	Account   string   `json:"account"`
	Site      string   `json:"site"`
	Fields    []string `json:"fields"`
	Reason    string   `json:"reason"`
	ExpiresAt string   `json:"expires_at"`
}

type grantJSON struct {
	ID        string   `json:"id"`
	StudyID   string   `json:"study_id"`
	SiteID    string   `json:"site_id,omitempty"`
	Account   string   `json:"account"`
	Fields    []string `json:"fields"`
	Reason    string   `json:"reason"`
	GrantedBy string   `json:"granted_by"`
	CreatedAt string   `json:"created_at"`
	ExpiresAt string   `json:"expires_at,omitempty"`
	RevokedAt string   `json:"revoked_at,omitempty"`
}

func grantOut(g participants.DecryptGrant) grantJSON {
	out := grantJSON{ID: g.ID, StudyID: g.StudyID, SiteID: g.SiteID, Account: g.AccountID, Fields: []string{},
		Reason: g.Reason, GrantedBy: g.GrantedBy, CreatedAt: g.CreatedAt.UTC().Format(time.RFC3339)}
	for _, f := range g.Fields {
		out.Fields = append(out.Fields, string(f))
	}
	if !g.ExpiresAt.IsZero() {
		out.ExpiresAt = g.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if !g.RevokedAt.IsZero() {
		out.RevokedAt = g.RevokedAt.UTC().Format(time.RFC3339)
	}
	return out
}

func handleGrantDecrypt(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req grantRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		gr := participants.GrantRequest{AccountID: req.Account, SiteID: req.Site, Fields: req.Fields, Reason: req.Reason}
		if req.ExpiresAt != "" {
			t, err := time.Parse(time.RFC3339, req.ExpiresAt)
			if err != nil {
				return errs.E(errs.Invalid, "expires_at must be a time like 2026-01-31T12:00:00Z")
			}
			gr.ExpiresAt = t
		}
		g, err := d.Participants.Grant(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), gr)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, grantOut(g))
		return nil
	})
}

func handleListDecryptGrants(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Participants.Grants(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"))
		if err != nil {
			return err
		}
		out := make([]grantJSON, len(list))
		for i, g := range list {
			out[i] = grantOut(g)
		}
		writeJSON(w, http.StatusOK, map[string]any{"decrypt_grants": out})
		return nil
	})
}

func handleRevokeDecrypt(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := d.Participants.Revoke(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("grant")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

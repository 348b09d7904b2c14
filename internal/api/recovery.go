package api

import (
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/errs"
)

// The recovery of a member who lost every second factor (ASVS V6.4.4;
// accountadmin's recovery.go): one administrator starts it, the person
// proves their address and password through the e-mailed link (a browser
// page), a second administrator approves.

type factorRecoveryJSON struct {
	ID          string     `json:"id"`
	Account     string     `json:"account"`
	Email       string     `json:"email,omitempty"`
	RequestedBy string     `json:"requested_by"`
	RequestedAt time.Time  `json:"requested_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	Proved      bool       `json:"proved"`
	ApprovedBy  string     `json:"approved_by,omitempty"`
	Done        bool       `json:"done"`
	DoneAt      *time.Time `json:"done_at,omitempty"`
}

func recoveryOut(r accounts.FactorRecovery) factorRecoveryJSON {
	out := factorRecoveryJSON{ID: r.ID, Account: r.AccountID, Email: r.Email, RequestedBy: r.RequestedBy,
		RequestedAt: r.RequestedAt, ExpiresAt: r.ExpiresAt, Proved: r.Proved(), ApprovedBy: r.ApprovedBy, Done: r.Done()}
	if r.Done() {
		out.DoneAt = &r.DoneAt
	}
	return out
}

func handleStartFactorRecovery(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if d.Access == nil {
			return errs.E(errs.Unavailable, "account administration is unavailable")
		}
		rec, err := d.Access.StartFactorRecovery(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("account"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, recoveryOut(rec))
		return nil
	})
}

func handleListFactorRecoveries(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if d.Access == nil {
			return errs.E(errs.Unavailable, "account administration is unavailable")
		}
		list, err := d.Access.FactorRecoveries(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		out := make([]factorRecoveryJSON, len(list))
		for i, rec := range list {
			out[i] = recoveryOut(rec)
		}
		writeJSON(w, http.StatusOK, map[string]any{"factor_recoveries": out})
		return nil
	})
}

func handleApproveFactorRecovery(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if d.Access == nil {
			return errs.E(errs.Unavailable, "account administration is unavailable")
		}
		rec, err := d.Access.ApproveFactorRecovery(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("recovery"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, recoveryOut(rec))
		return nil
	})
}

package web

import (
	"context"
	"net/http"
	"net/url"

	"github.com/custodia/custodia/internal/accounts/accountadmin"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
)

// The members' access page (ASVS V7.4.2, V7.4.5): an organization's
// administrators disable and enable members' accounts and end their
// sessions, one member or all at once (accountadmin.Service, the API's
// calls). Every change asks for a fresh confirmation; the confirmation
// page leads back here.

func accessPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/access" }

// accessPage shows the organization's members with whether each is
// disabled or locked, and data's error, if any, with status.
func accessPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	org, members, err := d.Access.Members(r.Context(), actor(d, r), r.PathValue("org"))
	if err != nil {
		fail(w, r, d, err)
		return
	}
	recoveries, err := d.Access.FactorRecoveries(r.Context(), actor(d, r), org.Slug)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	data["Title"], data["Org"], data["Members"], data["Recoveries"] = "Members' access", org, members, recoveries
	data["Self"], data["Next"] = actor(d, r).AccountID, accessPath(org.Slug)
	if data["Error"] == nil {
		data["Notice"] = notice(r)
	}
	render(w, r, d.Log, status, "access", data)
}

func handleAccess(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accessPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// handleMemberAccess changes one member's access with change and leads
// back to the page with the notice done (or, if nothing changed,
// unchanged); a refusal the page can explain (the administrator's own
// account, the last administrator) is shown on it.
func handleMemberAccess(d Deps, done, unchanged string,
	change func(s *accountadmin.Service) func(ctx context.Context, a gate.Actor, slug, accountID string) (accountadmin.Ended, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), accessPage, map[string]any{})
			return
		}
		slug := r.PathValue("org")
		ended, err := change(d.Access)(r.Context(), actor(d, r), slug, r.PathValue("account"))
		if err != nil {
			adminError(w, r, d, err, accessPage, map[string]any{})
			return
		}
		if !ended.Changed && unchanged != "" {
			done = unchanged
		}
		http.Redirect(w, r, accessPath(slug)+"?done="+done, http.StatusSeeOther)
	})
}

func handleDisableMember(d Deps) http.Handler {
	return handleMemberAccess(d, "disabled", "already-disabled",
		func(s *accountadmin.Service) func(context.Context, gate.Actor, string, string) (accountadmin.Ended, error) {
			return s.Disable
		})
}

func handleEnableMember(d Deps) http.Handler {
	return handleMemberAccess(d, "enabled", "not-disabled",
		func(s *accountadmin.Service) func(context.Context, gate.Actor, string, string) (accountadmin.Ended, error) {
			return s.Enable
		})
}

func handleSignOutMember(d Deps) http.Handler {
	return handleMemberAccess(d, "member-signed-out", "",
		func(s *accountadmin.Service) func(context.Context, gate.Actor, string, string) (accountadmin.Ended, error) {
			return s.SignOut
		})
}

// handleSignOutMembers ends every member's sessions and tokens but the
// administrator's own session here.
func handleSignOutMembers(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), accessPage, map[string]any{})
			return
		}
		slug := r.PathValue("org")
		if _, err := d.Access.SignOutAll(r.Context(), actor(d, r), slug); err != nil {
			adminError(w, r, d, err, accessPage, map[string]any{})
			return
		}
		http.Redirect(w, r, accessPath(slug)+"?done=members-signed-out", http.StatusSeeOther)
	})
}

// handleStartFactorRecovery starts the recovery of a member who lost every
// second factor (accountadmin.StartFactorRecovery, ASVS V6.4.4).
func handleStartFactorRecovery(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		if _, err := d.Access.StartFactorRecovery(r.Context(), actor(d, r), slug, r.PathValue("account")); err != nil {
			adminError(w, r, d, err, accessPage, map[string]any{})
			return
		}
		http.Redirect(w, r, accessPath(slug)+"?done=recovery-started", http.StatusSeeOther)
	})
}

// handleApproveFactorRecovery approves a recovery as its second
// administrator.
func handleApproveFactorRecovery(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		rec, err := d.Access.ApproveFactorRecovery(r.Context(), actor(d, r), slug, r.PathValue("recovery"))
		if err != nil {
			adminError(w, r, d, err, accessPage, map[string]any{})
			return
		}
		done := "recovery-approved"
		if rec.Done() {
			done = "recovery-done"
		}
		http.Redirect(w, r, accessPath(slug)+"?done="+done, http.StatusSeeOther)
	})
}

// handleRecoverForm is the page of a recovery's e-mailed link.
func handleRecoverForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		data := map[string]any{"Title": "Recover your second factor", "Token": token}
		name, err := d.Links.PeekFactorRecovery(r.Context(), token)
		if err != nil {
			data["Invalid"] = true
			render(w, r, d.Log, http.StatusNotFound, "recover", data)
			return
		}
		data["OrgName"] = name
		render(w, r, d.Log, http.StatusOK, "recover", data)
	})
}

// handleRecover proves the recovery with the person's password.
func handleRecover(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		data := map[string]any{"Title": "Recover your second factor", "Token": token}
		if err := r.ParseForm(); err != nil {
			data["Error"] = "The form could not be read."
			render(w, r, d.Log, http.StatusBadRequest, "recover", data)
			return
		}
		if name, err := d.Links.PeekFactorRecovery(r.Context(), token); err == nil {
			data["OrgName"] = name
		}
		done, err := d.Links.ProveFactorRecovery(r.Context(), token, r.PostForm.Get("password"), requester(d, r))
		switch {
		case errs.Is(err, errs.RateLimited):
			tooMany(w, err)
			data["Error"] = errs.SafeMessage(err)
			render(w, r, d.Log, http.StatusTooManyRequests, "recover", data)
		case errs.Is(err, errs.NotFound):
			data["Invalid"] = true
			render(w, r, d.Log, http.StatusNotFound, "recover", data)
		case errs.Is(err, errs.Unauthenticated):
			data["Error"] = "That is not your password."
			render(w, r, d.Log, http.StatusUnauthorized, "recover", data)
		case err != nil:
			fail(w, r, d, err)
		default:
			data["Done"], data["Proved"] = done, true
			render(w, r, d.Log, http.StatusOK, "recover", data)
		}
	})
}

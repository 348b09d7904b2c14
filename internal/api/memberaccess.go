package api

import (
	"context"
	"net/http"

	"github.com/custodia/custodia/internal/accounts/accountadmin"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
)

// memberAccessJSON is what a change of members' access did: whether the
// account's state changed (disable, enable) and how many sessions and
// access tokens ended.
type memberAccessJSON struct {
	Account       string `json:"account,omitempty"`
	Disabled      *bool  `json:"disabled,omitempty"`
	Changed       *bool  `json:"changed,omitempty"`
	Members       *int64 `json:"members,omitempty"`
	SessionsEnded int64  `json:"sessions_ended"`
	TokensEnded   int64  `json:"tokens_ended"`
}

// handleMemberAccess answers a change of one member's access
// (accountadmin.Service.Disable, Enable, SignOut); disabled tells what the
// change leaves the account as, nil if it does not change it.
func handleMemberAccess(d Deps, disabled *bool,
	change func(s *accountadmin.Service) func(ctx context.Context, a gate.Actor, slug, accountID string) (accountadmin.Ended, error)) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if d.Access == nil {
			return errs.E(errs.Unavailable, "account administration is unavailable")
		}
		account := r.PathValue("account")
		ended, err := change(d.Access)(r.Context(), actor(d, r), r.PathValue("org"), account)
		if err != nil {
			return err
		}
		out := memberAccessJSON{Account: account, Disabled: disabled, SessionsEnded: ended.Sessions, TokensEnded: ended.Tokens}
		if disabled != nil {
			out.Changed = &ended.Changed
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

func handleDisableMember(d Deps) http.Handler {
	return handleMemberAccess(d, new(true), func(s *accountadmin.Service) func(context.Context, gate.Actor, string, string) (accountadmin.Ended, error) {
		return s.Disable
	})
}

func handleEnableMember(d Deps) http.Handler {
	return handleMemberAccess(d, new(false), func(s *accountadmin.Service) func(context.Context, gate.Actor, string, string) (accountadmin.Ended, error) {
		return s.Enable
	})
}

func handleSignOutMember(d Deps) http.Handler {
	return handleMemberAccess(d, nil, func(s *accountadmin.Service) func(context.Context, gate.Actor, string, string) (accountadmin.Ended, error) {
		return s.SignOut
	})
}

// handleSignOutMembers ends every member's sessions and tokens but the
// asking session.
func handleSignOutMembers(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if d.Access == nil {
			return errs.E(errs.Unavailable, "account administration is unavailable")
		}
		ended, err := d.Access.SignOutAll(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, memberAccessJSON{Members: &ended.Members, SessionsEnded: ended.Sessions, TokensEnded: ended.Tokens})
		return nil
	})
}

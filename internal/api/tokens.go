package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
)

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// safeMethod reports whether a request only reads.
func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// serveWithToken is the guard for a request that carries a personal access
// token (AUTH-10). It is the one place where a token's scope is enforced:
// a read-scoped token may only read (GET, HEAD), and no token reaches a
// route that needs a signed-in session (router.Session). The request runs
// as the token's account, with "token:<id>" as its session on the audit
// trail; no cookie is set.
func serveWithToken(d Deps, access router.Access, bearer string, h http.Handler, w http.ResponseWriter, r *http.Request) {
	if access == router.Session {
		writeError(w, r, d.Log, errs.E(errs.Forbidden, "this needs a signed-in session; an access token cannot do it"))
		return
	}
	tok, err := d.Sessions.LookupToken(r.Context(), bearer, d.ClientAddr(r), r.UserAgent())
	if err != nil {
		writeError(w, r, d.Log, err)
		return
	}
	if !safeMethod(r.Method) && !tok.Allows(sessions.ScopeWrite) {
		writeError(w, r, d.Log, errs.E(errs.Forbidden, "this access token may only read; a change needs a token with the write scope"))
		return
	}
	ctx := context.WithValue(r.Context(), accountKey, tok.AccountID)
	ctx = context.WithValue(ctx, sessionIDKey{}, tok.Actor())
	h.ServeHTTP(w, r.WithContext(ctx))
}

type tokenJSON struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Scopes     []string `json:"scopes"`
	CreatedAt  string   `json:"created_at"`
	ExpiresAt  string   `json:"expires_at"`
	LastUsedAt *string  `json:"last_used_at"`
	Token      string   `json:"token,omitempty"` // only in the answer that creates it
}

func tokenOut(t sessions.AccessToken) tokenJSON {
	out := tokenJSON{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt.UTC().Format(time.RFC3339),
		ExpiresAt: t.ExpiresAt.UTC().Format(time.RFC3339), Scopes: []string{}}
	for _, s := range t.Scopes {
		out.Scopes = append(out.Scopes, string(s))
	}
	if !t.LastUsedAt.IsZero() {
		u := t.LastUsedAt.UTC().Format(time.RFC3339)
		out.LastUsedAt = &u
	}
	return out
}

// handleCreateToken makes a personal access token for the signed-in
// person and answers with it, shown this once.
func handleCreateToken(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Name          string   `json:"name"`
			Scopes        []string `json:"scopes"`
			ExpiresInDays int      `json:"expires_in_days"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		secret, t, err := d.Sessions.CreateToken(r.Context(), session(r.Context()), actor(d, r), req.Name, req.Scopes, req.ExpiresInDays)
		if err != nil {
			return err
		}
		out := tokenOut(t)
		out.Token = secret
		writeJSON(w, http.StatusCreated, out)
		return nil
	})
}

// handleListTokens lists the requester's tokens, never their secrets.
func handleListTokens(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Sessions.ListTokens(r.Context(), accountID(r.Context()))
		if err != nil {
			return err
		}
		out := make([]tokenJSON, len(list))
		for i, t := range list {
			out[i] = tokenOut(t)
		}
		writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
		return nil
	})
}

// handleRevokeToken revokes one of the requester's tokens; another
// person's token is 404 like a missing one.
func handleRevokeToken(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		sess := sessions.Session{ID: sessionID(r.Context()), AccountID: accountID(r.Context())}
		if err := d.Sessions.RevokeToken(r.Context(), sess, actor(d, r), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

package api

import (
	"context"
	"net/http"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
)

// SessionCookie is the name of the session cookie. The __Host- prefix makes
// browsers insist on Secure, Path=/ and no Domain.
const SessionCookie = "__Host-custodia_session"

// guard enforces a route's access before its handler runs.
func guard(d Deps) func(router.Access, http.Handler) http.Handler {
	return func(access router.Access, h http.Handler) http.Handler {
		if access == router.Open {
			return h
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if bearer, ok := bearerToken(r); ok {
				serveWithToken(d, access, bearer, h, w, r) // the bearer's scope is checked there
				return
			}
			c, err := r.Cookie(SessionCookie)
			if err != nil {
				writeError(w, r, d.Log, errs.E(errs.Unauthenticated, "sign-in required"))
				return
			}
			sess, err := d.Sessions.Lookup(r.Context(), c.Value)
			if err == nil {
				sess, err = settleSession(d, w, r, sess) // renewal, expired password
			}
			if err != nil {
				writeError(w, r, d.Log, err)
				return
			}
			ctx := context.WithValue(r.Context(), accountKey, sess.AccountID)
			ctx = context.WithValue(ctx, sessionIDKey{}, sess.ID)
			ctx = context.WithValue(ctx, sessionKey{}, sess)
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type accountJSON struct {
	ID string `json:"id"`
}

// handleLogin signs a person in. A failed check is 401 with one body for an
// unknown address, a wrong password and a locked account alike (AUTH-06); a
// refusal by a rate limit is 429 with Retry-After (AUTH-05). Neither sets a
// cookie. A right password for an account that must give or set up a second
// factor (AUTH-08, AUTH-09) is answered with a challenge and no cookie.
func handleLogin(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req loginRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		st, err := d.Sessions.SignInStep(r.Context(), req.Email, req.Password, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return err
		}
		if st.Challenge.Token != "" {
			writeJSON(w, http.StatusOK, challengeOut(st.Challenge, d.Factors != nil && d.Factors.Passkeys != nil))
			return nil
		}
		setSessionCookie(w, st.Token)
		writeJSON(w, http.StatusOK, sessionOut(st.Session))
		return nil
	})
}

func handleLogout(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess := sessions.Session{ID: sessionID(r.Context()), AccountID: accountID(r.Context())}
		if err := d.Sessions.SignOut(r.Context(), sess, d.ClientAddr(r), r.UserAgent()); err != nil {
			writeError(w, r, d.Log, err)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
			Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		})
		// The browser drops what it kept of the signed-in pages too (ASVS
		// V14.3.1).
		w.Header().Set("Clear-Site-Data", `"cache", "cookies", "storage"`)
		w.WriteHeader(http.StatusNoContent)
	})
}

type studyJSON struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Name string `json:"name"`
}

type siteJSON struct {
	ID      string `json:"id"`
	StudyID string `json:"study_id"`
	Name    string `json:"name"`
}

func studyOut(s orgs.Study) studyJSON { return studyJSON{ID: s.ID, Kind: string(s.Kind), Name: s.Name} }
func siteOut(s orgs.Site) siteJSON    { return siteJSON{ID: s.ID, StudyID: s.StudyID, Name: s.Name} }

// actor is the signed-in requester of a request that passed the guard.
func actor(d Deps, r *http.Request) gate.Actor {
	return gate.Actor{
		AccountID: accountID(r.Context()), SessionID: sessionID(r.Context()),
		RemoteAddr: d.ClientAddr(r), UserAgent: r.UserAgent(),
		ConfirmedAt: session(r.Context()).ConfirmedAt,
	}
}

// anonymous is the requester of an open route: an address, no account.
func anonymous(d Deps, r *http.Request) gate.Actor {
	return gate.Actor{RemoteAddr: d.ClientAddr(r), UserAgent: r.UserAgent()}
}

// handle runs fn and writes any error it returns in the error shape.
func handle(d Deps, fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			writeError(w, r, d.Log, err)
		}
	})
}

func handleListStudies(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Orgs.ListStudies(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		out := make([]studyJSON, len(list))
		for i, st := range list {
			out[i] = studyOut(st)
		}
		writeJSON(w, http.StatusOK, map[string]any{"studies": out})
		return nil
	})
}

func handleCreateStudy(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		kind, err := orgs.ParseStudyKind(req.Kind)
		if err != nil {
			return err
		}
		st, err := d.Orgs.CreateStudy(r.Context(), actor(d, r), r.PathValue("org"), kind, req.Name)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, studyOut(st))
		return nil
	})
}

func handleGetStudy(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		st, err := d.Orgs.Study(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, studyOut(st))
		return nil
	})
}

func handleListSites(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Orgs.ListSites(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"))
		if err != nil {
			return err
		}
		out := make([]siteJSON, len(list))
		for i, site := range list {
			out[i] = siteOut(site)
		}
		writeJSON(w, http.StatusOK, map[string]any{"sites": out})
		return nil
	})
}

func handleCreateSite(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Name string `json:"name"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		site, err := d.Orgs.CreateSite(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), req.Name)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, siteOut(site))
		return nil
	})
}

func handleGetSite(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		site, err := d.Orgs.Site(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, siteOut(site))
		return nil
	})
}

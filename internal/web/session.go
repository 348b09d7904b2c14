package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
)

// SessionCookie is the session cookie the API uses too, so one sign-in
// serves both shells. The __Host- prefix makes browsers insist on Secure,
// Path=/ and no Domain.
const SessionCookie = "__Host-custodia_session"

// challengeCookie carries the challenge between the password and the
// second step of a sign-in, so it never appears in a page or an address.
const challengeCookie = "__Host-custodia_challenge"

// viewer is the signed-in person as the layout shows them.
type viewer struct {
	Name string
	// IdleLeft is how many seconds the session has before its idle limit
	// ends it, IdleWarn how many before that the page warns.
	IdleLeft int
	IdleWarn int
	session  sessions.Session
}

type viewerKey struct{}

// sessionOf is the session of a request that passed the guard.
func sessionOf(r *http.Request) sessions.Session {
	if v, ok := r.Context().Value(viewerKey{}).(*viewer); ok {
		return v.session
	}
	return sessions.Session{}
}

// actor is the signed-in requester, for domain calls.
func actor(d Deps, r *http.Request) gate.Actor {
	s := sessionOf(r)
	return gate.Actor{
		AccountID: s.AccountID, SessionID: s.ID, RemoteAddr: d.ClientAddr(r), UserAgent: r.UserAgent(),
		ConfirmedAt: s.ConfirmedAt,
	}
}

// guard lets a signed-in route run only with a live session. Without one
// the sign-in page answers, with 401, and brings the person back to the
// page they asked for. A session whose account's roles changed gets a new
// id first (AUTH-10); one held to changing an expired password (AUTH-09)
// reaches only the account page and its password form.
func guard(d Deps) func(router.Access, http.Handler) http.Handler {
	return func(access router.Access, h http.Handler) http.Handler {
		if access == router.Open {
			return h
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, err := withSession(d, w, r)
			if err != nil {
				if !errs.Is(err, errs.Unauthenticated) {
					d.Log.ErrorContext(r.Context(), "look up session", "err", err)
					fail(w, r, d, err)
					return
				}
				next := ""
				if r.Method == http.MethodGet {
					next = r.URL.Path
				}
				clearCookie(w, SessionCookie)
				render(w, r, d.Log, http.StatusUnauthorized, "login", map[string]any{
					"Title": "Sign in", "Next": next, "Notice": "Please sign in to continue.",
				})
				return
			}
			if sessionOf(r).PasswordExpired && !(r.URL.Path == "/account" || r.URL.Path == "/account/password") {
				http.Redirect(w, r, "/account?done=password-expired", http.StatusSeeOther)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// withSession looks up the request's session, renews it if due, and
// returns the request with the viewer in its context.
func withSession(d Deps, w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || d.Sessions == nil {
		return r, errs.E(errs.Unauthenticated, "sign-in required")
	}
	ctx := r.Context()
	sess, err := d.Sessions.Lookup(ctx, c.Value)
	if err != nil {
		return r, err
	}
	if sess.RenewDue {
		token, renewed, err := d.Sessions.Renew(ctx, sess, sessions.RenewRoleChange, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return r, err
		}
		setSessionCookie(w, token)
		sess = renewed
	}
	v := &viewer{session: sess, IdleWarn: int(d.IdleWarning / time.Second)}
	self := gate.Actor{AccountID: sess.AccountID, SessionID: sess.ID, RemoteAddr: d.ClientAddr(r), UserAgent: r.UserAgent()}
	if acc, err := d.Accounts.Account(ctx, self); err == nil {
		v.Name = acc.DisplayName
	}
	left, err := d.Sessions.TimeLeft(ctx, sess)
	if err != nil {
		return r, err
	}
	v.IdleLeft = int(left / time.Second)
	return r.WithContext(context.WithValue(ctx, viewerKey{}, v)), nil
}

func setSessionCookie(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/",
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func setChallengeCookie(w http.ResponseWriter, c mfa.Challenge) {
	http.SetCookie(w, &http.Cookie{
		Name: challengeCookie, Value: c.Token, Path: "/",
		MaxAge: max(1, int(time.Until(c.ExpiresAt)/time.Second)),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// localPath returns p, a path with its query, if it is a path on this
// site, else "/": the page after sign-in or a confirmation is never another
// site (no open redirect). It answers the path as sent (escaped), so an
// escaped slash stays one and "/%2Fevil.example" never becomes the
// scheme-relative "//evil.example"; a fragment is dropped.
func localPath(p string) string {
	u, err := url.Parse(p)
	if err != nil || p == "" || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n\t") ||
		strings.HasPrefix(u.Path, "//") || strings.ContainsAny(u.Path, "\\\r\n\t") {
		return "/"
	}
	u.Fragment, u.RawFragment = "", ""
	out := u.RequestURI()
	if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") {
		return "/"
	}
	return out
}

// withDone is the local path next with done=what added to its query, for
// the notice of the page it leads to.
func withDone(next, what string) string {
	u, err := url.Parse(localPath(next))
	if err != nil {
		return "/"
	}
	q := u.Query()
	q.Set("done", what)
	u.RawQuery = q.Encode()
	return u.RequestURI()
}

// statusOf is the HTTP status of the page that answers err.
func statusOf(err error) int { return router.Status(errs.KindOf(err)) }

// message is what a page says about err: the domain's safe message, the
// same the API gives, and a generic one for our own faults, which go to
// the log.
func message(d Deps, r *http.Request, err error) string {
	if k := errs.KindOf(err); k == errs.Internal || k == errs.Unavailable {
		d.Log.ErrorContext(r.Context(), "request failed", "route", r.Pattern, "err", err)
	}
	return errs.SafeMessage(err)
}

// formFailed answers a form that the domain refused with page again,
// saying why (data["Error"]) with the refusal's status, and Retry-After
// when a rate limit refused it.
func formFailed(w http.ResponseWriter, r *http.Request, d Deps, page string, data map[string]any, err error) {
	router.RecordRefusal(r, errs.KindOf(err).String())
	if errs.Is(err, errs.RateLimited) {
		tooMany(w, err)
	}
	data["Error"] = message(d, r, err)
	render(w, r, d.Log, statusOf(err), page, data)
}

// fail answers a request whose domain call failed with the error page:
// NotFound (also what another organization's objects answer, ACL-08) as
// "page not found", a wanted step-up as the confirmation page.
func fail(w http.ResponseWriter, r *http.Request, d Deps, err error) {
	router.RecordRefusal(r, errs.KindOf(err).String())
	if errs.Is(err, errs.RateLimited) {
		tooMany(w, err)
	}
	switch errs.KindOf(err) {
	case errs.NotFound:
		d.failure()(w, r, http.StatusNotFound)
		return
	case errs.StepUpRequired:
		confirmPage(w, r, d, http.StatusForbidden, map[string]any{"Next": returnPath(r), "Error": errs.SafeMessage(err)})
		return
	}
	render(w, r, d.Log, statusOf(err), "error", map[string]any{
		"Title": "This did not work", "Message": message(d, r, err),
	})
}

func (d Deps) failure() router.Failure { return failure(d) }

// returnPath is the page a confirmation leads back to: the one a form
// names in its hidden "next" field (or an address in its "next"
// parameter), else the page the browser came from if it says so, which
// under Referrer-Policy: no-referrer it does not; only a local path counts,
// else the start page.
func returnPath(r *http.Request) string {
	if next := r.FormValue("next"); next != "" {
		return localPath(next)
	}
	return localPath(r.Referer())
}

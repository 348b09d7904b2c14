// Package router is the route table of an HTTP shell. Every route states its
// access at registration: open to anyone, or needing a signed-in person (the
// authorization work adds a permission per route). A route without a stated
// access cannot be registered, and the table can be listed, so tests can walk
// the whole surface. Unknown paths and undeclared methods are answered in the
// shell's own format (HTML page or JSON error) with the right status.
package router

import (
	"context"
	"net/http"
	"slices"
	"strings"
)

// Access is what a route requires of the requester.
type Access string

const (
	// Open routes need no sign-in: sign-in, reset, invitation, static
	// assets and health checks only (ACL-01).
	Open Access = "open"
	// SignedIn routes need a valid session or token.
	SignedIn Access = "signed-in"
	// Session routes need a signed-in session: a personal access token is
	// refused (making tokens, changing the password or second factors,
	// signing out).
	Session Access = "session"
)

// Route is one entry of the table.
type Route struct {
	Method  string
	Path    string
	Access  Access
	Handler http.Handler
}

// Pattern is the route's net/http pattern.
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// Failure renders an unknown path (404) or an undeclared method (405).
type Failure func(w http.ResponseWriter, r *http.Request, status int)

// Router dispatches to the registered routes.
type Router struct {
	mux     *http.ServeMux
	routes  []Route
	failure Failure
	guard   func(Access, http.Handler) http.Handler
}

// New returns an empty table. guard wraps each route's handler with the
// check its access requires; failure renders 404 and 405.
func New(guard func(Access, http.Handler) http.Handler, failure Failure) *Router {
	return &Router{mux: http.NewServeMux(), guard: guard, failure: failure}
}

// Handle registers a route. It panics on a route without access, since
// that is a programming error caught by every test that builds the table.
func (rt *Router) Handle(method, path string, access Access, h http.Handler) {
	if access != Open && access != SignedIn && access != Session {
		panic("router: route " + method + " " + path + " declares no access")
	}
	r := Route{Method: method, Path: path, Access: access, Handler: h}
	rt.routes = append(rt.routes, r)
	rt.mux.Handle(r.Pattern(), rt.guard(access, h))
}

// Routes lists the table in registration order.
func (rt *Router) Routes() []Route { return slices.Clone(rt.routes) }

var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := rt.mux.Handler(r); pattern != "" {
		recordPattern(r, pattern)
		rt.mux.ServeHTTP(w, r)
		return
	}
	// No route matches this method and path. Find which methods the path
	// does have, to tell 405 from 404.
	var allow []string
	for _, m := range probeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := rt.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		rt.failure(w, r, http.StatusMethodNotAllowed)
		return
	}
	rt.failure(w, r, http.StatusNotFound)
}

type patternKey struct{}

// WithPatternSlot returns a context in which the router records the pattern
// of the route that serves the request, for the access log: logging the
// pattern, not the path, keeps tokens and identifiers out of the log.
func WithPatternSlot(r *http.Request) (*http.Request, *string) {
	slot := new(string)
	return r.WithContext(context.WithValue(r.Context(), patternKey{}, slot)), slot
}

type refusalKey struct{}

// WithRefusalSlot returns a context in which the shells record why they
// refused the request (RecordRefusal), for the access log: a refused
// input, a missing permission or confirmation, a pace exceeded (ASVS
// V16.3.3).
func WithRefusalSlot(r *http.Request) (*http.Request, *string) {
	slot := new(string)
	return r.WithContext(context.WithValue(r.Context(), refusalKey{}, slot)), slot
}

// RecordRefusal notes the code of the refusal answered to r (an errs.Kind's
// name, such as "invalid" or "step_up_required"), never its message.
func RecordRefusal(r *http.Request, code string) {
	if slot, ok := r.Context().Value(refusalKey{}).(*string); ok {
		*slot = code
	}
}

func recordPattern(r *http.Request, pattern string) {
	if slot, ok := r.Context().Value(patternKey{}).(*string); ok {
		*slot = pattern
	}
}

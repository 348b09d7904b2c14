package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/mfa"
)

// notices are the fixed messages a page shows after a redirect (?done=…),
// so no text from the address is ever echoed into a page.
var notices = map[string]string{
	"signed-out":            "You are signed out.",
	"signed-out-everywhere": "You are signed out everywhere: every session of your account has ended.",
	"idle":                  "You were signed out after a period of inactivity.",
	"name":                  "Your name is changed.",
	"notices":               "Your choice of notices is saved.",
	"password":              "Your password is changed. Every other session of your account has been signed out.",
	"password-expired":      "Your password has expired. Choose a new one to continue.",
	"factor-removed":        "Your authenticator app is removed. If someone else may have had it, sign out everywhere below: every other session and access token ends too.",
	"factor-added":          "Your authenticator app is set up. Your recovery codes stay as they were. If you set it up because someone else may have had your old factor, sign out everywhere below: every other session and access token ends too.",
	"session-ended":         "That session is signed out.",
	"policy":                "The security policy is saved. It applies at each member's next sign-in.",
	"unlocked":              "The account is unlocked; its owner can sign in again.",
	"not-locked":            "That account was not locked; nothing changed.",
	"disabled":              "The account is disabled: its sessions and access tokens have ended, and it cannot sign in until it is enabled.",
	"already-disabled":      "That account was disabled already; any session or token it had left has ended.",
	"enabled":               "The account is enabled; its owner can sign in again.",
	"not-disabled":          "That account was not disabled; nothing changed.",
	"member-signed-out":     "Every session and access token of that person has ended; they can sign in again.",
	"members-signed-out":    "Every session and access token of every member has ended, but your session here.",
	"confirmed":             "Thank you. You can now make the change.",
	"left":                  "You left the organization; your roles there have ended.",
	"recovery-started":      "The recovery is started: the person got an e-mail to confirm with their password, and a second administrator approves it below.",
	"recovery-approved":     "The recovery is approved; it is done once the person confirms with their password.",
	"recovery-done":         "The recovery is done: the person's second factors and recovery codes are removed and their sessions ended.",
	"sso":                   "The single sign-on settings are saved. They apply at each member's next sign-in through the provider.",
	"sso-removed":           "Single sign-on is removed. Members sign in with their passwords.",
}

func notice(r *http.Request) string { return notices[r.URL.Query().Get("done")] }

// form parses a posted form; a body that cannot be read is a 400.
func form(w http.ResponseWriter, r *http.Request, d Deps, page string, data map[string]any) bool {
	if err := r.ParseForm(); err != nil {
		data["Error"] = "The form could not be read."
		render(w, r, d.Log, http.StatusBadRequest, page, data)
		return false
	}
	return true
}

func handleHome(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Welcome", "Notice": notice(r)}
		if sr, err := withSession(d, w, r); err == nil {
			r = sr
			data["Title"] = "Home"
			data["Organizations"] = memberships(d, r)
		}
		render(w, r, d.Log, http.StatusOK, "home", data)
	})
}

// membership is one organization of the signed-in person, for the home
// page's links.
type membership struct {
	Name, Slug string
	Roles      []string
	Admin      bool
	// Staff: a role besides a participant's, which the person may give up
	// (orgadmin.Service.Leave).
	Staff bool
}

func memberships(d Deps, r *http.Request) []membership {
	list, err := d.Orgs.Memberships(r.Context(), actor(d, r))
	if err != nil {
		d.Log.ErrorContext(r.Context(), "list organizations", "err", err)
		return nil
	}
	var out []membership
	for _, o := range list {
		m := membership{Name: o.Org.Name, Slug: o.Org.Slug}
		for _, a := range o.Assignments {
			if !slices.Contains(m.Roles, string(a.Role)) {
				m.Roles = append(m.Roles, string(a.Role))
			}
			m.Admin = m.Admin || a.Role == authz.OrgAdmin
			m.Staff = m.Staff || a.Role != authz.Participant
		}
		out = append(out, m)
	}
	return out
}

func handleLoginForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		render(w, r, d.Log, http.StatusOK, "login", map[string]any{
			"Title": "Sign in", "Notice": notice(r), "Next": localPath(r.URL.Query().Get("next")),
			"SSO": ssoOffered(d), "SSOOrg": ssoOrg(r),
		})
	})
}

// handleLogin checks the e-mail address and password (sessions.SignInStep,
// the API's call). Every failed check shows one message, whether the
// account is unknown, locked or the password wrong (AUTH-06); the password
// field is never filled again.
func handleLogin(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Sign in"}
		if !form(w, r, d, "login", data) {
			return
		}
		email, next := r.PostForm.Get("email"), localPath(r.PostForm.Get("next"))
		data["Email"], data["Next"] = email, next
		st, err := d.Sessions.SignInStep(r.Context(), email, r.PostForm.Get("password"), d.ClientAddr(r), r.UserAgent())
		if err != nil {
			formFailed(w, r, d, "login", data, err)
			return
		}
		if challengeOf(r) != "" {
			clearCookie(w, challengeCookie)
		}
		if st.Challenge.Token != "" {
			setChallengeCookie(w, st.Challenge)
			if st.Challenge.Purpose == mfa.PurposeEnrolment {
				http.Redirect(w, r, "/login/enrol", http.StatusSeeOther)
			} else {
				http.Redirect(w, r, "/login/second-factor", http.StatusSeeOther)
			}
			return
		}
		setSessionCookie(w, st.Token)
		http.Redirect(w, r, next, http.StatusSeeOther)
	})
}

// challengeOf is the sign-in's challenge from its cookie, or "".
func challengeOf(r *http.Request) string {
	if c, err := r.Cookie(challengeCookie); err == nil {
		return c.Value
	}
	return ""
}

// expired answers a second step without a live challenge: back to the
// password.
func expired(w http.ResponseWriter, r *http.Request, d Deps) {
	clearCookie(w, challengeCookie)
	render(w, r, d.Log, http.StatusUnauthorized, "login", map[string]any{
		"Title": "Sign in", "Error": mfa.ErrChallenge.Error() + "; please sign in again.",
	})
}

func handleSecondFactorForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if challengeOf(r) == "" {
			expired(w, r, d)
			return
		}
		render(w, r, d.Log, http.StatusOK, "secondfactor", map[string]any{"Title": "Second factor"})
	})
}

// handleSecondFactor is the sign-in's second step with a TOTP or recovery
// code (sessions.SecondFactor). Every failure shows one message; after too
// many the challenge is gone and the person starts again.
func handleSecondFactor(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Second factor"}
		if !form(w, r, d, "secondfactor", data) {
			return
		}
		challenge := challengeOf(r)
		if challenge == "" {
			expired(w, r, d)
			return
		}
		token, _, err := d.Sessions.SecondFactor(r.Context(), d.Factors, challenge, r.PostForm.Get("code"), d.ClientAddr(r), r.UserAgent())
		if err != nil {
			formFailed(w, r, d, "secondfactor", data, err)
			return
		}
		clearCookie(w, challengeCookie)
		setSessionCookie(w, token)
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
}

// The passkey answer to the sign-in's second step (AUTH-08), for
// static/passkey.js: both steps take the challenge from its HttpOnly
// cookie, so the page's script never holds it, and answer JSON. Every
// failure is one 401 (sessions.PasskeyOptions, SecondFactorPasskey).

// passkeyFailure answers a passkey step's failure as JSON, in the API's
// error form. The challenge cookie stays: a live challenge can still be
// answered with a code.
func passkeyFailure(w http.ResponseWriter, r *http.Request, d Deps, err error) {
	if errs.Is(err, errs.RateLimited) {
		tooMany(w, err)
	}
	writeJSON(w, statusOf(err), map[string]any{"error": map[string]string{"message": message(d, r, err)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// handlePasskeyOptions answers the challenge in the cookie with the
// request options for navigator.credentials.get.
func handlePasskeyOptions(d Deps) http.Handler {
	return handleChallengeOptions(d, d.Sessions.PasskeyOptions)
}

// handleChallengeOptions answers the challenge in the cookie with the
// WebAuthn options that options makes for it.
func handleChallengeOptions(d Deps, options func(ctx context.Context, f *mfa.Service, challenge, addr, userAgent string) ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge := challengeOf(r)
		if challenge == "" {
			passkeyFailure(w, r, d, mfa.ErrChallenge)
			return
		}
		out, err := options(r.Context(), d.Factors, challenge, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			passkeyFailure(w, r, d, err)
			return
		}
		writeJSON(w, http.StatusOK, json.RawMessage(out))
	})
}

// maxAssertion bounds the body of a passkey answer.
const maxAssertion = 64 << 10

// credentialRequest is what passkey.js posts: the authenticator's answer
// and, for a registration, the passkey's name.
type credentialRequest struct {
	Credential json.RawMessage `json:"credential"`
	Name       string          `json:"name"`
}

// readCredential reads a credentialRequest; a body that is not one is
// answered with 400.
func readCredential(w http.ResponseWriter, r *http.Request, d Deps) (credentialRequest, bool) {
	var req credentialRequest
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAssertion))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil {
		if _, trailing := dec.Token(); trailing != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if !strings.HasPrefix(ct, "application/json") || err != nil || len(req.Credential) == 0 || req.Credential[0] != '{' {
		passkeyFailure(w, r, d, errs.E(errs.Invalid, "the request must be JSON holding the authenticator's answer as \"credential\""))
		return credentialRequest{}, false
	}
	return req, true
}

// handlePasskeySignIn takes the browser's assertion ({"credential": …})
// for the challenge in the cookie and, like the code form, ends the
// challenge and starts the session; the answer names the page to go to.
func handlePasskeySignIn(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge := challengeOf(r)
		if challenge == "" {
			passkeyFailure(w, r, d, mfa.ErrChallenge)
			return
		}
		req, ok := readCredential(w, r, d)
		if !ok {
			return
		}
		token, _, err := d.Sessions.SecondFactorPasskey(r.Context(), d.Factors, challenge, req.Credential, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			passkeyFailure(w, r, d, err)
			return
		}
		clearCookie(w, challengeCookie)
		setSessionCookie(w, token)
		writeJSON(w, http.StatusOK, map[string]string{"next": "/"})
	})
}

// qrImage is the enrolment's QR code as an image address; the page's
// Content-Security-Policy admits data: images only.
func qrImage(e mfa.Enrolment) template.URL {
	if len(e.QRPNG) == 0 {
		return ""
	}
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QRPNG))
}

// handleEnrolForm shows, to a person whose organization requires a second
// factor and who has none, a new authenticator secret (as a QR code and as
// text) to confirm with a code (sessions.EnrolBegin).
func handleEnrolForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge := challengeOf(r)
		if challenge == "" {
			expired(w, r, d)
			return
		}
		e, err := d.Sessions.EnrolBegin(r.Context(), d.Factors, challenge, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			if errs.Is(err, errs.Unauthenticated) {
				expired(w, r, d)
				return
			}
			fail(w, r, d, err)
			return
		}
		render(w, r, d.Log, http.StatusOK, "enrol", map[string]any{
			"Title": "Set up your authenticator app", "Action": "/login/enrol", "Required": true,
			"Secret": e.Secret, "QR": qrImage(e), "Passkeys": passkeysAvailable(d),
		})
	})
}

// passkeysAvailable reports whether the server has a WebAuthn relying
// party, without which passkeys are not offered.
func passkeysAvailable(d Deps) bool { return d.Factors != nil && d.Factors.Passkeys != nil }

// The passkey instead of the authenticator app at a required enrolment
// (AUTH-08, AUTH-09), for static/passkey.js: like the second step's, both
// steps take the enrolment challenge from its HttpOnly cookie and answer
// JSON (sessions.EnrolPasskeyBegin, EnrolPasskeyConfirm).

// handleEnrolPasskeyOptions answers the enrolment challenge in the cookie
// with the creation options for navigator.credentials.create.
func handleEnrolPasskeyOptions(d Deps) http.Handler {
	return handleChallengeOptions(d, d.Sessions.EnrolPasskeyBegin)
}

// handleEnrolPasskey stores the passkey the browser made ({"credential",
// "name"}), ends the challenge and starts the session; the answer holds the
// recovery codes, for the page to show once, and the page to go to.
func handleEnrolPasskey(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge := challengeOf(r)
		if challenge == "" {
			passkeyFailure(w, r, d, mfa.ErrChallenge)
			return
		}
		req, ok := readCredential(w, r, d)
		if !ok {
			return
		}
		token, _, codes, err := d.Sessions.EnrolPasskeyConfirm(r.Context(), d.Factors, challenge, req.Name, req.Credential, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			passkeyFailure(w, r, d, err)
			return
		}
		clearCookie(w, challengeCookie)
		setSessionCookie(w, token)
		writeJSON(w, http.StatusOK, map[string]any{"next": "/", "recovery_codes": codes})
	})
}

// handleEnrol confirms the new factor with a code and signs the person in
// (sessions.EnrolConfirm), showing the recovery codes once.
func handleEnrol(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Set up your authenticator app", "Action": "/login/enrol", "Required": true, "Passkeys": passkeysAvailable(d)}
		if !form(w, r, d, "enrol", data) {
			return
		}
		challenge := challengeOf(r)
		if challenge == "" {
			expired(w, r, d)
			return
		}
		token, _, codes, err := d.Sessions.EnrolConfirm(r.Context(), d.Factors, challenge, r.PostForm.Get("code"), d.ClientAddr(r), r.UserAgent())
		if err != nil {
			formFailed(w, r, d, "enrol", data, err)
			return
		}
		clearCookie(w, challengeCookie)
		setSessionCookie(w, token)
		render(w, r, d.Log, http.StatusOK, "codes", map[string]any{
			"Title": "Your recovery codes", "Codes": codes, "Continue": "/",
		})
	})
}

// handleLogout ends the request's session, if it has one, and clears the
// cookie either way.
func handleLogout(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sr, err := withSession(d, w, r); err == nil {
			if err := d.Sessions.SignOut(r.Context(), sessionOf(sr), d.ClientAddr(r), r.UserAgent()); err != nil {
				fail(w, r, d, err)
				return
			}
		}
		clearCookie(w, SessionCookie)
		clearCookie(w, challengeCookie)
		// The browser drops what it kept of the signed-in pages too (ASVS
		// V14.3.1).
		w.Header().Set("Clear-Site-Data", `"cache", "cookies", "storage"`)
		done := "signed-out"
		if r.URL.Query().Get("idle") != "" {
			done = "idle"
		}
		http.Redirect(w, r, "/login?done="+done, http.StatusSeeOther)
	})
}

// handleLeave ends the signed-in person's staff roles in an organization
// (orgadmin.Service.Leave, the API's call) and returns to the start page;
// the last administrator is told why not.
func handleLeave(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := d.Orgs.Leave(r.Context(), actor(d, r), r.PathValue("org"))
		switch {
		case errs.Is(err, errs.Conflict):
			render(w, r, d.Log, http.StatusConflict, "home", map[string]any{
				"Title": "Home", "Error": errs.SafeMessage(err), "Organizations": memberships(d, r)})
		case err != nil:
			fail(w, r, d, err)
		default:
			http.Redirect(w, r, "/?done=left", http.StatusSeeOther)
		}
	})
}

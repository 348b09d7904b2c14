package web

import (
	"encoding/json"
	"github.com/custodia/custodia/internal/notify"
	"net/http"
	"strings"

	"github.com/custodia/custodia/internal/mfa"

	"github.com/custodia/custodia/internal/errs"
)

// accountPage renders the account page with status, data's extra fields
// (an error, a notice) and what the page always shows: the person's name
// and address, their second factor and their live sessions.
func accountPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx := r.Context()
	sess := sessionOf(r)
	data["Title"] = "Your account"
	acc, err := d.Accounts.Account(ctx, actor(d, r))
	if err != nil {
		fail(w, r, d, err)
		return
	}
	factors, err := d.Factors.Summary(ctx, actor(d, r))
	if err != nil {
		fail(w, r, d, err)
		return
	}
	devices, err := d.Sessions.Devices(ctx, sess)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	data["Account"], data["Factors"], data["RecoveryLeft"], data["Devices"] = acc, factors, factors.RecoveryCodesLeft, devices
	data["SMSRisks"] = mfa.SMSRisks
	if d.Notices != nil {
		mode, err := d.Notices.Mode(ctx, actor(d, r))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		data["NoticeMode"] = string(mode)
		ch, err := d.Notices.Channel(ctx, actor(d, r))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		data["NoticeChannel"] = string(ch)
	}
	data["PasswordExpired"] = sess.PasswordExpired
	if data["Notice"] == nil {
		data["Notice"] = notice(r)
	}
	render(w, r, d.Log, status, "account", data)
}

func handleAccount(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accountPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// parse reads a posted form for a signed-in page; on failure it answers
// the account page with 400.
func parse(w http.ResponseWriter, r *http.Request, d Deps) bool {
	if err := r.ParseForm(); err != nil {
		accountPage(w, r, d, http.StatusBadRequest, map[string]any{"Error": "The form could not be read."})
		return false
	}
	return true
}

// accountError answers a failed change on the account page, with the
// domain's message; what the page cannot help with gets the error page.
func accountError(w http.ResponseWriter, r *http.Request, d Deps, err error) {
	switch errs.KindOf(err) {
	case errs.Invalid, errs.Forbidden, errs.Unauthenticated, errs.Conflict, errs.RateLimited:
		if errs.Is(err, errs.RateLimited) {
			tooMany(w, err)
		}
		accountPage(w, r, d, statusOf(err), map[string]any{"Error": message(d, r, err)})
	default:
		fail(w, r, d, err)
	}
}

func handleRename(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !parse(w, r, d) {
			return
		}
		if _, err := d.Accounts.Rename(r.Context(), actor(d, r), r.PostForm.Get("name")); err != nil {
			accountError(w, r, d, err)
			return
		}
		http.Redirect(w, r, "/account?done=name", http.StatusSeeOther)
	})
}

// handleChangePassword changes the password given the current one
// (sessions.ChangePassword, the API's call): the session gets a new id and
// every other session ends.
func handleChangePassword(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !parse(w, r, d) {
			return
		}
		next := r.PostForm.Get("password")
		if next != r.PostForm.Get("confirm") {
			accountPage(w, r, d, http.StatusBadRequest, map[string]any{"Error": "The two new passwords differ."})
			return
		}
		token, _, err := d.Sessions.ChangePassword(r.Context(), d.Factors, sessionOf(r), actor(d, r), r.PostForm.Get("current"), next)
		if err != nil {
			accountError(w, r, d, err)
			return
		}
		setSessionCookie(w, token)
		http.Redirect(w, r, "/account?done=password", http.StatusSeeOther)
	})
}

// handleFactorBegin shows a new authenticator secret to confirm with a
// code (mfa.Service.Begin).
func handleFactorBegin(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := d.Factors.Begin(r.Context(), actor(d, r))
		if err != nil {
			accountError(w, r, d, err)
			return
		}
		render(w, r, d.Log, http.StatusOK, "enrol", map[string]any{
			"Title": "Set up your authenticator app", "Action": "/account/factors/totp/confirm",
			"Secret": e.Secret, "QR": qrImage(e),
		})
	})
}

// handleFactorConfirm activates the new factor with a code from it
// (sessions.ConfirmFactor: the session gets a new id) and shows the
// recovery codes once; beside a passkey, whose recovery codes stand, it
// goes back to the account page.
func handleFactorConfirm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Set up your authenticator app", "Action": "/account/factors/totp/confirm"}
		if !form(w, r, d, "enrol", data) {
			return
		}
		codes, token, _, err := d.Sessions.ConfirmFactor(r.Context(), d.Factors, sessionOf(r), actor(d, r), r.PostForm.Get("code"))
		if errs.Is(err, errs.StepUpRequired) {
			fail(w, r, d, err) // the step-up page, and back to the account page
			return
		}
		if err != nil {
			formFailed(w, r, d, "enrol", data, err)
			return
		}
		setSessionCookie(w, token)
		if len(codes) == 0 {
			http.Redirect(w, r, "/account?done=factor-added", http.StatusSeeOther)
			return
		}
		render(w, r, d.Log, http.StatusOK, "codes", map[string]any{
			"Title": "Your recovery codes", "Codes": codes, "Continue": "/account",
		})
	})
}

// handleFactorRemove removes the factor given a current code or the
// password (mfa.Service.Remove).
func handleFactorRemove(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !parse(w, r, d) {
			return
		}
		if err := d.Factors.Remove(r.Context(), actor(d, r), r.PostForm.Get("code"), r.PostForm.Get("password")); err != nil {
			accountError(w, r, d, err)
			return
		}
		http.Redirect(w, r, "/account?done=factor-removed", http.StatusSeeOther)
	})
}

// handleRecoveryCodes replaces the recovery codes
// (mfa.Service.RenewRecoveryCodes) and shows the new ones once: after a
// fresh confirmation of the session, or given a code from the app. Without
// either, the step-up page answers and leads back to the account page (the
// form's "next").
func handleRecoveryCodes(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !parse(w, r, d) {
			return
		}
		codes, err := d.Factors.RenewRecoveryCodes(r.Context(), actor(d, r), r.PostForm.Get("code"))
		if err != nil {
			accountError(w, r, d, err) // a wanted step-up: the step-up page (fail)
			return
		}
		render(w, r, d.Log, http.StatusOK, "codes", map[string]any{
			"Title": "Your new recovery codes", "Codes": codes, "Continue": "/account",
		})
	})
}

// handleEndSession signs out one session of the person's own; ending the
// current one signs them out here.
func handleEndSession(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess := sessionOf(r)
		id := r.PathValue("session")
		if err := d.Sessions.EndDevice(r.Context(), sess, id, d.ClientAddr(r), r.UserAgent()); err != nil {
			fail(w, r, d, err)
			return
		}
		if id == sess.ID {
			clearCookie(w, SessionCookie)
			http.Redirect(w, r, "/login?done=signed-out", http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/account?done=session-ended", http.StatusSeeOther)
	})
}

// handleSignOutEverywhere ends every session of the account, this one too
// (AUTH-10).
func handleSignOutEverywhere(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := d.Sessions.SignOutEverywhere(r.Context(), sessionOf(r), d.ClientAddr(r), r.UserAgent()); err != nil {
			fail(w, r, d, err)
			return
		}
		clearCookie(w, SessionCookie)
		http.Redirect(w, r, "/login?done=signed-out-everywhere", http.StatusSeeOther)
	})
}

// handleKeepAlive is "stay signed in" of the idle warning: it records
// activity and answers how many seconds the session has left, as JSON for
// the page's script, or by going back to the start page without it.
func handleKeepAlive(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		left, err := d.Sessions.KeepAlive(r.Context(), sessionOf(r))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		if !strings.Contains(r.Header.Get("Accept"), "application/json") {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(map[string]int{"idle_left": int(left.Seconds())})
	})
}

// confirmPage renders the step-up page with status and data's fields (the
// page to go back to, an error). It offers "Use a passkey" when the server
// has a relying party and the account a passkey; static/passkey.js then
// answers through the API (/api/v1/auth/confirm/webauthn…) with the
// session cookie.
func confirmPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	data["Title"] = "Confirm it is you"
	if passkeysAvailable(d) {
		if m, err := d.Factors.Summary(r.Context(), actor(d, r)); err == nil {
			data["Passkeys"] = m.Passkeys > 0
		}
	}
	render(w, r, d.Log, status, "confirm", data)
}

func handleConfirmForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		confirmPage(w, r, d, http.StatusOK, map[string]any{"Next": localPath(r.URL.Query().Get("next"))})
	})
}

// handleConfirm is the step-up (sessions.Confirm, the API's call): the
// password or a current code proves the person is still the account's
// owner, for the actions that ask for it. A passkey does it from the page's
// script (confirmPage).
func handleConfirm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Confirm it is you"}
		if !form(w, r, d, "confirm", data) {
			return
		}
		next := localPath(r.PostForm.Get("next"))
		data["Next"] = next
		token, _, err := d.Sessions.Confirm(r.Context(), d.Factors, sessionOf(r), actor(d, r), r.PostForm.Get("password"), r.PostForm.Get("code"))
		if err != nil {
			if errs.Is(err, errs.RateLimited) {
				tooMany(w, err)
			}
			data["Error"] = message(d, r, err)
			confirmPage(w, r, d, statusOf(err), data)
			return
		}
		setSessionCookie(w, token)
		http.Redirect(w, r, withDone(next, "confirmed"), http.StatusSeeOther)
	})
}

// handleSetNotices sets how the signed-in person is told that something
// waits for them (notify.Service.SetMode, the API's call).
func handleSetNotices(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !parse(w, r, d) {
			return
		}
		mode, err := notify.ParseMode(r.PostForm.Get("mode"))
		if err == nil && r.PostForm.Has("channel") {
			var ch notify.Channel
			if ch, err = notify.ParseChannel(r.PostForm.Get("channel")); err == nil {
				err = d.Notices.SetChannel(r.Context(), actor(d, r), ch)
			}
		}
		if err == nil {
			err = d.Notices.SetMode(r.Context(), actor(d, r), mode)
		}
		if err != nil {
			accountError(w, r, d, err)
			return
		}
		http.Redirect(w, r, "/account?done=notices", http.StatusSeeOther)
	})
}

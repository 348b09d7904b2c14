package api

import (
	"net/http"

	"github.com/custodia/custodia/internal/mfa"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sessions"
)

// passwordExpiredRoutes are all a session may reach once its password is
// older than the rotation period of the account's organizations (AUTH-09).
var passwordExpiredRoutes = map[string]bool{
	"POST /api/v1/account/password": true,
	"POST /api/v1/auth/logout":      true,
}

var errPasswordExpired = errs.E(errs.Forbidden,
	"your password has expired: change it (POST /api/v1/account/password) before anything else")

// settleSession finishes the guard's work on a live session: a session
// begun before a change of the account's roles gets a new id at once, the
// response carrying the new cookie and the old token dead (AUTH-10), and a
// session with an expired password reaches only the password change and
// sign-out (AUTH-09).
func settleSession(d Deps, w http.ResponseWriter, r *http.Request, sess sessions.Session) (sessions.Session, error) {
	if sess.RenewDue {
		token, renewed, err := d.Sessions.Renew(r.Context(), sess, sessions.RenewRoleChange, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return sessions.Session{}, err
		}
		setSessionCookie(w, token)
		sess = renewed
	}
	if sess.PasswordExpired && !passwordExpiredRoutes[r.Pattern] {
		return sessions.Session{}, errPasswordExpired
	}
	return sess, nil
}

// handleChangePassword changes the signed-in person's password, given the
// current one: every other session ends and this one continues under a new
// id, whose cookie the answer carries (AUTH-10). A wrong current password
// is 403 and counts towards the lockout.
func handleChangePassword(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Current string `json:"current"`
			New     string `json:"new"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		token, sess, err := d.Sessions.ChangePassword(r.Context(), d.Factors, session(r.Context()), actor(d, r), req.Current, req.New)
		if err != nil {
			return err
		}
		setSessionCookie(w, token)
		writeJSON(w, http.StatusOK, sessionOut(sess))
		return nil
	})
}

// handleSMSBegin starts setting up a phone number as the signed-in
// person's second factor: a code is texted to it for handleSMSConfirm.
func handleSMSBegin(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Phone string `json:"phone"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		f, err := factors(d)
		if err != nil {
			return err
		}
		to, err := f.BeginSMS(r.Context(), actor(d, r), req.Phone)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"sent_to": to, "risks": mfa.SMSRisks})
		return nil
	})
}

// handleSecondFactorSMS texts a code for the second step of a sign-in to
// the phone number of the challenge's account; the code then goes to
// handleSecondFactor like any other.
func handleSecondFactorSMS(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Challenge string `json:"challenge"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		to, err := d.Sessions.SendSecondFactorSMS(r.Context(), d.Factors, req.Challenge, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"sent_to": to})
		return nil
	})
}

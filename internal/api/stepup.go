package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sessions"
)

type confirmRequest struct {
	Password string `json:"password"`
	Code     string `json:"code"`
}

// handleConfirm is the step-up of ACL-09: the signed-in person gives their
// password or a current second-factor code (exactly one), and for
// gate.StepUpWindow their session may take the actions that ask for it. The
// session gets a new token, in a new cookie. A wrong proof is 403 and
// counts towards the lockout.
func handleConfirm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		sess := session(r.Context())
		if sess.ID == "" {
			return errs.E(errs.Forbidden, "confirming your identity needs a signed-in session, not an access token")
		}
		var req confirmRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		token, sess, err := d.Sessions.Confirm(r.Context(), d.Factors, sess, actor(d, r), req.Password, req.Code)
		if err != nil {
			return err
		}
		setSessionCookie(w, token)
		writeConfirmed(w, sess)
		return nil
	})
}

func writeConfirmed(w http.ResponseWriter, sess sessions.Session) {
	writeJSON(w, http.StatusOK, map[string]string{
		"confirmed_at": sess.ConfirmedAt.UTC().Format(time.RFC3339),
		"valid_until":  sess.ConfirmedAt.Add(gate.StepUpWindow).UTC().Format(time.RFC3339),
	})
}

// handleConfirmPasskeyOptions begins the step-up answered with a passkey:
// the request options for navigator.credentials.get, allowing the
// signed-in account's own passkeys, for one answer from this session.
func handleConfirmPasskeyOptions(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		options, err := d.Sessions.ConfirmPasskeyOptions(r.Context(), d.Factors, session(r.Context()), actor(d, r))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, json.RawMessage(options))
		return nil
	})
}

// handleConfirmPasskey is handleConfirm answered with a passkey: the
// browser's assertion for the options of handleConfirmPasskeyOptions. A
// wrong, foreign or replayed assertion is 403 and counts towards the
// lockout, as a wrong code does.
func handleConfirmPasskey(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Credential json.RawMessage `json:"credential"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		cred, err := credentialOf(req.Credential)
		if err != nil {
			return err
		}
		token, sess, err := d.Sessions.ConfirmWithPasskey(r.Context(), d.Factors, session(r.Context()), actor(d, r), cred)
		if err != nil {
			return err
		}
		setSessionCookie(w, token)
		writeConfirmed(w, sess)
		return nil
	})
}

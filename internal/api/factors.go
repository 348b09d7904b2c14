package api

import (
	"context"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sessions"
)

// setSessionCookie hands the browser a new session's token.
func setSessionCookie(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/",
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func sessionOut(sess sessions.Session) map[string]any {
	return map[string]any{
		"account":    accountJSON{ID: sess.AccountID},
		"expires_at": sess.ExpiresAt.UTC().Format(time.RFC3339),
	}
}

// challengeOut is the answer to a right password when a second step
// follows: give a code (second_factor_required) or set up a factor
// (enrolment_required), with the challenge and the methods it takes; a
// passkey can be set up only where passkeys are available.
func challengeOut(c mfa.Challenge, passkeys bool) map[string]any {
	out := map[string]any{
		"challenge":  c.Token,
		"expires_at": c.ExpiresAt.UTC().Format(time.RFC3339),
	}
	if c.Purpose == mfa.PurposeEnrolment {
		out["enrolment_required"] = true
		methods := []mfa.Method{mfa.MethodTOTP}
		if passkeys {
			methods = append(methods, mfa.MethodWebAuthn)
		}
		out["methods"] = methods
	} else {
		out["second_factor_required"] = true
		out["methods"] = c.Methods
	}
	return out
}

type enrolmentJSON struct {
	Secret      string `json:"secret"`
	URI         string `json:"uri"`
	QRPNGBase64 string `json:"qr_png_base64,omitempty"`
}

func enrolmentOut(e mfa.Enrolment) enrolmentJSON {
	out := enrolmentJSON{Secret: e.Secret, URI: e.URI}
	if len(e.QRPNG) > 0 {
		out.QRPNGBase64 = base64.StdEncoding.EncodeToString(e.QRPNG)
	}
	return out
}

// factors is the second-factor service, or Unavailable when the server
// runs without one.
func factors(d Deps) (*mfa.Service, error) {
	if d.Factors == nil {
		return nil, errs.E(errs.Unavailable, "second factors are unavailable")
	}
	return d.Factors, nil
}

type challengeRequest struct {
	Challenge string `json:"challenge"`
	Code      string `json:"code"`
}

// handleSecondFactor is the second step of a sign-in: a challenge from
// handleLogin and a TOTP or recovery code give the session cookie. Every
// failure is one 401 (a wrong code, an unknown, used or expired challenge);
// a refusal by a rate limit is 429 with Retry-After.
func handleSecondFactor(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req challengeRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		token, sess, err := d.Sessions.SecondFactor(r.Context(), d.Factors, req.Challenge, req.Code, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return err
		}
		setSessionCookie(w, token)
		writeJSON(w, http.StatusOK, sessionOut(sess))
		return nil
	})
}

// handleEnrolBegin starts setting up a TOTP factor with an enrolment
// challenge instead of a session, for a person whose organization requires
// a second factor.
func handleEnrolBegin(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Challenge string `json:"challenge"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		e, err := d.Sessions.EnrolBegin(r.Context(), d.Factors, req.Challenge, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, enrolmentOut(e))
		return nil
	})
}

// handleEnrolConfirm confirms the factor begun with handleEnrolBegin and
// signs the person in: the session cookie, and the recovery codes, shown
// this once.
func handleEnrolConfirm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req challengeRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		token, sess, codes, err := d.Sessions.EnrolConfirm(r.Context(), d.Factors, req.Challenge, req.Code, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return err
		}
		setSessionCookie(w, token)
		out := sessionOut(sess)
		out["recovery_codes"] = codes
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

// handleFactorBegin starts setting up a TOTP factor for the signed-in
// person.
func handleFactorBegin(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		f, err := factors(d)
		if err != nil {
			return err
		}
		e, err := f.Begin(r.Context(), actor(d, r))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, enrolmentOut(e))
		return nil
	})
}

type codeRequest struct {
	Code string `json:"code"`
}

// confirmFn activates a pending factor of the session's account with a code
// from it: TOTP's or SMS's.
type confirmFn func(ctx context.Context, f *mfa.Service, sess sessions.Session, a gate.Actor, code string) ([]string, string, sessions.Session, error)

// handleFactorConfirm activates the signed-in person's new factor with a
// code from it and, for the account's first factor, answers with the
// recovery codes, shown this once (beside a passkey the account's codes
// stand and the answer holds none). The session now stands on two factors:
// it continues under a new id, whose cookie the answer carries (AUTH-10).
func handleFactorConfirm(d Deps, confirm confirmFn) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req codeRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		f, err := factors(d)
		if err != nil {
			return err
		}
		codes, token, _, err := confirm(r.Context(), f, session(r.Context()), actor(d, r), req.Code)
		if err != nil {
			return err
		}
		setSessionCookie(w, token)
		out := map[string]any{}
		if len(codes) > 0 {
			out["recovery_codes"] = codes
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

// removeFn removes a factor of the actor's account, given a current code or
// the account's password.
type removeFn func(ctx context.Context, a gate.Actor, code, password string) error

func removeTOTP(f *mfa.Service) removeFn { return f.Remove }
func removeSMS(f *mfa.Service) removeFn  { return f.RemoveSMS }

// handleFactorRemove removes a factor of the signed-in person (TOTP's or
// SMS's, as remove picks it from the service), given a current code or the
// account's password.
func handleFactorRemove(d Deps, remove func(*mfa.Service) removeFn) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Code     string `json:"code"`
			Password string `json:"password"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		f, err := factors(d)
		if err != nil {
			return err
		}
		if err := remove(f)(r.Context(), actor(d, r), req.Code, req.Password); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// handleRecoveryCodes replaces the signed-in person's recovery codes and
// answers with the new ones, shown this once: after a fresh confirmation of
// the session (/api/v1/auth/confirm), with no body or {}, else 403
// step_up_required; or, as before, given a current code, {"code"}.
func handleRecoveryCodes(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req codeRequest
		if r.ContentLength != 0 {
			if err := decode(r, &req); err != nil {
				return err
			}
		}
		f, err := factors(d)
		if err != nil {
			return err
		}
		codes, err := f.RenewRecoveryCodes(r.Context(), actor(d, r), req.Code)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
		return nil
	})
}

package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/mfa"
)

// Passkeys and security keys (AUTH-08): the options and answers are the
// JSON of the browser's WebAuthn calls (navigator.credentials.create and
// .get, with binary fields in base64url), as static/passkey.js sends them.

type passkeyJSON struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	AAGUID         string   `json:"aaguid"`
	Transports     []string `json:"transports"`
	BackupEligible bool     `json:"backup_eligible"`
	CreatedAt      string   `json:"created_at"`
	LastUsedAt     string   `json:"last_used_at,omitempty"`
}

func passkeyOut(p mfa.Passkey) passkeyJSON {
	out := passkeyJSON{
		ID: p.ID, Name: p.Name, AAGUID: p.AAGUIDString(), Transports: p.Transports,
		BackupEligible: p.BackupEligible, CreatedAt: p.CreatedAt.UTC().Format(time.RFC3339),
	}
	if out.Transports == nil {
		out.Transports = []string{}
	}
	if !p.LastUsedAt.IsZero() {
		out.LastUsedAt = p.LastUsedAt.UTC().Format(time.RFC3339)
	}
	return out
}

// credentialOf checks that a request carried the browser's credential.
func credentialOf(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errs.E(errs.Invalid, "field \"credential\" must be the authenticator's answer, a JSON object")
	}
	return raw, nil
}

// handlePasskeyBegin starts registering a passkey for the signed-in person
// and answers with the creation options for navigator.credentials.create.
func handlePasskeyBegin(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		f, err := factors(d)
		if err != nil {
			return err
		}
		options, err := f.BeginPasskey(r.Context(), actor(d, r))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, json.RawMessage(options))
		return nil
	})
}

// handlePasskeyConfirm stores the passkey the browser made for the options
// of handlePasskeyBegin, under the name given. The session continues under
// a new id, whose cookie the answer carries (AUTH-10); for the account's
// first second factor the answer holds its recovery codes, shown this once.
func handlePasskeyConfirm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Name       string          `json:"name"`
			Credential json.RawMessage `json:"credential"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		cred, err := credentialOf(req.Credential)
		if err != nil {
			return err
		}
		f, err := factors(d)
		if err != nil {
			return err
		}
		pk, codes, token, _, err := d.Sessions.ConfirmPasskey(r.Context(), f, session(r.Context()), actor(d, r), req.Name, cred)
		if err != nil {
			return err
		}
		setSessionCookie(w, token)
		out := map[string]any{"passkey": passkeyOut(pk)}
		if len(codes) > 0 {
			out["recovery_codes"] = codes
		}
		writeJSON(w, http.StatusCreated, out)
		return nil
	})
}

// handlePasskeyList lists the signed-in person's passkeys.
func handlePasskeyList(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		f, err := factors(d)
		if err != nil {
			return err
		}
		list, err := f.ListPasskeys(r.Context(), actor(d, r))
		if err != nil {
			return err
		}
		out := make([]passkeyJSON, len(list))
		for i, p := range list {
			out[i] = passkeyOut(p)
		}
		writeJSON(w, http.StatusOK, map[string]any{"passkeys": out})
		return nil
	})
}

// handlePasskeyRemove removes one of the signed-in person's passkeys,
// given a current code or the account's password.
func handlePasskeyRemove(d Deps) http.Handler {
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
		if err := f.RemovePasskey(r.Context(), actor(d, r), r.PathValue("id"), req.Code, req.Password); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// handleSecondFactorPasskeyOptions answers a sign-in challenge of an
// account with passkeys with the request options for
// navigator.credentials.get. Every failure is one 401, as for a code.
func handleSecondFactorPasskeyOptions(d Deps) http.Handler {
	return handleChallengeOptions(d, d.Sessions.PasskeyOptions)
}

// handleChallengeOptions answers {"challenge"} with the WebAuthn options
// that options makes for that challenge of a sign-in.
func handleChallengeOptions(d Deps, options func(ctx context.Context, f *mfa.Service, challenge, addr, userAgent string) ([]byte, error)) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Challenge string `json:"challenge"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		out, err := options(r.Context(), d.Factors, req.Challenge, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, json.RawMessage(out))
		return nil
	})
}

// handleSecondFactorPasskey is the second step of a sign-in answered with a
// passkey: the challenge and the browser's assertion give the session
// cookie, exactly as handleSecondFactor does for a code.
func handleSecondFactorPasskey(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Challenge  string          `json:"challenge"`
			Credential json.RawMessage `json:"credential"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		cred, err := credentialOf(req.Credential)
		if err != nil {
			return err
		}
		token, sess, err := d.Sessions.SecondFactorPasskey(r.Context(), d.Factors, req.Challenge, cred, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			return err
		}
		setSessionCookie(w, token)
		writeJSON(w, http.StatusOK, sessionOut(sess))
		return nil
	})
}

// handleEnrolPasskeyBegin starts registering a passkey with an enrolment
// challenge instead of a session, for a person whose organization requires
// a second factor, and answers with the creation options for
// navigator.credentials.create. Without a relying party it is 503.
func handleEnrolPasskeyBegin(d Deps) http.Handler {
	return handleChallengeOptions(d, d.Sessions.EnrolPasskeyBegin)
}

// handleEnrolPasskeyConfirm stores the passkey made for the options of
// handleEnrolPasskeyBegin and signs the person in, as handleEnrolConfirm
// does: the session cookie, and the recovery codes, shown this once.
func handleEnrolPasskeyConfirm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Challenge  string          `json:"challenge"`
			Name       string          `json:"name"`
			Credential json.RawMessage `json:"credential"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		cred, err := credentialOf(req.Credential)
		if err != nil {
			return err
		}
		token, sess, codes, err := d.Sessions.EnrolPasskeyConfirm(r.Context(), d.Factors, req.Challenge, req.Name, cred, d.ClientAddr(r), r.UserAgent())
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

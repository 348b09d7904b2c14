package sso

import (
	"errors"

	"github.com/custodia/custodia/internal/errs"
)

// Refusal is why a single sign-on was refused. Reason goes on the audit
// trail (it is never a token or a claim's value); the person sees the
// message of the error Refuse wraps it in, one line that does not say which
// check failed.
type Refusal struct {
	Reason string
	Err    error // the cause, for the log
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return "single sign-on refused (" + r.Reason + "): " + r.Err.Error()
	}
	return "single sign-on refused (" + r.Reason + ")"
}

func (r *Refusal) Unwrap() error { return r.Err }

// Reasons of a refusal.
const (
	// The flow: no live flow for the state and the browser's binding
	// (unknown, spent, expired, or begun in another browser).
	ReasonState = "state"
	// The provider answered with an error instead of a code.
	ReasonProvider = "provider_error"
	// The code was not exchanged: the provider refused it (a wrong or
	// missing PKCE verifier, a used code, a wrong client secret).
	ReasonExchange = "exchange"
	// The ID token: missing or malformed, not signed by a key of the
	// issuer, issued by another issuer, for another audience, expired,
	// without the flow's nonce.
	ReasonToken     = "token"
	ReasonSignature = "signature"
	ReasonIssuer    = "issuer"
	ReasonAudience  = "audience"
	ReasonExpired   = "expired"
	ReasonNonce     = "nonce"
	// The person: no usable e-mail address, one outside the allowed
	// domains, no account (and none may be created), an account of other
	// organizations too, a locked or disabled account, no role here.
	ReasonEmail       = "email"
	ReasonDomain      = "domain"
	ReasonNoAccount   = "no_account"
	ReasonShared      = "other_organizations"
	ReasonLocked      = "locked"
	ReasonNoRole      = "no_role"
	ReasonUnavailable = "not_configured"
)

// messages are what the person is told, by reason; a reason not listed is
// told messageAnswer.
var messages = map[string]string{
	ReasonState:       "This single sign-on has expired or was used already; please start again.",
	ReasonProvider:    "Your organization's sign-in service did not sign you in; please try again.",
	ReasonEmail:       "Your organization's sign-in service did not give a verified e-mail address; ask your organization's administrator.",
	ReasonDomain:      "Your organization's sign-in service signed you in, but your e-mail address is not one this organization accepts; ask its administrator.",
	ReasonNoAccount:   "Your organization's sign-in service signed you in, but you have no account here yet; ask your organization's administrator to invite you.",
	ReasonShared:      "Your account belongs to other organizations too, so it signs in with its password, not through one organization's sign-in service.",
	ReasonLocked:      "Your organization's sign-in service signed you in, but your account here is locked or disabled; ask your organization's administrator.",
	ReasonNoRole:      "Your organization's sign-in service signed you in, but you have no role in this organization; ask its administrator.",
	ReasonUnavailable: "Single sign-on is not set up for this organization.",
}

const messageAnswer = "The answer of your organization's sign-in service could not be verified, so you are not signed in; please try again."

// Refuse returns the refusal of a sign-in for reason, caused by cause
// (which may be nil): Unauthenticated, with the person's message.
func Refuse(reason string, cause error) error {
	msg, ok := messages[reason]
	if !ok {
		msg = messageAnswer
	}
	kind := errs.Unauthenticated
	if reason == ReasonUnavailable {
		kind = errs.NotFound
	}
	return errs.Wrap(kind, &Refusal{Reason: reason, Err: cause}, msg)
}

// ReasonOf is the reason of the refusal err holds, or "".
func ReasonOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Package errs defines the kinds of failure that callers act on. Every error
// that crosses a package boundary carries a Kind; the HTTP shells map the kind
// to a status and the CLI prints the safe message. The message of an Error is
// written for the person who made the request: it never holds internal
// details, which stay in the wrapped cause and reach only the log.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies an error by what the caller can do about it.
type Kind int

const (
	Internal        Kind = iota // a fault of ours; details go to the log only
	Invalid                     // the request is malformed or fails validation
	NotFound                    // no such object, or one the caller may not know exists
	Unauthenticated             // no valid credentials
	Forbidden                   // authenticated, but not allowed
	Conflict                    // the object exists already or changed meanwhile
	RateLimited                 // too many attempts; try again later
	Unavailable                 // a dependency (database, KMS) is down
	StepUpRequired              // allowed, but only after a fresh confirmation of identity (ACL-09)
)

var kindNames = [...]string{
	Internal:        "internal",
	Invalid:         "invalid",
	NotFound:        "not_found",
	Unauthenticated: "unauthenticated",
	Forbidden:       "forbidden",
	Conflict:        "conflict",
	RateLimited:     "rate_limited",
	Unavailable:     "unavailable",
	StepUpRequired:  "step_up_required",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "internal"
}

// Error is an error with a kind and a message safe to show to the requester.
type Error struct {
	Kind    Kind
	Message string // safe for the requester
	Err     error  // cause, for the log
}

func (e *Error) Error() string {
	switch {
	case e.Err != nil && e.Message != "":
		return e.Message + ": " + e.Err.Error()
	case e.Err != nil:
		return e.Err.Error()
	default:
		return e.Message
	}
}

func (e *Error) Unwrap() error { return e.Err }

// E returns an error of the given kind with a message safe to show.
func E(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of the given kind whose safe message is msg and whose
// cause, kept for the log, is err.
func Wrap(kind Kind, err error, msg string) error {
	return &Error{Kind: kind, Message: msg, Err: err}
}

// KindOf reports the kind of the outermost *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// SafeMessage is what may be shown to the requester for err: the message of
// the outermost *Error, or a generic text for internal faults.
func SafeMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal && e.Message != "" {
		return e.Message
	}
	switch KindOf(err) {
	case Unavailable:
		return "service temporarily unavailable"
	default:
		return "internal error"
	}
}

// Clip shortens a value from a request to n characters, with an ellipsis,
// for a message that names it.
func Clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// Package api is the JSON shell under /api/v1: it decodes a request, calls
// one domain function and encodes the answer. It holds no SQL, no crypto and
// no authorization rule; errors come out in one shape,
// {"error":{"code":"…","message":"…"}}, with a status chosen by kind.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
)

// maxBody bounds a JSON request body.
const maxBody = 64 << 10

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		// Fields names each problem of a form or an entry (WEB-05).
		Fields []forms.FieldError `json:"fields,omitempty"`
	} `json:"error"`
}

// writeError answers with the error shape. Internal details go to the log.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	k := errs.KindOf(err)
	if k == errs.Internal || k == errs.Unavailable {
		log.ErrorContext(r.Context(), "request failed", "route", r.Pattern, "err", err)
	}
	if k == errs.RateLimited {
		setRetryAfter(w, err)
	}
	router.RecordRefusal(r, k.String())
	var b errorBody
	b.Error.Code, b.Error.Message = k.String(), errs.SafeMessage(err)
	if p := (*forms.Problems)(nil); errors.As(err, &p) {
		b.Error.Fields = p.Fields
	}
	writeJSON(w, router.Status(k), b)
}

// retryAfterer is the cause of a refusal that knows when to come back
// (ratelimit.Exceeded).
type retryAfterer interface{ RetryAfter() time.Duration }

// setRetryAfter sets Retry-After in whole seconds, rounded up and at least
// one, when err says how long to wait (AUTH-05).
func setRetryAfter(w http.ResponseWriter, err error) {
	var ra retryAfterer
	if !errors.As(err, &ra) || ra.RetryAfter() <= 0 {
		return
	}
	secs := max(1, int64((ra.RetryAfter()+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}

func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}

// Failure renders the router's 404 and 405 answers in the error shape.
func Failure(w http.ResponseWriter, r *http.Request, status int) {
	if status == http.StatusMethodNotAllowed {
		writeJSONError(w, status, "method_not_allowed", "method "+r.Method+" is not allowed here")
		return
	}
	writeJSONError(w, status, "not_found", "no such resource")
}

// decode reads one JSON object into v, strictly: a body that is not JSON,
// too large, has unknown fields, trailing data or a wrong type is Invalid,
// and v is only used when the whole body is good.
func decode(r *http.Request, v any) error {
	return decodeUpTo(r, v, maxBody)
}

// decodeUpTo is decode for a body of up to limit bytes.
func decodeUpTo(r *http.Request, v any, limit int) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return errs.E(errs.Invalid, "the request body must be JSON (Content-Type: application/json)")
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	var maxErr *http.MaxBytesError
	if len(b) > limit || errors.As(err, &maxErr) {
		return errs.E(errs.Invalid, "the request body is larger than %d bytes", limit)
	}
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "the request body could not be read")
	}
	if k, dup := duplicateKey(b); dup {
		// encoding/json would keep the last of them: one request, two
		// meanings (ASVS V15.3.7).
		return errs.E(errs.Invalid, "the request body names %q more than once", errs.Clip(k, 64))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errs.E(errs.Invalid, "%s", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errs.E(errs.Invalid, "the request body holds more than one JSON value")
	}
	return nil
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("the request body is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be of type %s", typ.Field, typ.Type.String())
		}
		return "the request body must be a JSON object"
	case errors.Is(err, io.EOF):
		return "the request body is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the request body is truncated JSON"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "the request body is not a valid JSON object"
}

type ctxKey int

const accountKey ctxKey = 0

// accountID is the signed-in account of a request that passed the guard.
func accountID(ctx context.Context) string {
	id, _ := ctx.Value(accountKey).(string)
	return id
}

type sessionIDKey struct{}

type sessionKey struct{}

// session is the session of a request that passed the guard with a session
// cookie; the zero Session otherwise.
func session(ctx context.Context) sessions.Session {
	s, _ := ctx.Value(sessionKey{}).(sessions.Session)
	return s
}

func sessionID(ctx context.Context) string {
	id, _ := ctx.Value(sessionIDKey{}).(string)
	return id
}

// pageQuery reads the query of a paged list that takes only a position
// (named cursor) and a limit (1 to max; 0 when not given): any other
// parameter, or one given twice, is refused.
func pageQuery(q url.Values, cursor string, max int) (string, int, error) {
	for k, vs := range q {
		if k != cursor && k != "limit" {
			return "", 0, errs.E(errs.Invalid, "unknown parameter %.40q (known: %s, limit)", k, cursor)
		}
		if len(vs) > 1 {
			return "", 0, errs.E(errs.Invalid, "parameter %q given more than once", k)
		}
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return "", 0, errs.E(errs.Invalid, "limit must be a number between 1 and %d", max)
		}
		limit = n
	}
	return q.Get(cursor), limit, nil
}

// duplicateKey finds a key that one object of the JSON text b names twice,
// at any depth. A text that is not JSON has none here; decoding refuses it.
func duplicateKey(b []byte) (string, bool) {
	type frame struct {
		keys      map[string]bool // nil for an array
		expectKey bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{keys: map[string]bool{}, expectKey: true})
				continue
			case '[':
				stack = append(stack, &frame{})
				continue
			default: // the end of an object or array: a value of its parent
				if len(stack) > 0 {
					stack = stack[:len(stack)-1]
				}
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].expectKey {
				f := stack[n-1]
				if f.keys[t] {
					return t, true
				}
				f.keys[t], f.expectKey = true, false
				continue
			}
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].expectKey = true
		}
	}
}

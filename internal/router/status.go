package router

import (
	"net/http"

	"github.com/custodia/custodia/internal/errs"
)

// Status is the HTTP status that answers an error of kind k, the same in
// both shells: a page and an API answer about one refusal never disagree.
func Status(k errs.Kind) int {
	switch k {
	case errs.Invalid:
		return http.StatusBadRequest
	case errs.NotFound:
		return http.StatusNotFound
	case errs.Forbidden, errs.StepUpRequired:
		return http.StatusForbidden
	case errs.Unauthenticated:
		return http.StatusUnauthorized
	case errs.Conflict:
		return http.StatusConflict
	case errs.RateLimited:
		return http.StatusTooManyRequests
	case errs.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

package web

import (
	"net/http"
	"net/url"

	"github.com/custodia/custodia/internal/errs"
)

// handleAccessLog shows the signed-in participant who accessed their
// record and when (auditadmin.AccessLog): the role and time of each access,
// in plain words, never a name or an address. It names no participant in
// its address, so it shows only the requester's own.
func handleAccessLog(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for k, vs := range q {
			if k != "cursor" || len(vs) > 1 {
				fail(w, r, d, errs.E(errs.Invalid, "this page takes one cursor and nothing else"))
				return
			}
		}
		cursor := q.Get("cursor")
		list, next, err := d.Oversight.AccessLog(r.Context(), actor(d, r), cursor, 0)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		data := map[string]any{"Title": "Who accessed your record", "Accesses": list}
		if next != "" {
			data["NextPage"] = "/me/access-log?" + url.Values{"cursor": {next}}.Encode()
		}
		if cursor != "" {
			data["FirstPage"] = "/me/access-log"
		}
		render(w, r, d.Log, http.StatusOK, "accesslog", data)
	})
}

package api

import (
	"net/http"
	"net/netip"

	"github.com/custodia/custodia/internal/errs"
)

type networkJSON struct {
	Allowed []string `json:"allowed"`
}

// decodeNetwork reads {"allowed":[…]}. The list is required, so that a
// request that forgot it never lifts a restriction; an empty list does.
func decodeNetwork(r *http.Request) ([]string, error) {
	var req struct {
		Allowed *[]string `json:"allowed"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Allowed == nil {
		return nil, errs.E(errs.Invalid, `field "allowed" is required: a list of CIDR ranges, or [] to lift the restriction`)
	}
	return *req.Allowed, nil
}

func networkOut(ranges []netip.Prefix) networkJSON {
	out := networkJSON{Allowed: make([]string, len(ranges))}
	for i, p := range ranges {
		out.Allowed[i] = p.String()
	}
	return out
}

// handleSetOrgNetwork sets the address ranges the organization may be
// reached from (ACL-07).
func handleSetOrgNetwork(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		allowed, err := decodeNetwork(r)
		if err != nil {
			return err
		}
		ranges, err := d.Networks.SetOrganization(r.Context(), actor(d, r), r.PathValue("org"), allowed)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, networkOut(ranges))
		return nil
	})
}

// handleSetStudyNetwork sets the address ranges one study may be reached
// from, on top of its organization's (ACL-07).
func handleSetStudyNetwork(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		allowed, err := decodeNetwork(r)
		if err != nil {
			return err
		}
		ranges, err := d.Networks.SetStudy(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), allowed)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, networkOut(ranges))
		return nil
	})
}

package server

import "net/url"

// The single sign-on routes (AUTH-13) in the route×role matrix.
//
//   - Signing in: the matrix's server allows no provider (no --sso-issuer),
//     so the start and the callback answer with the sign-in page and 404,
//     as for an organization without a provider.
//   - An organization's provider: its administrators only
//     (security.manage, with step-up: the matrix's sessions are fresh).
//     Setting one is refused as invalid (400) after authorization, since
//     the server allows no issuer; removing one that is not there is 204,
//     and through the page leads back to the settings page.
func init() {
	admins := func(status string) string {
		return `
		org-admin           ` + status + ` ` + status + ` ` + status + ` 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`
	}
	matrix = append(matrix,
		matrixRow{Route: "GET /login/sso", Open: 404},
		matrixRow{Route: "GET /login/sso/callback", Open: 404},
		matrixRow{Route: "GET /api/v1/orgs/{org}/sso-provider", Grid: admins("200")},
		matrixRow{Route: "PUT /api/v1/orgs/{org}/sso-provider", Grid: admins("400")},
		matrixRow{Route: "DELETE /api/v1/orgs/{org}/sso-provider", Grid: admins("204")},
		matrixRow{Route: "GET /orgs/{org}/sso", Grid: admins("200")},
		matrixRow{Route: "POST /orgs/{org}/sso", Grid: admins("400")},
		matrixRow{Route: "POST /orgs/{org}/sso/remove", Grid: admins("200")},
	)
	settings := map[string]any{"issuer": "https://login.example.org/tenant/v2.0", "client_id": "custodia", "client_secret": "matrix secret"}
	targetedProbes["GET /api/v1/orgs/{org}/sso-provider"] = func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/sso-provider"}
	}
	targetedProbes["PUT /api/v1/orgs/{org}/sso-provider"] = func(tg target, _ string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/sso-provider", settings)
	}
	targetedProbes["DELETE /api/v1/orgs/{org}/sso-provider"] = func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/sso-provider"}
	}
	targetedProbes["GET /orgs/{org}/sso"] = func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/sso"}
	}
	targetedProbes["POST /orgs/{org}/sso"] = func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/sso", url.Values{
			"issuer": {"https://login.example.org/tenant/v2.0"}, "client_id": {"custodia"}, "client_secret": {"matrix secret"},
		})
	}
	targetedProbes["POST /orgs/{org}/sso/remove"] = func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/sso/remove", url.Values{})
	}
}

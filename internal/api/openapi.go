package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"github.com/custodia/custodia/internal/router"
)

// The OpenAPI 3.1 document of the API, made from its route table when the
// routes are built, so that it cannot drift from them: every route with its
// method, path parameters, access (open, a session or a token, a session
// only), request body and summary (summaries.go).

// openAPIPath is where the document is served.
const openAPIPath = "/api/v1/openapi.json"

var pathParam = regexp.MustCompile(`\{([a-z]+)\}`)

// bodyTypes are the request bodies that are not JSON.
var bodyTypes = map[string]string{
	"POST /api/v1/orgs/{org}/studies/{study}/forms/redcap-dictionary":                       "text/csv",
	"POST /api/v1/orgs/{org}/studies/{study}/forms/odm":                                     "application/xml",
	"POST /api/v1/orgs/{org}/studies/{study}/import":                                        "text/csv",
	"POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files": "application/octet-stream",
	"POST /api/v1/orgs/{org}/conversations/{conversation}/attachments":                      "application/octet-stream",
}

// openAPI builds the document of routes.
func openAPI(routes []router.Route) ([]byte, error) {
	errorSchema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"error": map[string]any{
				"type": "object",
				"properties": map[string]any{
					"code":    map[string]any{"type": "string"},
					"message": map[string]any{"type": "string"},
					"fields": map[string]any{"type": "array", "items": map[string]any{
						"type": "object",
						"properties": map[string]any{
							"field": map[string]any{"type": "string"},
							"row":   map[string]any{"type": "integer"},
							"error": map[string]any{"type": "string"},
						},
					}},
				},
				"required": []string{"code", "message"},
			},
		},
		"required": []string{"error"},
	}
	errorContent := map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}
	paths := map[string]map[string]any{}
	for _, rt := range routes {
		pattern := rt.Pattern()
		op := map[string]any{
			"operationId": operationID(rt),
			"summary":     summaries[pattern],
			"responses": map[string]any{
				"2XX": map[string]any{"description": "Done."},
				"4XX": map[string]any{
					"description": "Refused: bad input (400, each problem named), not signed in (401), a step-up needed (403), not found or not the requester's to see (404), a conflict (409), too many attempts (429).",
					"content":     errorContent,
				},
				"5XX": map[string]any{"description": "Failed, or unavailable: nothing was done.", "content": errorContent},
			},
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch rt.Access {
		case router.Open:
			op["security"] = []any{}
		case router.Session:
			op["security"] = []any{map[string]any{"session": []string{}}}
		default:
			op["security"] = []any{map[string]any{"session": []string{}}, map[string]any{"token": []string{}}}
		}
		if rt.Method == http.MethodPost || rt.Method == http.MethodPut || rt.Method == http.MethodDelete {
			ct := bodyTypes[pattern]
			schema := map[string]any{"type": "string"}
			if ct == "" {
				ct, schema = "application/json", map[string]any{"type": "object"}
			}
			op["requestBody"] = map[string]any{"content": map[string]any{ct: map[string]any{"schema": schema}}}
		}
		if paths[rt.Path] == nil {
			paths[rt.Path] = map[string]any{}
		}
		paths[rt.Path][strings.ToLower(rt.Method)] = op
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Custodia API",
			"version":     "v1",
			"description": "The JSON API of a Custodia server. docs/api.md describes the calls; docs/input.md the rules of every input.",
		},
		"servers": []any{map[string]any{"url": "/"}},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"session": map[string]any{"type": "apiKey", "in": "cookie", "name": "__Host-custodia_session"},
				"token":   map[string]any{"type": "http", "scheme": "bearer", "description": "A personal access token (cst_…)."},
			},
			"schemas": map[string]any{"Error": errorSchema},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

// operationID names a route's operation: its method and path, in words.
func operationID(rt router.Route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, part := range strings.Split(strings.TrimPrefix(rt.Path, "/api/v1/"), "/") {
		part = strings.Trim(part, "{}")
		for _, w := range strings.FieldsFunc(part, func(r rune) bool { return r == '-' || r == '_' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

// handleOpenAPI serves the document.
func handleOpenAPI(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(doc)
	})
}

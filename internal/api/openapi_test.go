package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestOpenAPINamesEveryRoute reads the OpenAPI document the API serves and
// checks it against the route table: every route is in it with its method,
// a summary, its path parameters and its access; it holds nothing else, and
// no summary is left over from a route that is gone.
func TestOpenAPINamesEveryRoute(t *testing.T) {
	rt := Routes(Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ClientAddr: func(*http.Request) string { return "192.0.2.1" }})
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest("GET", openAPIPath, nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %d %s", openAPIPath, rec.Code, rec.Header())
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			OperationID string           `json:"operationId"`
			Summary     string           `json:"summary"`
			Security    []map[string]any `json:"security"`
			Parameters  []struct {
				Name, In string
				Required bool
			} `json:"parameters"`
			RequestBody *struct {
				Content map[string]any `json:"content"`
			} `json:"requestBody"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	routes := rt.Routes()
	ops, ids := 0, map[string]bool{}
	for _, p := range doc.Paths {
		for _, op := range p {
			ops++
			if ids[op.OperationID] {
				t.Errorf("operationId %s twice", op.OperationID)
			}
			ids[op.OperationID] = true
		}
	}
	if ops != len(routes) {
		t.Errorf("the document has %d operations, the API %d routes", ops, len(routes))
	}
	param := regexp.MustCompile(`\{([a-z]+)\}`)
	for _, r := range routes {
		op, ok := doc.Paths[r.Path][strings.ToLower(r.Method)]
		if !ok {
			t.Errorf("%s is not in the document", r.Pattern())
			continue
		}
		if op.Summary == "" {
			t.Errorf("%s has no summary (summaries.go)", r.Pattern())
		}
		want := param.FindAllStringSubmatch(r.Path, -1)
		if len(op.Parameters) != len(want) {
			t.Errorf("%s: %d parameters, want %d", r.Pattern(), len(op.Parameters), len(want))
		}
		for i, p := range op.Parameters {
			if i < len(want) && (p.Name != want[i][1] || p.In != "path" || !p.Required) {
				t.Errorf("%s: parameter %+v", r.Pattern(), p)
			}
		}
		if open := r.Access == "open"; open != (len(op.Security) == 0) {
			t.Errorf("%s (%s): security %v", r.Pattern(), r.Access, op.Security)
		}
		if (r.Method == "POST" || r.Method == "PUT" || r.Method == "DELETE") != (op.RequestBody != nil) {
			t.Errorf("%s: request body %v", r.Pattern(), op.RequestBody)
		}
	}
	for pattern := range summaries {
		found := false
		for _, r := range routes {
			found = found || r.Pattern() == pattern
		}
		if !found {
			t.Errorf("summaries.go names %s, which is no route", pattern)
		}
	}
}

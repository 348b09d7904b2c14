package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/custodia/custodia/docs"
	"github.com/custodia/custodia/internal/authz"
)

// The security statement's page (OPS-02) shows an organization's admins
// every control of the map with its status and its proof, and the
// settings that decide them for their organization; a manager, who does
// not read the security policy, is not shown it.
func TestOPS02_AdminsReadTheSecurityStatement(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	code, body := send(t, signInOwn(t, ts, authz.OrgAdmin), ts.URL, "GET", probe{path: "/orgs/demo/security-statement"})
	if code != http.StatusOK {
		t.Fatalf("the statement: %d", code)
	}
	page := string(body)
	controls := docs.ControlRows()
	if len(controls) < 50 {
		t.Fatalf("the map holds %d controls", len(controls))
	}
	for _, c := range controls {
		if !strings.Contains(page, `data-control="`+c.ID+`"`) {
			t.Errorf("the statement does not list %s", c.ID)
		}
	}
	for _, want := range []string{"locked after 10 consecutive failed sign-ins", "restorable for 30 days", "TLS 1.2 minimum", "FIPS mode", "backups: none recorded", "newest checkpoint: ", "vulnerability database of 20", "no provider: people sign in with their password", "no witness (serve --audit-witness"} {
		if !strings.Contains(page, want) {
			t.Errorf("the statement does not say %q", want)
		}
	}
	if code, _ := send(t, signInOwn(t, ts, authz.OrgManager), ts.URL, "GET", probe{path: "/orgs/demo/security-statement"}); code != http.StatusNotFound {
		t.Errorf("a manager's statement: %d, want 404", code)
	}
}

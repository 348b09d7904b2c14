package internal_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	Imports []string // direct
	Deps    []string // transitive
}

// pkgDeps lists every package of the module with its imports.
func pkgDeps(t *testing.T) map[string]pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps=false", "-json", "github.com/custodia/custodia/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := make(map[string]pkg)
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			pkg
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		deps[strings.TrimPrefix(p.ImportPath, "github.com/custodia/custodia/")] = p.pkg
	}
	return deps
}

// TestLayers keeps the architecture honest: domain packages know nothing of
// HTTP, the HTTP shells hold no SQL, and only sqldb talks to drivers.
func TestLayers(t *testing.T) {
	deps := pkgDeps(t)
	if len(deps) < 10 {
		t.Fatalf("go list found only %d packages", len(deps))
	}
	rules := []struct {
		pkgs      []string
		forbidden []string
		direct    bool
		why       string
	}{
		{
			pkgs:      []string{"internal/accounts", "internal/authz", "internal/orgs", "internal/sessions", "internal/sqldb", "internal/instance", "internal/demo", "internal/ids", "internal/errs", "internal/keys", "internal/audit", "internal/gate", "internal/links", "internal/mail", "internal/ratelimit", "internal/alerts", "internal/oversight", "internal/mfa", "internal/netpolicy", "internal/netpolicy/netadmin", "internal/participants", "internal/orgsecurity", "internal/roles", "internal/keyops", "internal/sms"},
			forbidden: []string{"net/http"},
			why:       "domain packages know nothing of HTTP",
		},
		{
			// The one exception: internal/keys/vault is the adapter that
			// speaks HTTPS to Vault/OpenBao Transit, so it imports net/http.
			// It stays out of every domain package; only the commands that
			// choose a provider (cli) import it.
			pkgs:      []string{"internal/accounts", "internal/authz", "internal/orgs", "internal/sessions", "internal/instance", "internal/keys", "internal/keyops", "internal/audit", "internal/gate", "internal/mfa", "internal/web", "internal/api", "internal/server"},
			forbidden: []string{"github.com/custodia/custodia/internal/keys/vault"},
			why:       "only the CLI picks a key-encryption-key provider; domain packages see keys.Provider",
		},
		{
			pkgs:      []string{"internal/web", "internal/api", "internal/router"},
			forbidden: []string{"database/sql", "modernc.org/sqlite", "github.com/jackc/pgx/v5"},
			direct:    true,
			why:       "HTTP shells call domain functions, never SQL",
		},
	}
	for _, r := range rules {
		for _, p := range r.pkgs {
			info, ok := deps[p]
			if !ok {
				t.Errorf("package %s not found", p)
				continue
			}
			d := info.Deps
			if r.direct {
				d = info.Imports
			}
			for _, f := range r.forbidden {
				for _, dep := range d {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s imports %s: %s", p, dep, r.why)
					}
				}
			}
		}
	}
	for p, info := range deps {
		if strings.HasPrefix(p, "internal/sqldb") {
			continue
		}
		for _, dep := range info.Imports {
			if dep == "modernc.org/sqlite" || strings.HasPrefix(dep, "github.com/jackc/pgx/") {
				t.Errorf("%s imports the driver %s: only internal/sqldb may", p, dep)
			}
			// The WebAuthn library also speaks net/http: it stays behind
			// mfa.RelyingParty, like a driver behind sqldb.
			if strings.HasPrefix(dep, "github.com/go-webauthn/") && p != "internal/mfa/relyingparty" && p != "internal/mfa/passkeytest" {
				t.Errorf("%s imports %s: only internal/mfa/relyingparty may", p, dep)
			}
		}
	}
}

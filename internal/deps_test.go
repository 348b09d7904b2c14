package internal_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
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
			pkgs:      []string{"internal/accounts", "internal/authz", "internal/orgs", "internal/sessions", "internal/sqldb", "internal/instance", "internal/demo", "internal/ids", "internal/errs", "internal/keys", "internal/audit", "internal/gate", "internal/links", "internal/mail", "internal/ratelimit", "internal/alerts", "internal/audit/auditadmin", "internal/mfa", "internal/netpolicy", "internal/netpolicy/netadmin", "internal/participants", "internal/policy", "internal/policy/policyadmin", "internal/authz/authzadmin", "internal/keys/keyadmin", "internal/sms", "internal/accounts/accountadmin", "internal/forms", "internal/forms/formadmin", "internal/entries", "internal/conversations", "internal/consent", "internal/notify", "internal/sso", "internal/sso/ssoadmin", "internal/retention", "internal/backup"},
			forbidden: []string{"net/http"},
			why:       "domain packages know nothing of HTTP",
		},
		{
			// The one exception: internal/keys/vault is the adapter that
			// speaks HTTPS to Vault/OpenBao Transit, so it imports net/http.
			// It stays out of every domain package; only the commands that
			// choose a provider (cli) import it.
			pkgs:      []string{"internal/accounts", "internal/authz", "internal/orgs", "internal/sessions", "internal/instance", "internal/keys", "internal/keys/keyadmin", "internal/audit", "internal/gate", "internal/mfa", "internal/web", "internal/api", "internal/server"},
			forbidden: []string{"github.com/custodia/custodia/internal/keys/vault"},
			why:       "only the CLI picks a key-encryption-key provider; domain packages see keys.Provider",
		},
		{
			// internal/audit/witness speaks HTTP to C2SP witnesses; the
			// trail sees audit.Witness, and only the CLI picks witnesses.
			pkgs:      []string{"internal/audit", "internal/gate", "internal/instance", "internal/server", "internal/web", "internal/api", "internal/audit/auditadmin"},
			forbidden: []string{"github.com/custodia/custodia/internal/audit/witness"},
			why:       "only the CLI picks the audit trail's witnesses; the trail sees audit.Witness",
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
			// So do OpenID Connect's: they stay behind sso.RelyingParty
			// (AUTH-13); the test provider is a test helper's.
			if (strings.HasPrefix(dep, "github.com/coreos/go-oidc/") || strings.HasPrefix(dep, "golang.org/x/oauth2")) && p != "internal/sso/oidcrp" {
				t.Errorf("%s imports %s: only internal/sso/oidcrp may", p, dep)
			}
			if strings.HasPrefix(dep, "github.com/zitadel/") && p != "internal/sso/ssotest" {
				t.Errorf("%s imports %s: the OpenID provider is the tests' (internal/sso/ssotest)", p, dep)
			}
		}
	}
}

// The gate is the one door to the databases (internal/gate). These are the
// packages that may hold a database handle (a struct field or variable of
// type *sql.DB, *sql.Tx, *sqldb.DB or sqldb.DB) and call audit.Append (or
// audit.AppendSigned):
// the gate, the storage plumbing below it (connections and migrations,
// the keyrings' wrapped keys, the trail's sequencer) and the command line
// and instance set-up beside it.
var doorPlumbing = map[string]bool{
	"internal/gate": true, "internal/sqldb": true, "internal/instance": true,
	"internal/keys": true, "internal/audit": true, "internal/cli": true,
	// Backups read and load the databases whole, below any authorization.
	"internal/backup": true,
}

// authenticates are the packages that tell who a request comes from, the
// only ones that may read through Gate.Identify and keep their bookkeeping
// through Gate.Stamp.
var authenticates = map[string]bool{
	"internal/sessions": true, "internal/accounts": true, "internal/mfa": true, "internal/links": true,
}

// eachSource calls fn with each non-test Go file of the module's internal
// packages other than test helpers, and its package's path.
func eachSource(t *testing.T, fset *token.FileSet, fn func(pkg string, f *ast.File)) {
	t.Helper()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		pkg := "internal/" + filepath.ToSlash(filepath.Dir(path))
		if strings.Contains(pkg, "test") { // sqldbtest, browsertest, passkeytest: test helpers
			return nil
		}
		fn(pkg, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOneDoor states the gate's rule in the import graph's terms: outside
// the gate and the plumbing, no package holds a database handle and none
// appends to the audit trail.
func TestOneDoor(t *testing.T) {
	fset := token.NewFileSet()
	holds := map[string][]string{}
	appends := map[string][]string{}
	identifies := map[string][]string{}
	eachSource(t, fset, func(pkg string, f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Field:
				if isHandle(n.Type) && fieldOfStruct(f, n) {
					holds[pkg] = append(holds[pkg], fset.Position(n.Pos()).String())
				}
			case *ast.ValueSpec:
				if n.Type != nil && isHandle(n.Type) {
					holds[pkg] = append(holds[pkg], fset.Position(n.Pos()).String())
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && strings.HasPrefix(sel.Sel.Name, "Append") {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "audit" {
						appends[pkg] = append(appends[pkg], fset.Position(n.Pos()).String())
					}
				}
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Identify" || sel.Sel.Name == "Stamp") {
					identifies[pkg] = append(identifies[pkg], fset.Position(n.Pos()).String())
				}
			}
			return true
		})
	})
	for _, m := range []struct {
		found map[string][]string
		what  string
	}{{holds, "holds a database handle"}, {appends, "calls audit.Append"}} {
		for pkg, where := range m.found {
			if !doorPlumbing[pkg] && pkg != "internal/keys/vault" {
				t.Errorf("%s %s (%s): only the gate and the storage plumbing may; go through the gate", pkg, m.what, strings.Join(where, ", "))
			}
		}
	}
	// Gate.Identify reads and Gate.Stamp keeps bookkeeping without an
	// audit event; only the packages that tell who a request comes from
	// may.
	for pkg, where := range identifies {
		if !authenticates[pkg] {
			t.Errorf("%s calls Identify or Stamp (%s): only the packages that authenticate requests may work unaudited", pkg, strings.Join(where, ", "))
		}
	}
	// The services above the gate hold only the gate.
	for _, pkg := range []string{"internal/orgs/orgadmin", "internal/authz/authzadmin", "internal/audit/auditadmin", "internal/keys/keyadmin", "internal/netpolicy/netadmin", "internal/policy/policyadmin", "internal/accounts/accountadmin", "internal/sso/ssoadmin", "internal/api", "internal/router"} {
		if len(holds[pkg]) > 0 || len(appends[pkg]) > 0 {
			t.Errorf("%s, a service above the gate, reaches the database itself: %v %v", pkg, holds[pkg], appends[pkg])
		}
	}
}

// keyDoor are the packages that may use the key-encryption key itself
// (Wrap, Unwrap): the gate, whose vaults seal every secret the other
// packages store (OpTx.Secrets, Tx.Vault), the keyrings below it, the
// rotation that re-wraps what the key wrapped, the command line that
// picks and checks a provider, and the opening of an instance, which keeps
// the audit key sealed by it in the data folder, never in a database
// (instance/auditkey.go).
var keyDoor = map[string]bool{
	"internal/gate": true, "internal/keys": true, "internal/keys/keyadmin": true, "internal/cli": true,
	"internal/instance": true,
}

// TestSecretsSealedOnlyThroughTheGate states that key material of every
// kind, second-factor secrets included, is sealed through a vault the gate
// hands out: outside keyDoor, no package calls Wrap or Unwrap on a
// key-encryption key. The test reads the syntax, not the types: it takes
// every call x.Wrap(a, b, c) or x.Unwrap(a, b, c), the shape of keys.KEK's
// methods, whose x is not an imported package (errs.Wrap and errors.Unwrap
// are not keys). A key passed on as a method value (f := kek.Wrap) or
// behind another name escapes it.
func TestSecretsSealedOnlyThroughTheGate(t *testing.T) {
	fset := token.NewFileSet()
	found := map[string][]string{}
	eachSource(t, fset, func(pkg string, f *ast.File) {
		imported := map[string]bool{}
		for _, spec := range f.Imports {
			name := strings.Trim(spec.Path.Value, `"`)
			name = name[strings.LastIndex(name, "/")+1:]
			if spec.Name != nil {
				name = spec.Name.Name
			}
			imported[name] = true
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 3 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Wrap" && sel.Sel.Name != "Unwrap" {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && imported[x.Name] {
				return true
			}
			found[pkg] = append(found[pkg], fset.Position(call.Pos()).String())
			return true
		})
	})
	if len(found["internal/gate"]) == 0 {
		t.Error("the gate wraps nothing: the test no longer finds what it looks for")
	}
	for pkg, where := range found {
		if !keyDoor[pkg] && pkg != "internal/keys/vault" {
			t.Errorf("%s wraps or unwraps with the key-encryption key (%s): seal through the gate's vault (OpTx.Secrets, Tx.Vault)", pkg, strings.Join(where, ", "))
		}
	}
}

// isHandle reports whether a type expression is a database handle.
func isHandle(e ast.Expr) bool {
	if s, ok := e.(*ast.StarExpr); ok {
		e = s.X
	}
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	if !ok {
		return false
	}
	return x.Name == "sql" && (sel.Sel.Name == "DB" || sel.Sel.Name == "Tx") || x.Name == "sqldb" && sel.Sel.Name == "DB"
}

// fieldOfStruct reports whether field is a field of a struct type (not a
// parameter or result of a function).
func fieldOfStruct(f *ast.File, field *ast.Field) bool {
	in := false
	ast.Inspect(f, func(n ast.Node) bool {
		if st, ok := n.(*ast.StructType); ok {
			for _, x := range st.Fields.List {
				if x == field {
					in = true
				}
			}
		}
		return !in
	})
	return in
}

// TestPolicyHasOneOwner: the organizations' security policies are read and
// written by internal/policy alone, so that every rule a person lives under
// (password, rotation, second factor, session limits) is decided in one
// place; the SQL of any other package never names their table.
func TestPolicyHasOneOwner(t *testing.T) {
	fset := token.NewFileSet()
	eachSource(t, fset, func(pkg string, f *ast.File) {
		if pkg == "internal/policy" {
			return
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && strings.Contains(lit.Value, "org_policies") {
				t.Errorf("%s: %s names org_policies; ask internal/policy instead", pkg, fset.Position(lit.Pos()))
			}
			return true
		})
	})
}

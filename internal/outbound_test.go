package internal_test

import (
	"go/ast"
	"go/token"
	"slices"
	"sort"
	"strings"
	"testing"
)

// outboundCalls are the calls that open a connection to another system.
var outboundCalls = map[string]bool{
	"net.Dial": true, "net.DialTimeout": true, "net.DialTCP": true, "net.DialUDP": true,
	"tls.Dial": true, "tls.DialWithDialer": true, "smtp.Dial": true, "smtp.NewClient": true,
	"http.Get": true, "http.Post": true, "http.PostForm": true, "http.Head": true,
}

// outboundFiles are the only sources that reach other systems, each one
// the operator names (ASVS V13.2.4, V13.2.5): the mail server of
// --smtp-url, Vault of --vault-addr, the witnesses of --audit-witness,
// the collector of --audit-forward, and the OpenID Connect providers of
// --sso-issuer (an organization's provider must lie within them). The
// databases of --database and --identity-database are reached by their
// drivers.
var outboundFiles = []string{
	"audit/forward.go", "audit/witness/witness.go", "keys/vault/vault.go", "mail/mail.go", "sso/oidcrp/oidcrp.go",
}

// TestWEB08_OnlyTheConfiguredSystemsAreReached fails when a source outside
// outboundFiles dials, builds a dialer or an HTTP client, or uses the
// default one: a new outbound destination must be one the operator
// configures, and be added here knowingly.
func TestWEB08_OnlyTheConfiguredSystemsAreReached(t *testing.T) {
	fset := token.NewFileSet()
	found := map[string][]string{}
	eachSource(t, fset, func(pkg string, f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			var what string
			switch x := n.(type) {
			case *ast.SelectorExpr:
				id, ok := x.X.(*ast.Ident)
				if !ok {
					return true
				}
				name := id.Name + "." + x.Sel.Name
				switch {
				case outboundCalls[name], name == "http.DefaultClient", name == "http.DefaultTransport":
					what = name
				case x.Sel.Name == "DialContext":
					what = "DialContext"
				}
			case *ast.CompositeLit:
				if sel, ok := x.Type.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok {
						switch id.Name + "." + sel.Sel.Name {
						case "http.Client", "http.Transport", "net.Dialer", "tls.Dialer":
							what = id.Name + "." + sel.Sel.Name
						}
					}
				}
			}
			if what != "" {
				file := fset.Position(n.Pos()).Filename
				found[file] = append(found[file], what)
			}
			return true
		})
	})
	var seen []string
	for file, what := range found {
		seen = append(seen, file)
		if !slices.Contains(outboundFiles, strings.TrimPrefix(file, "./")) {
			t.Errorf("%s reaches another system (%s): only the configured ones may be (outboundFiles)", file, strings.Join(what, ", "))
		}
	}
	sort.Strings(seen)
	for _, f := range outboundFiles {
		if !slices.Contains(seen, f) {
			t.Errorf("%s is allowed to reach another system but does not: the test no longer finds what it looks for", f)
		}
	}
}

package internal_test

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sms"
)

// The tests of this file read the module's own source, templates and
// scripts and prove what docs/asvs.md once marked "met (review)": a
// property of the code that a change could break and that running the
// program would not show.

// reviewSource is one non-test Go file of the module, parsed.
type reviewSource struct {
	path string // slash-separated, from the module's root
	file *ast.File
}

// reviewSources parses every Go file of the module that is not a _test.go
// file, whatever its build tags, test helpers (sqldbtest, browsertest, …)
// included: they are built into test binaries, and a file that imports a
// package is judged by what it imports, not by who calls it.
func reviewSources(t *testing.T, fset *token.FileSet) []reviewSource {
	t.Helper()
	const root = ".."
	var out []reviewSource
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out = append(out, reviewSource{path: filepath.ToSlash(rel), file: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("found only %d Go files in the module", len(out))
	}
	return out
}

// reviewImports maps each import path to the files that import it.
func reviewImports(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, s := range reviewSources(t, token.NewFileSet()) {
		for _, imp := range s.file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out[p] = append(out[p], s.path)
		}
	}
	return out
}

// TestWEB08_NoSourceImportsUnsafe proves ASVS V1.4.1 (memory-safe buffers):
// Go checks every slice and string index and has no pointer arithmetic,
// unless a file imports "unsafe" or calls C through cgo ("C"). No non-test
// file of the module does, whatever its build tags.
func TestWEB08_NoSourceImportsUnsafe(t *testing.T) {
	imports := reviewImports(t)
	for _, p := range []string{"unsafe", "C"} {
		for _, f := range imports[p] {
			t.Errorf("%s imports %q: the module's code must stay within Go's memory safety (ASVS V1.4.1)", f, p)
		}
	}
	// The walk sees files behind build tags too.
	if !slices.Contains(imports["github.com/miekg/pkcs11"], "internal/keys/pkcs11.go") {
		t.Error("the walk did not see internal/keys/pkcs11.go (build tag pkcs11)")
	}
}

// weakRandom are the packages whose numbers are predictable.
var weakRandom = []string{"math/rand", "math/rand/v2", "golang.org/x/exp/rand"}

// weakRandomAllowed are the files that may import one of weakRandom, each
// with why no secret, code or identifier comes from it.
var weakRandomAllowed = map[string]string{
	"internal/ratelimit/ratelimit.go": "picks, one attempt in sweepOdds, when to delete drained buckets; no value leaves the process",
}

// TestCRY11_NoSourceDrawsSecretsFromMathRand proves ASVS V6.5.3, V7.2.3 and
// V11.5.1 (codes, seeds, tokens and identifiers from a CSPRNG): no non-test
// file imports math/rand except those allowed above for a stated reason;
// the files that make recovery codes, texted codes, TOTP seeds, salts,
// identifiers and bearer secrets import crypto/rand; and no code replaces
// crypto/rand.Reader.
func TestCRY11_NoSourceDrawsSecretsFromMathRand(t *testing.T) {
	fset := token.NewFileSet()
	sources := reviewSources(t, fset)
	cryptoRand := map[string]bool{}
	weak := map[string]bool{}
	for _, s := range sources {
		randName := ""
		for _, imp := range s.file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if slices.Contains(weakRandom, p) {
				weak[s.path] = true
				if weakRandomAllowed[s.path] == "" {
					t.Errorf("%s imports %s: secrets, codes and identifiers come from crypto/rand (ASVS V11.5.1); if this use makes none, allow it in weakRandomAllowed with the reason", s.path, p)
				}
			}
			if p == "crypto/rand" {
				cryptoRand[s.path] = true
				randName = "rand"
				if imp.Name != nil {
					randName = imp.Name.Name
				}
			}
		}
		if randName == "" {
			continue
		}
		// rand.Reader = … would swap the generator for the whole process.
		ast.Inspect(s.file, func(n ast.Node) bool {
			as, ok := n.(*ast.AssignStmt)
			if !ok {
				return true
			}
			for _, lhs := range as.Lhs {
				if sel, ok := lhs.(*ast.SelectorExpr); ok && sel.Sel.Name == "Reader" {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == randName {
						t.Errorf("%s: replaces crypto/rand.Reader", fset.Position(as.Pos()))
					}
				}
			}
			return true
		})
	}
	for f := range weakRandomAllowed {
		if !weak[f] {
			t.Errorf("weakRandomAllowed names %s, which no longer imports math/rand: remove it", f)
		}
	}
	for _, f := range []string{
		"internal/ids/ids.go",           // identifiers and bearer secrets (sessions, links, challenges, tokens)
		"internal/mfa/recovery.go",      // recovery codes
		"internal/mfa/sms.go",           // texted codes
		"internal/mfa/factors.go",       // TOTP seeds
		"internal/accounts/password.go", // password salts
	} {
		if !cryptoRand[f] {
			t.Errorf("%s does not import crypto/rand", f)
		}
	}
}

// TestCRY11_SecretsAndIdentifiersCarryEnoughRandomBits proves ASVS V7.2.3
// and V11.5.1 (at least 128 bits of entropy): ids.NewSecret, which makes
// session tokens, access tokens, link and challenge tokens, gives 256
// bits, and ids.New 128, every one of them varying: over many draws each
// bit is set about half of the time, none is fixed, and no value repeats.
// The digest stored for a secret is its SHA-256.
func TestCRY11_SecretsAndIdentifiersCarryEnoughRandomBits(t *testing.T) {
	const draws = 4000
	check := func(name string, bits int, draw func() []byte) {
		t.Helper()
		seen := map[string]bool{}
		ones := make([]int, bits)
		for range draws {
			b := draw()
			if len(b)*8 != bits {
				t.Fatalf("%s: %d bits, want %d", name, len(b)*8, bits)
			}
			if seen[string(b)] {
				t.Fatalf("%s: a value repeats", name)
			}
			seen[string(b)] = true
			for i := range bits {
				if b[i/8]>>(i%8)&1 == 1 {
					ones[i]++
				}
			}
		}
		// Each bit is set in draws/2 ± 10 standard deviations (±316).
		var skewed []string
		for i, n := range ones {
			if n < draws*2/5 || n > draws*3/5 {
				skewed = append(skewed, strconv.Itoa(i)+" ("+strconv.Itoa(n)+")")
			}
		}
		if len(skewed) > 0 {
			t.Errorf("%s: %d of %d bits are not set in about half of %d draws; bit (times set): %s", name, len(skewed), bits, draws, strings.Join(skewed[:min(len(skewed), 8)], ", "))
		}
	}
	check("ids.NewSecret", 256, func() []byte {
		secret, digest := ids.NewSecret()
		if len(secret) != ids.SecretLen {
			t.Fatalf("secret %q: %d characters, want %d", secret, len(secret), ids.SecretLen)
		}
		b, err := base64.RawURLEncoding.DecodeString(secret)
		if err != nil {
			t.Fatalf("secret %q: %v", secret, err)
		}
		sum := sha256.Sum256([]byte(secret))
		if digest != hex.EncodeToString(sum[:]) || ids.Digest(secret) != digest {
			t.Fatalf("digest of %q is not its SHA-256", secret)
		}
		return b
	})
	check("ids.New", 128, func() []byte {
		id := ids.New()
		b, err := base32Lower.DecodeString(id)
		if err != nil || !ids.Valid(id) {
			t.Fatalf("identifier %q: %v", id, err)
		}
		return b
	})
}

// base32Lower is the alphabet of ids.New.
var base32Lower = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// approvedCrypto are the cryptographic packages the module may import:
// SHA-2 and SHA-3, HMAC, HKDF, PBKDF2 and Argon2id, AES, ChaCha20-Poly1305,
// ECDSA, ECDH and Ed25519 (Ed25519 also through sumdb notes), ML-KEM, TLS
// and X.509. crypto/sha1 is allowed in sha1Allowed only.
var approvedCrypto = map[string]bool{
	"crypto": true, "crypto/rand": true, "crypto/subtle": true, "crypto/fips140": true,
	"crypto/sha256": true, "crypto/sha512": true, "crypto/sha3": true,
	"crypto/hmac": true, "crypto/hkdf": true, "crypto/pbkdf2": true,
	"crypto/aes": true, "crypto/cipher": true,
	"crypto/ecdsa": true, "crypto/ecdh": true, "crypto/elliptic": true, "crypto/ed25519": true, "crypto/mlkem": true,
	"crypto/tls": true, "crypto/x509": true, "crypto/x509/pkix": true,
	"golang.org/x/crypto/argon2": true, "golang.org/x/crypto/chacha20poly1305": true,
	"golang.org/x/mod/sumdb/note": true,
}

// sha1Allowed are the files that may import crypto/sha1, and why.
var sha1Allowed = map[string]string{
	"internal/mfa/totp.go": "TOTP is HMAC-SHA-1 (RFC 6238), what authenticator apps compute; HMAC-SHA-1 stays approved for HMAC (NIST SP 800-131A)",
}

// TestCRY11_OnlyApprovedHashesAndCiphersAreImported proves ASVS V11.4.1
// (approved hash functions only): every cryptographic package a non-test
// file imports is on the approved list, so MD5, SHA-1 (outside TOTP), MD4,
// RIPEMD-160, DES, RC4, Blowfish and DSA are not used; and the TOTP code
// uses SHA-1 only as HMAC-SHA-1, sha1.New handed to hmac.New.
func TestCRY11_OnlyApprovedHashesAndCiphersAreImported(t *testing.T) {
	fset := token.NewFileSet()
	sha1Seen := map[string]bool{}
	for _, s := range reviewSources(t, fset) {
		sha1Name := ""
		for _, imp := range s.file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			isCrypto := p == "crypto" || strings.HasPrefix(p, "crypto/") || strings.HasPrefix(p, "golang.org/x/crypto/") || strings.Contains(p, "/md5") || strings.Contains(p, "/sha1")
			switch {
			case p == "crypto/sha1":
				if sha1Allowed[s.path] == "" {
					t.Errorf("%s imports crypto/sha1: SHA-1 is not approved for general use (ASVS V11.4.1)", s.path)
				}
				sha1Seen[s.path] = true
				sha1Name = "sha1"
				if imp.Name != nil {
					sha1Name = imp.Name.Name
				}
			case isCrypto && !approvedCrypto[p]:
				t.Errorf("%s imports %s, which is not on the list of approved cryptography (ASVS V11.4.1, V11.6.1): judge it and add it, or use an approved one", s.path, p)
			}
		}
		if sha1Name == "" {
			continue
		}
		// Every use of the package is sha1.New as hmac.New's hash.
		asHMAC := map[token.Pos]bool{}
		ast.Inspect(s.file, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok && isSelector(call.Fun, "hmac", "New") && len(call.Args) > 0 && isSelector(call.Args[0], sha1Name, "New") {
				asHMAC[call.Args[0].Pos()] = true
			}
			return true
		})
		ast.Inspect(s.file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == sha1Name && !asHMAC[sel.Pos()] {
					t.Errorf("%s: %s.%s is used other than as hmac.New(%s.New, …)", fset.Position(sel.Pos()), sha1Name, sel.Sel.Name, sha1Name)
				}
			}
			return true
		})
		if len(asHMAC) == 0 {
			t.Errorf("%s imports crypto/sha1 but computes no HMAC with it", s.path)
		}
	}
	for f := range sha1Allowed {
		if !sha1Seen[f] {
			t.Errorf("sha1Allowed names %s, which no longer imports crypto/sha1: remove it", f)
		}
	}
}

// isSelector reports whether e is pkg.name.
func isSelector(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == pkg
}

// TestCRY11_KeysAreGeneratedOnlyByApprovedAlgorithms proves ASVS V11.6.1
// (approved key generation and signatures): every key the module's code
// generates is an ECDSA key on a NIST curve (P-256, P-384, P-521), an
// Ed25519 key (directly or as a sumdb note signer: the audit key), an
// AES key generated inside a PKCS#11 token, or a backup key, which is age's
// hybrid of ML-KEM-768 (FIPS 203) and X25519, never X25519 alone; no RSA or
// DSA key is made, as neither package is approved for import (see
// approvedCrypto).
func TestCRY11_KeysAreGeneratedOnlyByApprovedAlgorithms(t *testing.T) {
	fset := token.NewFileSet()
	generated := 0
	for _, s := range reviewSources(t, fset) {
		src, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(s.path)))
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(s.file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "GenerateKey" {
				return true
			}
			generated++
			where := fset.Position(call.Pos())
			text := string(src[fset.Position(call.Pos()).Offset:fset.Position(call.End()).Offset])
			x, _ := sel.X.(*ast.Ident)
			switch {
			case x != nil && x.Name == "ecdsa":
				if len(call.Args) == 0 || !(isCall(call.Args[0], "elliptic", "P256") || isCall(call.Args[0], "elliptic", "P384") || isCall(call.Args[0], "elliptic", "P521")) {
					t.Errorf("%s: %s: an ECDSA key on a curve other than P-256, P-384 or P-521", where, text)
				}
			case x != nil && (x.Name == "ed25519" || x.Name == "note"):
			case strings.Contains(text, "CKM_AES_KEY_GEN"):
			case x != nil && x.Name == "backup":
				b, err := os.ReadFile("backup/backup.go")
				if err != nil || !strings.Contains(string(b), "age.GenerateHybridIdentity()") || strings.Contains(string(b), "GenerateX25519Identity") {
					t.Errorf("%s: %s: a backup key that is not age's ML-KEM-768 + X25519 hybrid", where, text)
				}
			default:
				t.Errorf("%s: %s: a key of an algorithm this test does not know to be approved (ASVS V11.6.1)", where, text)
			}
			return true
		})
	}
	if generated < 3 {
		t.Errorf("found %d key generations; the TLS certificate, the audit key and the PKCS#11 key are at least 3", generated)
	}
}

// isCall reports whether e is a call of pkg.name.
func isCall(e ast.Expr, pkg, name string) bool {
	call, ok := e.(*ast.CallExpr)
	return ok && isSelector(call.Fun, pkg, name)
}

// TestWEB02_TemplatesAreParsedOnlyFromEmbeddedFiles proves ASVS V1.3.7 (no
// template built from untrusted input): no file imports text/template,
// which does not escape, and every html/template the module parses comes
// from files embedded in the binary (a //go:embed variable), parsed while
// the package initializes, before any request exists; no function parses
// a template, so no input can become one.
func TestWEB02_TemplatesAreParsedOnlyFromEmbeddedFiles(t *testing.T) {
	fset := token.NewFileSet()
	parses := 0
	for _, s := range reviewSources(t, fset) {
		pkgs := map[string]string{} // local name → import path
		for _, imp := range s.file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			name := p[strings.LastIndex(p, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			pkgs[name] = p
			if p == "text/template" {
				t.Errorf("%s imports text/template, which does not escape what it writes: use html/template from embedded files", s.path)
			}
		}
		// The variables that hold embedded files.
		embedded := map[string]bool{}
		for _, decl := range s.file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if hasEmbed(vs.Doc) || len(gd.Specs) == 1 && hasEmbed(gd.Doc) {
					for _, n := range vs.Names {
						embedded[n.Name] = true
					}
				}
			}
		}
		for _, decl := range s.file.Decls {
			inFunc := false
			if _, ok := decl.(*ast.FuncDecl); ok {
				inFunc = true
			}
			ast.Inspect(decl, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				x, isIdent := sel.X.(*ast.Ident)
				onTemplate := isIdent && strings.HasSuffix(pkgs[x.Name], "/template")
				fileHasTemplates := false
				for _, p := range pkgs {
					fileHasTemplates = fileHasTemplates || strings.HasSuffix(p, "/template")
				}
				method := (!isIdent || pkgs[x.Name] == "") && fileHasTemplates
				name := sel.Sel.Name
				creates := onTemplate && (name == "New" || name == "ParseFS" || name == "ParseFiles" || name == "ParseGlob") ||
					method && (name == "Parse" || name == "ParseFS" || name == "ParseFiles" || name == "ParseGlob" || name == "AddParseTree")
				if !creates {
					return true
				}
				where := fset.Position(call.Pos())
				switch {
				case inFunc:
					t.Errorf("%s: a template is made inside a function (%s), where input could reach it; parse embedded files at initialization", where, name)
				case name != "ParseFS":
					t.Errorf("%s: %s: parse only embedded files (ParseFS)", where, name)
				default:
					fsys, ok := call.Args[0].(*ast.Ident)
					if !ok || !embedded[fsys.Name] {
						t.Errorf("%s: ParseFS reads from %s, not from a //go:embed variable of the file", where, types.ExprString(call.Args[0]))
					}
					parses++
				}
				return true
			})
		}
	}
	if parses == 0 {
		t.Error("found no template.ParseFS of embedded files: the pages' templates moved, and this test must follow them")
	}
}

// hasEmbed reports whether a comment group holds a //go:embed directive.
func hasEmbed(g *ast.CommentGroup) bool {
	if g == nil {
		return false
	}
	for _, c := range g.List {
		if strings.HasPrefix(c.Text, "//go:embed ") {
			return true
		}
	}
	return false
}

// reviewFiles reads the files of dir (from the module's root) whose names
// end in ext, by name.
func reviewFiles(t *testing.T, dir, ext string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("..", filepath.FromSlash(dir)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ext) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(dir), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[dir+"/"+e.Name()] = string(b)
	}
	if len(out) == 0 {
		t.Fatalf("no %s file in %s", ext, dir)
	}
	return out
}

// scripts are the browser's scripts; templates the pages.
func scripts(t *testing.T) map[string]string { return reviewFiles(t, "internal/web/static", ".js") }

func templates(t *testing.T) map[string]string {
	return reviewFiles(t, "internal/web/templates", ".html")
}

// refuse reports each match of each pattern in each file, with its line.
func refuse(t *testing.T, files map[string]string, why string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		for name, src := range files {
			for _, loc := range re.FindAllStringIndex(src, -1) {
				t.Errorf("%s:%d: %q: %s", name, strings.Count(src[:loc[0]], "\n")+1, src[loc[0]:loc[1]], why)
			}
		}
	}
}

// TestWEB02_ScriptsWriteTextNeverMarkup proves ASVS V3.2.2 (text shown with
// safe DOM functions): the scripts put text on the page with textContent
// and build elements with createElement; none parses a string as HTML or
// runs one as code (innerHTML, outerHTML, insertAdjacentHTML,
// document.write, DOMParser, srcdoc, eval, new Function, a string given to
// a timer, a javascript: URL).
func TestWEB02_ScriptsWriteTextNeverMarkup(t *testing.T) {
	js := scripts(t)
	refuse(t, js, "show text with textContent, build elements with createElement (ASVS V3.2.2)",
		`\binnerHTML\b`, `\bouterHTML\b`, `\binsertAdjacentHTML\b`, `\bdocument\s*\.\s*write(ln)?\b`,
		`\bcreateContextualFragment\b`, `\bDOMParser\b`, `\bsrcdoc\b`, `\bparseHTMLUnsafe\b`, `\bsetHTML(Unsafe)?\b`,
		`\beval\s*\(`, `\bnew\s+Function\b`, `\bFunction\s*\(`, `\bset(Timeout|Interval)\s*\(\s*["'\x60]`, `(?i)javascript:`)
	all := strings.Join(slices.Collect(mapValues(js)), "\n")
	if !strings.Contains(all, ".textContent = ") {
		t.Error("no script writes textContent: the scripts changed, and this test must follow them")
	}
}

// mapValues yields the values of m.
func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// TestWEB02_ScriptsCannotPolluteAPrototype proves ASVS V15.3.6 (no
// JavaScript prototype pollution): no script names __proto__, a
// prototype or a constructor by key, sets a prototype, copies properties
// with for…in, or writes a property whose name it computes (obj[key] = …)
// except by a loop's number into a typed array; Object.assign only ever
// copies into a fresh object literal ({}), so no existing object, and
// least of all Object.prototype, takes keys from a server's answer.
func TestWEB02_ScriptsCannotPolluteAPrototype(t *testing.T) {
	js := scripts(t)
	refuse(t, js, "this can reach an object's prototype (ASVS V15.3.6)",
		`__proto__`, `\bprototype\b`, `\bconstructor\s*\[`, `\[\s*["']constructor["']\s*\]`,
		`\b(Object|Reflect)\s*\.\s*(setPrototypeOf|defineProperty|defineProperties)\b`,
		`\bfor\s*\(\s*(var|let|const)?\s*[\w$]+\s+in\b`, `\$\.extend\b`, `\b_\.merge\b`, `\bdeepmerge\b`)
	// A computed property write: only out[i] = …, into a Uint8Array.
	for name, src := range js {
		for _, m := range regexp.MustCompile(`([\w$.]+)\s*\[([^\]]+)\]\s*=[^=]`).FindAllStringSubmatch(src, -1) {
			if !(m[1] == "out" && m[2] == "i" && strings.Contains(src, "var out = new Uint8Array(")) {
				t.Errorf("%s: %s[%s] = …: a property named at run time (ASVS V15.3.6)", name, m[1], m[2])
			}
		}
		for _, m := range regexp.MustCompile(`Object\s*\.\s*assign\s*\(\s*([^,)]*)`).FindAllStringSubmatch(src, -1) {
			if strings.TrimSpace(m[1]) != "{}" {
				t.Errorf("%s: Object.assign(%s, …) copies into an existing object; copy into {} only (ASVS V15.3.6)", name, m[1])
			}
		}
	}
}

// TestAUTH10_ScriptsKeepNothingInBrowserStorage proves ASVS V14.3.3 (no
// sensitive data in browser storage): no script uses localStorage,
// sessionStorage, IndexedDB, the Cache API, Web SQL or document.cookie;
// the session and challenge cookies are HttpOnly, set by the server
// (TestAUTH10_SessionCookieAttributesAndLogout), and no page holds an
// inline script that could (TestWEB02_PagesHaveNoInlineScriptAndEscapeInput).
func TestAUTH10_ScriptsKeepNothingInBrowserStorage(t *testing.T) {
	files := scripts(t)
	for name, src := range templates(t) {
		files[name] = src
	}
	refuse(t, files, "the browser keeps nothing but the server's HttpOnly cookies (ASVS V14.3.3)",
		`\blocalStorage\b`, `\bsessionStorage\b`, `(?i)\bindexedDB\b`, `\bcaches\s*\.`, `\bopenDatabase\b`,
		`\bdocument\s*\.\s*cookie\b`, `\bcookieStore\b`, `\bserviceWorker\b`)
}

// TestWEB02_PagesUseOnlyHTMLCSSAndPlainScript proves ASVS V3.7.1 (only
// supported client technologies): the pages are HTML with no plugin
// content (object, embed, applet, frames, Flash, Silverlight, Java,
// ActiveX); their only scripts are the server's own files, loaded from
// /static/; the assets are CSS and plain JavaScript and nothing else.
func TestWEB02_PagesUseOnlyHTMLCSSAndPlainScript(t *testing.T) {
	html := templates(t)
	refuse(t, html, "no plugin content in the pages (ASVS V3.7.1)",
		`(?i)<\s*(object|embed|applet|iframe|frame|frameset|param)\b`, `(?i)\.(swf|xap|jar|class|cab)\b["']`,
		`(?i)clsid:|activex|x-shockwave|x-silverlight|x-java|x-ms-application|vbscript`)
	scriptTag := regexp.MustCompile(`(?i)<script\b[^>]*>`)
	for name, src := range html {
		for _, tag := range scriptTag.FindAllString(src, -1) {
			if !regexp.MustCompile(`^<script src="/static/[a-z]+\.js"( defer)?></script>|^<script src="/static/[a-z]+\.js"( defer)?>$`).MatchString(tag) {
				t.Errorf("%s: %s: a page's scripts are the server's own files, from /static/", name, tag)
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join("..", "internal", "web", "static"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); e.IsDir() || ext != ".css" && ext != ".js" {
			t.Errorf("internal/web/static/%s: the assets are CSS and plain JavaScript only", e.Name())
		}
	}
	refuse(t, scripts(t), "plain, standard JavaScript only (ASVS V3.7.1)",
		`\bActiveXObject\b`, `\bdocument\s*\.\s*all\b`, `(?i)\bjava\s*\.`, `\bNaCl\b|\bPNaCl\b`)
}

// inputTag and attr read a page's <input> elements.
var (
	inputTag = regexp.MustCompile(`(?is)<input\b[^>]*>`)
	attr     = regexp.MustCompile(`(?i)\s([a-z-]+)(?:="([^"]*)")?`)
)

// passwordName reports whether an input's name says it takes a password.
func passwordName(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "password") || strings.Contains(n, "passphrase") || n == "current" || n == "confirm" || n == "pin"
}

// TestAUTH02_PasswordFieldsAreMaskedLongAndPasteable proves ASVS V6.2.6
// (password fields type=password), V6.2.7 (paste and password managers
// allowed) and, in the browser, V6.2.9 (64 characters and more): every
// input of the pages that takes a password is type=password with
// autocomplete current-password or new-password, which password managers
// fill, and takes at least 64 characters; no page or script blocks paste,
// copy, cut, drop or typing, and no password input turns autocomplete off.
func TestAUTH02_PasswordFieldsAreMaskedLongAndPasteable(t *testing.T) {
	html := templates(t)
	fields := 0
	for name, src := range html {
		for _, tag := range inputTag.FindAllString(src, -1) {
			a := map[string]string{}
			for _, m := range attr.FindAllStringSubmatch(tag, -1) {
				a[strings.ToLower(m[1])] = m[2]
			}
			if !passwordName(a["name"]) && a["type"] != "password" {
				continue
			}
			fields++
			if a["type"] != "password" {
				t.Errorf("%s: %s: a password field is type=password (ASVS V6.2.6)", name, tag)
			}
			if ac := a["autocomplete"]; ac != "current-password" && ac != "new-password" {
				t.Errorf("%s: %s: autocomplete %q; current-password or new-password lets password managers fill it (ASVS V6.2.7)", name, tag, ac)
			}
			if ml, ok := a["maxlength"]; ok {
				if n, err := strconv.Atoi(ml); err != nil || n < 64 {
					t.Errorf("%s: %s: maxlength %s cuts passwords shorter than 64 characters (ASVS V6.2.9)", name, tag, ml)
				}
			}
		}
	}
	if fields < 8 {
		t.Errorf("found %d password fields in the pages; there are at least 8 (sign-in, set-up, reset, change, confirmation, removal)", fields)
	}
	refuse(t, html, "paste and password managers stay allowed (ASVS V6.2.7)",
		`(?i)\bon(paste|copy|cut|drop|dragstart|selectstart|contextmenu|keydown|keypress|keyup|beforeinput|input)\s*=`,
		`(?i)autocomplete="off"`)
	refuse(t, scripts(t), "paste and password managers stay allowed (ASVS V6.2.7)",
		`addEventListener\(\s*["'](paste|copy|cut|drop|dragstart|beforeinput|input|keydown|keypress|keyup)["']`,
		`\bon(paste|copy|cut|drop|keydown|keypress)\s*=`, `\bclipboardData\b`, `\.autocomplete\s*=`)
}

// hintWords are the names of password hints and secret questions.
var hintWords = regexp.MustCompile(`(?i)\b(password[ _-]?hints?|hints?|secret[ _-]?(questions?|answers?)|security[ _-]?(questions?|answers?)|memorable[ _-]?(words?|answers?|information)|maiden[ _-]?name|first[ _-]?pet|knowledge[ _-]?based)\b`)

// TestAUTH02_NoPasswordHintsOrSecretQuestions proves ASVS V6.4.2 (no
// password hints or secret questions): no table of either database has a
// column, no page a field or word, and no Go code a string, JSON name or
// message, for a password hint, a secret or security question or its
// answer; a forgotten password is reset by e-mail only (AUTH-07).
func TestAUTH02_NoPasswordHintsOrSecretQuestions(t *testing.T) {
	files := templates(t)
	err := filepath.WalkDir(filepath.Join("..", "internal", "sqldb", "migrations"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".sql") {
			return err
		}
		b, err := os.ReadFile(path)
		files[filepath.ToSlash(path)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	refuse(t, files, "no password hints or secret questions (ASVS V6.4.2)", hintWords.String())
	fset := token.NewFileSet()
	literals := 0
	for _, s := range reviewSources(t, fset) {
		ast.Inspect(s.file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				literals++
				if m := hintWords.FindString(lit.Value); m != "" {
					t.Errorf("%s: %q: no password hints or secret questions (ASVS V6.4.2)", fset.Position(lit.Pos()), m)
				}
			}
			return true
		})
	}
	if literals < 1000 {
		t.Errorf("read only %d string literals", literals)
	}
}

// credentialFlag names a flag that holds, or points at, a credential or a
// service's address (which may carry one).
var credentialFlag = regexp.MustCompile(`(?i)password|passwd|pin|secret|token|role-id|credential|database|smtp-url|vault-addr`)

// TestOPS01_NoServiceCredentialHasADefault proves ASVS V13.2.3 (no default
// service credentials): every command-line flag of the CLI that holds or
// names a credential for a service (database, mail server, Vault, PKCS#11
// token) is empty unless the operator sets it, and no Go string of the
// module other than a flag's help text, or a message showing the form
// user:password, holds a URL with a user and password in it.
func TestOPS01_NoServiceCredentialHasADefault(t *testing.T) {
	fset := token.NewFileSet()
	flags := 0
	userinfo := regexp.MustCompile(`[a-z0-9+.-]+://[^/\s:@"]+:[^/\s@"]+@`)
	for _, s := range reviewSources(t, fset) {
		help := map[token.Pos]bool{} // the help texts of flags
		ast.Inspect(s.file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			first := -1 // the flag name's argument
			switch sel.Sel.Name {
			case "StringVar", "BoolVar", "IntVar", "DurationVar", "Func", "Var", "TextVar":
				first = 1
				if sel.Sel.Name == "Func" {
					first = 0
				}
			case "String", "Bool", "Int", "Duration":
				first = 0
			}
			if first < 0 || len(call.Args) <= first+1 {
				return true
			}
			lit, ok := call.Args[first].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			help[call.Args[len(call.Args)-1].Pos()] = true
			if sel.Sel.Name == "Func" && len(call.Args) == 3 {
				help[call.Args[1].Pos()] = true
			}
			name, _ := strconv.Unquote(lit.Value)
			if !credentialFlag.MatchString(name) || !strings.HasPrefix(sel.Sel.Name, "String") {
				return true
			}
			flags++
			if def, ok := call.Args[first+1].(*ast.BasicLit); !ok || def.Value != `""` {
				t.Errorf("%s: flag --%s defaults to %s: a service's credential or address comes from the operator (ASVS V13.2.3)", fset.Position(call.Pos()), name, types.ExprString(call.Args[first+1]))
			}
			return true
		})
		ast.Inspect(s.file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING || help[lit.Pos()] {
				return true
			}
			for _, m := range userinfo.FindAllString(lit.Value, -1) {
				if !strings.HasSuffix(m, "://user:password@") { // the form, in a message
					t.Errorf("%s: %s: a URL with a user and password in the code (ASVS V13.2.3)", fset.Position(lit.Pos()), lit.Value)
				}
			}
			return true
		})
	}
	if flags < 8 {
		t.Errorf("found %d credential flags; the database, mail, Vault and PKCS#11 flags are at least 8", flags)
	}
}

// TestAUD03_EveryLogIsJSONSoValuesCannotForgeLines proves, with
// TestAUD04_ExportedLinesCannotBeForgedByTheirValues, ASVS V16.4.1 (log
// injection prevented) for the server's own log: no file of the module
// imports the standard "log" package or makes a text handler; every slog
// logger writes JSON (slog.NewJSONHandler), which escapes a newline,
// carriage return, quote or control character inside a value, so a value
// taken from a request (a user agent, an address, an error's text) stays
// inside one line and cannot start a forged one.
func TestAUD03_EveryLogIsJSONSoValuesCannotForgeLines(t *testing.T) {
	fset := token.NewFileSet()
	loggers := 0
	for _, s := range reviewSources(t, fset) {
		for _, imp := range s.file.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "log" {
				t.Errorf("%s imports \"log\", which writes values unescaped: log through slog's JSON handler", s.path)
			}
		}
		ast.Inspect(s.file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			switch {
			case isSelector(call.Fun, "slog", "NewTextHandler"):
				t.Errorf("%s: slog.NewTextHandler: a text log does not escape what would forge a line; use slog.NewJSONHandler", fset.Position(call.Pos()))
			case isSelector(call.Fun, "slog", "New"):
				loggers++
				if len(call.Args) != 1 || !isCall(call.Args[0], "slog", "NewJSONHandler") {
					t.Errorf("%s: slog.New(%s): every logger writes JSON (slog.NewJSONHandler)", fset.Position(call.Pos()), types.ExprString(call.Args[0]))
				}
			}
			return true
		})
	}
	if loggers == 0 {
		t.Fatal("found no slog.New: the server's logger moved, and this test must follow it")
	}
	// What the JSON handler makes of a hostile value: one line, the value
	// intact inside it.
	var buf strings.Builder
	forged := "Mozilla\n{\"time\":\"2026-01-01T00:00:00Z\",\"level\":\"INFO\",\"msg\":\"admin signed in\"}\r\x1b[2K\u2028end"
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("request", "ua", forged)
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.HasSuffix(buf.String(), "\n") || strings.ContainsAny(buf.String()[:buf.Len()-1], "\r\x1b\u2028") {
		t.Fatalf("the JSON log wrote %d lines or a raw control character: %q", n, buf.String())
	}
	var line struct{ UA string }
	if err := json.Unmarshal([]byte(buf.String()), &line); err != nil || line.UA != forged {
		t.Fatalf("the value did not survive as one JSON string: %q, %v", line.UA, err)
	}
}

// fileCalls are the calls that reach the file system by a path.
var fileCalls = map[string]map[string]bool{
	"os": {"Open": true, "OpenFile": true, "Create": true, "ReadFile": true, "WriteFile": true, "Remove": true, "RemoveAll": true,
		"Rename": true, "Mkdir": true, "MkdirAll": true, "MkdirTemp": true, "CreateTemp": true, "ReadDir": true, "Stat": true, "Lstat": true,
		"Chmod": true, "Chown": true, "Symlink": true, "Link": true, "Truncate": true, "DirFS": true, "OpenRoot": true},
	"http": {"Dir": true, "ServeFile": true, "ServeFileFS": true},
}

// TestWEB05_FilesAreNamedByTheServerNeverByInput proves ASVS V5.3.2 (file
// paths from trusted data): the HTTP shells (api, web, router) touch no
// file by path, and the server package only the operator's certificate
// (tls.go); the three places that write files a request can cause name
// them themselves. The mail and text outboxes write <time>-<random id>
// files inside their folder whatever the recipient, subject or text (a
// path, "..", a slash); the erasure epochs take an epoch id as a file name
// only when it is the 32 hex digits NewEpoch made, so "..", a slash or an
// absolute path reaches no file, and a file beside the epochs' folder
// survives every attempt.
func TestWEB05_FilesAreNamedByTheServerNeverByInput(t *testing.T) {
	fset := token.NewFileSet()
	for _, s := range reviewSources(t, fset) {
		dir := filepath.ToSlash(filepath.Dir(s.path))
		shell := dir == "internal/api" || dir == "internal/web" || dir == "internal/router" || dir == "internal/server" && s.path != "internal/server/tls.go"
		if !shell {
			continue
		}
		ast.Inspect(s.file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && fileCalls[x.Name][sel.Sel.Name] {
					t.Errorf("%s: %s.%s: the HTTP shells touch no file by a path a request could name (ASVS V5.3.2)", fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
				}
			}
			return true
		})
	}

	ctx := t.Context()
	root := t.TempDir()
	outbox := filepath.Join(root, "outbox")
	hostile := []string{"../../escaped", "/etc/passwd", "..", "a/../../b", `..\..\win`, "x\x00y"}
	mails := &mail.Outbox{Dir: outbox, From: "custodia@localhost"}
	for _, h := range hostile {
		mails.Send(ctx, mail.Message{To: strconv.Quote(h) + "@clinic.example", Subject: h, Text: h})
		mails.Send(ctx, mail.Message{To: "person@clinic.example", Subject: h, Text: h})
	}
	texts := &sms.Outbox{Dir: outbox}
	for _, h := range hostile {
		texts.Send(ctx, sms.Message{To: "+41791234567", Text: h})
		texts.Send(ctx, sms.Message{To: h, Text: h})
	}
	named := regexp.MustCompile(`^\d{8}T\d{6}\.\d{6}-[a-z2-7]{26}\.(eml|sms)$`)
	entries, err := os.ReadDir(outbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < len(hostile)*3 {
		t.Errorf("the outbox holds %d messages, want at least %d: one overwrote another", len(entries), len(hostile)*3)
	}
	for _, e := range entries {
		if e.IsDir() || !named.MatchString(e.Name()) {
			t.Errorf("outbox: %q is not a name the outbox makes", e.Name())
		}
	}

	// The erasure epochs of a local key-encryption key, and a file an
	// epoch id with ".." would reach.
	kek, err := keys.OpenLocalKEK(root)
	if err != nil {
		t.Fatal(err)
	}
	epochs, err := kek.Epochs()
	if err != nil {
		t.Fatal(err)
	}
	good, err := epochs.NewEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(good) {
		t.Fatalf("NewEpoch made the id %q", good)
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(keys.LocalEpochsDir), good+".key")); err != nil {
		t.Fatalf("the epoch's key file: %v", err)
	}
	victim := filepath.Join(root, "keys", "victim.key")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../victim", "../../keys/victim", victim[:len(victim)-len(".key")], good + "/../../victim", "..", "", good + "0", good[:30] + "/."} {
		if _, err := epochs.SealEpoch(ctx, id, make([]byte, 32), nil); err == nil {
			t.Errorf("SealEpoch(%q) took it as an epoch", id)
		}
		if _, err := epochs.OpenEpoch(ctx, id, []byte("x"), nil); err == nil {
			t.Errorf("OpenEpoch(%q) took it as an epoch", id)
		}
		if err := epochs.DestroyEpoch(ctx, id); err == nil {
			t.Errorf("DestroyEpoch(%q) took it as an epoch", id)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Errorf("a file beside the epochs' folder was reached: %q, %v", b, err)
	}
	if err := epochs.DestroyEpoch(ctx, good); err != nil {
		t.Errorf("DestroyEpoch of the real epoch: %v", err)
	}
}

package cli

import (
	"encoding/json"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// `custodia sbom` describes the binary it runs in (ASVS V15.1.2): a CycloneDX
// document naming the Go release and every module linked in, at the
// versions go.mod requires, each once, with its go.sum hash.
func TestWEB08_SBOMListsTheModulesOfThisBinary(t *testing.T) {
	r := run(t, nil, "", "sbom")
	if r.code != 0 {
		t.Fatalf("sbom: exit %d: %s", r.code, r.stderr)
	}
	var bom cdxBOM
	if err := json.Unmarshal([]byte(r.stdout), &bom); err != nil {
		t.Fatalf("sbom is not JSON: %v", err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != "1.5" || bom.Version != 1 {
		t.Errorf("format %q %q %d", bom.BOMFormat, bom.SpecVersion, bom.Version)
	}
	if !regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(bom.SerialNumber) {
		t.Errorf("serial number %q", bom.SerialNumber)
	}
	if bom.Metadata.Component.Type != "application" || bom.Metadata.Component.Name != "github.com/custodia/custodia" {
		t.Errorf("the described component: %+v", bom.Metadata.Component)
	}

	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]cdxComponent{}
	for _, c := range bom.Components {
		if _, dup := byName[c.Name]; dup {
			t.Errorf("%s listed twice", c.Name)
		}
		byName[c.Name] = c
	}
	if got, want := byName["stdlib"].Version, strings.TrimPrefix(runtime.Version(), "go"); got != want {
		t.Errorf("stdlib %q, want the running Go release %q", got, want)
	}
	linked := 0
	for _, req := range mod.Require {
		c, ok := byName[req.Mod.Path]
		if !ok {
			continue // a module of the tests or tools, not linked in
		}
		linked++
		if c.Version != req.Mod.Version || c.PURL != "pkg:golang/"+req.Mod.Path+"@"+req.Mod.Version {
			t.Errorf("%s: %q %q, want go.mod's %s", req.Mod.Path, c.Version, c.PURL, req.Mod.Version)
		}
		sum := ""
		for _, p := range c.Properties {
			if p.Name == "go:module:sum" {
				sum = p.Value
			}
		}
		if !strings.HasPrefix(sum, "h1:") {
			t.Errorf("%s has no go.sum hash", req.Mod.Path)
		}
	}
	for _, must := range []string{"modernc.org/sqlite", "github.com/jackc/pgx/v5", "golang.org/x/crypto"} {
		if _, ok := byName[must]; !ok {
			t.Errorf("%s, linked into every build, is missing", must)
		}
	}
	if linked < 5 {
		t.Errorf("only %d of go.mod's modules found", linked)
	}
	if len(bom.Dependencies) != 1 || len(bom.Dependencies[0].DependsOn) != len(bom.Components) {
		t.Errorf("dependencies %+v do not name every component", bom.Dependencies)
	}
}

package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
)

// The software bill of materials (ASVS V15.1.2) is the binary's own: Go
// records in every binary the modules it was built from, with their
// versions and go.sum hashes, and the release of Go itself
// (runtime/debug.ReadBuildInfo). `custodia sbom` prints them as a CycloneDX
// 1.5 document, so the list is always that of the program that runs, not
// of a checkout that may differ.

// cdxBOM is the part of CycloneDX 1.5 (JSON) that a Go binary fills.
type cdxBOM struct {
	BOMFormat    string         `json:"bomFormat"`
	SpecVersion  string         `json:"specVersion"`
	SerialNumber string         `json:"serialNumber"`
	Version      int            `json:"version"`
	Metadata     cdxMetadata    `json:"metadata"`
	Components   []cdxComponent `json:"components"`
	Dependencies []cdxDependsOn `json:"dependencies"`
}

type cdxMetadata struct {
	Timestamp  string        `json:"timestamp"`
	Component  cdxComponent  `json:"component"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxComponent struct {
	Type       string        `json:"type"`
	BOMRef     string        `json:"bom-ref"`
	Name       string        `json:"name"`
	Version    string        `json:"version,omitempty"`
	PURL       string        `json:"purl,omitempty"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type cdxDependsOn struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

func runSBOM(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "sbom", "sbom")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return errs.E(errs.Unavailable, "this binary carries no build information (built without module support)")
	}
	bom, err := sbomOf(bi, time.Now())
	if err != nil {
		return err
	}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(bom)
}

// sbomOf describes the build bi as a CycloneDX document made at now.
func sbomOf(bi *debug.BuildInfo, now time.Time) (cdxBOM, error) {
	serial, err := uuid4()
	if err != nil {
		return cdxBOM{}, err
	}
	main := module(bi.Main)
	main.Type, main.Version = "application", version()
	main.PURL = purl(bi.Main.Path, main.Version)
	bom := cdxBOM{
		BOMFormat: "CycloneDX", SpecVersion: "1.5", SerialNumber: "urn:uuid:" + serial, Version: 1,
		Metadata: cdxMetadata{Timestamp: now.UTC().Format(time.RFC3339), Component: main},
	}
	for _, s := range bi.Settings {
		// The build's settings (tags, GOOS, GOARCH, CGO_ENABLED, the
		// revision); flags may carry paths of the machine that built it.
		if s.Key == "-ldflags" || s.Key == "-gcflags" || s.Key == "-asmflags" {
			continue
		}
		bom.Metadata.Properties = append(bom.Metadata.Properties, cdxProperty{Name: "go:build:" + s.Key, Value: s.Value})
	}
	goVersion := strings.TrimPrefix(bi.GoVersion, "go")
	stdlib := cdxComponent{Type: "library", BOMRef: "pkg:golang/stdlib@" + goVersion, Name: "stdlib",
		Version: goVersion, PURL: "pkg:golang/stdlib@" + goVersion}
	bom.Components = append(bom.Components, stdlib)
	refs := []string{stdlib.BOMRef}
	for _, d := range bi.Deps {
		c := module(*d)
		bom.Components = append(bom.Components, c)
		refs = append(refs, c.BOMRef)
	}
	sort.Slice(bom.Components[1:], func(i, j int) bool { return bom.Components[i+1].Name < bom.Components[j+1].Name })
	sort.Strings(refs)
	bom.Dependencies = []cdxDependsOn{{Ref: main.BOMRef, DependsOn: refs}}
	return bom, nil
}

// module is a Go module as a CycloneDX library, as built: a replaced module
// is the replacement, named with the module it stands for.
func module(m debug.Module) cdxComponent {
	path, ver, sum := m.Path, m.Version, m.Sum
	var props []cdxProperty
	if m.Replace != nil {
		props = append(props, cdxProperty{Name: "go:module:replaces", Value: m.Path})
		path, ver, sum = m.Replace.Path, m.Replace.Version, m.Replace.Sum
	}
	if sum != "" {
		props = append(props, cdxProperty{Name: "go:module:sum", Value: sum})
	}
	p := purl(path, ver)
	return cdxComponent{Type: "library", BOMRef: p, Name: path, Version: ver, PURL: p, Properties: props}
}

// purl is the package URL of a Go module version.
func purl(path, version string) string {
	if version == "" || version == "(devel)" {
		return "pkg:golang/" + path
	}
	return "pkg:golang/" + path + "@" + version
}

// uuid4 is a random RFC 9562 version 4 UUID.
func uuid4() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make the document's serial number: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

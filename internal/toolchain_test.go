package internal_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/mod/modfile"
)

// TestWEB08_CommandsAskForTheGoReleaseOfGoMod: go.mod names the Go release
// the project is built with, and the README's commands and every script ask
// for exactly that one with GOTOOLCHAIN, so that none builds, tests or checks
// the code with an older release and its known vulnerabilities. A machine's
// own Go is often older and set to GOTOOLCHAIN=local, under which go.mod's
// line alone only refuses to build.
func TestWEB08_CommandsAskForTheGoReleaseOfGoMod(t *testing.T) {
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mod.Go == nil {
		t.Fatal("go.mod has no go line")
	}
	release := "go" + mod.Go.Version
	if mod.Toolchain != nil {
		release = mod.Toolchain.Name
	}

	scripts, err := filepath.Glob("../scripts/*")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	// The README and the scripts must set it; any mention must agree.
	mustExport := append([]string{"../README.md", "../.ci/run"}, scripts...)
	setting := regexp.MustCompile(`GOTOOLCHAIN=(go[0-9][0-9a-z.]*)`)
	export := regexp.MustCompile(`(?m)^\s*export GOTOOLCHAIN=` + regexp.QuoteMeta(release) + `\s*$`)
	for i, name := range append(mustExport, docs...) {
		text, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range setting.FindAllSubmatch(text, -1) {
			if string(m[1]) != release {
				t.Errorf("%s names GOTOOLCHAIN=%s, but go.mod asks for %s", name, m[1], release)
			}
		}
		if i < len(mustExport) && !export.Match(text) {
			t.Errorf("%s has no line `export GOTOOLCHAIN=%s`", name, release)
		}
	}
}

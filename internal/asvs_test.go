package internal_test

import (
	"bufio"
	"encoding/csv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// asvsRow is one row of a table of docs/asvs.md.
type asvsRow struct {
	Line                                  int
	ID, Level, Text, Status, Where, Proof string
}

var (
	// asvsStatus is a status cell: met, optionally with the kind of proof
	// that stands in for a test, or another status with its note.
	asvsStatus = regexp.MustCompile(`^(?:met(?: \((doc|review|script)\))?|(partial|not met|deviation|n/a): (\S.*))$`)
	// asvsTestName and asvsPath are what a row names in backticks.
	asvsTestName = regexp.MustCompile("`(Test[A-Za-z0-9_]+)`")
	asvsPath     = regexp.MustCompile("`((?:internal|cmd|docs|scripts|testdata)/[^`\\s]*|go\\.mod)`")
	asvsCount    = regexp.MustCompile(`^\| (met|partial|not met|deviation|n/a) \| (\d+) \|$`)
	testFunc     = regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`)
)

// TestASVS_MatrixNamesEveryRequirementAndRealTests keeps docs/asvs.md true
// to the ASVS list in testdata/asvs-5.0 and to the repository: every
// requirement of Level 1 and 2 has exactly one row with its level and a
// known status; a met row names a test, or, if its status says which kind
// of proof stands in for one (doc, review, script), a file; every test it
// names is a func TestX( of some _test.go file; every file it names
// exists; and the summary counts the rows as they are.
func TestASVS_MatrixNamesEveryRequirementAndRealTests(t *testing.T) {
	const root = ".."
	want := asvsRequirements(t, root)
	if len(want) == 0 {
		t.Fatal("testdata/asvs-5.0 holds no requirement of Level 1 or 2")
	}
	rows, counts := asvsMatrix(t, filepath.Join(root, "docs", "asvs.md"))
	tests := repositoryTests(t, root)

	seen := map[string]int{}
	got := map[string]int{}
	for _, r := range rows {
		where := "docs/asvs.md:" + strconv.Itoa(r.Line) + ": " + r.ID
		level, known := want[r.ID]
		switch {
		case !known:
			t.Errorf("%s is not a requirement of Level 1 or 2", where)
		case seen[r.ID] != 0:
			t.Errorf("%s is listed twice (first on line %d)", where, seen[r.ID])
		case r.Level != level:
			t.Errorf("%s: level %q, the list says %s", where, r.Level, level)
		}
		if seen[r.ID] == 0 {
			seen[r.ID] = r.Line
		}
		m := asvsStatus.FindStringSubmatch(r.Status)
		if m == nil {
			t.Errorf("%s: unknown status %q: want met, met (doc), met (review), met (script), or partial, not met, deviation or n/a followed by \": \" and a note", where, r.Status)
			continue
		}
		status := m[2]
		if status == "" {
			status = "met"
		}
		got[status]++
		named := asvsTestName.FindAllStringSubmatch(r.Proof, -1)
		paths := asvsPath.FindAllStringSubmatch(r.Proof, -1)
		if status == "met" && m[1] == "" && len(named) == 0 {
			t.Errorf("%s is met but names no test; name one that checks it, or mark the proof that stands in for one: met (doc), met (review), met (script)", where)
		}
		if m[1] != "" && len(paths) == 0 {
			t.Errorf("%s is met (%s) but names no file as its proof", where, m[1])
		}
		for _, n := range asvsTestName.FindAllStringSubmatch(strings.Join([]string{r.Text, r.Status, r.Where, r.Proof}, " "), -1) {
			if !tests[n[1]] {
				t.Errorf("%s names %s, which is no func %s( of any _test.go file", where, n[1], n[1])
			}
		}
		for _, p := range asvsPath.FindAllStringSubmatch(r.Where+" "+r.Proof, -1) {
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p[1]))); err != nil {
				t.Errorf("%s names %s, which does not exist", where, p[1])
			}
		}
	}
	for id := range want {
		if seen[id] == 0 {
			t.Errorf("docs/asvs.md has no row for %s (Level %s)", id, want[id])
		}
	}
	for _, status := range []string{"met", "partial", "not met", "deviation", "n/a"} {
		if n, ok := counts[status]; !ok {
			t.Errorf("docs/asvs.md's summary has no count of %q (%d rows)", status, got[status])
		} else if n != got[status] {
			t.Errorf("docs/asvs.md's summary counts %d %q, the tables have %d", n, status, got[status])
		}
	}
}

// asvsRequirements reads the requirements of Level 1 and 2 from the CSV
// files of testdata/asvs-5.0, by the names of their columns.
func asvsRequirements(t *testing.T, root string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "testdata", "asvs-5.0", "*.csv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CSV in testdata/asvs-5.0 (%v)", err)
	}
	out := map[string]string{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		r := csv.NewReader(f)
		head, err := r.Read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		col := map[string]int{}
		for i, h := range head {
			col[strings.TrimPrefix(h, "\ufeff")] = i
		}
		id, okID := col["req_id"]
		level, okL := col["L"]
		if !okID || !okL {
			t.Fatalf("%s: no req_id or L column in %q", name, head)
		}
		for {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if l := strings.TrimSpace(rec[level]); l == "1" || l == "2" {
				out[strings.TrimSpace(rec[id])] = l
			}
		}
		f.Close()
	}
	return out
}

// asvsMatrix reads the rows of docs/asvs.md's tables (lines that begin with
// "| V" and a requirement id) and the counts of its summary table.
func asvsMatrix(t *testing.T, name string) ([]asvsRow, map[string]int) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id := regexp.MustCompile(`^V\d+\.\d+\.\d+$`)
	var rows []asvsRow
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if m := asvsCount.FindStringSubmatch(line); m != nil {
			counts[m[1]], _ = strconv.Atoi(m[2])
			continue
		}
		if !strings.HasPrefix(line, "| V") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 6 || !id.MatchString(cells[0]) {
			t.Errorf("docs/asvs.md:%d: want | id | L | requirement | status | where | proof |, got %q", n, line)
			continue
		}
		rows = append(rows, asvsRow{Line: n, ID: cells[0], Level: cells[1], Text: cells[2], Status: cells[3], Where: cells[4], Proof: cells[5]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows, counts
}

// repositoryTests are the names of the test functions declared in the
// repository's _test.go files, whatever their build tags.
func repositoryTests(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
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
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range testFunc.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !out["TestASVS_MatrixNamesEveryRequirementAndRealTests"] {
		t.Fatal("the walk of the repository's tests does not find this one")
	}
	return out
}

// TestControlsNameRealTests: every test docs/controls.md names as the proof
// of a control exists, so a renamed or removed test cannot leave a control
// proven on paper only.
func TestControlsNameRealTests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "controls.md"))
	if err != nil {
		t.Fatal(err)
	}
	have := repositoryTests(t, "..")
	named := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`").FindAllSubmatch(b, -1)
	if len(named) < 50 {
		t.Fatalf("controls.md names only %d tests", len(named))
	}
	for _, m := range named {
		if name := string(m[1]); !have[name] {
			t.Errorf("docs/controls.md names %s, which no _test.go file declares", name)
		}
	}
}

// TestCryptoInventoryNamesRealCode: every file docs/crypto.md names as the
// code of a key or secret exists, so the inventory cannot point at code
// that moved away.
func TestCryptoInventoryNamesRealCode(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "crypto.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths := regexp.MustCompile("`((?:internal|cmd)/[A-Za-z0-9_./-]+\\.go)`").FindAllSubmatch(b, -1)
	if len(paths) < 15 {
		t.Fatalf("crypto.md names only %d files", len(paths))
	}
	for _, m := range paths {
		if _, err := os.Stat(filepath.Join("..", string(m[1]))); err != nil {
			t.Errorf("docs/crypto.md names %s: %v", m[1], err)
		}
	}
}

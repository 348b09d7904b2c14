package internal_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Statements that make, remove or rename a table: in a migration, in any
// case, once its comments are stripped; in the migrator's Go source, in
// capitals, outside line comments.
const tableStatements = `\b(?:` +
	`CREATE\s+(?:VIRTUAL\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"?(\w+)"?` + // 1: created
	`|DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?"?(\w+)"?` + // 2: dropped
	`|ALTER\s+TABLE\s+"?(\w+)"?\s+RENAME\s+TO\s+"?(\w+)"?` + // 3: renamed to 4
	`)`

var (
	sqlComment    = regexp.MustCompile(`--[^\n]*`)
	goComment     = regexp.MustCompile(`(?m)^\s*//[^\n]*`)
	tableChange   = regexp.MustCompile(`(?i)` + tableStatements)
	tableChangeGo = regexp.MustCompile(tableStatements)
	dataName      = regexp.MustCompile("^`([^`\\s]+)`")
	dataTableName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	dataLevel     = regexp.MustCompile(`^L[0-4]\b`)
)

// dataRow is one row of docs/data.md's classification table.
type dataRow struct {
	Line               int
	Name, Where, Level string
}

// TestDataClassificationNamesEveryTable keeps docs/data.md's classification
// (ASVS V14.1.1) true to the schemas: every table that the migrations of
// the clinical or the identity database leave in place (either dialect),
// and the migrator's own table, which it makes in both, has a row naming
// it and its database; every row names a table its database has, and
// carries a level. A table that a later migration drops, or renames, is
// not asked for under its old name.
func TestDataClassificationNamesEveryTable(t *testing.T) {
	const root = ".."
	want := schemaTables(t, root)
	rows := dataClassification(t, filepath.Join(root, "docs", "data.md"))

	seen := map[string]int{} // database + "." + table -> line
	for _, r := range rows {
		where := "docs/data.md:" + strconv.Itoa(r.Line)
		if !dataLevel.MatchString(r.Level) {
			t.Errorf("%s: `%s` has level %q; want L0 to L4", where, r.Name, r.Level)
		}
		var db string
		switch {
		case strings.Contains(r.Where, "clinical"):
			db = "clinical"
		case strings.Contains(r.Where, "identity"):
			db = "identity"
		case strings.Contains(r.Where, "data folder"):
			continue // a file: no schema names it
		default:
			t.Errorf("%s: `%s` is in %q; want the clinical database, the identity database or the data folder", where, r.Name, r.Where)
			continue
		}
		if !dataTableName.MatchString(r.Name) {
			t.Errorf("%s: `%s` in the %s database is not a table name", where, r.Name, db)
			continue
		}
		key := db + "." + r.Name
		if first, dup := seen[key]; dup {
			t.Errorf("%s: `%s` of the %s database is classified twice (first on line %d)", where, r.Name, db, first)
			continue
		}
		seen[key] = r.Line
		if _, ok := want[db][r.Name]; !ok {
			t.Errorf("%s: `%s` is no table of the %s database: no migration of internal/sqldb/migrations/%s creates it, or one drops it", where, r.Name, db, db)
		}
	}
	for _, db := range []string{"clinical", "identity"} {
		names := make([]string, 0, len(want[db]))
		for name := range want[db] {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if seen[db+"."+name] == 0 {
				t.Errorf("docs/data.md classifies no table `%s` of the %s database (made by %s)", name, db, want[db][name])
			}
		}
	}
}

// schemaTables reads, for each database, the tables its migrations leave in
// place, in any dialect, each with the file that made it: every .sql file
// under internal/sqldb/migrations/<database>/<dialect>/ applied in order,
// and the tables the migrator makes itself (internal/sqldb/*.go), which
// every database has.
func schemaTables(t *testing.T, root string) map[string]map[string]string {
	t.Helper()
	base := filepath.Join(root, "internal", "sqldb")
	out := map[string]map[string]string{}
	for _, db := range []string{"clinical", "identity"} {
		out[db] = map[string]string{}
		dialects, err := os.ReadDir(filepath.Join(base, "migrations", db))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dialects {
			if !d.IsDir() {
				continue
			}
			files, err := filepath.Glob(filepath.Join(base, "migrations", db, d.Name(), "*.sql"))
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(files) // NNNN_name.sql: the order they apply in
			live := map[string]string{}
			for _, f := range files {
				applyTableChanges(t, f, live)
			}
			for name, made := range live {
				if _, ok := out[db][name]; !ok {
					out[db][name] = made
				}
			}
		}
		if len(out[db]) == 0 {
			t.Fatalf("no migration of internal/sqldb/migrations/%s creates a table", db)
		}
	}
	sources, err := filepath.Glob(filepath.Join(base, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]string{}
	for _, f := range sources {
		if !strings.HasSuffix(f, "_test.go") {
			applyTableChanges(t, f, own)
		}
	}
	if len(own) == 0 {
		t.Fatal("internal/sqldb makes no table of its own; the migrator's bookkeeping moved")
	}
	for name, made := range own {
		for _, db := range []string{"clinical", "identity"} {
			out[db][name] = made
		}
	}
	return out
}

// applyTableChanges applies the table statements of file, in order, to
// live (table name -> file that made it).
func applyTableChanges(t *testing.T, file string, live map[string]string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rel := filepath.ToSlash(strings.TrimPrefix(file, ".."+string(filepath.Separator)))
	re, text := tableChange, sqlComment.ReplaceAllString(string(b), "")
	if strings.HasSuffix(file, ".go") {
		re, text = tableChangeGo, goComment.ReplaceAllString(string(b), "")
	}
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		switch {
		case m[1] != "":
			live[strings.ToLower(m[1])] = rel
		case m[2] != "":
			delete(live, strings.ToLower(m[2]))
		case m[3] != "":
			from, to := strings.ToLower(m[3]), strings.ToLower(m[4])
			live[to] = live[from]
			delete(live, from)
		}
	}
}

// dataClassification reads the rows of the table of docs/data.md whose
// header begins "| table or file |": the name in backticks in the first
// cell, where it is in the second, its level in the last.
func dataClassification(t *testing.T, name string) []dataRow {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []dataRow
	in, found := false, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "| table or file |"):
			if found {
				t.Fatalf("docs/data.md:%d: a second classification table; keep one", n)
			}
			in, found = true, true
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			in = false
			continue
		case strings.HasPrefix(line, "| ---"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		m := dataName.FindStringSubmatch(cells[0])
		if len(cells) != 4 || m == nil {
			t.Errorf("docs/data.md:%d: want | `name` | where | holds | level |, got %q", n, line)
			continue
		}
		rows = append(rows, dataRow{Line: n, Name: m[1], Where: cells[1], Level: cells[3]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatal("docs/data.md has no classification table (a header beginning \"| table or file |\")")
	}
	return rows
}

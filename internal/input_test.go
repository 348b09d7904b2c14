package internal_test

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/web"
)

// inputRoutes are the patterns ("METHOD /path") of both route tables, the
// API's and the browser's, as the code builds them. The tables are built
// with services that are never called: building a table only registers
// its routes, so no database is needed.
func inputRoutes(t *testing.T) []string {
	t.Helper()
	st := &sessions.Store{}
	var out []string
	for _, rt := range []*router.Router{
		api.Routes(api.Deps{Sessions: st}),
		web.Routes(web.Deps{Sessions: st}),
	} {
		for _, r := range rt.Routes() {
			out = append(out, r.Pattern())
		}
	}
	return out
}

// inputRouteRows reads the first cells of the table under "## Routes" of
// docs/input.md, each with its line.
func inputRouteRows(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]int{}
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "## ") {
			in = line == "## Routes"
			continue
		}
		if !in || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		first := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if first == "" || strings.Trim(first, "-: ") == "" || first == "Route" {
			continue // header and separator
		}
		if prev, dup := rows[first]; dup {
			t.Errorf("%s:%d: %s has a row already, on line %d", path, n, first, prev)
			continue
		}
		rows[first] = n
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestInputRulesNameEveryRoute keeps the route table of docs/input.md (the
// input-validation rules, ASVS V2.1.1 and V2.1.2) complete: every route of
// the API's and the browser's tables has a row naming the inputs it reads,
// and every row names a route that exists, so that a route added, moved or
// removed in the code fails here until the document follows.
func TestInputRulesNameEveryRoute(t *testing.T) {
	path := filepath.Join("..", "docs", "input.md")
	routes := inputRoutes(t)
	if len(routes) < 50 {
		t.Fatalf("the route tables hold only %d routes: the test no longer finds what it looks for", len(routes))
	}
	rows := inputRouteRows(t, path)
	if len(rows) == 0 {
		t.Fatalf("%s has no table under \"## Routes\"", path)
	}
	for _, r := range routes {
		if _, ok := rows[r]; !ok {
			t.Errorf("%s has no row for the route %s: name the inputs it reads", path, r)
		}
	}
	var stale []string
	for r, line := range rows {
		if !slices.Contains(routes, r) {
			stale = append(stale, path+":"+strconv.Itoa(line)+": "+r)
		}
	}
	slices.Sort(stale)
	for _, s := range stale {
		t.Errorf("%s is not a route of the API or the browser", s)
	}
}

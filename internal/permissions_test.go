package internal_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
)

// TestPermissionsDocumentMatchesTheRoles keeps the role×permission table of
// docs/permissions.md (ASVS V8.1.1) the code's: its columns are the
// built-in roles, its rows every action a role can grant, and each mark
// says whether the role holds the action.
func TestPermissionsDocumentMatchesTheRoles(t *testing.T) {
	b, err := os.ReadFile("../docs/permissions.md")
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	rows := map[authz.Action][]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case cells[0] == "permission":
			header = cells[1:]
		case header != nil && strings.HasPrefix(cells[0], "`") && len(cells) == len(header)+1:
			rows[authz.Action(strings.Trim(cells[0], "`"))] = cells[1:]
		}
	}
	var roles []string
	for _, r := range authz.BuiltinRoles() {
		roles = append(roles, string(r))
	}
	if !slices.Equal(header, roles) {
		t.Fatalf("the table's roles are %v, the code's %v", header, roles)
	}
	for _, a := range authz.Actions() {
		marks, ok := rows[a]
		if !ok {
			t.Errorf("the table has no row for %s", a)
			continue
		}
		for i, r := range authz.BuiltinRoles() {
			holds := slices.Contains(authz.PermissionsOf(authz.Assignment{Role: r}), a)
			if says := marks[i] == "✓"; says != holds {
				t.Errorf("the table says %s holds %s: %v; the code: %v", r, a, says, holds)
			}
		}
		delete(rows, a)
	}
	for a := range rows {
		t.Errorf("the table names %s, which no role can grant", a)
	}
}

package docs

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVulnDBIsTheOneScriptsTestPins: the statement's vulnerability check
// names the database version scripts/test pins, and its date.
func TestVulnDBIsTheOneScriptsTestPins(t *testing.T) {
	b, err := os.ReadFile("../scripts/test")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VULNDB_VERSION="([^"]+)"`).FindSubmatch(b)
	if m == nil {
		t.Fatal("scripts/test pins no VULNDB_VERSION")
	}
	if string(m[1]) != VulnDB {
		t.Errorf("docs.VulnDB is %s, scripts/test pins %s", VulnDB, m[1])
	}
	stamp := regexp.MustCompile(`^v0\.0\.0-(\d{14})-[0-9a-f]{12}$`).FindStringSubmatch(VulnDB)
	if stamp == nil {
		t.Fatalf("VulnDB %s is not a pseudo-version", VulnDB)
	}
	at, err := time.Parse("20060102150405", stamp[1])
	if err != nil || at.Format("2006-01-02") != VulnDBDate {
		t.Errorf("VulnDBDate %s, the version's date %s", VulnDBDate, at.Format("2006-01-02"))
	}
}

// TestControlRowsReadWholeInADiff: each row of the map of controls stays
// short enough to read whole in a diff, and a control that has more files
// or tests than its row names lists them all under its own details, as
// many more as the row says, where ControlRows finds them.
func TestControlRowsReadWholeInADiff(t *testing.T) {
	const maxRow = 500
	more := regexp.MustCompile(`\[(\d+) more\]\(#([a-z0-9-]+)\)`)
	rows := map[string]Control{}
	for _, c := range ControlRows() {
		rows[c.ID] = c
	}
	seen := 0
	for _, line := range strings.Split(Controls, "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| [") || len(cells) != 6 {
			continue
		}
		m := controlID.FindStringSubmatch(strings.TrimSpace(cells[1]))
		if m == nil {
			t.Errorf("a row without a control's ID: %.60s", line)
			continue
		}
		id, c := m[1], rows[m[1]]
		seen++
		if len(line) > maxRow {
			t.Errorf("%s: a row of %d characters, want at most %d", id, len(line), maxRow)
		}
		for _, cell := range []struct {
			name, text string
			full       []string
			exact      bool // one backticked name an item
		}{{"files", cells[3], c.Code, false}, {"tests", cells[4], c.Tests, true}} {
			shown := len(backticked.FindAllString(cell.text, -1))
			mm := more.FindStringSubmatch(cell.text)
			if mm == nil {
				if len(cell.full) != shown {
					t.Errorf("%s names %d %s in its row and %d in all, with no link to the rest", id, shown, cell.name, len(cell.full))
				}
				continue
			}
			n, _ := strconv.Atoi(mm[1])
			if mm[2] != strings.ToLower(id) {
				t.Errorf("%s: its %s link to #%s, not to its own details", id, cell.name, mm[2])
			}
			if cell.exact && len(cell.full) != shown+n || !cell.exact && len(cell.full) <= shown {
				t.Errorf("%s: its row shows %d %s and says %d more, its details list %d in all", id, shown, cell.name, n, len(cell.full))
			}
		}
	}
	if seen < 50 || seen != len(rows) {
		t.Errorf("read %d rows of %d controls", seen, len(rows))
	}
}

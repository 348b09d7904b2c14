// Package docs embeds the documents the binary reports from: the map of
// every control to its status, code and tests (controls.md), which the
// security statement prints with the instance's settings (OPS-02).
package docs

import (
	_ "embed"
	"regexp"
	"slices"
	"strings"
)

// Controls is docs/controls.md.
//
//go:embed controls.md
var Controls string

// Control is one row of the map of controls.
type Control struct {
	ID     string   `json:"id"`
	Status string   `json:"status"` // holds, partial (…), open
	Code   []string `json:"code,omitempty"`
	Tests  []string `json:"tests,omitempty"`
}

// Active reports whether the control is in force, wholly or in part.
func (c Control) Active() bool { return !strings.HasPrefix(c.Status, "open") }

var (
	controlID  = regexp.MustCompile(`^\[?([A-Z]+-[0-9]+)\]?(?:\(#[a-z0-9-]+\))?$`)
	backticked = regexp.MustCompile("`([^`]+)`")
)

// ControlRows reads the table of controls.md, in its order. A row names
// at most a few files and tests, so that it reads whole in a diff; a
// control with more lists each in full under its section of the details
// ("**Where**, in full:" and "**Tests**, in full:", one item a line), and
// those lists complete the row's.
func ControlRows() []Control {
	var out []Control
	byID := map[string]*Control{}
	for _, line := range strings.Split(Controls, "\n") {
		// A row: | ID | status | where | tests |
		cells := strings.Split(strings.TrimSpace(line), "|")
		if len(cells) != 6 || cells[0] != "" || cells[5] != "" {
			continue
		}
		m := controlID.FindStringSubmatch(strings.TrimSpace(cells[1]))
		if m == nil {
			continue
		}
		c := Control{ID: m[1], Status: strings.TrimSpace(cells[2])}
		for _, x := range backticked.FindAllStringSubmatch(cells[3], -1) {
			c.Code = append(c.Code, x[1])
		}
		for _, x := range backticked.FindAllStringSubmatch(cells[4], -1) {
			c.Tests = append(c.Tests, x[1])
		}
		out = append(out, c)
	}
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	var c *Control
	var list *[]string
	for _, line := range strings.Split(Controls, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "### "):
			c, list = byID[strings.TrimSpace(strings.TrimPrefix(line, "### "))], nil
		case strings.HasPrefix(line, "## "):
			c, list = nil, nil
		case c != nil && line == fullWhere:
			list = &c.Code
		case c != nil && line == fullTests:
			list = &c.Tests
		case list != nil && strings.HasPrefix(line, "- "):
			for _, x := range backticked.FindAllStringSubmatch(line, -1) {
				if !slices.Contains(*list, x[1]) {
					*list = append(*list, x[1])
				}
			}
		case list != nil && line != "":
			list = nil // the list ended
		}
	}
	return out
}

// The headings of a control's lists in full, under its details.
const (
	fullWhere = "**Where**, in full:"
	fullTests = "**Tests**, in full:"
)

// VulnDB is the version of the Go vulnerability database (golang.org/x/vulndb)
// that scripts/test checks this code against with govulncheck, and
// VulnDBDate its date: the security statement's date of the vulnerability
// check. A test keeps them equal to what scripts/test pins.
const (
	VulnDB     = "v0.0.0-20261105234957-e22db6528018"
	VulnDBDate = "2026-11-05"
)

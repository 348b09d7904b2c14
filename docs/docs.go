// Package docs embeds the documents the binary reports from: the map of
// every control to its status, code and tests (controls.md), which
// custodia security-report prints with the instance's settings (OPS-02).
package docs

import _ "embed"

// Controls is docs/controls.md.
//
//go:embed controls.md
var Controls string

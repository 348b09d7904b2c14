package internal

import (
	"os"
	"strings"
	"testing"
)

// TestOPS03_OperatorsGuideCoversWhatSoftwareCannot keeps the operator's
// guide whole: each part OPS-03 asks for is a section of
// docs/operations.md, and says what it must.
func TestOPS03_OperatorsGuideCoversWhatSoftwareCannot(t *testing.T) {
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	sections := map[string][]string{
		"### Install as a service":            {"systemd", "NoNewPrivileges", "EnvironmentFile"},
		"### TLS certificates":                {"ACME", "CA"},
		"### Database TLS":                    {"sslmode=verify-full", "sslrootcert"},
		"### Key custody":                     {"HSM", "recovery material", "backup key"},
		"## Backups and restore":              {"custodia backup keygen", "custodia restore", "drill", "Mount a volume"},
		"### Upgrades and rollbacks":          {"custodia migrate", "restore"},
		"### What Custodia cannot do for you": {"Disk encryption", "Firewall", "Workstations", "Off-site"},
	}
	for heading, words := range sections {
		at := strings.Index(guide, "\n"+heading+"\n")
		if at < 0 {
			t.Errorf("docs/operations.md has no section %q", heading)
			continue
		}
		body := guide[at+len(heading)+2:]
		if end := strings.Index(body, "\n#"); end >= 0 {
			body = body[:end]
		}
		for _, w := range words {
			if !strings.Contains(body, w) {
				t.Errorf("docs/operations.md %q does not say %q", heading, w)
			}
		}
	}
}

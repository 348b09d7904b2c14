package docs

import (
	"os"
	"regexp"
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

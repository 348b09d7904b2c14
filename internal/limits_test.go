package internal_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sessions"
)

// TestLimitsDocumentSaysEveryLimit keeps docs/limits.md true (ASVS
// V15.1.3): the row that names each limit's identifier says its value.
func TestLimitsDocumentSaysEveryLimit(t *testing.T) {
	b, err := os.ReadFile("../docs/limits.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, l := range []struct {
		ident string
		says  string
	}{
		{"ratelimit.AddressPerMinute", fmt.Sprintf("%d a minute", ratelimit.AddressPerMinute)},
		{"ratelimit.AddressPerHour", fmt.Sprintf("%d an hour per address", ratelimit.AddressPerHour)},
		{"ratelimit.AccountPerMinute", fmt.Sprintf("%d a minute per named address", ratelimit.AccountPerMinute)},
		{"accounts.LockAfter", fmt.Sprintf("lockout after %d failures", accounts.LockAfter)},
		{"mfa.AccountPerMinute", fmt.Sprintf("%d a minute per account", mfa.AccountPerMinute)},
		{"mfa.SMSSendsPerWindow", fmt.Sprintf("%d every %d minutes", mfa.SMSSendsPerWindow, int(mfa.SMSSendWindow.Minutes()))},
		{"sessions.TokenFailuresPerMinute", fmt.Sprintf("%d a minute per address", sessions.TokenFailuresPerMinute)},
		{"participants.RevealsPerHour", fmt.Sprintf("%d an hour per account", participants.RevealsPerHour)},
		{"auditadmin.ExportsPerHour", fmt.Sprintf("%d an hour per account", auditadmin.ExportsPerHour)},
		{"ratelimit.InvitesPerAccountPerHour", fmt.Sprintf("%d an hour per account", ratelimit.InvitesPerAccountPerHour)},
		{"ratelimit.InvitesPerOrgPerHour", fmt.Sprintf("%d an hour per organization", ratelimit.InvitesPerOrgPerHour)},
		{"ratelimit.InvitesPerAddressPerDay", fmt.Sprintf("%d a day per address", ratelimit.InvitesPerAddressPerDay)},
		{"auditadmin.SearchesPerHour", fmt.Sprintf("%d an hour per account", auditadmin.SearchesPerHour)},
		{"auditadmin.MaxConcurrentExports", fmt.Sprintf("%d per node", auditadmin.MaxConcurrentExports)},
		{"server.MaxRequestBody", fmt.Sprintf("%d MiB", server.MaxRequestBody>>20)},
		{"audit.MaxPage", fmt.Sprintf("%d events", audit.MaxPage)},
		{"participants.MaxPage", fmt.Sprintf("| %d |", participants.MaxPage)},
		{"conversations.MaxMembers", fmt.Sprintf("%d members", conversations.MaxMembers)},
		{"conversations.MaxBodyRunes", fmt.Sprintf("%d characters", conversations.MaxBodyRunes)},
		{"conversations.MaxAttachmentBytes", fmt.Sprintf("%d MiB", conversations.MaxAttachmentBytes>>20)},
		{"conversations.MaxMessagesPage", fmt.Sprintf("%d messages", conversations.MaxMessagesPage)},
		{"auditadmin.MaxExportWindow", fmt.Sprintf("%d days", int(auditadmin.MaxExportWindow.Hours()/24))},
		{"sessions.SessionsPerAccount", fmt.Sprintf("%d live per account", sessions.SessionsPerAccount)},
		{"sessions.TokensPerAccount", fmt.Sprintf("%d live per account", sessions.TokensPerAccount)},
	} {
		var row string
		for line := range strings.Lines(doc) {
			if strings.Contains(line, "`"+l.ident+"`") {
				row = line
				break
			}
		}
		switch {
		case row == "":
			t.Errorf("docs/limits.md names no `%s`", l.ident)
		case !strings.Contains(row, l.says):
			t.Errorf("docs/limits.md: the row of `%s` does not say %q:\n%s", l.ident, l.says, row)
		}
	}
}

package web

import (
	"crypto/fips140"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/docs"
	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sessions"
)

// handleStatement shows an organization's administrators the security
// statement (OPS-02), to hand to their auditors: every control of the
// map, its status, the code and tests that prove it, and the settings
// that decide it for this organization (its own policy) and on this
// server. It asks for the organization's policy first, so only those who
// may read the policy see it.
func handleStatement(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Security.Statement(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		org, p := st.Org, st.Policy
		backedUp := "none recorded"
		if st.HasBackup {
			backedUp = "newest " + st.Backup.Created.Format(time.RFC3339) + ", " + time.Since(st.Backup.Created).Round(time.Minute).String() + " old"
		}
		checkpoint := "none signed yet"
		if st.HasCheckpoint {
			checkpoint = strconv.FormatInt(st.CheckpointSize, 10) + " events, signed " + st.CheckpointAt.Format(time.RFC3339)
		}
		checkpoint += "; " + witnessed(d)
		fips := "off"
		if fips140.Enabled() {
			fips = "on (Go's FIPS 140-3 module)"
		}
		a := accounts.DefaultArgon2
		settings := map[string]string{
			"AUTH-02": "this organization's policy, below",
			"AUTH-03": "argon2id, " + strconv.Itoa(int(a.MemoryKiB/1024)) + " MiB, " + strconv.Itoa(int(a.Time)) + " passes",
			"AUTH-04": "locked after " + strconv.Itoa(accounts.LockAfter) + " consecutive failed sign-ins",
			"AUTH-10": "idle " + sessions.DefaultLimits.Idle.String() + ", absolute " + sessions.DefaultLimits.Absolute.String() + " unless the policy sets others",
			"CRY-01":  "HTTPS only, TLS 1.2 minimum, TLS 1.3 preferred",
			"CRY-11":  "FIPS mode " + fips,
			"AUD-02":  "newest checkpoint: " + checkpoint,
			"AVL-01":  "backups: " + backedUp,
			"AUTH-13": st.SSO,
			"WEB-08":  "vulnerability check (govulncheck) against the Go vulnerability database of " + docs.VulnDBDate,
			"LIFE-01": "deleted data restorable for " + strconv.Itoa(p.DeletionRetentionDays) + " days",
			"LIFE-02": "inactive for " + strconv.Itoa(p.InactivityDays) + " days: noticed, then purged " + strconv.Itoa(p.InactivityNoticeDays) + " days later unless held",
		}
		type row struct {
			docs.Control
			Active  bool
			Setting string
		}
		var rows []row
		for _, c := range docs.ControlRows() {
			rows = append(rows, row{Control: c, Active: c.Active(), Setting: settings[c.ID]})
		}
		render(w, r, d.Log, http.StatusOK, "statement", map[string]any{
			"Title": "Security statement", "Org": org, "Controls": rows, "Policy": policyRows(p),
			"SecondFactorByDefault": policy.SecondFactorByDefault(),
		})
	})
}

// witnessed says how far each witness of the trail has seen it (AUD-02).
func witnessed(d Deps) string {
	var ws []audit.WitnessStatus
	if d.Witnesses != nil {
		ws = d.Witnesses()
	}
	if len(ws) == 0 {
		return "no witness (serve --audit-witness, --audit-witness-file)"
	}
	parts := make([]string, len(ws))
	for i, w := range ws {
		switch {
		case w.Size < 0:
			parts[i] = w.Name + " has accepted no checkpoint yet"
		default:
			parts[i] = w.Name + " has accepted " + strconv.FormatInt(w.Size, 10) + " events, " + strconv.FormatInt(w.Behind, 10) + " behind"
		}
		if w.Error != "" {
			parts[i] += " (last hand-over failed)"
		}
	}
	return "witnesses: " + strings.Join(parts, "; ")
}

package cli

import (
	"context"
	"crypto/fips140"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/docs"
	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sessions"
)

// reportControl is one control of the security statement.
type reportControl struct {
	ID      string   `json:"id"`
	Status  string   `json:"status"` // as docs/controls.md says: holds, partial, open
	Active  bool     `json:"active"`
	Setting string   `json:"setting,omitempty"`
	Code    []string `json:"code,omitempty"`
	Tests   []string `json:"tests,omitempty"`
}

// report is the security statement of an instance (OPS-02).
type report struct {
	Instance    string          `json:"instance"`
	GeneratedAt string          `json:"generated_at"`
	Version     string          `json:"version"`
	Go          string          `json:"go"`
	Controls    []reportControl `json:"controls"`
}

// parseControls reads the map of controls embedded in the binary.
func parseControls() []reportControl {
	var out []reportControl
	for _, c := range docs.ControlRows() {
		out = append(out, reportControl{ID: c.ID, Status: c.Status, Active: c.Active(), Code: c.Code, Tests: c.Tests})
	}
	return out
}

func runSecurityReport(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "security-report", "security-report [--json]")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	ws := witnessFlags(fs)
	if err := parse(fs, env, args); err != nil {
		return err
	}
	inst, err := openInstance(ctx, cfg)
	if err != nil {
		return err
	}
	defer inst.Close()
	read, err := inst.Clinical.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the database")
	}
	defer read.Rollback()
	var size, at int64
	err = read.QueryRowContext(ctx, `SELECT size, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &at)
	checkpoint := "none signed yet"
	switch {
	case err == nil:
		checkpoint = fmt.Sprintf("%d events, signed %s", size, time.UnixMicro(at).UTC().Format(time.RFC3339))
	case !errors.Is(err, sql.ErrNoRows):
		return errs.Wrap(errs.Unavailable, err, "read the audit trail")
	}
	newest := "none recorded: schedule them with serve --backup-to, or run custodia backup"
	if last, ok, err := backup.Latest(ctx, read); err != nil {
		return err
	} else if ok {
		newest = fmt.Sprintf("newest %s, %s old, in %s", last.Created.Format(time.RFC3339), time.Since(last.Created).Round(time.Minute), filepath.Dir(last.Location))
	}
	var withSSO int
	if err := read.QueryRowContext(ctx, `SELECT count(*) FROM sso_providers`).Scan(&withSSO); err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the single sign-on settings")
	}
	witnessed, err := witnessReport(ws, inst.AuditVerifier)
	if err != nil {
		return err
	}
	orgPolicies, err := policy.Customized(ctx, read)
	if err != nil {
		return err
	}
	fips := "off"
	if fips140.Enabled() {
		fips = "on (Go's FIPS 140-3 module)"
	}
	a := accounts.DefaultArgon2
	settings := map[string]string{
		"AUTH-02": fmt.Sprintf("passwords %d to %d characters by default; %d organizations set their own policy", accounts.DefaultPolicy.MinLength, accounts.DefaultPolicy.MaxLength, orgPolicies),
		"AUTH-03": fmt.Sprintf("argon2id, %d MiB, %d passes", a.MemoryKiB/1024, a.Time),
		"AUTH-04": fmt.Sprintf("locked after %d consecutive failed sign-ins", accounts.LockAfter),
		"AUTH-10": fmt.Sprintf("idle %s, absolute %s unless an organization sets others", sessions.DefaultLimits.Idle, sessions.DefaultLimits.Absolute),
		"CRY-01":  "HTTPS only, TLS 1.2 minimum, TLS 1.3 preferred",
		"CRY-02":  "clinical database " + string(inst.Clinical.Dialect) + ", identity database " + string(inst.Identity.Dialect),
		"CRY-04":  "key-encryption key provider: " + kc.provider,
		"CRY-09":  "identity data in their own database (" + string(inst.Identity.Dialect) + ")",
		"CRY-11":  "FIPS mode " + fips,
		"AUD-02":  "newest checkpoint: " + checkpoint + "; " + witnessed,
		"AVL-01":  "backups: " + newest,
		"AUTH-13": fmt.Sprintf("OpenID Connect sign-in: %d organizations have a provider (serve --sso-issuer lists the ones allowed)", withSSO),
		"AVL-02":  "custodia restore checks the backup's signature and hashes and the restored audit trail",
		"CRY-10":  "backups encrypted to a public backup key (age, ML-KEM-768 with X25519) whose secret half the server does not hold",
		"AVL-05":  "/healthz and /readyz; metrics with serve --metrics-addr",
		"WEB-08":  "vulnerability check (govulncheck) against the Go vulnerability database of " + docs.VulnDBDate,
		"OPS-01":  "serve --env decides; production refuses insecure settings",
	}
	r := report{Instance: inst.ID, GeneratedAt: time.Now().UTC().Format(time.RFC3339), Version: version(), Go: runtime.Version(),
		Controls: parseControls()}
	for i := range r.Controls {
		r.Controls[i].Setting = settings[r.Controls[i].ID]
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(env.Stdout, "Security statement of instance %s, %s (Custodia %s, %s)\n\n", r.Instance, r.GeneratedAt, r.Version, r.Go)
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROL\tSTATUS\tACTIVE\tSETTING")
	for _, c := range r.Controls {
		active := "no"
		if c.Active {
			active = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Status, active, c.Setting)
	}
	return tw.Flush()
}

// witnessReport says what the witnesses that serve is given (the same
// flags) hold: a witness file's newest checkpoint; a witness that answers
// over the network is named, not asked.
func witnessReport(ws *witnessConfig, v note.Verifier) (string, error) {
	var parts []string
	if ws.file != "" {
		cps, err := audit.ReadWitnessFile(ws.file, v)
		if err != nil {
			return "", err
		}
		if len(cps) == 0 {
			parts = append(parts, "witness file "+ws.file+" holds no checkpoint yet")
		} else {
			var size int64
			for _, c := range cps {
				size = max(size, c.Size)
			}
			parts = append(parts, fmt.Sprintf("witness file %s holds checkpoints up to %d events", ws.file, size))
		}
	}
	for _, spec := range ws.specs {
		name, _, _ := strings.Cut(spec, "@")
		parts = append(parts, "witness "+name+" (asked by serve)")
	}
	if len(parts) == 0 {
		return "no witness given (--audit-witness, --audit-witness-file, as serve has them)", nil
	}
	return strings.Join(parts, "; "), nil
}

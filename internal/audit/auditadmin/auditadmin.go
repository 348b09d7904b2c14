// Package auditadmin offers the audit trail to the people who watch over an
// organization: administrators search and export it (AUD-04), monitors do
// the same for the studies they monitor. Reading the trail is itself a
// protected, audited read through the gate.
package auditadmin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/ratelimit"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Service searches and exports the trail. One Service serves both shells,
// so that its pace counts every search of an account.
type Service struct {
	Gate *gate.Gate
	pace ratelimit.Local

	mu        sync.Mutex
	exporting map[string]bool // accounts with an export running here
}

// Exports are bounded (ASVS V2.4.1, V15.2.2): an export covers at most
// MaxExportWindow of the trail (one without a start covers the window that
// ends at its end, or now), an account runs one at a time, and a node at
// most MaxConcurrentExports, so that long reads neither pile up nor hold
// the database's snapshot for ever.
const (
	MaxExportWindow      = 366 * 24 * time.Hour
	MaxConcurrentExports = 2
)

// ErrExportRunning answers an export while another is running.
var ErrExportRunning = errs.E(errs.RateLimited, "an export is running already; start this one when it has ended")

// startExport claims a place for account's export, or refuses.
func (s *Service) startExport(account string) (end func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exporting[account] || len(s.exporting) >= MaxConcurrentExports {
		return nil, ErrExportRunning
	}
	if s.exporting == nil {
		s.exporting = map[string]bool{}
	}
	s.exporting[account] = true
	return func() {
		s.mu.Lock()
		delete(s.exporting, account)
		s.mu.Unlock()
	}, nil
}

// exportWindow bounds f's time window (MaxExportWindow).
func exportWindow(f *audit.Filter, now time.Time) error {
	end := f.To
	if end.IsZero() {
		end = now
	}
	if f.From.IsZero() {
		f.From = end.Add(-MaxExportWindow)
		return nil
	}
	if end.Sub(f.From) > MaxExportWindow {
		return errs.E(errs.Invalid, "an export covers at most 366 days: export a longer span in parts (from, to)")
	}
	return nil
}

// SearchesPerHour is how many pages of the trail one account may read in
// an hour from one node (ASVS V2.4.1, V15.2.2): a person paging through the
// trail reads a few a minute; more is a script, which exports instead.
const SearchesPerHour = 600

// authorize checks that the requester may read the part of the trail the
// filter selects: the whole organization's, or one study's.
func authorize(t *gate.Tx, f audit.Filter) error {
	t.Detail("filter", describe(f))
	return t.Authorize(authz.AuditRead, authz.Resource{OrgID: f.OrgID, StudyID: f.Study})
}

// checkFilter validates f as Search, Export and Page take it: its actor is
// an account id or an e-mail address. It returns the address, normalized,
// for member to resolve inside the audited read. f.Actor keeps the address
// until then, so a search that skipped the resolution fails validation
// rather than reading everyone's events.
func checkFilter(f audit.Filter) (string, error) {
	var email string
	if strings.Contains(f.Actor, "@") {
		var err error
		if email, err = accounts.NormalizeEmail(f.Actor); err != nil {
			return "", errs.E(errs.Invalid, "actor must be an e-mail address or an identifier (26 characters a-z, 2-7)")
		}
		f.Actor = ""
	} else if f.Actor != "" && !ids.Valid(f.Actor) {
		return "", errs.E(errs.Invalid, "actor must be an e-mail address or an identifier (26 characters a-z, 2-7)")
	}
	return email, f.Validate()
}

// member is the account of the organization's member whose address is
// email, or "" for any other address. A member holds a role in the
// organization now, or appears on its trail as the one who acted (a former
// member, or someone refused there: the trail names them anyway). Accounts
// that never came near the organization stay unknown, and the same queries
// run for an address with no account at all, so neither the answer nor its
// time tells whether an address has an account elsewhere.
func member(ctx context.Context, t *gate.Tx, orgID, email string) (string, error) {
	acc, err := accounts.ByEmail(ctx, t, email)
	if err != nil && !errs.Is(err, errs.NotFound) {
		return "", err
	}
	id := acc.ID
	if id == "" {
		id = ids.New() // nobody's
	}
	as, err := authz.AssignmentsOf(ctx, t, orgID, id)
	if err != nil {
		return "", err
	}
	seen, _, err := audit.Search(ctx, t, audit.Filter{OrgID: orgID, Actor: id, Limit: 1})
	if err != nil {
		return "", err
	}
	if acc.ID == "" || len(as) == 0 && len(seen) == 0 {
		return "", nil
	}
	return acc.ID, nil
}

// nobody is an account id that no account has (ids are random: one of
// 2^130), which a search for an address of no member stands for.
const nobody = "aaaaaaaaaaaaaaaaaaaaaaaaaa"

// resolve turns the filter's e-mail address, if it has one, into the
// member's account id after the requester was authorized. found is false
// for an address that is no member's: the search then finds nothing, the
// same as for an address without an account. The audit event names the
// member, never the address.
func resolve(ctx context.Context, t *gate.Tx, f *audit.Filter, email string) (found bool, err error) {
	if email == "" {
		return true, nil
	}
	id, err := member(ctx, t, f.OrgID, email)
	if err != nil || id == "" {
		t.Detail("actor", "no member has this address")
		f.Actor = nobody // what the page links to finds nothing too, the same for every address
		return false, err
	}
	f.Actor = id
	t.Detail("filter", describe(*f))
	return true, nil
}

// Search returns one page of events matching f and the next page's cursor.
func (s *Service) Search(ctx context.Context, a gate.Actor, slug string, f audit.Filter) ([]audit.Event, string, error) {
	f.OrgID = "-" // checked with a placeholder; the gate resolves slug
	email, err := checkFilter(f)
	if err != nil {
		return nil, "", err
	}
	var out []audit.Event
	var next string
	err = s.Gate.Read(ctx, a, gate.Slug(slug), "audit.search", func(t *gate.Tx) error {
		f.OrgID = t.Org().ID
		if err := authorize(t, f); err != nil {
			return err
		}
		if err := s.pace.Check(ratelimit.Rule{Bucket: "audit.search:account:" + t.Subject.AccountID, Limit: SearchesPerHour, Window: time.Hour}); err != nil {
			return err
		}
		if found, err := resolve(ctx, t, &f, email); err != nil || !found {
			return err
		}
		var err error
		out, next, err = audit.Search(ctx, t, f)
		return err
	})
	if out == nil {
		out = []audit.Event{}
	}
	return out, next, err
}

// ExportsPerHour is how many exports of the trail one account may start in
// an hour; past it Export answers RateLimited, recorded as a failure.
var ExportsPerHour = 20

// Export authorizes and records the export, then hands every matching event
// to emit, oldest page first within the filter, newest first within pages,
// from one consistent read. The export event commits before the first
// event is handed out; a second one (audit.export.sent) records how many
// events were sent and the SHA-256 of their JSON lines.
func (s *Service) Export(ctx context.Context, a gate.Actor, slug string, f audit.Filter, emit func(audit.Event) error) error {
	f.OrgID, f.Limit, f.Cursor = "-", audit.MaxPage, ""
	if err := exportWindow(&f, time.Now()); err != nil {
		return err
	}
	email, err := checkFilter(f)
	if err != nil {
		return err
	}
	var end func()
	defer func() {
		if end != nil {
			end()
		}
	}()
	// An export takes the trail out of the system: it needs a fresh
	// confirmation of the requester's identity (ACL-09).
	return s.Gate.Do(ctx, a, gate.Slug(slug), "audit.export", func(t *gate.Tx) error {
		f.OrgID = t.Org().ID
		if err := authorize(t, f); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		// An export reads the whole trail: ExportsPerHour per account
		// (ASVS V2.4.1, V15.2.2).
		if err := (&ratelimit.Limiter{DB: t}).Check(ctx, ratelimit.Rule{
			Bucket: "audit.export:account:" + t.Subject.AccountID, Limit: ExportsPerHour, Window: time.Hour}); err != nil {
			return err
		}
		var err error
		if end, err = s.startExport(t.Subject.AccountID); err != nil {
			return err
		}
		found, err := resolve(ctx, t, &f, email)
		if err != nil || !found {
			return err
		}
		t.Stream(func(q sqldb.Querier) (map[string]string, error) {
			return exportFrom(ctx, q, f, emit)
		})
		return nil
	})
}

// exportFrom hands every event f selects to emit, page by page, and
// reports how many and the SHA-256 of their JSON lines (ExportLine).
func exportFrom(ctx context.Context, q sqldb.Querier, f audit.Filter, emit func(audit.Event) error) (map[string]string, error) {
	h, n := sha256.New(), 0
	sent := func() map[string]string {
		return map[string]string{"events": strconv.Itoa(n), "sha256": hex.EncodeToString(h.Sum(nil))}
	}
	for {
		page, next, err := audit.Search(ctx, q, f)
		if err != nil {
			return sent(), err
		}
		for _, ev := range page {
			line, err := ExportLine(ev, "json", "")
			if err != nil {
				return sent(), err
			}
			if err := emit(ev); err != nil {
				return sent(), err
			}
			h.Write(line)
			n++
		}
		if next == "" {
			return sent(), nil
		}
		f.Cursor = next
	}
}

func describe(f audit.Filter) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if strings.Contains(f.Actor, "@") {
		add("actor", "an e-mail address") // resolved later; the address is not recorded
	} else {
		add("actor", f.Actor)
	}
	add("participant", f.Participant)
	add("study", f.Study)
	add("action", f.Action)
	add("outcome", string(f.Outcome))
	if f.SecurityOnly {
		add("security", "true")
	}
	if !f.From.IsZero() {
		add("from", f.From.UTC().Format(time.RFC3339))
	}
	if !f.To.IsZero() {
		add("to", f.To.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, " ")
}

// ExportLine is one line of an export in format "jsonl" (the event's JSON)
// or "syslog" (Syslog), with its newline.
func ExportLine(ev audit.Event, format, hostname string) ([]byte, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if format == "syslog" {
		return []byte(Syslog(ev, hostname, string(body)) + "\n"), nil
	}
	return append(body, '\n'), nil
}

// Syslog formats an event as one RFC 5424 line for a SIEM: facility
// log audit (13), severity notice for successes and warning otherwise, the
// filterable fields as structured data and the event's JSON as message.
func Syslog(ev audit.Event, hostname, body string) string {
	sev := 5
	if ev.Outcome != audit.Success {
		sev = 4
	}
	if hostname == "" {
		hostname = "-"
	}
	sd := fmt.Sprintf(`[custodia@32473 id="%s" outcome="%s" org="%s" actor="%s" study="%s" participant="%s" security="%t"]`,
		sdEscape(ev.ID), sdEscape(string(ev.Outcome)), sdEscape(ev.OrgID), sdEscape(ev.ActorAccount),
		sdEscape(ev.StudyID), sdEscape(ev.ParticipantID), ev.Security)
	return fmt.Sprintf("<%d>1 %s %s custodia - %s %s %s",
		13*8+sev, ev.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), hostname, msgID(ev.Action), sd, body)
}

// sdEscape escapes a structured-data parameter value (RFC 5424 6.3.3).
func sdEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(s)
}

// msgID fits an action into RFC 5424's MSGID: printable ASCII, at most 32.
func msgID(action string) string {
	if action == "" {
		return "-"
	}
	if len(action) > 32 {
		action = action[:32]
	}
	return action
}

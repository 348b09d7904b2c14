package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Filter selects events of one organization for search and export (AUD-04).
type Filter struct {
	OrgID        string
	Actor        string
	Participant  string
	Study        string
	Action       string // exact, or a prefix ending in "." (e.g. "auth.")
	Outcome      Outcome
	SecurityOnly bool
	From, To     time.Time // From inclusive, To exclusive; zero means open
	Limit        int       // 1..MaxPage; 0 means DefaultPage
	Cursor       string    // from a previous page's Next
}

// Page sizes.
const (
	DefaultPage = 100
	MaxPage     = 1000
)

var (
	idPattern = regexp.MustCompile(`^[a-z2-7]{26}$`)
)

// Validate checks a filter and reports the first problem in words.
func (f *Filter) Validate() error {
	if f.OrgID == "" {
		return errs.E(errs.Invalid, "an organization is required")
	}
	for name, v := range map[string]string{"actor": f.Actor, "participant": f.Participant, "study": f.Study} {
		if v != "" && !idPattern.MatchString(v) {
			return errs.E(errs.Invalid, "%s must be an identifier (26 characters a-z, 2-7)", name)
		}
	}
	if f.Action != "" && !actionPattern.MatchString(f.Action) {
		return errs.E(errs.Invalid, "action must be 1-64 characters a-z, 0-9, '.', '_' or '-'")
	}
	switch f.Outcome {
	case "", Success, Failure, Denied:
	default:
		return errs.E(errs.Invalid, "outcome must be success, failure or denied")
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return errs.E(errs.Invalid, "the time range is empty or the wrong way round (from must be before to)")
	}
	if f.Limit == 0 {
		f.Limit = DefaultPage
	}
	if f.Limit < 1 || f.Limit > MaxPage {
		return errs.E(errs.Invalid, "limit must be between 1 and %d", MaxPage)
	}
	if f.Cursor != "" {
		if _, _, err := parseCursor(f.Cursor); err != nil {
			return err
		}
	}
	return nil
}

func parseCursor(c string) (int64, string, error) {
	at, id, ok := strings.Cut(c, "-")
	t, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || !idPattern.MatchString(id) {
		return 0, "", errs.E(errs.Invalid, "cursor is not one this server gave out")
	}
	return t, id, nil
}

// Search returns a page of events matching f, newest first, and the cursor
// of the next page ("" at the end). Every condition is a placeholder; the
// statement text is assembled only from fixed fragments.
func Search(ctx context.Context, q sqldb.Querier, f Filter) ([]Event, string, error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	where := []string{"org_id = $1"}
	args := []any{f.OrgID}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Actor != "" {
		add("actor_account = $%d", f.Actor)
	}
	if f.Participant != "" {
		add("participant_id = $%d", f.Participant)
	}
	if f.Study != "" {
		add("study_id = $%d", f.Study)
	}
	if strings.HasSuffix(f.Action, ".") {
		// Prefix search without LIKE, so '_' in actions stays literal.
		add("action >= $%d", f.Action)
		add("action < $%d", f.Action[:len(f.Action)-1]+"/") // '/' sorts right after '.'
	} else if f.Action != "" {
		add("action = $%d", f.Action)
	}
	if f.Outcome != "" {
		add("outcome = $%d", string(f.Outcome))
	}
	if f.SecurityOnly {
		add("security = $%d", true)
	}
	if !f.From.IsZero() {
		add("at >= $%d", f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		add("at < $%d", f.To.UnixMicro())
	}
	if f.Cursor != "" {
		at, id, _ := parseCursor(f.Cursor)
		args = append(args, at, id)
		n := len(args)
		where = append(where, fmt.Sprintf("(at < $%d OR (at = $%d AND id < $%d))", n-1, n-1, n))
	}
	args = append(args, f.Limit+1)
	stmt := "SELECT id, at, body FROM audit_events WHERE " + strings.Join(where, " AND ") +
		fmt.Sprintf(" ORDER BY at DESC, id DESC LIMIT $%d", len(args))
	rows, err := q.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, "", fmt.Errorf("search audit trail: %w", err)
	}
	defer rows.Close()
	var out []Event
	var lastAt int64
	var lastID string
	for rows.Next() {
		var id, body string
		var at int64
		if err := rows.Scan(&id, &at, &body); err != nil {
			return nil, "", fmt.Errorf("search audit trail: %w", err)
		}
		if len(out) == f.Limit {
			return out, fmt.Sprintf("%d-%s", lastAt, lastID), rows.Err()
		}
		var ev Event
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			return nil, "", fmt.Errorf("audit event %s: %w", id, err)
		}
		out = append(out, ev)
		lastAt, lastID = at, id
	}
	return out, "", rows.Err()
}

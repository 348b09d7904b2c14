package alerts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// SecurityEvent: a security event of the organization matched one of its
// alert rules (AUD-05). Subject: the audit event's id.
const SecurityEvent Kind = "security.event"

// neverAlert are the security events no rule turns into an alert: the
// alerts' own events (a rule matching them would raise alerts about alerts
// for ever) and confirmations of identity, which are routine.
var neverAlert = []string{"alert.", "auth.confirm"}

// Rule limits.
const (
	MaxRules      = 50
	maxRulePrefix = 64
)

// Rules are an organization's alert rules: action prefixes, "" matching
// every security event. Default is true when the organization has set none
// and the built-in default (every security event) applies.
type Rules struct {
	Prefixes []string
	Default  bool
}

// matches reports whether a security event's action raises an alert.
func (r Rules) matches(action string) bool {
	for _, n := range neverAlert {
		if strings.HasPrefix(action, n) {
			return false
		}
	}
	if r.Default {
		return true
	}
	for _, p := range r.Prefixes {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}

// RulesOf returns an organization's alert rules.
func RulesOf(ctx context.Context, q sqldb.Querier, orgID string) (Rules, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT action_prefix FROM alert_rules WHERE org_id = $1 ORDER BY action_prefix`, orgID)
	if err != nil {
		return Rules{}, fmt.Errorf("read alert rules: %w", err)
	}
	defer rows.Close()
	r := Rules{Prefixes: []string{}}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return Rules{}, fmt.Errorf("read alert rules: %w", err)
		}
		r.Prefixes = append(r.Prefixes, p)
	}
	if err := rows.Err(); err != nil {
		return Rules{}, fmt.Errorf("read alert rules: %w", err)
	}
	r.Default = len(r.Prefixes) == 0
	return r, nil
}

// CheckRules validates action prefixes given by an administrator and
// returns them sorted without duplicates. A prefix is lower-case letters,
// digits, '.', '-' and '_', at most 64 bytes; "" means every security event.
func CheckRules(prefixes []string) ([]string, error) {
	if len(prefixes) > MaxRules {
		return nil, errs.E(errs.Invalid, "at most %d alert rules", MaxRules)
	}
	seen := map[string]bool{}
	out := []string{}
	for _, p := range prefixes {
		if len(p) > maxRulePrefix {
			return nil, errs.E(errs.Invalid, "alert rule %.20q… is longer than %d bytes", p, maxRulePrefix)
		}
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return nil, errs.E(errs.Invalid, "alert rule %q: an action prefix holds only a-z, 0-9, '.', '-' and '_'", p)
			}
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// SetRules replaces an organization's alert rules in tx; none restores the
// default. Prefixes must have passed CheckRules.
func SetRules(ctx context.Context, tx sqldb.Tx, orgID string, prefixes []string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM alert_rules WHERE org_id = $1`, orgID); err != nil {
		return fmt.Errorf("replace alert rules: %w", err)
	}
	for _, p := range prefixes {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO alert_rules (org_id, action_prefix, created_at) VALUES ($1, $2, $3)`,
			orgID, p, now.UnixMicro()); err != nil {
			return fmt.Errorf("replace alert rules: %w", err)
		}
	}
	return nil
}

// Watcher follows the audit log (AUD-05): a security event of an
// organization that matches the organization's rules raises a
// SecurityEvent alert, and every alert raised for an organization, by a rule
// or by sign-in protection (AUTH-12), is passed to the Notifier once it is
// on the log, whichever node raised it. It reads the log in index order,
// so it sees every committed event exactly when the sequencer has given it
// its place; its own place is kept in the database.
type Watcher struct {
	DB       *sqldb.DB
	Notifier Notifier
	Log      *slog.Logger
	Batch    int // events examined per round; 500 when zero
}

const watchName = "alerts"

// errMoved is a round that lost its race with another node.
var errMoved = errors.New("alert watcher moved meanwhile")

type logEntry struct {
	seq      int64
	id, org  string
	action   string
	objectID string
	security bool
}

// Round examines the next batch of sequenced events and returns how many it
// examined. The alerts it raises and its new place commit together; the
// notifications follow the commit, so a crash in between sends them again
// rather than never (at least once).
func (w *Watcher) Round(ctx context.Context) (int, error) {
	batch := w.Batch
	if batch <= 0 {
		batch = 500
	}
	var notify []string
	var n int
	err := w.DB.InTx(ctx, func(tx *sql.Tx) error {
		notify, n = nil, 0
		next, err := watchPlace(ctx, tx)
		if err != nil {
			return err
		}
		entries, err := readLog(ctx, tx, next, batch)
		if err != nil {
			return err
		}
		rules := map[string]Rules{}
		for _, e := range entries {
			if !e.security || e.org == "" {
				continue
			}
			if e.action == "alert.raised" {
				notify = append(notify, e.objectID)
				continue
			}
			r, ok := rules[e.org]
			if !ok {
				if r, err = RulesOf(ctx, tx, e.org); err != nil {
					return err
				}
				rules[e.org] = r
			}
			if r.matches(e.action) {
				if _, err := Raise(ctx, tx, Alert{OrgID: e.org, Kind: SecurityEvent, Subject: e.id}); err != nil {
					return err
				}
			}
		}
		n = len(entries)
		if n == 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE alert_watch SET next_seq = $1 WHERE name = $2 AND next_seq = $3`,
			next+int64(n), watchName, next)
		if err != nil {
			return fmt.Errorf("move alert watcher: %w", err)
		}
		if k, err := res.RowsAffected(); err != nil || k != 1 {
			return errMoved
		}
		return nil
	})
	if errors.Is(err, errMoved) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(notify) > 0 {
		list, err := byIDs(ctx, w.DB, notify)
		if err != nil {
			return n, err
		}
		Announce(ctx, w.Log, w.Notifier, list...)
	}
	return n, nil
}

// Run calls Round every interval until ctx ends, at once again while rounds
// find full batches. Failures are logged and retried.
func (w *Watcher) Run(ctx context.Context, every time.Duration) {
	batch := w.Batch
	if batch <= 0 {
		batch = 500
	}
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		n, err := w.Round(ctx)
		if err != nil && ctx.Err() == nil && w.Log != nil {
			w.Log.ErrorContext(ctx, "alert watcher", "err", err)
		}
		if n >= batch {
			timer.Reset(0)
		} else {
			timer.Reset(every)
		}
	}
}

// watchPlace returns the watcher's place, starting it at the end of the log
// on first use: events from before alerting was set up raise nothing.
func watchPlace(ctx context.Context, tx sqldb.Tx) (int64, error) {
	var next int64
	err := tx.QueryRowContext(ctx, `SELECT next_seq FROM alert_watch WHERE name = $1`, watchName).Scan(&next)
	if err == nil {
		return next, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read alert watcher: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_log`).Scan(&next); err != nil {
		return 0, fmt.Errorf("read audit log size: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO alert_watch (name, next_seq) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, watchName, next); err != nil {
		return 0, fmt.Errorf("start alert watcher: %w", err)
	}
	err = tx.QueryRowContext(ctx, `SELECT next_seq FROM alert_watch WHERE name = $1`, watchName).Scan(&next)
	if err != nil {
		return 0, fmt.Errorf("read alert watcher: %w", err)
	}
	return next, nil
}

func readLog(ctx context.Context, tx sqldb.Tx, from int64, n int) ([]logEntry, error) {
	rows, err := tx.QueryContext(ctx,
		`SELECT l.seq, e.id, COALESCE(e.org_id, ''), e.action, COALESCE(e.object_id, ''), e.security
		 FROM audit_log l JOIN audit_events e ON e.id = l.event_id
		 WHERE l.seq >= $1 AND l.seq < $2 ORDER BY l.seq`, from, from+int64(n))
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []logEntry
	for rows.Next() {
		var e logEntry
		if err := rows.Scan(&e.seq, &e.id, &e.org, &e.action, &e.objectID, &e.security); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		if e.seq != from+int64(len(out)) {
			return nil, fmt.Errorf("audit log has a gap at %d", from+int64(len(out)))
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// byIDs loads alerts by id, skipping ids that are not alerts of ours.
func byIDs(ctx context.Context, q sqldb.Querier, idList []string) ([]Alert, error) {
	var out []Alert
	for _, id := range idList {
		if !ids.Valid(id) {
			continue
		}
		list, err := list(ctx, q, `SELECT id, COALESCE(org_id, ''), kind, subject, created_at, read_at FROM alerts WHERE id = $1`, id)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	return out, nil
}

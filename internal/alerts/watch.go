package alerts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
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
//
// A round is operator work (Gate.Operate, alert.watch). One that raises or
// announces alerts moves the stored place in the same transaction as the
// alerts and their events, and only if no other node moved it meanwhile,
// so each alert is raised once. A round that finds nothing to raise or
// announce changes nothing and records nothing: the watcher remembers how
// far it read, and stores that place with its next change, or once
// maxUnstored events were passed, so that an idle log is not filled with
// the watcher's own events.
type Watcher struct {
	Gate     *gate.Gate
	Notifier Notifier
	Log      *slog.Logger
	Batch    int // events examined per round; 500 when zero

	mu sync.Mutex
	// read is how far the watcher read past the stored place stored
	// without finding anything to do; valid while the place is stored.
	stored, read int64
	ahead        bool
}

const watchName = "alerts"

// maxUnstored bounds how many events a watcher passes before it stores its
// place: what a restart reads again.
const maxUnstored = 10000

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
	w.mu.Lock()
	defer w.mu.Unlock()
	batch := w.Batch
	if batch <= 0 {
		batch = 500
	}
	var (
		notify         []Alert
		n, raised      int
		stored, passed int64
		quiet          bool
	)
	err := w.Gate.Operate(ctx, "alert.watch", func(tx *gate.OpTx) error {
		notify, n, raised, quiet = nil, 0, 0, false
		var started bool
		var err error
		stored, started, err = watchPlace(ctx, tx)
		if err != nil {
			return err
		}
		from := stored
		if w.ahead && w.stored == stored && w.read > stored {
			from = w.read
		}
		entries, err := readLog(ctx, tx, from, batch)
		if err != nil {
			return err
		}
		rules := map[string]Rules{}
		var announce []string
		for _, e := range entries {
			if !e.security || e.org == "" {
				continue
			}
			if e.action == "alert.raised" {
				announce = append(announce, e.objectID)
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
				raised++
			}
		}
		n = len(entries)
		passed = from + int64(n)
		if !started && raised == 0 && len(announce) == 0 && passed-stored < maxUnstored {
			quiet = true
			tx.Nothing()
			return nil
		}
		if notify, err = byIDs(ctx, tx, announce); err != nil {
			return err
		}
		if passed != stored {
			res, err := tx.ExecContext(ctx,
				`UPDATE alert_watch SET next_seq = $1 WHERE name = $2 AND next_seq = $3`,
				passed, watchName, stored)
			if err != nil {
				return fmt.Errorf("move alert watcher: %w", err)
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				return errMoved
			}
		}
		tx.Detail("from", strconv.FormatInt(stored, 10))
		tx.Detail("to", strconv.FormatInt(passed, 10))
		tx.Detail("raised", strconv.Itoa(raised))
		tx.Detail("announced", strconv.Itoa(len(notify)))
		return nil
	})
	if errors.Is(err, errMoved) {
		w.ahead = false
		return 0, nil
	}
	if err != nil {
		w.ahead = false
		return 0, err
	}
	if quiet {
		w.stored, w.read, w.ahead = stored, passed, true
	} else {
		w.stored, w.read, w.ahead = passed, passed, true
	}
	Announce(ctx, w.Log, w.Notifier, notify...)
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

// watchPlace returns the watcher's stored place. The schema sets it
// (clinical migration 0040, at the end of the log then); a database
// without it has it set here, at the end of the log (started): events from
// before alerting was set up raise nothing.
func watchPlace(ctx context.Context, tx sqldb.Tx) (next int64, started bool, err error) {
	err = tx.QueryRowContext(ctx, `SELECT next_seq FROM alert_watch WHERE name = $1`, watchName).Scan(&next)
	if err == nil {
		return next, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("read alert watcher: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_log`).Scan(&next); err != nil {
		return 0, false, fmt.Errorf("read audit log size: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO alert_watch (name, next_seq) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, watchName, next); err != nil {
		return 0, false, fmt.Errorf("start alert watcher: %w", err)
	}
	err = tx.QueryRowContext(ctx, `SELECT next_seq FROM alert_watch WHERE name = $1`, watchName).Scan(&next)
	if err != nil {
		return 0, false, fmt.Errorf("read alert watcher: %w", err)
	}
	return next, true, nil
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

// Package alerts owns security alerts (AUTH-12, AUD-05): the record that
// something needs a person's attention, such as a locked account or a
// source address that keeps trying to sign in. An alert is written in the
// transaction of what caused it, together with its audit event, so neither
// exists without the other. Once committed it is announced: to the operator
// through the log, and to the organization's administrators through a
// Notifier (e-mail, later) and the alert list the API shows them.
//
// An alert names its subject by reference, an account id or a source
// address, and never holds a secret or an e-mail address.
package alerts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Kind says what an alert is about.
type Kind string

const (
	// AccountLocked: an account was locked after repeated failed sign-ins
	// (brute force against one account). Subject: the account id.
	AccountLocked Kind = "account.locked"
	// AddressLimited: one source address went past its sign-in limit
	// (credential stuffing, or guessing across many accounts). Subject: the
	// address, or its IPv6 /64.
	AddressLimited Kind = "address.limited"
)

// Alert is one raised alert.
type Alert struct {
	ID        string
	OrgID     string // "" for an alert to the operator alone
	Kind      Kind
	Subject   string
	CreatedAt time.Time
	ReadAt    time.Time // zero while unread
}

// maxSubject bounds an alert's subject in bytes.
const maxSubject = 200

// Tx is the transaction an alert is raised in: that of what caused it,
// which records the alert's own event beside its own (gate.OpTx).
type Tx interface {
	sqldb.Querier
	Record(ctx context.Context, ev audit.Event, orgIDs ...string) error
}

// Raise records an alert and its audit event, alert.raised, in tx: the
// transaction that records what caused it. Announce it after tx commits.
func Raise(ctx context.Context, tx Tx, a Alert) (Alert, error) {
	switch a.Kind {
	case AccountLocked, AddressLimited, SecurityEvent:
	default:
		return Alert{}, errs.E(errs.Invalid, "unknown alert kind %q", a.Kind)
	}
	if a.Subject == "" || len(a.Subject) > maxSubject || !utf8.ValidString(a.Subject) {
		return Alert{}, errs.E(errs.Invalid, "an alert needs a subject of at most %d bytes", maxSubject)
	}
	a.ID = ids.New()
	a.CreatedAt = time.Now().UTC().Truncate(time.Microsecond)
	a.ReadAt = time.Time{}
	_, err := tx.ExecContext(ctx,
		`INSERT INTO alerts (id, org_id, kind, subject, created_at) VALUES ($1, $2, $3, $4, $5)`,
		a.ID, nullable(a.OrgID), string(a.Kind), a.Subject, a.CreatedAt.UnixMicro())
	if err != nil {
		return Alert{}, fmt.Errorf("record alert: %w", err)
	}
	err = tx.Record(ctx, audit.Event{
		Action: "alert.raised", OrgID: a.OrgID, ObjectType: "alert", ObjectID: a.ID,
		Outcome: audit.Success, Security: true,
		Details: map[string]string{"kind": string(a.Kind), "subject": a.Subject},
	})
	if err != nil {
		return Alert{}, err
	}
	return a, nil
}

// Notifier tells an organization's administrators about an alert, outside
// the application (e-mail). Like every e-mail it may carry no confidential
// data (WEB-07): the kind and a link, not the subject.
type Notifier interface {
	Notify(ctx context.Context, a Alert) error
}

// Discard is the Notifier used until mail is configured: administrators see
// alerts in the application only.
type Discard struct{}

// Notify does nothing.
func (Discard) Notify(context.Context, Alert) error { return nil }

// Announce tells the operator about committed alerts with one log line
// each, and passes each to n. A notifier's failure is logged; the alert
// stays recorded either way.
func Announce(ctx context.Context, log *slog.Logger, n Notifier, list ...Alert) {
	for _, a := range list {
		attrs := []slog.Attr{
			slog.String("alert", a.ID), slog.String("kind", string(a.Kind)),
			slog.String("subject", a.Subject), slog.String("org", a.OrgID),
		}
		if log != nil {
			log.LogAttrs(ctx, slog.LevelWarn, "security alert", attrs...)
		}
		if n == nil {
			continue
		}
		if err := n.Notify(ctx, a); err != nil && log != nil {
			log.LogAttrs(ctx, slog.LevelError, "security alert not delivered",
				append(attrs, slog.String("err", err.Error()))...)
		}
	}
}

// MaxList is how many alerts a list returns at most.
const MaxList = 200

// List returns an organization's alerts, newest first.
func List(ctx context.Context, q sqldb.Querier, orgID string) ([]Alert, error) {
	if !ids.Valid(orgID) {
		return nil, errs.E(errs.NotFound, "organization not found")
	}
	return list(ctx, q, `SELECT id, COALESCE(org_id, ''), kind, subject, created_at, read_at FROM alerts
		WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, orgID, MaxList)
}

// ListOperator returns the alerts for the operator alone (those of no
// organization), newest first.
func ListOperator(ctx context.Context, q sqldb.Querier) ([]Alert, error) {
	return list(ctx, q, `SELECT id, COALESCE(org_id, ''), kind, subject, created_at, read_at FROM alerts
		WHERE org_id IS NULL ORDER BY created_at DESC, id DESC LIMIT $1`, MaxList)
}

func list(ctx context.Context, q sqldb.Querier, stmt string, args ...any) ([]Alert, error) {
	rows, err := q.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		var created int64
		var read sql.NullInt64
		if err := rows.Scan(&a.ID, &a.OrgID, &a.Kind, &a.Subject, &created, &read); err != nil {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		a.CreatedAt = time.UnixMicro(created).UTC()
		if read.Valid {
			a.ReadAt = time.UnixMicro(read.Int64).UTC()
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// MarkRead records that an administrator of the organization has seen the
// alert. An alert of another organization is NotFound.
func MarkRead(ctx context.Context, tx sqldb.Tx, orgID, alertID string, at time.Time) error {
	notFound := errs.E(errs.NotFound, "alert not found")
	if !ids.Valid(orgID) || !ids.Valid(alertID) {
		return notFound
	}
	var id string
	err := tx.QueryRowContext(ctx,
		`UPDATE alerts SET read_at = COALESCE(read_at, $3) WHERE org_id = $1 AND id = $2 RETURNING id`,
		orgID, alertID, at.UnixMicro()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound
	}
	if err != nil {
		return fmt.Errorf("mark alert read: %w", err)
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

package alerts

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func newOrg(t *testing.T, db *sqldb.DB, slug string) string {
	t.Helper()
	id := ids.New()
	if _, err := db.ExecContext(context.Background(),
		`INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)`, id, slug, slug, sqldb.Now()); err != nil {
		t.Fatal(err)
	}
	return id
}

type recorder struct {
	got []Alert
	err error
}

func (r *recorder) Notify(_ context.Context, a Alert) error {
	r.got = append(r.got, a)
	return r.err
}

func TestAUTH12_AlertIsRecordedAuditedAndAnnounced(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		org, other := newOrg(t, db, "one"), newOrg(t, db, "two")
		account := ids.New()
		var raised []Alert
		err := gate.New(gate.Config{Clinical: db}).Operate(ctx, "alert.test", func(tx *gate.OpTx) error {
			for _, a := range []Alert{
				{OrgID: org, Kind: AccountLocked, Subject: account},
				{Kind: AddressLimited, Subject: "192.0.2.7"},
			} {
				a, err := Raise(ctx, tx, a)
				if err != nil {
					return err
				}
				raised = append(raised, a)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		list, err := List(ctx, db, org)
		if err != nil || len(list) != 1 || list[0].ID != raised[0].ID || list[0].Kind != AccountLocked ||
			list[0].Subject != account || !list[0].ReadAt.IsZero() || time.Since(list[0].CreatedAt) > time.Minute {
			t.Fatalf("List(org) = %+v, %v", list, err)
		}
		if list, _ := List(ctx, db, other); len(list) != 0 {
			t.Errorf("another organization sees %+v", list)
		}
		if list, _ := ListOperator(ctx, db); len(list) != 1 || list[0].Subject != "192.0.2.7" || list[0].OrgID != "" {
			t.Errorf("ListOperator = %+v", list)
		}

		var n int
		db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'alert.raised' AND security = $1
			AND object_type = 'alert' AND (org_id = $2 OR org_id IS NULL)`, true, org).Scan(&n)
		if n != 2 {
			t.Errorf("%d alert.raised security events, want 2", n)
		}

		var logs bytes.Buffer
		log := slog.New(slog.NewJSONHandler(&logs, nil))
		rec := &recorder{err: errors.New("smtp down")}
		Announce(ctx, log, rec, raised...)
		if len(rec.got) != 2 {
			t.Errorf("notifier got %d alerts, want 2", len(rec.got))
		}
		out := logs.String()
		for _, want := range []string{`"msg":"security alert"`, raised[0].ID, `"kind":"account.locked"`, account, "192.0.2.7", "smtp down"} {
			if !strings.Contains(out, want) {
				t.Errorf("operator log lacks %s:\n%s", want, out)
			}
		}
		Announce(ctx, nil, Discard{}, raised...) // neither a logger nor mail: nothing to do, no panic
	})
}

func TestLIFE05_AlertOfAnotherOrganizationCannotBeMarkedRead(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		org, other := newOrg(t, db, "one"), newOrg(t, db, "two")
		var a Alert
		gate.New(gate.Config{Clinical: db}).Operate(ctx, "alert.test", func(tx *gate.OpTx) error {
			var err error
			a, err = Raise(ctx, tx, Alert{OrgID: org, Kind: AccountLocked, Subject: ids.New()})
			return err
		})
		read := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
		for _, tc := range []struct{ org, id string }{{other, a.ID}, {org, ids.New()}, {org, "nonsense"}} {
			err := db.InTx(ctx, func(tx *sql.Tx) error { return MarkRead(ctx, tx, tc.org, tc.id, read) })
			if !errs.Is(err, errs.NotFound) {
				t.Errorf("MarkRead(%s, %s) = %v, want NotFound", tc.org, tc.id, err)
			}
		}
		for range 2 { // a second read keeps the first time
			if err := db.InTx(ctx, func(tx *sql.Tx) error { return MarkRead(ctx, tx, org, a.ID, read) }); err != nil {
				t.Fatal(err)
			}
			read = read.Add(time.Hour)
		}
		list, _ := List(ctx, db, org)
		if len(list) != 1 || !list[0].ReadAt.Equal(time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("after MarkRead: %+v", list)
		}
		if _, err := List(ctx, db, "not-an-id"); !errs.Is(err, errs.NotFound) {
			t.Errorf("List(malformed id) = %v", err)
		}
	})
}

func TestRaiseRefusesUnknownKindAndBadSubject(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	for _, a := range []Alert{
		{Kind: "made.up", Subject: "x"},
		{Kind: AccountLocked},
		{Kind: AccountLocked, Subject: strings.Repeat("x", maxSubject+1)},
		{Kind: AccountLocked, Subject: "\xff"},
	} {
		err := gate.New(gate.Config{Clinical: db}).Operate(ctx, "alert.test", func(tx *gate.OpTx) error { _, err := Raise(ctx, tx, a); return err })
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("Raise(%q, %q) = %v, want Invalid", a.Kind, a.Subject, err)
		}
	}
}

package alerts_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type watchFixture struct {
	db      *sqldb.DB
	org     string
	admin   accounts.Account
	member  accounts.Account
	outbox  string
	watcher *alerts.Watcher
	log     *audit.Log
}

func newWatchFixture(t *testing.T, d sqldb.Dialect) watchFixture {
	t.Helper()
	ctx := context.Background()
	f := watchFixture{db: sqldbtest.Open(t, d, sqldb.Clinical), outbox: t.TempDir()}
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		o, err := orgs.CreateOrganization(ctx, tx, "Watched", "")
		if err != nil {
			return err
		}
		f.org = o.ID
		if f.admin, _, err = accounts.Enrol(ctx, tx, "admin@watched.example", "", authz.Assignment{OrgID: o.ID, Role: authz.OrgAdmin}); err != nil {
			return err
		}
		f.member, _, err = accounts.Enrol(ctx, tx, "manager@watched.example", "", authz.Assignment{OrgID: o.ID, Role: authz.OrgManager})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.log = &audit.Log{DB: f.db}
	g := gate.New(gate.Config{Clinical: f.db})
	f.watcher = &alerts.Watcher{
		Gate:     g,
		Notifier: &alerts.MailNotifier{Gate: g, Mail: &mail.Outbox{Dir: f.outbox, From: "custodia@test.example"}, BaseURL: "https://custodia.test.example"},
	}
	f.sequence(t)
	if _, err := f.watcher.Round(ctx); err != nil { // takes its place at the end of the log
		t.Fatal(err)
	}
	return f
}

func (f watchFixture) sequence(t *testing.T) {
	t.Helper()
	if _, err := f.log.Sequence(context.Background(), 10000); err != nil {
		t.Fatal(err)
	}
}

// event appends one event of the organization and returns its id.
func (f watchFixture) event(t *testing.T, action string, security bool) string {
	t.Helper()
	var id string
	err := f.db.InTx(context.Background(), func(tx *sql.Tx) error {
		ev, err := audit.Append(context.Background(), tx, nil, audit.Event{
			OrgID: f.org, ActorAccount: f.member.ID, Action: action, Outcome: audit.Success, Security: security,
		})
		id = ev.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// settle sequences and runs the watcher until nothing more happens.
func (f watchFixture) settle(t *testing.T) {
	t.Helper()
	for range 5 {
		f.sequence(t)
		if _, err := f.watcher.Round(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func (f watchFixture) alerts(t *testing.T) []alerts.Alert {
	t.Helper()
	list, err := alerts.List(context.Background(), f.db, f.org)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func (f watchFixture) mails(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(f.outbox)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(f.outbox, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func TestAUD05_SecurityEventRaisesOneAlertAndAdministratorsAreMailed(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newWatchFixture(t, d)
		flagged := f.event(t, "role.assign", true)
		f.event(t, "study.read", false)  // not a security event
		f.event(t, "auth.confirm", true) // routine, never an alert
		f.settle(t)

		list := f.alerts(t)
		if len(list) != 1 || list[0].Kind != alerts.SecurityEvent || list[0].Subject != flagged {
			t.Fatalf("alerts = %+v, want one security.event naming %s", list, flagged)
		}
		// The alert's own alert.raised event raised no further alert, however
		// often the watcher runs.
		f.settle(t)
		if n := len(f.alerts(t)); n != 1 {
			t.Errorf("alerts after more rounds = %d, want 1", n)
		}

		mails := f.mails(t)
		if len(mails) != 1 {
			t.Fatalf("mails = %d, want one (to the one administrator)", len(mails))
		}
		m := mails[0]
		if !strings.Contains(m, "To: admin@watched.example") || strings.Contains(m, "manager@watched.example") {
			t.Errorf("mail not addressed to the administrator alone:\n%s", m)
		}
		for _, secret := range []string{flagged, f.member.ID, "role.assign", list[0].ID} {
			if strings.Contains(m, secret) {
				t.Errorf("mail holds %q; it may hold only a notice and a link:\n%s", secret, m)
			}
		}
		if !strings.Contains(m, "https://custodia.test.example/") {
			t.Errorf("mail holds no link:\n%s", m)
		}
	})
}

func TestAUD05_RulesChooseWhichSecurityEventsAlert(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newWatchFixture(t, d)
		ctx := context.Background()
		rules, err := alerts.CheckRules([]string{"mfa.", "mfa.", "key"})
		if err != nil || len(rules) != 2 {
			t.Fatalf("CheckRules = %v, %v", rules, err)
		}
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error { return alerts.SetRules(ctx, tx, f.org, rules, time.Now()) }); err != nil {
			t.Fatal(err)
		}
		f.event(t, "role.assign", true)
		want := f.event(t, "mfa.totp.remove", true)
		f.settle(t)
		// A rule never makes the alerts' own events alert: with rules
		// matching everything, further rounds over the alert.raised event
		// raise nothing.
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error { return alerts.SetRules(ctx, tx, f.org, []string{"", "alert."}, time.Now()) }); err != nil {
			t.Fatal(err)
		}
		f.settle(t)
		list := f.alerts(t)
		got := map[string]bool{}
		for _, a := range list {
			got[a.Subject] = true
		}
		if !got[want] || len(list) != 1 {
			t.Errorf("alerts = %+v, want one for the mfa event only", list)
		}
	})
}

func TestAUD05_BadRulesAreRefused(t *testing.T) {
	for _, bad := range [][]string{
		{"Role."},
		{"role assign"},
		{strings.Repeat("a", 65)},
		{"<script>"},
		make([]string, alerts.MaxRules+1),
	} {
		if _, err := alerts.CheckRules(bad); err == nil {
			t.Errorf("CheckRules(%.40q) accepted", bad)
		}
	}
}

// Two nodes watching one PostgreSQL database raise each alert once.
func TestAUD05_TwoWatchersRaiseEachAlertOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newWatchFixture(t, d)
		ctx := context.Background()
		const n = 20
		for range n {
			f.event(t, "network.set", true)
		}
		f.sequence(t)
		other := &alerts.Watcher{Gate: gate.New(gate.Config{Clinical: f.db}), Notifier: f.watcher.Notifier, Batch: 3} // another node's
		f.watcher.Batch = 3
		var wg sync.WaitGroup
		for _, w := range []*alerts.Watcher{f.watcher, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 * n {
					if _, err := w.Round(ctx); err != nil && d == sqldb.Postgres {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		f.watcher.Batch = 0
		f.settle(t)
		if got := len(f.alerts(t)); got != n {
			t.Errorf("alerts = %d, want %d", got, n)
		}
		if got := len(f.mails(t)); got != n {
			t.Errorf("mails = %d, want %d", got, n)
		}
	})
}

// Events from before alerting was set up (migration 40 places the
// watcher) raise nothing: an instance brought up to it is not alerted of
// its past.
func TestAUD05_WatcherStartsAtTheEndOfTheLog(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.URL(t, sqldb.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.MigrateTo(ctx, sqldb.Clinical, 39); err != nil {
		t.Fatal(err)
	}
	var org string
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		o, err := orgs.CreateOrganization(ctx, tx, "Old", "")
		org = o.ID
		if err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, nil, audit.Event{OrgID: org, Action: "role.assign", Outcome: audit.Success, Security: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&audit.Log{DB: db}).Sequence(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx, sqldb.Clinical); err != nil {
		t.Fatal(err)
	}
	w := &alerts.Watcher{Gate: gate.New(gate.Config{Clinical: db})}
	for range 3 {
		if _, err := w.Round(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if list, _ := alerts.List(ctx, db, org); len(list) != 0 {
		t.Errorf("alerts = %+v, want none for an event from before", list)
	}
}

// An alert raised on a new instance before its watcher's first round (an
// account locked in the first seconds after the first start) is mailed
// too: the watcher's place is set with the schema, not at that round.
func TestAUD05_AlertBeforeTheWatchersFirstRoundIsMailed(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := watchFixture{db: sqldbtest.Open(t, d, sqldb.Clinical), outbox: t.TempDir()}
		f.org = newOrgWithAdmin(t, f.db)
		g := gate.New(gate.Config{Clinical: f.db})
		err := g.Operate(ctx, "auth.login", func(tx *gate.OpTx) error {
			_, err := alerts.Raise(ctx, tx, alerts.Alert{OrgID: f.org, Kind: alerts.AccountLocked, Subject: f.org})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		f.log = &audit.Log{DB: f.db}
		f.watcher = &alerts.Watcher{Gate: g,
			Notifier: &alerts.MailNotifier{Gate: g, Mail: &mail.Outbox{Dir: f.outbox, From: "custodia@test.example"}, BaseURL: "https://custodia.test.example"}}
		f.settle(t)
		if m := f.mails(t); len(m) != 1 {
			t.Errorf("%d mails for the alert raised before the first round, want 1", len(m))
		}
	})
}

// newOrgWithAdmin makes an organization with one administrator.
func newOrgWithAdmin(t *testing.T, db *sqldb.DB) string {
	t.Helper()
	ctx := context.Background()
	var org string
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		o, err := orgs.CreateOrganization(ctx, tx, "New", "")
		if err != nil {
			return err
		}
		org = o.ID
		_, _, err = accounts.Enrol(ctx, tx, "admin@new.example", "", authz.Assignment{OrgID: o.ID, Role: authz.OrgAdmin})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return org
}

// Rounds that find nothing to raise or announce record nothing: the
// watcher's own events do not fill the log of a busy instance.
func TestAUD05_WatcherRoundsWithNothingToDoRecordNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newWatchFixture(t, d)
		rounds := func() int {
			t.Helper()
			var n int
			if err := f.db.QueryRowContext(context.Background(),
				`SELECT COUNT(*) FROM audit_events WHERE action = 'alert.watch'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for range 3 {
			f.event(t, "study.read", false)
			f.event(t, "auth.confirm", true)
			f.settle(t)
		}
		before := rounds()
		for range 3 {
			f.event(t, "study.read", false)
			f.settle(t)
		}
		if got := rounds(); got != before {
			t.Errorf("alert.watch events: %d after idle rounds, %d before", got, before)
		}
		// An alert is raised in one round and announced in the next: two
		// rounds on the record, then quiet again.
		f.event(t, "role.assign", true)
		f.settle(t)
		f.settle(t)
		if got := rounds(); got != before+2 {
			t.Errorf("alert.watch events after one alert: %d, want %d", got, before+2)
		}
		if n := len(f.alerts(t)); n != 1 {
			t.Errorf("alerts = %d, want 1", n)
		}
	})
}

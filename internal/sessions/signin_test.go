package sessions

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const (
	memberEmail    = "member@x.example"
	memberPassword = "windmill orchard lantern 58"
)

// member makes an account with a password and a role in two organizations
// and returns its id and the organizations' ids, sorted.
func member(t *testing.T, db *sqldb.DB) (string, []string) {
	t.Helper()
	ctx := context.Background()
	var accountID string
	var orgIDs []string
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		for _, name := range []string{"North Hospital", "South Hospital"} {
			org, err := orgs.CreateOrganization(ctx, tx, name, orgs.SlugFrom(name))
			if err != nil {
				return err
			}
			acc, _, err := accounts.Enrol(ctx, tx, memberEmail, "", authz.Assignment{OrgID: org.ID, Role: authz.OrgManager})
			if err != nil {
				return err
			}
			accountID = acc.ID
			orgIDs = append(orgIDs, org.ID)
		}
		acc, err := accounts.ByID(ctx, tx, accountID)
		if err != nil {
			return err
		}
		return accounts.SetPassword(ctx, tx, acc, memberPassword, accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(orgIDs)
	return accountID, orgIDs
}

// lockMember fails LockAfter times, a minute apart so that no rate limit
// interferes, from changing addresses.
func lockMember(t *testing.T, s *testStore, c *clock) {
	t.Helper()
	for i := range accounts.LockAfter {
		c.t = c.t.Add(time.Minute)
		_, _, err := s.SignIn(context.Background(), memberEmail, "not the password", fmt.Sprintf("198.51.100.%d", i), "test")
		if !errors.Is(err, accounts.ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
}

// securityEvents lists "action org" of the security events with the given
// action prefix, sorted.
func securityEvents(t *testing.T, db *sqldb.DB, action string) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(),
		`SELECT action, COALESCE(org_id, '') FROM audit_events WHERE security = $1 AND action = $2 ORDER BY org_id`, true, action)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a, org string
		rows.Scan(&a, &org)
		out = append(out, org)
	}
	return out
}

func TestAUTH04_LockoutAfterTenFailures(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s, c, _ := setup(t, d)
		accountID, orgIDs := member(t, s.DB)
		lockMember(t, s, c)

		c.t = c.t.Add(time.Minute)
		_, _, err := s.SignIn(ctx, memberEmail, memberPassword, "203.0.113.9", "test")
		if err != accounts.ErrBadCredentials {
			t.Fatalf("right password on a locked account: %v, want exactly ErrBadCredentials", err)
		}
		var reason string
		s.DB.QueryRowContext(ctx, `SELECT body FROM audit_events WHERE action = 'auth.login' ORDER BY at DESC LIMIT 1`).Scan(&reason)
		if !strings.Contains(reason, `"reason":"locked"`) || !strings.Contains(reason, accountID) {
			t.Errorf("the refused attempt is not on record as locked: %s", reason)
		}
		if got := securityEvents(t, s.DB, "account.lock"); !slices.Equal(got, orgIDs) {
			t.Errorf("account.lock security events in %v, want one in each of %v", got, orgIDs)
		}

		// An administrator unlocks it, on the record.
		err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
			ok, err := accounts.Unlock(ctx, tx, accountID)
			if err != nil || !ok {
				return fmt.Errorf("unlock: %v %v", ok, err)
			}
			for _, org := range orgIDs {
				if _, err := audit.Append(ctx, tx, nil, audit.Event{Action: "account.unlock", OrgID: org, ActorRole: "org-admin",
					ObjectType: "account", ObjectID: accountID, Outcome: audit.Success, Security: true}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(time.Minute)
		if _, sess, err := s.SignIn(ctx, memberEmail, memberPassword, "203.0.113.9", "test"); err != nil || sess.AccountID != accountID {
			t.Fatalf("sign-in after unlock: %v", err)
		}
		if got := securityEvents(t, s.DB, "account.unlock"); !slices.Equal(got, orgIDs) {
			t.Errorf("account.unlock security events in %v, want %v", got, orgIDs)
		}

		// The success cleared the count: nine more failures do not lock.
		for range accounts.LockAfter - 1 {
			c.t = c.t.Add(time.Minute)
			s.SignIn(ctx, memberEmail, "not the password", "203.0.113.9", "test")
		}
		c.t = c.t.Add(time.Minute)
		if _, _, err := s.SignIn(ctx, memberEmail, memberPassword, "203.0.113.9", "test"); err != nil {
			t.Errorf("nine failures after a success locked the account: %v", err)
		}
	})
}

// Not parallel: it reads the operator log through slog's default logger,
// which the tests running beside it would write to as well.
func TestAUTH12_LockoutRaisesAlertForOrgAdmins(t *testing.T) {
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		logs.Reset()
		s, c, _ := setup(t, d)
		accountID, orgIDs := member(t, s.DB)
		lockMember(t, s, c)
		for _, org := range orgIDs {
			list, err := alerts.List(ctx, s.DB, org)
			if err != nil || len(list) != 1 || list[0].Kind != alerts.AccountLocked || list[0].Subject != accountID {
				t.Errorf("alerts of organization %s: %+v, %v", org, list, err)
			}
		}
		if got := securityEvents(t, s.DB, "alert.raised"); !slices.Equal(got, orgIDs) {
			t.Errorf("alert.raised security events in %v, want %v", got, orgIDs)
		}
		// More failures on the locked account raise nothing new.
		c.t = c.t.Add(time.Minute)
		s.SignIn(ctx, memberEmail, "not the password", "198.51.100.1", "test")
		if list, _ := alerts.List(ctx, s.DB, orgIDs[0]); len(list) != 1 {
			t.Errorf("%d alerts after a further failure, want 1", len(list))
		}
		out := logs.String()
		if strings.Count(out, `"msg":"security alert"`) != len(orgIDs) || !strings.Contains(out, accountID) {
			t.Errorf("operator log lacks the alerts:\n%s", out)
		}
		for _, secret := range []string{memberEmail, memberPassword, "not the password"} {
			if strings.Contains(out, secret) {
				t.Errorf("operator log holds %q", secret)
			}
		}
	})
}

func TestAUTH12_AddressOverItsLimitRaisesOneOperatorAlertAndEveryRefusalIsRecorded(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s, _, _ := setup(t, d)
		const tries = ratelimit.AddressPerMinute + 5
		var limited int
		for i := range tries {
			_, _, err := s.SignIn(ctx, fmt.Sprintf("someone%d@x.example", i), "guess", "192.0.2.66", "stuffer")
			switch {
			case errs.Is(err, errs.RateLimited):
				limited++
				if ratelimit.RetryAfter(err) <= 0 || errs.SafeMessage(err) != ratelimit.Message {
					t.Errorf("refusal %v carries no wait or a wrong message", err)
				}
			case !errors.Is(err, accounts.ErrBadCredentials):
				t.Fatalf("attempt %d: %v", i+1, err)
			}
		}
		if limited != tries-ratelimit.AddressPerMinute {
			t.Errorf("%d attempts refused, want %d", limited, tries-ratelimit.AddressPerMinute)
		}
		list, err := alerts.ListOperator(ctx, s.DB)
		if err != nil || len(list) != 1 || list[0].Kind != alerts.AddressLimited || list[0].Subject != "192.0.2.66" {
			t.Errorf("operator alerts: %+v, %v", list, err)
		}
		var denied, all int
		s.DB.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'denied'`).Scan(&denied)
		s.DB.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'auth.login'`).Scan(&all)
		if denied != limited || all != tries {
			t.Errorf("%d of %d attempts recorded, %d as denied; want all, %d denied", all, tries, denied, limited)
		}
	})
}

// The hourly limit of an address holds even when no minute is over the
// minute's limit: after a burst of AddressPerHour attempts, one more passes
// every hour/AddressPerHour.
func TestAUTH05_AddressHourlyLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c, _ := setup(t, sqldb.SQLite)
	lim := &ratelimit.Limiter{DB: s.DB, Now: s.now}
	start := c.t
	passed := 0
	var refusal *ratelimit.Exceeded
	// A full minute's worth of attempts each minute, checked without
	// spending a password check on each.
	for minute := 0; refusal == nil && minute < 10; minute++ {
		for i := 0; i < ratelimit.AddressPerMinute; i++ {
			err := lim.Check(ctx, signInRules(fmt.Sprintf("p%d-%d@x.example", minute, i), "192.0.2.80")...)
			if err != nil {
				if !errors.As(err, &refusal) {
					t.Fatal(err)
				}
				break
			}
			passed++
		}
		c.t = c.t.Add(time.Minute)
	}
	elapsed := c.t.Sub(start)
	refill := int(elapsed / (time.Hour / ratelimit.AddressPerHour))
	if refusal == nil || refusal.Rule.Window != time.Hour || passed > ratelimit.AddressPerHour+refill {
		t.Fatalf("%d attempts passed in %s before %v; want the hourly rule to stop them at %d",
			passed, elapsed, refusal, ratelimit.AddressPerHour+refill)
	}
	c.t = c.t.Add(-time.Minute) // back to the minute of the refusal
	_, _, err := s.SignIn(ctx, "late@x.example", "guess", "192.0.2.80", "test")
	if !errs.Is(err, errs.RateLimited) {
		t.Errorf("sign-in after the hourly limit: %v, want RateLimited", err)
	}
	if _, _, err := s.SignIn(ctx, "late@x.example", "guess", "192.0.2.81", "test"); !errors.Is(err, accounts.ErrBadCredentials) {
		t.Errorf("another address is limited too: %v", err)
	}
}

// Two Stores on two connection pools to one database stand for two server
// nodes: the limits and the lockout count what both see.
func TestAUTH05_RateLimitSharedAcrossTwoNodes(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		url := sqldbtest.URL(t, d)
		c := &clock{t: time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)}
		var nodes [2]*testStore
		for i := range nodes {
			db, err := sqldb.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if _, err := db.Migrate(ctx, sqldb.Clinical); err != nil {
				t.Fatal(err)
			}
			nodes[i] = &testStore{&Store{Gate: gate.New(gate.Config{Clinical: db}), Limits: DefaultLimits, Now: c.now}, db}
		}
		accountID, _ := member(t, nodes[0].DB)

		// One address, alternating nodes: the 21st attempt is refused.
		for i := range ratelimit.AddressPerMinute + 1 {
			_, _, err := nodes[i%2].SignIn(ctx, fmt.Sprintf("n%d@x.example", i), "guess", "192.0.2.10", "test")
			if want := i < ratelimit.AddressPerMinute; errors.Is(err, accounts.ErrBadCredentials) != want ||
				!want && !errs.Is(err, errs.RateLimited) {
				t.Fatalf("attempt %d on node %d: %v", i+1, i%2, err)
			}
		}
		// One account, from many addresses, alternating nodes: the 11th is
		// refused, with the right password too.
		for i := range ratelimit.AccountPerMinute + 1 {
			pw := "not the password"
			if i == ratelimit.AccountPerMinute {
				pw = memberPassword
			}
			_, _, err := nodes[i%2].SignIn(ctx, memberEmail, pw, fmt.Sprintf("198.51.100.%d", i), "test")
			if want := i < ratelimit.AccountPerMinute; errors.Is(err, accounts.ErrBadCredentials) != want ||
				!want && !errs.Is(err, errs.RateLimited) {
				t.Fatalf("attempt %d on account via node %d: %v", i+1, i%2, err)
			}
		}
		// Those ten failures, half on each node, locked the account for both.
		st, err := accounts.Lockout(ctx, nodes[1].DB, accountID)
		if err != nil || !st.Locked() {
			t.Errorf("after ten failures over two nodes: %+v, %v", st, err)
		}
		c.t = c.t.Add(time.Hour)
		for i, n := range nodes {
			if _, _, err := n.SignIn(ctx, memberEmail, memberPassword, "203.0.113.1", "test"); err != accounts.ErrBadCredentials {
				t.Errorf("node %d signs a locked account in: %v", i, err)
			}
		}
	})
}

// A sign-in that passed the password check while another node locked the
// account fails when it tries to start its session.
func TestAUTH04_LockWinsOverAConcurrentSuccess(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s, _, _ := setup(t, d)
		accountID, _ := member(t, s.DB)
		_, err := s.DB.ExecContext(ctx, `UPDATE accounts SET locked_at = $1 WHERE id = $2`, sqldb.Now(), accountID)
		if err != nil {
			t.Fatal(err)
		}
		// The check ran before the lock: replay what SignIn does after it.
		err = s.DB.InTx(ctx, func(tx *sql.Tx) error { return accounts.ResetFailures(ctx, tx, accountID) })
		if err != accounts.ErrBadCredentials {
			t.Errorf("ResetFailures on an account locked meanwhile: %v", err)
		}
		var n int
		s.DB.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE account_id = $1`, accountID).Scan(&n)
		if n != 0 {
			t.Errorf("%d sessions for a locked account", n)
		}
	})
}

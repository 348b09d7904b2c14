package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }

func TestAUTH05_LimiterAllowsBurstThenRefusesWithRetryAfter(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		c := newClock()
		l := &Limiter{DB: sqldbtest.Open(t, d, sqldb.Clinical), Now: c.now}
		for i := range 5 {
			if ok, _, err := l.Allow(ctx, "b", 5, time.Minute); !ok || err != nil {
				t.Fatalf("attempt %d of 5: %v %v", i+1, ok, err)
			}
		}
		for range 3 { // refusals change nothing
			ok, wait, err := l.Allow(ctx, "b", 5, time.Minute)
			if ok || err != nil || wait != 12*time.Second {
				t.Fatalf("attempt 6: ok=%v wait=%s err=%v, want refused for 12s", ok, wait, err)
			}
		}
		if ok, _, _ := l.Allow(ctx, "other", 5, time.Minute); !ok {
			t.Error("another bucket is limited too")
		}
		if ok, _, _ := l.Allow(ctx, "b", 50, time.Hour); !ok {
			t.Error("the same bucket with another window shares its count")
		}
		c.t = c.t.Add(11 * time.Second)
		if ok, wait, _ := l.Allow(ctx, "b", 5, time.Minute); ok || wait != time.Second {
			t.Errorf("after 11 s: ok=%v wait=%s, want refused for 1s", ok, wait)
		}
		c.t = c.t.Add(time.Second)
		if ok, _, _ := l.Allow(ctx, "b", 5, time.Minute); !ok {
			t.Error("refused after the announced wait")
		}
		if ok, _, _ := l.Allow(ctx, "b", 5, time.Minute); ok {
			t.Error("a second attempt passed right after the first one permitted")
		}
		c.t = c.t.Add(time.Minute)
		for i := range 5 {
			if ok, _, _ := l.Allow(ctx, "b", 5, time.Minute); !ok {
				t.Fatalf("after a quiet minute, attempt %d of a new burst refused", i+1)
			}
		}
	})
}

func TestAUTH05_CheckReportsRefusalAsRateLimitedWithRetryAfter(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	l := &Limiter{DB: sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical), Now: c.now}
	rules := []Rule{{"x", 3, time.Minute}, {"y", 100, time.Hour}}
	for range 3 {
		if err := l.Check(ctx, rules...); err != nil {
			t.Fatal(err)
		}
	}
	err := l.Check(ctx, rules...)
	if !errs.Is(err, errs.RateLimited) || errs.SafeMessage(err) != Message {
		t.Fatalf("Check = %v, want RateLimited %q", err, Message)
	}
	if got := RetryAfter(err); got != 20*time.Second {
		t.Errorf("RetryAfter = %s, want 20s", got)
	}
	if RetryAfter(errs.E(errs.Invalid, "x")) != 0 {
		t.Error("RetryAfter of another error is not 0")
	}
}

// Two pools on one database stand for two server nodes. Many attempts at
// once, spread over both, pass exactly as often as the limit says.
func TestAVL04_LimitHoldsAcrossTwoPoolsUnderConcurrency(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		url := sqldbtest.URL(t, d)
		var nodes [2]*Limiter
		c := newClock()
		for i := range nodes {
			db, err := sqldb.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if _, err := db.Migrate(ctx, sqldb.Clinical); err != nil {
				t.Fatal(err)
			}
			nodes[i] = &Limiter{DB: db, Now: c.now}
		}
		var passed, refused atomic.Int32
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Go(func() {
				ok, _, err := nodes[i%2].Allow(ctx, "shared", 20, time.Minute)
				switch {
				case err != nil:
					t.Error(err)
				case ok:
					passed.Add(1)
				default:
					refused.Add(1)
				}
			})
		}
		wg.Wait()
		if passed.Load() != 20 || refused.Load() != 40 {
			t.Errorf("passed %d, refused %d; want 20 and 40", passed.Load(), refused.Load())
		}
	})
}

func TestOldBucketsAreSwept(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		c := newClock()
		l := &Limiter{DB: sqldbtest.Open(t, d, sqldb.Clinical), Now: c.now}
		l.Allow(ctx, "old", 10, time.Minute)
		c.t = c.t.Add(30 * time.Second)
		for range 10 {
			l.Allow(ctx, "new", 10, time.Minute) // full until 90 s
		}
		c.t = c.t.Add(31 * time.Second)
		if err := l.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		var left []string
		rows, err := l.DB.QueryContext(ctx, `SELECT bucket FROM rate_limits ORDER BY bucket`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var b string
			rows.Scan(&b)
			left = append(left, b)
		}
		if len(left) != 1 || left[0] != "new/1m0s" {
			t.Errorf("after the sweep: %q, want only new/1m0s", left)
		}
	})
}

func TestAddressKeyGroupsAnIPv6NetworkOf64(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":                 "192.0.2.7",
		"::ffff:192.0.2.7":          "192.0.2.7",
		"2001:db8:1:2:aaaa::1":      "2001:db8:1:2::/64",
		"2001:db8:1:2:bbbb::9%eth0": "2001:db8:1:2::/64",
		"local":                     "local",
		"":                          "",
	} {
		if got := AddressKey(in); got != want {
			t.Errorf("AddressKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnusableLimitIsAnError(t *testing.T) {
	l := &Limiter{DB: sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)}
	for _, r := range []Rule{{"b", 0, time.Minute}, {"b", 10, 5 * time.Microsecond}} {
		if _, _, err := l.Allow(context.Background(), r.Bucket, r.Limit, r.Window); err == nil {
			t.Errorf("Allow(%d per %s) accepted", r.Limit, r.Window)
		}
	}
}

// A clock one day fast fills a bucket with times a day ahead; once the
// clock is set right, the bucket counts as full, never as full for a day:
// it refuses for at most one window and then lets attempts through again
// (AUTH-05).
func TestAUTH05_ClockSetBackDoesNotRefuseForADay(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		c := newClock()
		l := &Limiter{DB: sqldbtest.Open(t, d, sqldb.Clinical), Now: c.now}
		right := c.t
		c.t = right.Add(24 * time.Hour)
		for i := range AddressPerMinute {
			if ok, _, err := l.Allow(ctx, "addr:192.0.2.1", AddressPerMinute, time.Minute); !ok || err != nil {
				t.Fatalf("attempt %d with the clock fast: %v, %v", i+1, ok, err)
			}
		}
		c.t = right
		ok, wait, err := l.Allow(ctx, "addr:192.0.2.1", AddressPerMinute, time.Minute)
		if err != nil || ok {
			t.Fatalf("right after the clock was set back: %v, %v; the bucket stays full", ok, err)
		}
		if wait > time.Minute {
			t.Errorf("told to wait %s, want at most the window", wait)
		}
		if full, wait, _ := l.Full(ctx, "addr:192.0.2.1", AddressPerMinute, time.Minute); !full || wait > time.Minute {
			t.Errorf("Full: %v, wait %s; want full for at most the window", full, wait)
		}
		c.t = right.Add(time.Minute + time.Second)
		if ok, _, err := l.Allow(ctx, "addr:192.0.2.1", AddressPerMinute, time.Minute); !ok || err != nil {
			t.Errorf("a window after the clock was set back: %v, %v; want allowed", ok, err)
		}
	})
}

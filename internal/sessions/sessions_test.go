package sessions

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// testStore is a Store with the database its test reads and sets up
// directly.
type testStore struct {
	*Store
	DB *sqldb.DB
}

func setup(t *testing.T, d sqldb.Dialect) (*testStore, *clock, string) {
	t.Helper()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	ctx := context.Background()
	var acc accounts.Account
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		acc, err = accounts.Create(ctx, tx, "s@x.example", "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)}
	return &testStore{&Store{Gate: gate.New(gate.Config{Clinical: db}), Limits: DefaultLimits, Now: c.now}, db}, c, acc.ID
}

func TestAUTH10_IdleSessionExpiresAfterTwentyMinutes(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, c, acc := setup(t, d)
		ctx := context.Background()
		token, _, err := s.Create(ctx, acc, "127.0.0.1", "test")
		if err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(19 * time.Minute)
		if _, err := s.Lookup(ctx, token); err != nil {
			t.Fatalf("active at 19 min: %v", err)
		}
		// Activity at 19 minutes restarts the idle clock.
		c.t = c.t.Add(19 * time.Minute)
		if _, err := s.Lookup(ctx, token); err != nil {
			t.Fatalf("active 19 min after last use: %v", err)
		}
		c.t = c.t.Add(20 * time.Minute)
		if _, err := s.Lookup(ctx, token); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("after 20 idle minutes: %v, want Unauthenticated", err)
		}
	})
}

func TestAUTH10_SessionEndsAtAbsoluteLifetime(t *testing.T) {
	t.Parallel()
	s, c, acc := setup(t, sqldb.SQLite)
	ctx := context.Background()
	token, _, _ := s.Create(ctx, acc, "127.0.0.1", "test")
	for elapsed := time.Duration(0); elapsed < 12*time.Hour-10*time.Minute; elapsed += 10 * time.Minute {
		c.t = c.t.Add(10 * time.Minute)
		if _, err := s.Lookup(ctx, token); err != nil {
			t.Fatalf("busy session refused after %s: %v", elapsed, err)
		}
	}
	c.t = c.t.Add(10 * time.Minute)
	if _, err := s.Lookup(ctx, token); !errs.Is(err, errs.Unauthenticated) {
		t.Errorf("session alive past 12 h: %v", err)
	}
}

func TestAUTH10_SignOutEverywhereRevokesEverySession(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, _, acc := setup(t, d)
		ctx := context.Background()
		t1, _, _ := s.Create(ctx, acc, "10.0.0.1", "laptop")
		t2, _, _ := s.Create(ctx, acc, "10.0.0.2", "phone")
		if t1 == t2 {
			t.Fatal("two sessions share a token")
		}
		if err := s.RevokeAll(ctx, acc); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{t1, t2} {
			if _, err := s.Lookup(ctx, tok); !errs.Is(err, errs.Unauthenticated) {
				t.Errorf("revoked session still valid: %v", err)
			}
		}
	})
}

func TestSessionTokenIsStoredHashed(t *testing.T) {
	t.Parallel()
	s, _, acc := setup(t, sqldb.SQLite)
	ctx := context.Background()
	token, _, _ := s.Create(ctx, acc, "127.0.0.1", "test")
	var n int
	s.DB.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE token_hash = $1 OR id = $1`, token).Scan(&n)
	if n != 0 {
		t.Error("session token stored in clear")
	}
	for _, bad := range []string{"", "x", token[:42], token + "x"} {
		if _, err := s.Lookup(ctx, bad); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("Lookup(%q): %v", bad, err)
		}
	}
}

// A session made while the clock ran a day fast does not live 36 hours
// once the clock is set right: its times lie ahead of the clock, its age
// cannot be told, and it ends (AUTH-10). One used a little ahead, as by a
// node whose clock differs by seconds, lives on.
func TestAUTH10_SessionFromAClockRunningFastEnds(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, c, acc := setup(t, d)
		ctx := context.Background()
		right := c.t
		c.t = right.Add(24 * time.Hour)
		fast, _, err := s.Create(ctx, acc, "127.0.0.1", "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(ctx, fast); err != nil {
			t.Fatalf("with the clock still fast: %v", err)
		}
		c.t = right.Add(30 * time.Second)
		slightly, _, err := s.Create(ctx, acc, "127.0.0.1", "test")
		if err != nil {
			t.Fatal(err)
		}
		c.t = right
		if _, err := s.Lookup(ctx, fast); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("a session made a day ahead, after the clock was set right: %v, want Unauthenticated", err)
		}
		if _, err := s.Lookup(ctx, slightly); err != nil {
			t.Errorf("a session made 30 s ahead: %v, want it alive", err)
		}
	})
}

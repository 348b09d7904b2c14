package sessions_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// site is the whole HTTP surface over a fresh instance with the demo
// organization, with a clock the test moves.
type site struct {
	h      http.Handler
	inst   *instance.Instance
	clock  *clock
	logins map[authz.Role]demo.Login
}

func newSite(t *testing.T, d sqldb.Dialect) *site {
	t.Helper()
	inst, logins := seededInstance(t, d)
	s := &site{inst: inst, clock: &clock{t: time.Now()}, logins: logins}
	store := &sessions.Store{Limits: sessions.DefaultLimits, Now: s.clock.now}
	s.h, _ = server.NewHandler(server.Deps{Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Instance: inst, Sessions: store})
	return s
}

// answer is what a client sees of a response, less what differs between
// any two responses: the date and the request id.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (s *site) login(t *testing.T, email, password, from string) (answer, time.Duration) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req := httptest.NewRequest("POST", "https://custodia.test/api/v1/auth/login", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = from + ":40000"
	rec := httptest.NewRecorder()
	start := time.Now()
	s.h.ServeHTTP(rec, req)
	took := time.Since(start)
	h := rec.Result().Header.Clone()
	h.Del("Date")
	h.Del("X-Request-Id")
	return answer{rec.Code, h, rec.Body.Bytes()}, took
}

func (a answer) String() string {
	return fmt.Sprintf("%d %v %s", a.status, a.header, a.body)
}

func (a answer) same(b answer) bool {
	if a.status != b.status || !bytes.Equal(a.body, b.body) || len(a.header) != len(b.header) {
		return false
	}
	for k, v := range a.header {
		if !slices.Equal(v, b.header[k]) {
			return false
		}
	}
	return true
}

func TestAUTH05_RateLimitPerAddressAndPerAccount(t *testing.T) {
	t.Parallel()
	const limited = `{"error":{"code":"rate_limited","message":"too many attempts; try again later"}}` + "\n"
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s := newSite(t, d)

		// Per source address: different accounts, one address.
		for i := range ratelimit.AddressPerMinute {
			if a, _ := s.login(t, fmt.Sprintf("guess%d@demo.example", i), "password1", "192.0.2.50"); a.status != 401 {
				t.Fatalf("attempt %d from one address: %s", i+1, a)
			}
		}
		a, _ := s.login(t, "guess-last@demo.example", "password1", "192.0.2.50")
		if a.status != http.StatusTooManyRequests || string(a.body) != limited || a.header.Get("Retry-After") != "3" {
			t.Errorf("attempt %d from one address: %s, want 429, Retry-After: 3 and %s",
				ratelimit.AddressPerMinute+1, a, limited)
		}
		if a.header.Get("Set-Cookie") != "" {
			t.Error("a refused attempt set a cookie")
		}
		if a, _ := s.login(t, "guess-last@demo.example", "password1", "192.0.2.51"); a.status != 401 {
			t.Errorf("another address is refused too: %s", a)
		}
		s.clock.t = s.clock.t.Add(3 * time.Second)
		if a, _ := s.login(t, "guess-later@demo.example", "password1", "192.0.2.50"); a.status != 401 {
			t.Errorf("after Retry-After: %s", a)
		}

		// Per account: one account, many addresses; an address without an
		// account is limited the same way, so the 429 tells nothing.
		s.clock.t = s.clock.t.Add(time.Hour)
		known := s.logins[authz.Monitor]
		var last [2]answer
		for k, email := range []string{known.Email, "nobody@demo.example"} {
			for i := range ratelimit.AccountPerMinute {
				if a, _ := s.login(t, email, "password1", fmt.Sprintf("10.%d.%d.2", k, i)); a.status != 401 {
					t.Fatalf("attempt %d on %s: %s", i+1, email, a)
				}
			}
			last[k], _ = s.login(t, email, known.Password, fmt.Sprintf("10.%d.99.2", k))
		}
		if last[0].status != http.StatusTooManyRequests || last[0].header.Get("Retry-After") != "6" || string(last[0].body) != limited {
			t.Errorf("attempt %d on one account: %s, want 429 with Retry-After: 6", ratelimit.AccountPerMinute+1, last[0])
		}
		if !last[0].same(last[1]) {
			t.Errorf("refusals differ for a known and an unknown address:\n%s\n%s", last[0], last[1])
		}
		if !strings.Contains(last[0].header.Get("Content-Type"), "application/json") {
			t.Errorf("429 content type %q", last[0].header.Get("Content-Type"))
		}
	})
}

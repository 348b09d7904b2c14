// Package signintiming holds the test that times failed sign-ins (AUTH-06),
// apart from the other tests of package sessions: those hash passwords at
// argon2id's lowest cost (their TestMain), set once a process, which would
// shrink the difference this test looks for, a password check skipped, to
// less than a busy machine's noise. Here every hash, the dummy hash of
// unknown accounts included, has the production cost, and no other test of
// the process runs beside the timed sign-ins.
package signintiming_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
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
	ctx := context.Background()
	cfg := instance.Config{
		DataDir:          t.TempDir(),
		Database:         sqldbtest.MigratedURL(t, d, sqldb.Clinical),
		IdentityDatabase: sqldbtest.MigratedURL(t, d, sqldb.Identity),
	}
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	logins, err := demo.Seed(ctx, gate.New(gate.Config{Clinical: inst.Clinical}))
	if err != nil {
		t.Fatal(err)
	}
	s := &site{inst: inst, clock: &clock{t: time.Now()}, logins: map[authz.Role]demo.Login{}}
	for _, l := range logins {
		s.logins[l.Role] = l
	}
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

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func TestAUTH06_LockedUnknownAndWrongPasswordAnswerIdentically(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		s := newSite(t, d)
		locked, wrong := s.logins[authz.OrgAdmin], s.logins[authz.DataManager]
		for i := range accounts.LockAfter {
			s.clock.t = s.clock.t.Add(time.Minute)
			if a, _ := s.login(t, locked.Email, "not the password", fmt.Sprintf("10.9.0.%d", i)); a.status != 401 {
				t.Fatalf("failure %d: %s", i+1, a)
			}
		}
		wrongID, err := accounts.KnownID(ctx, s.inst.Clinical, wrong.Email)
		if err != nil {
			t.Fatal(err)
		}

		const rounds = 15
		var took [3][]time.Duration
		for r := range rounds {
			// A minute apart and from fresh addresses, so that no rate
			// limit answers instead of the password check.
			s.clock.t = s.clock.t.Add(time.Minute)
			var got [3]answer
			for k, try := range []struct{ email, password string }{
				{locked.Email, locked.Password},          // locked, with its right password
				{"nobody@demo.example", "some password"}, // no such account
				{wrong.Email, "not the password"},        // wrong password
			} {
				a, dt := s.login(t, try.email, try.password, fmt.Sprintf("10.%d.%d.1", k+1, r))
				got[k], took[k] = a, append(took[k], dt)
			}
			if got[0].status != 401 || !got[0].same(got[1]) || !got[1].same(got[2]) {
				t.Fatalf("answers differ:\nlocked:  %s\nunknown: %s\nwrong:   %s", got[0], got[1], got[2])
			}
			if got[0].header.Get("Set-Cookie") != "" || got[0].header.Get("Retry-After") != "" {
				t.Errorf("failed sign-in answer: %s", got[0])
			}
			// Keep the wrong-password account from locking itself.
			if err := s.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error { return accounts.ResetFailures(ctx, tx, wrongID) }); err != nil {
				t.Fatal(err)
			}
		}
		// Timing: each kind of failure runs the same password check. Only a
		// gross difference (a skipped check) is caught; the factor is loose
		// so that a busy machine does not fail the test.
		m := []time.Duration{median(took[0]), median(took[1]), median(took[2])}
		if slices.Max(m) > 3*slices.Min(m) {
			t.Errorf("median times differ by more than 3x: locked %s, unknown %s, wrong password %s", m[0], m[1], m[2])
		}
		t.Logf("median times: locked %s, unknown %s, wrong password %s", m[0], m[1], m[2])
	})
}

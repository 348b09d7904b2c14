package sessions

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// An account holds at most SessionsPerAccount live sessions (ASVS
// V7.1.2): the sign-in that would make one more ends the oldest, recorded
// as auth.session.limit, a security event, in each organization of the
// account; the other sessions live on. Sessions that ended by themselves
// do not count.
func TestAUTH10_SignInBeyondTheSessionLimitEndsTheOldestSession(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, c, _ := setup(t, d)
		ctx := context.Background()
		accountID, orgIDs := member(t, s.DB)
		signIn := func(i int) (string, Session) {
			t.Helper()
			c.t = c.t.Add(time.Minute) // a minute apart: no rate limit interferes
			tok, sess, err := s.SignIn(ctx, memberEmail, memberPassword, fmt.Sprintf("198.51.100.%d", i), "test")
			if err != nil {
				t.Fatalf("sign-in %d: %v", i, err)
			}
			return tok, sess
		}
		// One session that idles out, then SessionsPerAccount live ones.
		expired, _ := signIn(0)
		c.t = c.t.Add(DefaultLimits.Idle)
		var toks []string
		var first Session
		for i := range SessionsPerAccount {
			tok, sess := signIn(i + 1)
			if i == 0 {
				first = sess
			}
			toks = append(toks, tok)
			for _, tok := range toks { // keep them all in use
				if _, err := s.Lookup(ctx, tok); err != nil {
					t.Fatalf("session %d ended before the limit: %v", i, err)
				}
			}
		}
		var n int
		s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events WHERE action = 'auth.session.limit'`).Scan(&n)
		if n != 0 {
			t.Fatalf("%d sessions ended by the limit before it was reached (the idle one counts as none)", n)
		}
		if _, err := s.Lookup(ctx, expired); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("idle session: %v", err)
		}

		newest, _ := signIn(99)
		if _, err := s.Lookup(ctx, toks[0]); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("the oldest session beyond the limit: %v, want it ended", err)
		}
		for i, tok := range append(toks[1:], newest) {
			if _, err := s.Lookup(ctx, tok); err != nil {
				t.Errorf("session %d after the limit: %v", i+1, err)
			}
		}
		rows, err := s.DB.QueryContext(ctx,
			`SELECT org_id, actor_account, object_id, security FROM audit_events WHERE action = 'auth.session.limit' ORDER BY org_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var org, actor, object string
			var security bool
			if err := rows.Scan(&org, &actor, &object, &security); err != nil {
				t.Fatal(err)
			}
			if actor != accountID || object != first.ID || !security {
				t.Errorf("auth.session.limit event: actor %s, object %s, security %v; want %s, %s, true", actor, object, security, accountID, first.ID)
			}
			got = append(got, org)
		}
		if fmt.Sprint(got) != fmt.Sprint(orgIDs) {
			t.Errorf("auth.session.limit recorded in %v, want each organization %v", got, orgIDs)
		}
	})
}

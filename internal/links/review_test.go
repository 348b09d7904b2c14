package links

import (
	"context"
	"testing"

	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestAUTH07_ResetStartsNoSessionAndKeepsTheSecondFactors proves ASVS
// V6.4.3 (a reset does not bypass multi-factor authentication): a member
// with an authenticator app, a passkey and recovery codes who resets a
// forgotten password through the e-mailed link gets no session from it
// (the reset ends the sessions there were and opens none), keeps every
// factor and code, and signing in with the new password still stops at
// the second step: a challenge for a second factor, not a session.
func TestAUTH07_ResetStartsNoSessionAndKeepsTheSecondFactors(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		acc := lostFactors(t, f, "mfa@clinic.example") // two factors, a code, a session
		if n, c, s := factorsLeft(t, f, acc.ID); n != 2 || c != 1 || s != 1 {
			t.Fatalf("before the reset: %d factors, %d codes, %d sessions", n, c, s)
		}
		if err := f.svc.RequestReset(ctx, "mfa@clinic.example", gate.Actor{RemoteAddr: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
		msgs := f.mails(t, "mfa@clinic.example")
		if len(msgs) != 1 {
			t.Fatalf("%d reset mails, want 1", len(msgs))
		}
		m := linkPattern.FindStringSubmatch(msgs[0])
		if m == nil || m[1] != "reset" {
			t.Fatalf("no reset link in:\n%s", msgs[0])
		}
		const newPassword = "a freshly chosen passphrase"
		if err := f.svc.ConfirmReset(ctx, m[2], newPassword, gate.Actor{RemoteAddr: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
		var all int
		f.db.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE account_id = $1`, acc.ID).Scan(&all)
		if n, c, s := factorsLeft(t, f, acc.ID); n != 2 || c != 1 || s != 0 || all != 1 {
			t.Fatalf("after the reset: %d factors, %d codes, %d live sessions of %d; want the factors and code kept, the old session ended and none opened", n, c, s, all)
		}
		if has, err := mfa.HasFactor(ctx, f.db, acc.ID); err != nil || !has {
			t.Fatalf("HasFactor after the reset: %v, %v", has, err)
		}

		st, err := f.sess.SignInStep(ctx, "mfa@clinic.example", newPassword, "192.0.2.1", "test")
		if err != nil {
			t.Fatalf("sign in with the new password: %v", err)
		}
		if st.Token != "" || st.Challenge.Token == "" || st.Challenge.Purpose != mfa.PurposeSecondFactor {
			t.Fatalf("sign-in with the new password: session %v, challenge %q for %q; want only a second-factor challenge (ASVS V6.4.3)", st.Token != "", st.Challenge.Token, st.Challenge.Purpose)
		}
		if _, _, err := f.sess.SignIn(ctx, "mfa@clinic.example", newPassword, "192.0.2.1", "test"); err != sessions.ErrSecondStepRequired {
			t.Fatalf("SignIn with the new password: %v, want ErrSecondStepRequired", err)
		}
		if _, _, s := factorsLeft(t, f, acc.ID); s != 0 {
			t.Fatalf("%d live sessions after signing in with the new password alone", s)
		}
	})
}

package mfa_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// An account whose only factor is a passkey makes new recovery codes after
// a recent confirmation of its session (ACL-09), with no code to give, and
// not without one; the old codes stop working, and the renewal is a
// security event naming its proof. An account without a factor gets none:
// recovery codes stand in for a factor.
func TestAUTH08_RecoveryCodesRenewedAfterAStepUp(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		fresh := f.actor
		fresh.ConfirmedAt = f.clock.now()
		if _, err := f.svc.RenewRecoveryCodes(ctx, fresh, ""); !errs.Is(err, errs.Conflict) {
			t.Fatalf("recovery codes without a factor: %v, want Conflict", err)
		}
		if left, _ := mfa.RecoveryCodesLeft(ctx, f.db, f.account.ID); left != 0 {
			t.Fatalf("%d recovery codes without a factor", left)
		}

		_, _, old := f.register(t, f.actor, "Phone")
		f.clock.add(time.Minute)
		for name, confirmedAt := range map[string]time.Time{
			"never":                   {},
			"older than the window":   f.clock.now().Add(-gate.StepUpWindow - time.Second),
			"from beyond clock skew":  f.clock.now().Add(2 * time.Minute),
			"at the sign-in long ago": f.clock.now().Add(-time.Hour),
		} {
			a := f.actor
			a.ConfirmedAt = confirmedAt
			if _, err := f.svc.RenewRecoveryCodes(ctx, a, ""); !errors.Is(err, gate.ErrStepUpRequired) {
				t.Errorf("confirmation %s: %v, want ErrStepUpRequired", name, err)
			}
		}
		if left, _ := mfa.RecoveryCodesLeft(ctx, f.db, f.account.ID); left != mfa.RecoveryCodes {
			t.Fatalf("%d recovery codes left after refused renewals, want %d", left, mfa.RecoveryCodes)
		}

		fresh.ConfirmedAt = f.clock.now().Add(-gate.StepUpWindow + time.Second)
		codes, err := f.svc.RenewRecoveryCodes(ctx, fresh, "")
		if err != nil {
			t.Fatalf("renew after a recent confirmation: %v", err)
		}
		if len(codes) != mfa.RecoveryCodes || slices.ContainsFunc(codes, func(c string) bool { return slices.Contains(old, c) }) {
			t.Fatalf("renewed codes %v (old %v)", codes, old)
		}
		if _, err := f.verify(old[0]); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("an old recovery code after the renewal: %v, want ErrWrongCode", err)
		}
		if m, err := f.verify(codes[0]); err != nil || m != mfa.MethodRecovery {
			t.Errorf("a renewed recovery code: %v, %v", m, err)
		}

		// A code given with a recent confirmation is still checked: a
		// wrong one is refused and counts towards the lockout.
		if _, err := f.svc.RenewRecoveryCodes(ctx, fresh, "ZZZZZ-ZZZZZ"); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("renew with a wrong code: %v, want ErrWrongCode", err)
		}
		if st, _ := accounts.Lockout(ctx, f.db, f.account.ID); st.Failures != 1 {
			t.Errorf("failures after a wrong code: %d, want 1", st.Failures)
		}

		n := f.count(t, `SELECT COUNT(*) FROM audit_events
			WHERE action = 'mfa.recovery.regenerate' AND outcome = 'success' AND security = $1 AND org_id = $2 AND body LIKE $3`,
			true, f.orgID, `%"proof":"step_up"%`)
		if n != 1 {
			t.Errorf("%d renewal security events with proof step_up, want 1", n)
		}
	})
}

// A recovery code of the former kind (10 symbols, 50 bits, a fast hash)
// stored before no longer opens the account (ASVS V6.5.2), is not counted
// as a code left, and the account is told to make new ones; new codes are.
func TestAUTH08_FormerShortRecoveryCodesNoLongerWork(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		secret, _ := f.enrol(t)
		const former = "ABCDEFGHJK"
		h := sha256.Sum256([]byte("custodia.recovery-code.v1\x00" + f.account.ID + "\x00" + former))
		// As a row of the former kind looks after migration 0024.
		if _, err := f.db.ExecContext(ctx, `INSERT INTO recovery_codes (id, account_id, code_hash, created_at, strong) VALUES ($1, $2, $3, 1, FALSE)`,
			"dddddddddddddddddddddddddd", f.account.ID, hex.EncodeToString(h[:])); err != nil {
			t.Fatal(err)
		}
		if _, err := f.verify("abcde-fghjk"); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("a code of the former kind: %v, want it refused", err)
		}
		m, err := mfa.SummaryOf(ctx, f.db, f.account.ID)
		if err != nil || !m.OldRecoveryCodes || m.RecoveryCodesLeft != mfa.RecoveryCodes {
			t.Fatalf("summary with a former code: %+v, %v", m, err)
		}
		f.clock.add(mfa.Period) // the enrolment spent this step's code
		if _, err := f.svc.RenewRecoveryCodes(ctx, f.actor, f.code(secret)); err != nil {
			t.Fatal(err)
		}
		if m, err := mfa.SummaryOf(ctx, f.db, f.account.ID); err != nil || m.OldRecoveryCodes || m.RecoveryCodesLeft != mfa.RecoveryCodes {
			t.Fatalf("summary after new codes: %+v, %v", m, err)
		}
	})
}

package mfa_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const phone = "+31612345678"

// withSMS gives the fixture's service a recorder for texts and enrols the
// account's phone number.
func (f *fixture) withSMS(t *testing.T) *sms.Recorder {
	t.Helper()
	ctx := context.Background()
	texts := &sms.Recorder{}
	f.svc.SMS = texts
	masked, err := f.svc.BeginSMS(ctx, f.actor, "+31 (6) 1234-5678")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(masked, "12345") || !strings.HasSuffix(masked, "78") {
		t.Errorf("masked number %q", masked)
	}
	codes, err := f.svc.ConfirmSMS(ctx, f.actor, lastCode(t, texts))
	if err != nil || len(codes) != mfa.RecoveryCodes {
		t.Fatalf("confirm: %d codes, %v", len(codes), err)
	}
	return texts
}

func lastCode(t *testing.T, texts *sms.Recorder) string {
	t.Helper()
	m, ok := texts.Last(phone)
	if !ok {
		t.Fatal("no text sent")
	}
	for _, w := range strings.Fields(m.Text) {
		w = strings.TrimSuffix(w, ".")
		if len(w) == 6 && strings.Trim(w, "0123456789") == "" {
			return w
		}
	}
	t.Fatalf("no code in %q", m.Text)
	return ""
}

func otherCode(c string) string {
	if c == "999999" {
		return "999998"
	}
	return "999999"
}

func TestAUTH08_TextedCodeIsSingleUse(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newFixture(t, d)
		texts := f.withSMS(t)
		ctx := context.Background()
		if _, err := f.svc.SendSignInCode(ctx, f.actor, testChallenge); err != nil {
			t.Fatal(err)
		}
		code := lastCode(t, texts)
		if m, err := f.verify(code); err != nil || m != mfa.MethodSMS {
			t.Fatalf("first use: %v, %v", m, err)
		}
		if _, err := f.verify(code); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("reused code: %v, want ErrWrongCode", err)
		}
		// A newer text replaces an older unused one.
		f.svc.SendSignInCode(ctx, f.actor, testChallenge)
		older := lastCode(t, texts)
		f.svc.SendSignInCode(ctx, f.actor, testChallenge)
		newer := lastCode(t, texts)
		if older != newer {
			if _, err := f.verify(older); !errors.Is(err, mfa.ErrWrongCode) {
				t.Errorf("superseded code: %v, want ErrWrongCode", err)
			}
		}
	})
}

func TestAUTH08_TextedCodeExpiresAndDiesAfterFiveWrongTries(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newFixture(t, d)
		texts := f.withSMS(t)
		ctx := context.Background()
		f.svc.SendSignInCode(ctx, f.actor, testChallenge)
		code := lastCode(t, texts)
		for range mfa.SMSCodeTries {
			if _, err := f.verify(otherCode(code)); !errors.Is(err, mfa.ErrWrongCode) {
				t.Fatalf("wrong code: %v", err)
			}
		}
		if _, err := f.verify(code); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("right code after %d wrong tries: %v, want ErrWrongCode", mfa.SMSCodeTries, err)
		}
		f.clock.add(mfa.SMSSendWindow) // room for more texts
		f.svc.SendSignInCode(ctx, f.actor, testChallenge)
		code = lastCode(t, texts)
		f.clock.add(mfa.SMSCodeTTL)
		if _, err := f.verify(code); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("code after five minutes: %v, want ErrWrongCode", err)
		}
	})
}

func TestAUTH08_TextsAreLimitedPerAccount(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newFixture(t, d)
		texts := f.withSMS(t) // one text already
		ctx := context.Background()
		for i := 1; i < mfa.SMSSendsPerWindow; i++ {
			if _, err := f.svc.SendSignInCode(ctx, f.actor, testChallenge); err != nil {
				t.Fatalf("text %d: %v", i+1, err)
			}
		}
		if _, err := f.svc.SendSignInCode(ctx, f.actor, testChallenge); !errs.Is(err, errs.RateLimited) {
			t.Errorf("text past the limit: %v, want RateLimited", err)
		}
		if n := texts.Count(phone); n != mfa.SMSSendsPerWindow {
			t.Errorf("%d texts sent, want %d", n, mfa.SMSSendsPerWindow)
		}
	})
}

func TestAUTH08_PhoneNumberAndCodesAreStoredOnlyWrapped(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newFixture(t, d)
		texts := f.withSMS(t)
		ctx := context.Background()
		f.svc.SendSignInCode(ctx, f.actor, testChallenge)
		code := lastCode(t, texts)
		var factor, wrappedCode []byte
		if err := f.db.QueryRowContext(ctx, `SELECT wrapped FROM account_factors WHERE kind = 'sms'`).Scan(&factor); err != nil {
			t.Fatal(err)
		}
		if err := f.db.QueryRowContext(ctx, `SELECT wrapped FROM sms_codes WHERE used_at IS NULL`).Scan(&wrappedCode); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(factor, []byte("12345678")) || bytes.Contains(wrappedCode, []byte(code)) {
			t.Error("phone number or code stored in clear")
		}
		// A code wrapped for another row does not unwrap: copy the factor's
		// wrapped phone into the code's row, and the right code fails.
		if _, err := f.db.ExecContext(ctx, `UPDATE sms_codes SET wrapped = $1 WHERE used_at IS NULL`, factor); err != nil {
			t.Fatal(err)
		}
		if _, err := f.verify(code); err == nil {
			t.Error("a code whose wrapped value was swapped was accepted")
		}
		// No code or number on the audit trail.
		rows, err := f.db.QueryContext(ctx, `SELECT body FROM audit_events`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var b string
			rows.Scan(&b)
			if strings.Contains(b, code) || strings.Contains(b, "12345678") {
				t.Errorf("audit event holds a code or the number: %s", b)
			}
		}
	})
}

// failingSender fails with the message in its error, as a careless gateway
// client might.
type failingSender struct{}

func (failingSender) Send(_ context.Context, m sms.Message) error {
	return errors.New("gateway said no to: " + m.Text)
}

func TestAUTH08_OneFactorAtATimeAndSenderFailureLeaksNoCode(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newFixture(t, d)
		f.withSMS(t)
		ctx := context.Background()
		if _, err := f.svc.Begin(ctx, f.actor); !errs.Is(err, errs.Conflict) {
			t.Errorf("TOTP while an SMS factor is active: %v, want Conflict", err)
		}
		if _, err := f.svc.BeginSMS(ctx, f.actor, "+4915112345678"); !errs.Is(err, errs.Conflict) {
			t.Errorf("second phone number: %v, want Conflict", err)
		}
		f.svc.SMS = failingSender{}
		_, err := f.svc.SendSignInCode(ctx, f.actor, testChallenge)
		if !errs.Is(err, errs.Unavailable) || strings.Contains(err.Error(), "code is") {
			t.Errorf("failed send: %v", err)
		}
		if err := f.svc.RemoveSMS(ctx, f.actor, "", "wrong password"); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("remove with a wrong password: %v", err)
		}
		if err := f.svc.RemoveSMS(ctx, f.actor, "", password); err != nil {
			t.Fatalf("remove: %v", err)
		}
		if has, _ := mfa.HasFactor(ctx, f.db, f.account.ID); has {
			t.Error("factor left after removal")
		}
		if _, err := f.svc.BeginSMS(ctx, f.actor, "12345"); !errs.Is(err, errs.Invalid) {
			t.Errorf("malformed number: %v, want Invalid", err)
		}
	})
}

// TestCRY07_RotationRewrapsPhoneNumbers: after a rotation of the
// key-encryption key, the phone number of a text-message factor is
// re-wrapped under the new version, bound to its own place as before, and
// the factor still texts its codes.
func TestCRY07_RotationRewrapsPhoneNumbers(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newFixture(t, d)
		texts := f.withSMS(t)
		ctx := context.Background()
		local := f.kek.(*keys.LocalKEK)
		next, err := local.RotateKEK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		secrets := mfa.Secrets(nodeGate(f.db, f.kek))
		b, err := secrets.Rewrap(ctx, local, "", 100)
		if err != nil || b.Rewrapped != 1 || b.Failed != 0 {
			t.Fatalf("rewrap: %+v, %v; want the phone number re-wrapped", b, err)
		}
		var kekID string
		if err := f.db.QueryRowContext(ctx, `SELECT kek_id FROM account_factors WHERE kind = 'sms'`).Scan(&kekID); err != nil || kekID != next {
			t.Fatalf("phone number wrapped by %q (%v), want %q", kekID, err, next)
		}
		before := texts.Count(phone)
		if _, err := f.svc.SendSignInCode(ctx, f.actor, testChallenge); err != nil || texts.Count(phone) != before+1 {
			t.Errorf("texting after the rotation: %v", err)
		}
	})
}

// A texted code belongs to the sign-in challenge it was sent for (ASVS
// V6.6.2): it completes that challenge, not another sign-in of the same
// account begun meanwhile, and it confirms no session (a step-up), where
// whoever holds the session but not the phone would otherwise replay a code
// read over the person's shoulder.
func TestAUTH08_TextedCodeBelongsToItsChallenge(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newFixture(t, d)
		texts := f.withSMS(t)
		ctx := context.Background()
		if _, err := f.svc.SendSignInCode(ctx, f.actor, testChallenge); err != nil {
			t.Fatal(err)
		}
		code := lastCode(t, texts)
		if err := f.svc.Verify(ctx, f.actor, "another-challenge", code, nil); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("the code for another challenge: %v, want ErrWrongCode", err)
		}
		if err := f.svc.Prove(ctx, f.actor, "auth.confirm", code, "", nil); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("the sign-in code as a confirmation: %v, want ErrWrongCode", err)
		}
		if m, err := f.verify(code); err != nil || m != mfa.MethodSMS {
			t.Errorf("the code for its own challenge: %v, %v", m, err)
		}
	})
}

package mfa_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/mfa/passkeytest"
	"github.com/custodia/custodia/internal/mfa/relyingparty"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const origin = "https://custodia.example:8443"

// newPasskeyFixture is newFixture with a relying party for origin.
func newPasskeyFixture(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	f := newFixture(t, d)
	rp, err := relyingparty.New(origin)
	if err != nil {
		t.Fatal(err)
	}
	f.svc.Passkeys = rp
	return f
}

// register registers a new software authenticator's passkey for the actor
// and returns it with the recovery codes the registration gave.
func (f *fixture) register(t *testing.T, a gate.Actor, name string) (*passkeytest.Authenticator, mfa.Passkey, []string) {
	t.Helper()
	ctx := context.Background()
	options, err := f.svc.BeginPasskey(ctx, a)
	if err != nil {
		t.Fatalf("begin registration: %v", err)
	}
	key := passkeytest.New(origin)
	resp, err := key.Create(options)
	if err != nil {
		t.Fatal(err)
	}
	pk, codes, err := f.svc.ConfirmPasskey(ctx, a, name, resp)
	if err != nil {
		t.Fatalf("confirm registration: %v", err)
	}
	return key, pk, codes
}

// challenge issues a sign-in challenge for the fixture's account.
func (f *fixture) challenge(t *testing.T) mfa.Challenge {
	t.Helper()
	ctx := context.Background()
	var c mfa.Challenge
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		c, err = mfa.IssueChallenge(ctx, tx, f.account.ID, mfa.PurposeSecondFactor, f.actor.RemoteAddr, f.clock.now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assert runs the passkey answer to challenge c with key: options, the
// authenticator's assertion, and the assertion itself for replaying.
func (f *fixture) assert(t *testing.T, key *passkeytest.Authenticator, c mfa.Challenge) []byte {
	t.Helper()
	options, err := f.svc.BeginPasskeySignIn(context.Background(), f.signInActor(), c.ID)
	if err != nil {
		t.Fatalf("sign-in options: %v", err)
	}
	resp, err := key.Get(options)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// signInActor is the requester of a second sign-in step: no session yet.
func (f *fixture) signInActor() gate.Actor {
	return gate.Actor{AccountID: f.account.ID, RemoteAddr: f.actor.RemoteAddr, UserAgent: "test"}
}

func (f *fixture) verifyPasskey(c mfa.Challenge, resp []byte) (mfa.Method, error) {
	var m mfa.Method
	err := f.svc.VerifyPasskey(context.Background(), f.signInActor(), c.ID, resp, func(_ sqldb.Tx, got mfa.Method, _ *audit.Event) error {
		m = got
		return nil
	})
	return m, err
}

func (f *fixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAUTH08_PasskeyRegisteredAndAnswersSignIn(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		if need, _ := mfa.RequirementOf(ctx, f.db, f.account.ID); need != mfa.NoSecondFactor {
			t.Fatalf("requirement before any factor: %v", need)
		}
		key, pk, codes := f.register(t, f.actor, "  Work laptop  ")
		if pk.Name != "Work laptop" || len(pk.CredentialID) != 32 || len(pk.PublicKey) == 0 || !pk.UserVerified {
			t.Errorf("stored passkey: %+v", pk)
		}
		if pk.AAGUIDString() != "c0570d1a-c057-0d1a-c057-0d1a00000001" {
			t.Errorf("AAGUID %q", pk.AAGUIDString())
		}
		if len(codes) != mfa.RecoveryCodes {
			t.Errorf("first factor: %d recovery codes, want %d", len(codes), mfa.RecoveryCodes)
		}
		list, err := f.svc.ListPasskeys(ctx, f.actor)
		if err != nil || len(list) != 1 || list[0].ID != pk.ID || !slices.Equal(list[0].Transports, []string{"internal"}) {
			t.Fatalf("list: %+v, %v", list, err)
		}
		// A passkey is a second factor: sign-in asks for it, and says so.
		if need, _ := mfa.RequirementOf(ctx, f.db, f.account.ID); need != mfa.SecondFactor {
			t.Fatalf("requirement with a passkey: %v, want SecondFactor", need)
		}
		c := f.challenge(t)
		if !slices.Contains(c.Methods, mfa.MethodWebAuthn) || !slices.Contains(c.Methods, mfa.MethodRecovery) || slices.Contains(c.Methods, mfa.MethodTOTP) {
			t.Errorf("methods of a passkey account: %v", c.Methods)
		}

		resp := f.assert(t, key, c)
		if m, err := f.verifyPasskey(c, resp); err != nil || m != mfa.MethodWebAuthn {
			t.Fatalf("sign-in with the passkey: %v, %v", m, err)
		}
		list, _ = f.svc.ListPasskeys(ctx, f.actor)
		if list[0].SignCount != 1 || !list[0].LastUsedAt.Equal(f.clock.now()) {
			t.Errorf("after use: count %d, last used %v", list[0].SignCount, list[0].LastUsedAt)
		}
		// The answer is spent: posted again, for this challenge or a fresh
		// ceremony of it, it is refused.
		if _, err := f.verifyPasskey(c, resp); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("replayed assertion: %v, want ErrWrongCode", err)
		}
		if _, err := f.svc.BeginPasskeySignIn(ctx, f.signInActor(), c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.verifyPasskey(c, resp); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("assertion replayed against a new ceremony: %v, want ErrWrongCode", err)
		}

		// Registration is a security event in the account's organization,
		// naming neither the passkey's name nor its key.
		var body string
		err = f.db.QueryRowContext(ctx,
			`SELECT body FROM audit_events WHERE action = 'mfa.webauthn.register' AND outcome = 'success' AND security = $1 AND org_id = $2`,
			true, f.orgID).Scan(&body)
		if err != nil {
			t.Fatalf("registration event: %v", err)
		}
		if strings.Contains(body, "Work laptop") || !strings.Contains(body, pk.ID) {
			t.Errorf("registration event body: %s", body)
		}
	})
}

func TestAUTH08_PasskeyCeremonyIsBoundSingleUseAndShortLived(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		stored := func() int {
			return f.count(t, `SELECT COUNT(*) FROM webauthn_credentials WHERE account_id = $1`, f.account.ID)
		}

		// Another session of the same account cannot finish this session's
		// registration.
		options, err := f.svc.BeginPasskey(ctx, f.actor)
		if err != nil {
			t.Fatal(err)
		}
		key := passkeytest.New(origin)
		resp, err := key.Create(options)
		if err != nil {
			t.Fatal(err)
		}
		other := f.actor
		other.SessionID = "session-2"
		if _, _, err := f.svc.ConfirmPasskey(ctx, other, "x", resp); !errs.Is(err, errs.NotFound) {
			t.Errorf("confirm from another session: %v, want NotFound", err)
		}

		// An answer made for another site (a phishing copy of the page) does
		// not verify.
		phished := passkeytest.New("https://custodia.example.evil.test")
		bad, err := phished.Create(options)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.ConfirmPasskey(ctx, f.actor, "x", bad); !errs.Is(err, errs.Invalid) {
			t.Errorf("answer for another origin: %v, want Invalid", err)
		}
		// Nor one without user verification.
		lazy := passkeytest.New(origin)
		lazy.NoUserVerification = true
		if bad, err = lazy.Create(options); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.ConfirmPasskey(ctx, f.actor, "x", bad); !errs.Is(err, errs.Invalid) {
			t.Errorf("answer without user verification: %v, want Invalid", err)
		}
		// A name too long is refused before anything else.
		if _, _, err := f.svc.ConfirmPasskey(ctx, f.actor, strings.Repeat("n", mfa.PasskeyNameMax+1), resp); !errs.Is(err, errs.Invalid) {
			t.Errorf("long name: %v, want Invalid", err)
		}
		if stored() != 0 {
			t.Fatal("a refused registration stored a passkey")
		}

		// The right answer registers once; the ceremony is then spent.
		if _, _, err := f.svc.ConfirmPasskey(ctx, f.actor, "Phone", resp); err != nil {
			t.Fatal(err)
		}
		confirmed := f.actor
		confirmed.ConfirmedAt = f.clock.now()
		if _, _, err := f.svc.ConfirmPasskey(ctx, confirmed, "Phone", resp); !errs.Is(err, errs.NotFound) {
			t.Errorf("the same answer again: %v, want NotFound", err)
		}
		if stored() != 1 {
			t.Fatalf("%d passkeys stored, want 1", stored())
		}

		// A registration left for longer than the ceremony's lifetime is
		// gone.
		options, err = f.svc.BeginPasskey(ctx, confirmed)
		if err != nil {
			t.Fatal(err)
		}
		late, err := passkeytest.New(origin).Create(options)
		if err != nil {
			t.Fatal(err)
		}
		f.clock.add(mfa.CeremonyTTL + time.Second)
		confirmed.ConfirmedAt = f.clock.now()
		if _, _, err := f.svc.ConfirmPasskey(ctx, confirmed, "Late", late); !errs.Is(err, errs.NotFound) {
			t.Errorf("answer after the ceremony expired: %v, want NotFound", err)
		}

		// Sign-in ceremonies are bound to their challenge: an assertion
		// for one challenge does not answer another.
		c1, c2 := f.challenge(t), f.challenge(t)
		a1 := f.assert(t, key, c1)
		if _, err := f.svc.BeginPasskeySignIn(ctx, f.signInActor(), c2.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.verifyPasskey(c2, a1); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("assertion of another challenge: %v, want ErrWrongCode", err)
		}
		// An assertion without user verification is refused.
		key.NoUserVerification = true
		a2 := f.assert(t, key, c2)
		if _, err := f.verifyPasskey(c2, a2); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("assertion without user verification: %v, want ErrWrongCode", err)
		}
		key.NoUserVerification = false
		// The sign-in ceremony expires too.
		a3 := f.assert(t, key, c2)
		f.clock.add(mfa.CeremonyTTL + time.Second)
		if _, err := f.verifyPasskey(c2, a3); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("assertion after the ceremony expired: %v, want ErrWrongCode", err)
		}
		// A forged signature (the right key's answer with one byte changed
		// in the signed data) is refused.
		c3 := f.challenge(t)
		a4 := f.assert(t, key, c3)
		forged := []byte(strings.Replace(string(a4), `"signature":"`, `"signature":"A`, 1))
		if _, err := f.verifyPasskey(c3, forged); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("forged signature: %v, want ErrWrongCode", err)
		}
		if _, err := f.verifyPasskey(c3, a4); err != nil {
			t.Errorf("the genuine assertion: %v", err)
		}
	})
}

// An authenticator that keeps no counter (synced passkeys report zero) is
// accepted again and again, and its answers are still single-use: the
// ceremony they answer is spent.
func TestAUTH08_PasskeyWithoutCounterStillCannotBeReplayed(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newPasskeyFixture(t, d)
		key, _, _ := f.register(t, f.actor, "Synced passkey")
		key.ZeroCounter = true
		for range 2 {
			c := f.challenge(t)
			resp := f.assert(t, key, c)
			if _, err := f.verifyPasskey(c, resp); err != nil {
				t.Fatalf("sign-in with a counterless passkey: %v", err)
			}
			if _, err := f.verifyPasskey(c, resp); !errors.Is(err, mfa.ErrWrongCode) {
				t.Fatalf("counterless assertion replayed: %v, want ErrWrongCode", err)
			}
			if _, err := f.svc.BeginPasskeySignIn(context.Background(), f.signInActor(), c.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := f.verifyPasskey(c, resp); !errors.Is(err, mfa.ErrWrongCode) {
				t.Fatalf("counterless assertion replayed against a new ceremony: %v, want ErrWrongCode", err)
			}
		}
	})
}

func TestAUTH08_PasskeyClonedAuthenticatorIsRefusedAndRaisesSecurityEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := newPasskeyFixture(t, d)
		key, pk, _ := f.register(t, f.actor, "Security key")
		clone := key.Clone() // the key extracted: same key, same counter

		c := f.challenge(t)
		if _, err := f.verifyPasskey(c, f.assert(t, key, c)); err != nil {
			t.Fatalf("genuine sign-in: %v", err)
		}
		// The clone signs with the counter the genuine key used already.
		c = f.challenge(t)
		if _, err := f.verifyPasskey(c, f.assert(t, clone, c)); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("cloned authenticator: %v, want ErrWrongCode", err)
		}
		n := f.count(t, `SELECT COUNT(*) FROM audit_events WHERE action = 'mfa.webauthn.clone' AND security = $1 AND org_id = $2 AND body LIKE $3`,
			true, f.orgID, "%"+pk.ID+"%")
		if n != 1 {
			t.Errorf("%d clone security events, want 1", n)
		}
		// The genuine key goes on working.
		c = f.challenge(t)
		if _, err := f.verifyPasskey(c, f.assert(t, key, c)); err != nil {
			t.Errorf("genuine key after the clone was refused: %v", err)
		}
	})
}

func TestAUTH08_PasskeyAssertionAcceptedOnceAcrossTwoNodes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		key, _, _ := f.register(t, f.actor, "Phone")
		other, err := sqldb.Open(ctx, f.url)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		nodes := []*mfa.Service{f.svc, {Gate: nodeGate(other, f.kek), Passkeys: f.svc.Passkeys, Now: f.clock.now}}
		for round := range 3 {
			c := f.challenge(t)
			resp := f.assert(t, key, c)
			var wg sync.WaitGroup
			results := make(chan error, 8)
			for i := range 8 {
				wg.Go(func() {
					results <- nodes[i%2].VerifyPasskey(ctx, f.signInActor(), c.ID, resp, nil)
				})
			}
			wg.Wait()
			close(results)
			accepted := 0
			for err := range results {
				switch {
				case err == nil:
					accepted++
				case !errors.Is(err, mfa.ErrWrongCode):
					t.Fatalf("round %d: %v", round, err)
				}
			}
			if accepted != 1 {
				t.Fatalf("round %d: one assertion accepted %d times by two nodes, want once", round, accepted)
			}
		}
	})
}

func TestAUTH08_PasskeyRemovalNeedsProofAndAnotherNeedsStepUp(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		_, first, codes := f.register(t, f.actor, "Phone")

		// With a factor in place, a second passkey needs a recent step-up
		// (ACL-09): a stolen session cannot add the thief's passkey.
		unconfirmed := f.actor
		unconfirmed.ConfirmedAt = time.Time{}
		if _, err := f.svc.BeginPasskey(ctx, unconfirmed); !errors.Is(err, gate.ErrStepUpRequired) {
			t.Fatalf("second passkey without step-up: %v, want ErrStepUpRequired", err)
		}
		confirmed := f.actor
		confirmed.ConfirmedAt = f.clock.now().Add(-gate.StepUpWindow - time.Second)
		if _, err := f.svc.BeginPasskey(ctx, confirmed); !errors.Is(err, gate.ErrStepUpRequired) {
			t.Fatalf("second passkey with an old step-up: %v, want ErrStepUpRequired", err)
		}
		confirmed.ConfirmedAt = f.clock.now()
		_, second, more := f.register(t, confirmed, "Security key")
		if len(more) != 0 {
			t.Errorf("second passkey gave %d recovery codes; the first ones stand", len(more))
		}

		// Removing needs the password or a code; a wrong one counts
		// towards the lockout.
		if err := f.svc.RemovePasskey(ctx, f.actor, first.ID, "", "not the password"); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("remove with a wrong password: %v", err)
		}
		if st, _ := accounts.Lockout(ctx, f.db, f.account.ID); st.Failures != 1 {
			t.Errorf("failures after a wrong password: %d, want 1", st.Failures)
		}
		// Another account's passkey is not found, whatever proof it gives.
		stranger := newFixtureIn(t, f, "stranger@harbour.example")
		sa := gate.Actor{AccountID: stranger.ID, SessionID: "session-s", RemoteAddr: "192.0.2.9", ConfirmedAt: f.clock.now()}
		if err := f.svc.RemovePasskey(ctx, sa, first.ID, "", password); !errs.Is(err, errs.NotFound) {
			t.Errorf("remove another account's passkey: %v, want NotFound", err)
		}
		if err := f.svc.RemovePasskey(ctx, f.actor, first.ID, codes[0], ""); err != nil {
			t.Fatalf("remove with a recovery code: %v", err)
		}
		if left, _ := mfa.RecoveryCodesLeft(ctx, f.db, f.account.ID); left != mfa.RecoveryCodes-1 {
			t.Errorf("%d recovery codes left while a passkey remains", left)
		}
		if err := f.svc.RemovePasskey(ctx, f.actor, second.ID, "", password); err != nil {
			t.Fatal(err)
		}
		if has, _ := mfa.HasFactor(ctx, f.db, f.account.ID); has {
			t.Error("a second factor remains after removing every passkey")
		}
		if left, _ := mfa.RecoveryCodesLeft(ctx, f.db, f.account.ID); left != 0 {
			t.Errorf("%d recovery codes left with no factor", left)
		}
		n := f.count(t, `SELECT COUNT(*) FROM audit_events WHERE action = 'mfa.webauthn.remove' AND outcome = 'success' AND security = $1 AND org_id = $2`, true, f.orgID)
		if n != 2 {
			t.Errorf("%d removal events, want 2", n)
		}
	})
}

// An account with an authenticator app adds a passkey (after a step-up);
// removing the app leaves the passkey and the recovery codes in place.
// A passkey chosen instead of an app whose set-up was begun (the forced
// enrolment page begins one) ends that set-up: no unconfirmed app secret
// stays behind, and the registration event says what was registered.
func TestAUTH08_PasskeyEndsAPendingAppSetUp(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		if _, err := f.svc.Begin(ctx, f.actor); err != nil {
			t.Fatal(err)
		}
		if n := f.count(t, `SELECT COUNT(*) FROM account_factors WHERE account_id = $1 AND confirmed_at IS NULL`, f.account.ID); n != 1 {
			t.Fatalf("%d pending app set-ups, want 1", n)
		}
		_, pk, codes := f.register(t, f.actor, "Phone")
		if len(codes) != mfa.RecoveryCodes {
			t.Errorf("first factor: %d recovery codes", len(codes))
		}
		if n := f.count(t, `SELECT COUNT(*) FROM account_factors WHERE account_id = $1`, f.account.ID); n != 0 {
			t.Errorf("%d app set-ups left after the passkey, want none", n)
		}
		var body string
		if err := f.db.QueryRowContext(ctx, `SELECT body FROM audit_events WHERE action = 'mfa.webauthn.register'`).Scan(&body); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{pk.ID, `"aaguid":"` + pk.AAGUIDString(), `"recovery_codes_count":"10"`, `"backup_eligible"`} {
			if !strings.Contains(body, want) {
				t.Errorf("registration event %s lacks %s", body, want)
			}
		}
	})
}

func TestAUTH08_PasskeyBesideTOTPKeepsRecoveryCodes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		secret, codes := f.enrol(t)
		confirmed := f.actor
		confirmed.ConfirmedAt = f.clock.now()
		key, _, more := f.register(t, confirmed, "Phone")
		if len(more) != 0 {
			t.Errorf("passkey beside TOTP gave %d new recovery codes", len(more))
		}
		c := f.challenge(t)
		if !slices.Equal(c.Methods, []mfa.Method{mfa.MethodWebAuthn, mfa.MethodTOTP, mfa.MethodRecovery}) {
			t.Errorf("methods: %v", c.Methods)
		}
		f.clock.add(mfa.Period)
		if err := f.svc.Remove(ctx, f.actor, f.code(secret), ""); err != nil {
			t.Fatal(err)
		}
		if left, _ := mfa.RecoveryCodesLeft(ctx, f.db, f.account.ID); left != len(codes) {
			t.Errorf("%d recovery codes left after removing TOTP beside a passkey, want %d", left, len(codes))
		}
		c = f.challenge(t)
		if _, err := f.verifyPasskey(c, f.assert(t, key, c)); err != nil {
			t.Errorf("passkey after removing TOTP: %v", err)
		}
		if _, err := f.verify(codes[0]); err != nil {
			t.Errorf("recovery code after removing TOTP: %v", err)
		}
	})
}

func TestAUTH08_PasskeysNeedAHostName(t *testing.T) {
	for _, u := range []string{"https://127.0.0.1:8443", "https://[::1]:8443", "http://custodia.example", "custodia.example", ""} {
		if _, err := relyingparty.New(u); err == nil {
			t.Errorf("relyingparty.New(%q) accepted", u)
		}
	}
	rp, err := relyingparty.New("https://Custodia.Example:8443/")
	if err != nil {
		t.Fatal(err)
	}
	if rp.ID() != "custodia.example" || rp.Origin() != "https://custodia.example:8443" {
		t.Errorf("RP ID %q, origin %q", rp.ID(), rp.Origin())
	}
	if rp, err := relyingparty.New("https://custodia.example:443"); err != nil || rp.Origin() != "https://custodia.example" {
		t.Errorf("default port: %v, %v", rp, err)
	}
	// Without a relying party, passkeys are unavailable, not half-working.
	f := newFixture(t, sqldb.SQLite)
	if _, err := f.svc.BeginPasskey(context.Background(), f.actor); !errs.Is(err, errs.Unavailable) {
		t.Errorf("begin without a relying party: %v, want Unavailable", err)
	}
}

// A ceremony is found by its kind as well as by what it is bound to
// (AUTH-08, ACL-09): a step-up's options answered to a sign-in step, a
// sign-in's answered as a step-up, an enrolment's registration confirmed
// from a session and a session's confirmed as an enrolment all find nothing
// to answer, also under the ids that the string prefixes of earlier
// versions ("step-up:…", "enrolment:…") would have matched; each answer
// still works for the ceremony it was made for.
func TestAUTH08_PasskeyCeremonyOfOneKindAnswersNoOther(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		key, _, _ := f.register(t, f.actor, "Phone")
		session := f.actor.SessionID

		// A step-up's options, answered to the sign-in step.
		options, err := f.svc.BeginPasskeyProof(ctx, f.actor)
		if err != nil {
			t.Fatal(err)
		}
		stepUp, err := key.Get(options)
		if err != nil {
			t.Fatal(err)
		}
		for _, challengeID := range []string{"step-up:" + session, session} {
			err := f.svc.VerifyPasskey(ctx, f.signInActor(), challengeID, stepUp, nil)
			if !errors.Is(err, mfa.ErrWrongCode) {
				t.Errorf("step-up answer as the sign-in step of challenge %q: %v, want ErrWrongCode", challengeID, err)
			}
		}
		if err := f.svc.ProvePasskey(ctx, f.actor, "auth.confirm", stepUp, nil); err != nil {
			t.Fatalf("the step-up answer for its step-up: %v", err)
		}

		// A step-up in progress is no registration of its session: a
		// registration answer finds none to answer.
		if _, err := f.svc.BeginPasskeyProof(ctx, f.actor); err != nil {
			t.Fatal(err)
		}
		confirmed := f.actor
		confirmed.ConfirmedAt = f.clock.now()
		elsewhere := confirmed
		elsewhere.SessionID = ids.New()
		if options, err = f.svc.BeginPasskey(ctx, elsewhere); err != nil {
			t.Fatal(err)
		}
		created, err := passkeytest.New(origin).Create(options)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.ConfirmPasskey(ctx, confirmed, "x", created); !errs.Is(err, errs.NotFound) {
			t.Errorf("registration answer to a session with a step-up in progress: %v, want NotFound", err)
		}

		// A sign-in's options, answered as a step-up of a session whose
		// id is the challenge's.
		c := f.challenge(t)
		signIn := f.assert(t, key, c)
		thief := f.actor
		thief.SessionID, thief.ConfirmedAt = c.ID, time.Time{}
		if err := f.svc.ProvePasskey(ctx, thief, "auth.confirm", signIn, nil); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("sign-in answer as a step-up: %v, want ErrWrongCode", err)
		}
		if _, err := f.verifyPasskey(c, signIn); err != nil {
			t.Fatalf("the sign-in answer for its sign-in: %v", err)
		}

		// An account without a factor: a registration from a session and
		// one at enrolment, each confirmed as the other.
		other := newFixtureIn(t, f, "porter@harbour.example")
		inSession := gate.Actor{AccountID: other.ID, SessionID: ids.New(), RemoteAddr: "192.0.2.7", UserAgent: "test", ConfirmedAt: f.clock.now()}
		enrolling := gate.Actor{AccountID: other.ID, RemoteAddr: "192.0.2.7", UserAgent: "test"}
		enrolment := ids.New()
		options, err = f.svc.BeginPasskey(ctx, inSession)
		if err != nil {
			t.Fatal(err)
		}
		fromSession, err := passkeytest.New(origin).Create(options)
		if err != nil {
			t.Fatal(err)
		}
		options, err = f.svc.BeginEnrolmentPasskey(ctx, enrolling, enrolment)
		if err != nil {
			t.Fatal(err)
		}
		atEnrolment, err := passkeytest.New(origin).Create(options)
		if err != nil {
			t.Fatal(err)
		}
		for _, sessionID := range []string{"enrolment:" + enrolment, enrolment} {
			a := inSession
			a.SessionID = sessionID
			if _, _, err := f.svc.ConfirmPasskey(ctx, a, "x", atEnrolment); !errs.Is(err, errs.NotFound) {
				t.Errorf("enrolment registration confirmed from session %q: %v, want NotFound", sessionID, err)
			}
		}
		if _, _, err := f.svc.ConfirmEnrolmentPasskeyThen(ctx, enrolling, inSession.SessionID, "x", fromSession, nil); !errs.Is(err, errs.NotFound) {
			t.Errorf("session registration confirmed as an enrolment: %v, want NotFound", err)
		}
		if n := f.count(t, `SELECT COUNT(*) FROM webauthn_credentials WHERE account_id = $1`, other.ID); n != 0 {
			t.Fatalf("%d passkeys stored by crossed registrations", n)
		}
		if _, codes, err := f.svc.ConfirmEnrolmentPasskeyThen(ctx, enrolling, enrolment, "Laptop", atEnrolment, nil); err != nil || len(codes) != mfa.RecoveryCodes {
			t.Fatalf("the enrolment registration for its enrolment: %d codes, %v", len(codes), err)
		}
	})
}

// The schema holds each kind of ceremony to its own column: a session for
// 'register' and 'step-up', a challenge for 'enrol' and 'sign-in', never
// both, and no other kind.
func TestAUTH08_CeremonyKindCarriesItsOwnBinding(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		session := sql.NullString{String: ids.New(), Valid: true}
		challenge := sql.NullString{String: ids.New(), Valid: true}
		none := sql.NullString{}
		for _, tc := range []struct {
			kind               string
			session, challenge sql.NullString
			ok                 bool
		}{
			{"register", session, none, true},
			{"step-up", session, none, true},
			{"enrol", none, challenge, true},
			{"sign-in", none, challenge, true},
			{"step-up", none, challenge, false},
			{"step-up", session, challenge, false},
			{"step-up", none, none, false},
			{"register", none, challenge, false},
			{"register", session, challenge, false},
			{"enrol", session, none, false},
			{"enrol", session, challenge, false},
			{"sign-in", session, none, false},
			{"sign-in", session, challenge, false},
			{"recover", session, none, false},
			{"recover", none, challenge, false},
		} {
			_, err := f.db.ExecContext(ctx,
				`INSERT INTO webauthn_ceremonies (id, account_id, kind, session_id, challenge_id, state, created_at, expires_at)
				 VALUES ($1, $2, $3, $4, $5, '{}', 0, 1)`,
				ids.New(), f.account.ID, tc.kind, tc.session, tc.challenge)
			if ok := err == nil; ok != tc.ok {
				t.Errorf("kind %q with session %v, challenge %v: stored %v (%v), want %v",
					tc.kind, tc.session.Valid, tc.challenge.Valid, ok, err, tc.ok)
			}
		}
	})
}

// The first second factor needs a fresh confirmation too when a signed-in
// session adds it (ASVS V7.5.1): a stolen session cannot make the thief's
// app, phone or passkey the account's only factor. While signing in, right
// after the password, an account without a factor enrols without one.
func TestAUTH08_FirstFactorFromASessionNeedsAStepUp(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newPasskeyFixture(t, d)
		stale := f.actor
		stale.ConfirmedAt = f.clock.now().Add(-gate.StepUpWindow - time.Second)
		if _, err := f.svc.Begin(ctx, stale); !errors.Is(err, gate.ErrStepUpRequired) {
			t.Errorf("an app as the first factor from a stale session: %v, want ErrStepUpRequired", err)
		}
		if _, err := f.svc.BeginPasskey(ctx, stale); !errors.Is(err, gate.ErrStepUpRequired) {
			t.Errorf("a passkey as the first factor from a stale session: %v, want ErrStepUpRequired", err)
		}
		var denied int
		f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE outcome = 'denied' AND actor_account = $1`, f.account.ID).Scan(&denied)
		if denied != 2 {
			t.Errorf("%d denied attempts on the trail, want 2", denied)
		}
		if _, err := f.svc.Begin(ctx, f.actor); err != nil {
			t.Errorf("an app as the first factor from a confirmed session: %v", err)
		}
	})
}

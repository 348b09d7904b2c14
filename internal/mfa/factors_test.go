package mfa_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/policy/policytest"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const password = "lighthouse meadow copper 73"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a database with one organization and one account with a
// password, and a second-factor service over it with a local KEK.
type fixture struct {
	db      *sqldb.DB
	url     string
	svc     *mfa.Service
	kek     keys.KEK
	clock   *clock
	orgID   string
	account accounts.Account
	actor   gate.Actor
}

// testChallenge stands for the sign-in challenge a texted code is sent for.
const testChallenge = "challenge-under-test"

func newFixture(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{url: sqldbtest.URL(t, d), clock: &clock{t: time.Unix(1_800_000_000, 0)}}
	db, err := sqldb.Open(ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx, sqldb.Clinical); err != nil {
		t.Fatal(err)
	}
	f.db = db
	kek, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.kek = kek
	f.svc = &mfa.Service{Gate: nodeGate(db, kek), Now: f.clock.now}
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		org, err := orgs.CreateOrganization(ctx, tx, "Harbour Hospital", "harbour")
		if err != nil {
			return err
		}
		f.orgID = org.ID
		acc, _, err := accounts.Enrol(ctx, tx, "nurse@harbour.example", "", authz.Assignment{OrgID: org.ID, Role: authz.OrgManager})
		if err != nil {
			return err
		}
		f.account = acc
		return accounts.SetPassword(ctx, tx, acc, password, accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	f.actor = gate.Actor{AccountID: f.account.ID, SessionID: "session-1", RemoteAddr: "192.0.2.5", UserAgent: "test", ConfirmedAt: f.clock.now()}
	return f
}

// enrol sets up and confirms a TOTP factor and returns its secret and the
// recovery codes.
// nodeGate is the gate of a server node on db, sealing with kek.
func nodeGate(db *sqldb.DB, kek keys.KEK) *gate.Gate {
	return gate.New(gate.Config{Clinical: db, Keys: &keys.Keyring{DB: db, KEK: kek}})
}

func (f *fixture) enrol(t *testing.T) ([]byte, []string) {
	t.Helper()
	ctx := context.Background()
	e, err := f.svc.Begin(ctx, f.actor)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.Secret)
	if err != nil || len(secret) != mfa.SecretSize {
		t.Fatalf("secret %q: %d bytes, %v", e.Secret, len(secret), err)
	}
	codes, err := f.svc.Confirm(ctx, f.actor, f.code(secret))
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != mfa.RecoveryCodes {
		t.Fatalf("%d recovery codes, want %d", len(codes), mfa.RecoveryCodes)
	}
	return secret, codes
}

func (f *fixture) code(secret []byte) string {
	return mfa.Code(secret, mfa.Step(f.clock.now()))
}

// verify gives code as the second factor and reports the method accepted.
func (f *fixture) verify(code string) (mfa.Method, error) {
	var m mfa.Method
	err := f.svc.Verify(context.Background(), f.actor, testChallenge, code, func(_ sqldb.Tx, got mfa.Method, _ *audit.Event) error {
		m = got
		return nil
	})
	return m, err
}

func TestAUTH08_TOTPCodeAcceptedOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		secret, _ := f.enrol(t)
		// The code that confirmed the enrolment is spent already.
		if _, err := f.verify(f.code(secret)); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("the enrolment's code again: %v, want ErrWrongCode", err)
		}
		f.clock.add(mfa.Period)
		code := f.code(secret)
		if m, err := f.verify(code); err != nil || m != mfa.MethodTOTP {
			t.Fatalf("fresh code: %v, %v", m, err)
		}
		if _, err := f.verify(code); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("replayed code: %v, want ErrWrongCode", err)
		}
		// Within the drift window the previous step's code is still a
		// valid code, but not later than the last accepted step.
		f.clock.add(mfa.Period)
		if _, err := f.verify(code); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("replayed code one step later: %v, want ErrWrongCode", err)
		}
		// A code of the next step, given early (clock drift), is accepted;
		// after it, the current step's code is not.
		early := mfa.Code(secret, mfa.Step(f.clock.now())+1)
		if _, err := f.verify(early); err != nil {
			t.Fatalf("next step's code: %v", err)
		}
		if _, err := f.verify(f.code(secret)); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("code of a step before the last accepted: %v, want ErrWrongCode", err)
		}
		// A failing callback leaves the code unspent: spending and what it
		// authorizes commit together.
		f.clock.add(3 * mfa.Period)
		code = f.code(secret)
		boom := errors.New("session not written")
		if err := f.svc.Verify(ctx, f.actor, testChallenge, code, func(sqldb.Tx, mfa.Method, *audit.Event) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("callback failure: %v", err)
		}
		if _, err := f.verify(code); err != nil {
			t.Fatalf("code after a rolled-back use: %v", err)
		}

		// Two server nodes: separate connection pools on one database try
		// one fresh code at once. Exactly one accepts it.
		other, err := sqldb.Open(ctx, f.url)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		nodes := []*mfa.Service{f.svc, {Gate: nodeGate(other, f.kek), Now: f.clock.now}}
		for round := range 3 {
			f.clock.add(mfa.Period)
			code := f.code(secret)
			var wg sync.WaitGroup
			results := make(chan error, 16)
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results <- nodes[i%2].Verify(ctx, f.actor, testChallenge, code, nil)
				}()
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
				t.Fatalf("round %d: one code accepted %d times by two nodes, want once", round, accepted)
			}
		}
	})
}

func TestAUTH08_RecoveryCodeAcceptedOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		_, codes := f.enrol(t)
		// Typed in lower case without the dash, as people do.
		typed := strings.ToLower(strings.ReplaceAll(codes[0], "-", ""))
		if m, err := f.verify(typed); err != nil || m != mfa.MethodRecovery {
			t.Fatalf("recovery code: %v, %v", m, err)
		}
		if _, err := f.verify(codes[0]); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("used recovery code again: %v, want ErrWrongCode", err)
		}
		if _, err := f.verify("ZZZZZ-ZZZZZ"); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("made-up recovery code: %v, want ErrWrongCode", err)
		}
		if left, _ := mfa.RecoveryCodesLeft(ctx, f.db, f.account.ID); left != mfa.RecoveryCodes-1 {
			t.Errorf("%d recovery codes left, want %d", left, mfa.RecoveryCodes-1)
		}
		// The use is a security event of the account's organization, and
		// names no code.
		var n int
		var body string
		err := f.db.QueryRowContext(ctx,
			`SELECT COUNT(*), MAX(body) FROM audit_events WHERE action = 'mfa.recovery.use' AND org_id = $1 AND security = $2`,
			f.orgID, true).Scan(&n, &body)
		if err != nil || n != 1 {
			t.Fatalf("mfa.recovery.use events: %d, %v", n, err)
		}
		if strings.Contains(strings.ToUpper(body), typed[:5]) && strings.Contains(strings.ToUpper(body), strings.ToUpper(typed[5:])) {
			t.Errorf("audit event holds the recovery code: %s", body)
		}

		// Two nodes spend one code at once: exactly one succeeds.
		other, err := sqldb.Open(ctx, f.url)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		nodes := []*mfa.Service{f.svc, {Gate: nodeGate(other, f.kek), Now: f.clock.now}}
		for _, code := range codes[1:4] {
			var wg sync.WaitGroup
			results := make(chan error, 12)
			for i := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results <- nodes[i%2].Verify(ctx, f.actor, testChallenge, code, nil)
				}()
			}
			wg.Wait()
			close(results)
			accepted := 0
			for err := range results {
				switch {
				case err == nil:
					accepted++
				case !errors.Is(err, mfa.ErrWrongCode):
					t.Fatal(err)
				}
			}
			if accepted != 1 {
				t.Fatalf("recovery code accepted %d times by two nodes, want once", accepted)
			}
		}
	})
}

// dump returns every value of every table of the database, as text and raw
// bytes, for searching.
func dump(t *testing.T, db *sqldb.DB) [][]byte {
	t.Helper()
	ctx := context.Background()
	stmt := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if db.Dialect == sqldb.Postgres {
		stmt = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	rows, err := db.QueryContext(ctx, stmt)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	var out [][]byte
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+table) // names from the catalogue
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch v := v.(type) {
				case []byte:
					out = append(out, v)
				case nil:
				default:
					out = append(out, fmt.Appendf(nil, "%v", v))
				}
			}
		}
		rows.Close()
	}
	return out
}

func TestAUTH08_SecretIsStoredWrappedOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		secret, codes := f.enrol(t)
		f.clock.add(mfa.Period)
		if _, err := f.verify(f.code(secret)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.verify(codes[0]); err != nil {
			t.Fatal(err)
		}
		b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
		needles := map[string][]byte{
			"secret bytes":            secret,
			"secret in base32":        []byte(b32),
			"secret in base32, lower": []byte(strings.ToLower(b32)),
			"secret in hex":           []byte(hex.EncodeToString(secret)),
		}
		for i, c := range codes {
			needles[fmt.Sprintf("recovery code %d", i)] = []byte(c)
			needles[fmt.Sprintf("recovery code %d, bare", i)] = []byte(strings.ReplaceAll(c, "-", ""))
		}
		values := dump(t, f.db)
		if len(values) < 50 {
			t.Fatalf("dump found only %d values", len(values))
		}
		for what, needle := range needles {
			for _, v := range values {
				if bytes.Contains(v, needle) || bytes.Contains(bytes.ToUpper(v), bytes.ToUpper(needle)) && len(needle) >= 10 {
					t.Errorf("the database holds the %s", what)
					break
				}
			}
		}

		// What is stored is the secret wrapped by the KEK for this account
		// and factor: it unwraps there and nowhere else.
		var id, kekID string
		var wrapped []byte
		if err := f.db.QueryRowContext(ctx,
			`SELECT id, kek_id, wrapped FROM account_factors WHERE account_id = $1`, f.account.ID).Scan(&id, &kekID, &wrapped); err != nil {
			t.Fatal(err)
		}
		if kekID != f.kek.ID() {
			t.Errorf("kek_id %q, want %q", kekID, f.kek.ID())
		}
		other, err := keys.OpenLocalKEK(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Unwrap(ctx, wrapped, adFor(f.account.ID, id)); err == nil {
			t.Error("another KEK unwraps the secret")
		}
		got, err := f.kek.Unwrap(ctx, wrapped, adFor(f.account.ID, id))
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("unwrap with the factor's own binding: %v", err)
		}
		for _, ad := range [][]byte{adFor("aaaaaaaaaaaaaaaaaaaaaaaaaa", id), adFor(f.account.ID, "aaaaaaaaaaaaaaaaaaaaaaaaaa")} {
			if _, err := f.kek.Unwrap(ctx, wrapped, ad); err == nil {
				t.Error("the secret unwraps bound to another account or factor")
			}
		}
		// Moved to another account's row, it does not verify there.
		g := newFixtureIn(t, f, "porter@harbour.example")
		if _, err := f.db.ExecContext(ctx,
			`INSERT INTO account_factors (id, account_id, kind, kek_id, wrapped, last_step, created_at, confirmed_at)
			 VALUES ($1, $2, 'totp', $3, $4, 0, 1, 1)`, "bbbbbbbbbbbbbbbbbbbbbbbbbb", g.ID, kekID, wrapped); err != nil {
			t.Fatal(err)
		}
		f.clock.add(mfa.Period)
		err = f.svc.Verify(ctx, gate.Actor{AccountID: g.ID}, testChallenge, f.code(secret), nil)
		if err == nil || errors.Is(err, mfa.ErrWrongCode) || !errs.Is(err, errs.Unavailable) {
			t.Errorf("moved secret: %v, want it not to unwrap", err)
		}
	})
}

// adFor repeats the binding the package wraps secrets with.
func adFor(accountID, factorID string) []byte {
	var b []byte
	for _, f := range []string{"custodia.totp-secret.v1", accountID, factorID} {
		b = append(b, byte(len(f)>>24), byte(len(f)>>16), byte(len(f)>>8), byte(len(f)))
		b = append(b, f...)
	}
	return b
}

// newFixtureIn adds another account to f's organization.
func newFixtureIn(t *testing.T, f *fixture, email string) accounts.Account {
	t.Helper()
	ctx := context.Background()
	var acc accounts.Account
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		acc, _, err = accounts.Enrol(ctx, tx, email, "", authz.Assignment{OrgID: f.orgID, Role: authz.OrgManager})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

func TestAUTH08_EnrolmentNeedsAConfirmingCode(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		e, err := f.svc.Begin(ctx, f.actor)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(e.URI, "otpauth://totp/Custodia:nurse@harbour.example?") || len(e.QRPNG) == 0 {
			t.Errorf("enrolment: URI %q, %d bytes of QR code", e.URI, len(e.QRPNG))
		}
		if has, _ := mfa.HasFactor(ctx, f.db, f.account.ID); has {
			t.Fatal("a factor is active before its confirmation")
		}
		if need, _ := mfa.RequirementOf(ctx, f.db, f.account.ID); need != mfa.NoSecondFactor {
			t.Fatalf("a pending factor is asked for at sign-in (%v)", need)
		}
		if _, err := f.svc.Confirm(ctx, f.actor, "000000"); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("wrong confirming code: %v", err)
		}
		// A second Begin replaces the first secret.
		e2, err := f.svc.Begin(ctx, f.actor)
		if err != nil {
			t.Fatal(err)
		}
		first, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.Secret)
		second, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e2.Secret)
		if _, err := f.svc.Confirm(ctx, f.actor, f.code(first)); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("code of the replaced secret: %v", err)
		}
		if _, err := f.svc.Confirm(ctx, f.actor, f.code(second)); err != nil {
			t.Fatal(err)
		}
		if need, _ := mfa.RequirementOf(ctx, f.db, f.account.ID); need != mfa.SecondFactor {
			t.Fatalf("requirement after enrolment: %v", need)
		}
		// With a factor active, nobody holding the session can set up
		// another without removing it first.
		if _, err := f.svc.Begin(ctx, f.actor); !errs.Is(err, errs.Conflict) {
			t.Fatalf("Begin with an active factor: %v, want Conflict", err)
		}
		var enrols, failures int
		f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events WHERE action = 'mfa.totp.enrol' AND outcome = 'success' AND security = $1`, true).Scan(&enrols)
		f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events WHERE action = 'mfa.totp.enrol' AND outcome = 'failure'`).Scan(&failures)
		if enrols != 1 || failures != 2 {
			t.Errorf("audit: %d enrolments, %d failed codes; want 1 and 2", enrols, failures)
		}
	})
}

func TestAUTH08_RemoveAndRegenerateNeedProof(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		secret, codes := f.enrol(t)

		// Regenerating with a code (not a recent confirmation of the
		// session: f.actor has none) needs a current one; a wrong one
		// counts towards the lockout.
		if _, err := f.svc.RenewRecoveryCodes(ctx, f.actor, "123456"); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("regenerate with a wrong code: %v", err)
		}
		if st, _ := accounts.Lockout(ctx, f.db, f.account.ID); st.Failures != 1 {
			t.Errorf("failures after a wrong code: %d, want 1", st.Failures)
		}
		f.clock.add(mfa.Period)
		fresh, err := f.svc.RenewRecoveryCodes(ctx, f.actor, f.code(secret))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.verify(codes[1]); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("an old recovery code after regeneration: %v", err)
		}
		if _, err := f.verify(fresh[0]); err != nil {
			t.Errorf("a new recovery code: %v", err)
		}

		// Removing needs a code or the password, and one only.
		for _, tc := range []struct{ code, password string }{{"", ""}, {f.code(secret), password}} {
			if err := f.svc.Remove(ctx, f.actor, tc.code, tc.password); !errs.Is(err, errs.Invalid) {
				t.Errorf("Remove(%q, %q): %v, want Invalid", tc.code, tc.password, err)
			}
		}
		if err := f.svc.Remove(ctx, f.actor, "", "not the password"); !errors.Is(err, mfa.ErrWrongCode) {
			t.Fatalf("remove with a wrong password: %v", err)
		}
		if st, _ := accounts.Lockout(ctx, f.db, f.account.ID); st.Failures != 2 {
			t.Errorf("failures after a wrong password: %d, want 2", st.Failures)
		}
		if has, _ := mfa.HasFactor(ctx, f.db, f.account.ID); !has {
			t.Fatal("a wrong password removed the factor")
		}
		if err := f.svc.Remove(ctx, f.actor, "", password); err != nil {
			t.Fatal(err)
		}
		if has, _ := mfa.HasFactor(ctx, f.db, f.account.ID); has {
			t.Fatal("factor still active after removal")
		}
		if left, _ := mfa.RecoveryCodesLeft(ctx, f.db, f.account.ID); left != 0 {
			t.Errorf("%d recovery codes left after removal", left)
		}
		if _, err := f.verify(fresh[1]); !errors.Is(err, mfa.ErrWrongCode) {
			t.Errorf("recovery code after removal: %v", err)
		}

		// Enrol again and remove with a code.
		secret, _ = f.enrol(t)
		f.clock.add(mfa.Period)
		if err := f.svc.Remove(ctx, f.actor, f.code(secret), ""); err != nil {
			t.Fatal(err)
		}
		for action, want := range map[string]int{"mfa.totp.enrol": 2, "mfa.totp.remove": 2, "mfa.recovery.regenerate": 1, "mfa.recovery.use": 1} {
			var n int
			f.db.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM audit_events WHERE action = $1 AND outcome = 'success' AND security = $2 AND org_id = $3`,
				action, true, f.orgID).Scan(&n)
			if n != want {
				t.Errorf("%d security events %s, want %d", n, action, want)
			}
		}
	})
}

func TestAUTH09_SetPolicyRequiresEnrolment(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		set := func(on bool) {
			t.Helper()
			err := f.svc.Gate.Operate(ctx, "org.policy.set", func(o *gate.OpTx) error {
				return policytest.RequireSecondFactor(ctx, o, f.orgID, on)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if need, _ := mfa.RequirementOf(ctx, f.db, f.account.ID); need != mfa.NoSecondFactor {
			t.Fatalf("member under the default policy: %v, want NoSecondFactor", need)
		}
		set(true)
		if need, _ := mfa.RequirementOf(ctx, f.db, f.account.ID); need != mfa.MustEnrol {
			t.Fatalf("member without a factor: %v, want MustEnrol", need)
		}
		// Someone with no role in the organization is not bound by it.
		var outsider accounts.Account
		f.db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			outsider, err = accounts.Create(ctx, tx, "visitor@elsewhere.example", "")
			return err
		})
		if need, _ := mfa.RequirementOf(ctx, f.db, outsider.ID); need != mfa.NoSecondFactor {
			t.Errorf("outsider: %v, want NoSecondFactor", need)
		}
		f.enrol(t)
		if need, _ := mfa.RequirementOf(ctx, f.db, f.account.ID); need != mfa.SecondFactor {
			t.Fatalf("member with a factor: %v, want SecondFactor", need)
		}
		set(false)
		if need, _ := mfa.RequirementOf(ctx, f.db, f.account.ID); need != mfa.SecondFactor {
			t.Fatalf("member with a factor, requirement lifted: %v, want SecondFactor", need)
		}
	})
}

// The summary tells the signed-in person which factors their own account
// has and how many recovery codes are left; it takes no account to ask
// about but the actor's.
func TestSummaryTellsTheOwnFactorsAndCodesLeft(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		if m, err := f.svc.Summary(ctx, f.actor); err != nil || m != (mfa.Summary{}) {
			t.Fatalf("summary before any factor: %+v, %v", m, err)
		}
		_, codes := f.enrol(t)
		if _, err := f.verify(codes[0]); err != nil {
			t.Fatal(err)
		}
		m, err := f.svc.Summary(ctx, f.actor)
		if err != nil || m != (mfa.Summary{TOTP: true, RecoveryCodesLeft: mfa.RecoveryCodes - 1}) {
			t.Errorf("summary after enrolment and one recovery code: %+v, %v", m, err)
		}
		if _, err := f.svc.Summary(ctx, gate.Actor{}); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("summary without a sign-in: %v, want Unauthenticated", err)
		}
	})
}

package policyadmin_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts/accountadmin"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit/audittest"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/policy/policyadmin"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type fixture struct {
	db       *sqldb.DB
	svc      *policyadmin.Service
	accounts map[authz.Role]string
}

func setup(t *testing.T, d sqldb.Dialect) fixture {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	logins, err := demo.Seed(ctx, gate.New(gate.Config{Clinical: db}))
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{db: db, svc: &policyadmin.Service{Gate: gate.New(gate.Config{Clinical: db})}, accounts: map[authz.Role]string{}}
	for _, l := range logins {
		acc, err := accounts.ByEmail(ctx, db, l.Email)
		if err != nil {
			t.Fatal(err)
		}
		f.accounts[l.Role] = acc.ID
	}
	return f
}

func (f fixture) as(role authz.Role) gate.Actor {
	return gate.Actor{AccountID: f.accounts[role], RemoteAddr: "192.0.2.7", UserAgent: "test", ConfirmedAt: time.Now()}
}

// access is the service that lists and unlocks members.
func (f fixture) access() *accountadmin.Service { return &accountadmin.Service{Gate: f.svc.Gate} }

func (f fixture) securityEvents(t *testing.T, action string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRowContext(context.Background(),
		`SELECT COUNT(*) FROM audit_events WHERE action = $1 AND security = $2 AND outcome = 'success'`, action, true).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// An organization's administrator sets its policy, on the record as a
// security event; no other role may, and a bad value changes nothing
// (AUTH-09).
func TestAUTH09_OnlyAdministratorsSetThePolicy(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		p := policy.Default()
		p.RequireSecondFactor, p.SessionIdleMinutes = true, 10
		for _, role := range []authz.Role{authz.OrgManager, authz.StudyAdmin, authz.Monitor, authz.Participant} {
			if err := f.svc.SetPolicy(ctx, f.as(role), demo.Slug, p, ""); !gate.IsDenied(err) {
				t.Errorf("%s sets the policy: %v, want not found", role, err)
			}
		}
		bad := p
		bad.PasswordMinLength = 4
		if err := f.svc.SetPolicy(ctx, f.as(authz.OrgAdmin), demo.Slug, bad, ""); err == nil {
			t.Error("a minimum length of 4 was accepted")
		}
		if _, got, _ := f.svc.Policy(ctx, f.as(authz.OrgAdmin), demo.Slug); got != policy.Default() {
			t.Fatalf("refused changes changed the policy: %+v", got)
		}
		if err := f.svc.SetPolicy(ctx, f.as(authz.OrgAdmin), demo.Slug, p, ""); err != nil {
			t.Fatal(err)
		}
		if _, got, err := f.svc.Policy(ctx, f.as(authz.OrgAdmin), demo.Slug); err != nil || got != p {
			t.Errorf("policy read back: %+v, %v", got, err)
		}
		if n := f.securityEvents(t, "org.policy.set"); n != 1 {
			t.Errorf("%d org.policy.set security events, want 1", n)
		}
		if _, _, err := f.svc.Policy(ctx, f.as(authz.Monitor), demo.Slug); !gate.IsDenied(err) {
			t.Errorf("monitor reads the policy: %v", err)
		}
	})
}

// An administrator lifts a member's lockout, audited with themself as the
// actor; the administrator of another organization cannot, even naming
// the account by id, and learns nothing (AUTH-04, ACL-08).
func TestAUTH04_AdministratorUnlocksMembersOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		victim := f.accounts[authz.CareProvider]
		var otherAdmin string
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			for range accounts.LockAfter {
				if _, err := accounts.RecordFailure(ctx, audittest.Appending{Tx: tx}, victim, "192.0.2.1", time.Now()); err != nil {
					return err
				}
			}
			o, err := orgs.CreateOrganization(ctx, tx, "Other", "other")
			if err != nil {
				return err
			}
			acc, _, err := accounts.Enrol(ctx, tx, "boss@other.example", "", authz.Assignment{OrgID: o.ID, Role: authz.OrgAdmin})
			otherAdmin = acc.ID
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		_, locked, err := f.access().Locked(ctx, f.as(authz.OrgAdmin), demo.Slug)
		if err != nil || len(locked) != 1 || locked[0].Account.ID != victim {
			t.Fatalf("locked members: %+v, %v", locked, err)
		}
		other := gate.Actor{AccountID: otherAdmin, RemoteAddr: "192.0.2.8", ConfirmedAt: time.Now()}
		if _, err := f.access().Unlock(ctx, other, "other", victim); !gate.IsDenied(err) {
			t.Errorf("other organization's admin unlocks a stranger: %v", err)
		}
		if _, err := f.access().Unlock(ctx, other, demo.Slug, victim); !gate.IsDenied(err) {
			t.Errorf("other organization's admin unlocks in demo: %v", err)
		}
		if _, err := f.access().Unlock(ctx, f.as(authz.OrgManager), demo.Slug, victim); !gate.IsDenied(err) {
			t.Errorf("org manager unlocks: %v", err)
		}
		if st, _ := accounts.Lockout(ctx, f.db, victim); !st.Locked() {
			t.Fatal("a refused unlock unlocked")
		}
		unlocked, err := f.access().Unlock(ctx, f.as(authz.OrgAdmin), demo.Slug, victim)
		if err != nil || !unlocked {
			t.Fatalf("unlock: %v, %v", unlocked, err)
		}
		if st, _ := accounts.Lockout(ctx, f.db, victim); st.Locked() || st.Failures != 0 {
			t.Errorf("after unlock: %+v", st)
		}
		if n := f.securityEvents(t, "account.unlock"); n != 1 {
			t.Errorf("%d account.unlock security events, want 1", n)
		}
		if again, err := f.access().Unlock(ctx, f.as(authz.OrgAdmin), demo.Slug, victim); err != nil || again {
			t.Errorf("second unlock: %v, %v; want false, nil", again, err)
		}
	})
}

// Where the instance requires a second factor by default (production),
// every organization that has not lifted it requires one, and lifting it
// needs a reason, which the audit trail keeps (ASVS V6.3.3); without one,
// nothing changes.
func TestAUTH09_SecondFactorByDefaultIsLiftedOnlyWithAReason(t *testing.T) {
	policy.RequireSecondFactorByDefault(true)
	t.Cleanup(func() { policy.RequireSecondFactorByDefault(false) })
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		manager := f.accounts[authz.OrgManager]
		if p, err := policy.Effective(ctx, f.db, manager); err != nil || !p.RequireSecondFactor {
			t.Fatalf("a member under the instance's default: %+v, %v; want a second factor required", p, err)
		}
		lifted := policy.Default()
		lifted.RequireSecondFactor = false
		if err := f.svc.SetPolicy(ctx, f.as(authz.OrgAdmin), demo.Slug, lifted, "  "); !errs.Is(err, errs.Invalid) {
			t.Fatalf("lifting without a reason: %v, want Invalid", err)
		}
		for _, bad := range []string{"not \xff text", "bell\a", strings.Repeat("é", 251)} {
			if err := f.svc.SetPolicy(ctx, f.as(authz.OrgAdmin), demo.Slug, lifted, bad); !errs.Is(err, errs.Invalid) || strings.Contains(err.Error(), "audit event") {
				t.Fatalf("a reason of %d bytes that is not fit: %v, want Invalid naming the reason", len(bad), err)
			}
		}
		if p, _ := policy.Effective(ctx, f.db, manager); !p.RequireSecondFactor {
			t.Fatal("the refused change lifted the requirement")
		}
		const why = "Kiosk accounts on the ward's shared tablets, pending hardware keys"
		if err := f.svc.SetPolicy(ctx, f.as(authz.OrgAdmin), demo.Slug, lifted, why); err != nil {
			t.Fatal(err)
		}
		if p, _ := policy.Effective(ctx, f.db, manager); p.RequireSecondFactor {
			t.Error("the requirement stands after it was lifted with a reason")
		}
		var body string
		if err := f.db.QueryRowContext(ctx, `SELECT body FROM audit_events WHERE action = 'org.policy.set'
			AND outcome = 'success' ORDER BY at DESC LIMIT 1`).Scan(&body); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, why) {
			t.Errorf("the event does not keep the reason: %s", body)
		}
	})
}

// Unlocking a member hands sign-in back to whoever knows the password: the
// administrator confirms it is them first, as for disabling (ACL-09); a
// stale confirmation changes nothing.
func TestACL09_UnlockNeedsAFreshConfirmation(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		victim := f.accounts[authz.Monitor]
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			for range accounts.LockAfter {
				if _, err := accounts.RecordFailure(ctx, audittest.Appending{Tx: tx}, victim, "192.0.2.1", time.Now()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		stale := f.as(authz.OrgAdmin)
		stale.ConfirmedAt = time.Now().Add(-gate.StepUpWindow - time.Minute)
		if _, err := f.access().Unlock(ctx, stale, demo.Slug, victim); !errs.Is(err, errs.StepUpRequired) {
			t.Fatalf("unlock with a stale confirmation: %v, want StepUpRequired", err)
		}
		if st, _ := accounts.Lockout(ctx, f.db, victim); !st.Locked() {
			t.Fatal("an unconfirmed unlock unlocked")
		}
		if ok, err := f.access().Unlock(ctx, f.as(authz.OrgAdmin), demo.Slug, victim); err != nil || !ok {
			t.Fatalf("unlock after confirming: %v, %v", ok, err)
		}
	})
}

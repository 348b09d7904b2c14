package policy_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// twoOrgs makes two organizations and an account holding a role in each.
func twoOrgs(t *testing.T, db *sqldb.DB) (orgA, orgB string, acc accounts.Account) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		now := sqldb.Now()
		orgA, orgB = ids.New(), ids.New()
		for i, id := range []string{orgA, orgB} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)`,
				id, []string{"alpha", "beta"}[i], "Org "+id, now); err != nil {
				return err
			}
		}
		var err error
		if acc, err = accounts.Create(ctx, tx, "person@policy.example", "Pat Person"); err != nil {
			return err
		}
		for _, id := range []string{orgA, orgB} {
			if _, err := authz.Assign(ctx, tx, authz.Assignment{OrgID: id, AccountID: acc.ID, Role: authz.OrgManager}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return orgA, orgB, acc
}

func setPolicy(t *testing.T, db *sqldb.DB, orgID string, p policy.Security) error {
	t.Helper()
	return db.InTx(context.Background(), func(tx *sql.Tx) error {
		_, err := policy.Set(context.Background(), tx, orgID, p)
		return err
	})
}

func TestAUTH09_PersonInSeveralOrganizationsGetsTheStrictestRules(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		orgA, orgB, acc := twoOrgs(t, db)

		eff, err := policy.Effective(ctx, db, acc.ID)
		if err != nil || eff != policy.Default() {
			t.Fatalf("no policies: %+v, %v; want the default", eff, err)
		}
		a := policy.Default()
		a.PasswordMinLength, a.PasswordRotationDays, a.SessionIdleMinutes, a.SessionAbsoluteHours = 16, 90, 60, 24
		b := policy.Default()
		b.PasswordRequireMixed, b.PasswordRotationDays, b.SessionIdleMinutes, b.RequireSecondFactor = true, 30, 10, true
		if err := setPolicy(t, db, orgA, a); err != nil {
			t.Fatal(err)
		}
		// Only orgA has a row: orgB keeps the default, which is stricter
		// than orgA's long sessions.
		eff, _ = policy.Effective(ctx, db, acc.ID)
		want := policy.Security{PasswordMinLength: 16, PasswordRotationDays: 90, SessionIdleMinutes: 20, SessionAbsoluteHours: 12, DeletionRetentionDays: 30,
			InactivityDays: 730, InactivityNoticeDays: 30}
		if eff != want {
			t.Errorf("with one policy: %+v, want %+v", eff, want)
		}
		if err := setPolicy(t, db, orgB, b); err != nil {
			t.Fatal(err)
		}
		eff, _ = policy.Effective(ctx, db, acc.ID)
		want = policy.Security{PasswordMinLength: 16, PasswordRequireMixed: true, PasswordRotationDays: 30,
			SessionIdleMinutes: 10, SessionAbsoluteHours: 12, RequireSecondFactor: true, DeletionRetentionDays: 30,
			InactivityDays: 730, InactivityNoticeDays: 30}
		if eff != want {
			t.Errorf("with two policies: %+v, want %+v", eff, want)
		}
		// The policy applies wherever a password is set.
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			return accounts.SetPassword(ctx, tx, acc, "lantern harbour quietly", accounts.DefaultPolicy)
		})
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("password of 23 characters without digit and capital: %v, want Invalid", err)
		}
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			return accounts.SetPassword(ctx, tx, acc, "Lantern harbour 42", accounts.DefaultPolicy)
		})
		if err != nil {
			t.Errorf("a password within both organizations' rules: %v", err)
		}
	})
}

func TestAUTH02_PolicyBoundsAreEnforcedAndRefusalChangesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		orgA, _, _ := twoOrgs(t, db)
		good := policy.Default()
		good.PasswordMinLength = 14
		if err := setPolicy(t, db, orgA, good); err != nil {
			t.Fatal(err)
		}
		for _, mutate := range []func(*policy.Security){
			func(p *policy.Security) { p.PasswordMinLength = 7 },
			func(p *policy.Security) { p.PasswordMinLength = 129 },
			func(p *policy.Security) { p.SessionIdleMinutes = 4 },
			func(p *policy.Security) { p.SessionIdleMinutes = 61 },
			func(p *policy.Security) { p.SessionAbsoluteHours = 0 },
			func(p *policy.Security) { p.SessionAbsoluteHours = 25 },
			func(p *policy.Security) { p.PasswordRotationDays = -1 },
		} {
			p := policy.Default()
			mutate(&p)
			if err := setPolicy(t, db, orgA, p); !errs.Is(err, errs.Invalid) {
				t.Errorf("%+v stored: %v, want Invalid", p, err)
			}
		}
		got, err := policy.Of(ctx, db, orgA)
		if err != nil || got != good {
			t.Errorf("after refused changes: %+v, %v; want %+v", got, err, good)
		}
		// The database refuses out-of-bounds limits too.
		if _, err := db.ExecContext(ctx, `UPDATE org_policies SET session_idle_minutes = 1 WHERE org_id = $1`, orgA); err == nil {
			t.Error("the database accepted an idle limit of one minute")
		}
	})
}

func TestAUTH09_PasswordExpiresAfterTheRotationPeriod(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		orgA, _, acc := twoOrgs(t, db)
		if err := db.InTx(ctx, func(tx *sql.Tx) error {
			return accounts.SetPassword(ctx, tx, acc, "Lantern harbour 42", accounts.DefaultPolicy)
		}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if exp, _ := policy.PasswordExpired(ctx, db, acc.ID, now.Add(400*24*time.Hour)); exp {
			t.Error("expired without a rotation policy")
		}
		p := policy.Default()
		p.PasswordRotationDays = 30
		if err := setPolicy(t, db, orgA, p); err != nil {
			t.Fatal(err)
		}
		if exp, _ := policy.PasswordExpired(ctx, db, acc.ID, now.Add(29*24*time.Hour)); exp {
			t.Error("expired after 29 of 30 days")
		}
		if exp, err := policy.PasswordExpired(ctx, db, acc.ID, now.Add(31*24*time.Hour)); !exp || err != nil {
			t.Errorf("not expired after 31 of 30 days: %v", err)
		}
	})
}

func TestAUTH09_PolicyFieldsDescribeTheStruct(t *testing.T) {
	fs := policy.Fields()
	if len(fs) != 9 {
		t.Fatalf("%d fields, want 9", len(fs))
	}
	def := policy.Default()
	if def.PasswordMinLength != 12 || def.SessionIdleMinutes != 20 || def.SessionAbsoluteHours != 12 || def.PasswordRotationDays != 0 {
		t.Errorf("defaults %+v", def)
	}
	if err := def.Validate(); err != nil {
		t.Errorf("default policy invalid: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range fs {
		if f.Name == "" || f.Label == "" || f.Help == "" || f.Strict == "" || seen[f.Name] {
			t.Errorf("field %+v lacks metadata or repeats", f)
		}
		seen[f.Name] = true
		if f.Kind == "int" && (f.Max <= f.Min || f.Unit == "") {
			t.Errorf("field %s: bounds %d..%d, unit %q", f.Name, f.Min, f.Max, f.Unit)
		}
	}
	if fs[0].Name != "password_min_length" || fs[0].Min != 8 {
		t.Errorf("first field %+v: want password_min_length with floor 8", fs[0])
	}
}

package accounts

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit/audittest"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const lockoutPassword = "correct horse battery staple"

// memberOfTwoOrgs makes an account with a password and a role in two
// organizations, and returns it with the organizations' ids.
func memberOfTwoOrgs(t *testing.T, db *sqldb.DB) (Account, []string) {
	t.Helper()
	ctx := context.Background()
	var acc Account
	var orgIDs []string
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if acc, err = Create(ctx, tx, "locked@x.example", "Lock Test"); err != nil {
			return err
		}
		if err := SetPassword(ctx, tx, acc, lockoutPassword, DefaultPolicy); err != nil {
			return err
		}
		for _, slug := range []string{"one", "two"} {
			id := ids.New()
			if _, err := tx.ExecContext(ctx, `INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)`,
				id, slug, slug, sqldb.Now()); err != nil {
				return err
			}
			if _, err := authz.Assign(ctx, tx, authz.Assignment{OrgID: id, AccountID: acc.ID, Role: authz.OrgManager}); err != nil {
				return err
			}
			orgIDs = append(orgIDs, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(orgIDs)
	return acc, orgIDs
}

func fail(t *testing.T, db *sqldb.DB, accountID string) bool {
	t.Helper()
	var locked bool
	err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		locked, err = RecordFailure(context.Background(), audittest.Appending{Tx: tx}, accountID, "192.0.2.1", time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return locked
}

func TestAUTH04_TenthConsecutiveFailureLocksUntilUnlocked(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		acc, orgIDs := memberOfTwoOrgs(t, db)

		// A success in between starts the count again: only consecutive
		// failures lock.
		for range LockAfter - 1 {
			if fail(t, db, acc.ID) {
				t.Fatal("locked before the tenth failure")
			}
		}
		if err := db.InTx(ctx, func(tx *sql.Tx) error { return ResetFailures(ctx, tx, acc.ID) }); err != nil {
			t.Fatal(err)
		}
		for i := range LockAfter {
			if got := fail(t, db, acc.ID); got != (i == LockAfter-1) {
				t.Fatalf("failure %d locked = %v", i+1, got)
			}
		}
		if fail(t, db, acc.ID) {
			t.Error("a failure on a locked account locked it again")
		}
		st, err := Lockout(ctx, db, acc.ID)
		if err != nil || !st.Locked() || st.Failures != LockAfter+1 {
			t.Fatalf("lockout = %+v, %v", st, err)
		}

		// The right password no longer opens it, with the one answer for
		// every failure.
		_, at, err := Check(ctx, db, acc.Email, lockoutPassword)
		if !errors.Is(err, ErrBadCredentials) || !at.Locked || at.AccountID != acc.ID {
			t.Fatalf("Check(right password) on locked account = %+v, %v", at, err)
		}
		if err := db.InTx(ctx, func(tx *sql.Tx) error { return ResetFailures(ctx, tx, acc.ID) }); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("ResetFailures on a locked account = %v, want ErrBadCredentials", err)
		}

		// One security event per organization, so each one's administrators
		// see it.
		rows, err := db.QueryContext(ctx,
			`SELECT org_id, security, object_id FROM audit_events WHERE action = 'account.lock' ORDER BY org_id`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var org, object string
			var security bool
			rows.Scan(&org, &security, &object)
			if !security || object != acc.ID {
				t.Errorf("account.lock event: security=%v object=%s", security, object)
			}
			got = append(got, org)
		}
		rows.Close()
		if !slices.Equal(got, orgIDs) {
			t.Errorf("account.lock events in organizations %v, want %v", got, orgIDs)
		}

		var unlocked bool
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			unlocked, err = Unlock(ctx, tx, acc.ID)
			return err
		})
		if err != nil || !unlocked {
			t.Fatalf("Unlock = %v, %v", unlocked, err)
		}
		if _, err := Authenticate(ctx, db, acc.Email, lockoutPassword); err != nil {
			t.Errorf("sign-in after unlock: %v", err)
		}
		if st, _ := Lockout(ctx, db, acc.ID); st.Locked() || st.Failures != 0 {
			t.Errorf("after unlock: %+v", st)
		}
		db.InTx(ctx, func(tx *sql.Tx) error {
			unlocked, err = Unlock(ctx, tx, acc.ID)
			return err
		})
		if unlocked {
			t.Error("Unlock of an unlocked account reported a change")
		}
	})
}

func TestAUTH06_FailureOfUnknownAddressRunsTheSameStatementAndChangesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		acc, _ := memberOfTwoOrgs(t, db)
		for range 2 * LockAfter {
			if fail(t, db, "") {
				t.Fatal("a failure without an account locked something")
			}
		}
		if st, _ := Lockout(context.Background(), db, acc.ID); st.Failures != 0 {
			t.Errorf("an unrelated account counted failures: %+v", st)
		}
	})
}

// Two nodes failing at once past the threshold lock the account once.
func TestAUTH04_ConcurrentFailuresLockOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		acc, orgIDs := memberOfTwoOrgs(t, db)
		results := make(chan bool, 3*LockAfter)
		for range 3 * LockAfter {
			go func() {
				var locked bool
				err := db.InTx(context.Background(), func(tx *sql.Tx) error {
					var err error
					locked, err = RecordFailure(context.Background(), audittest.Appending{Tx: tx}, acc.ID, "192.0.2.1", time.Now())
					return err
				})
				if err != nil {
					t.Error(err)
				}
				results <- locked
			}()
		}
		locks := 0
		for range 3 * LockAfter {
			if <-results {
				locks++
			}
		}
		var events int
		db.QueryRowContext(context.Background(), `SELECT count(*) FROM audit_events WHERE action = 'account.lock'`).Scan(&events)
		if locks != 1 || events != len(orgIDs) {
			t.Errorf("%d locks and %d lock events, want 1 and %d", locks, events, len(orgIDs))
		}
	})
}

package gate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// terminate ends the sessions of db's database other than admin's own
// (pg_terminate_backend: SQLSTATE 57P01 admin_shutdown for their next
// statement), or the session pid only when pid is not 0.
func terminate(t *testing.T, admin *sqldb.DB, db *sqldb.DB, pid int) {
	t.Helper()
	ctx := context.Background()
	var name string
	if err := db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := admin.QueryRowContext(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid() AND ($2 = 0 OR pid = $2)`, name, pid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no session of %s to terminate", name)
	}
}

// TestAVL05_ConnectionCutAnswersUnavailable: PostgreSQL sessions cut by
// pg_terminate_backend, between requests and in the middle of one, fail
// the request as Unavailable (503), never as an internal error (500); an
// identity database cut while a key is read from it is reported as that
// database being unavailable, not as missing keys; and the gate reports
// the failed write until one succeeds.
func TestAVL05_ConnectionCutAnswersUnavailable(t *testing.T) {
	ctx := context.Background()
	f := withKeys(t, setup(t, sqldb.Postgres), sqldb.Postgres, localKEK(t))
	admin, err := sqldb.Open(ctx, sqldbtest.RequirePostgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	work := func(mid func(t *gate.Tx) error) func(t *gate.Tx) error {
		return func(t *gate.Tx) error {
			if err := t.Authorize(authz.StudyRead, authz.Resource{OrgID: f.org.ID, StudyID: f.study.ID}); err != nil {
				return err
			}
			if mid != nil {
				if err := mid(t); err != nil {
					return err
				}
			}
			var n int
			return t.QueryRowContext(ctx, `SELECT COUNT(*) FROM studies WHERE org_id = $1`, f.org.ID).Scan(&n)
		}
	}
	unavailable := func(what string, err error, want string) {
		t.Helper()
		if err == nil || errs.KindOf(err) != errs.Unavailable || router.Status(errs.KindOf(err)) != 503 {
			t.Errorf("%s: %v (kind %s), want Unavailable, answered 503", what, err, errs.KindOf(err))
		}
		if err != nil && !strings.Contains(errs.SafeMessage(err), want) {
			t.Errorf("%s: the requester reads %q, want it to say %q", what, errs.SafeMessage(err), want)
		}
	}
	// Warm the pools, so that the cut sessions are the ones reused.
	for range 3 {
		if err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.list", work(nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.g.WriteFailure(); err != nil {
		t.Fatalf("write failure reported before any: %v", err)
	}

	// Between requests: every pooled session of the clinical database cut.
	terminate(t, admin, f.db, 0)
	unavailable("request after the sessions were cut", f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.list", work(nil)), "database is unavailable")
	if err := f.g.WriteFailure(); err == nil {
		t.Errorf("the gate does not report the write that the cut failed")
	}

	// In the middle of a request: its own session cut after authorization.
	unavailable("request whose session was cut", f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.list", work(func(tx *gate.Tx) error {
		var pid int
		if err := tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		terminate(t, admin, f.db, pid)
		return nil
	})), "unavailable")

	// The identity database cut while the participant's key is read.
	unavailable("identity database cut", f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "identity.test", work(func(tx *gate.Tx) error {
		it, err := tx.Identity(ctx)
		if err != nil {
			return err
		}
		var pid int
		if err := it.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		terminate(t, admin, f.identity, pid)
		_, err = it.Vault().Seal(ctx, keys.ParticipantScope(f.org.ID, "p-1"),
			keys.Context{OrgID: f.org.ID, StudyID: f.study.ID, RecordID: "p-1", Field: "name"}, []byte("Ada"))
		return err
	})), "the identity database is unavailable")

	// The pools heal: the next requests are carried out, and the gate no
	// longer reports a failed write.
	for range 3 {
		err = f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.list", work(nil))
	}
	if err != nil {
		t.Fatalf("request after the cuts: %v", err)
	}
	if err := f.g.WriteFailure(); err != nil {
		t.Errorf("a write succeeded, yet the gate reports %v", err)
	}
}

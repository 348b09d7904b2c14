package accounts_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A person reads their own account without leaving a trace, and renames
// it through the gate: the name is checked, an empty one becomes the
// address's local part, and the rename (naming no name) is on the trail of
// each of the account's organizations. A refused name changes nothing and
// records nothing.
func TestAUD01_OwnRenameIsOnEachOrganizationsTrail(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		var (
			acc         accounts.Account
			first, next orgs.Organization
		)
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if first, err = orgs.CreateOrganization(ctx, tx, "First", ""); err != nil {
				return err
			}
			if next, err = orgs.CreateOrganization(ctx, tx, "Next", ""); err != nil {
				return err
			}
			if acc, _, err = accounts.Enrol(ctx, tx, "ada@clinic.example", "Ada", authz.Assignment{OrgID: first.ID, Role: authz.OrgAdmin}); err != nil {
				return err
			}
			_, _, err = accounts.Enrol(ctx, tx, "ada@clinic.example", "", authz.Assignment{OrgID: next.ID, Role: authz.OrgManager})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		svc := &accounts.Service{Gate: gate.New(gate.Config{Clinical: db})}
		ada := gate.Actor{AccountID: acc.ID, SessionID: "s1", RemoteAddr: "192.0.2.1"}
		trail := func(org string) []audit.Event {
			t.Helper()
			evs, _, err := audit.Search(ctx, db, audit.Filter{OrgID: org, Limit: audit.MaxPage})
			if err != nil {
				t.Fatal(err)
			}
			return evs
		}

		got, err := svc.Account(ctx, ada)
		if err != nil || got.ID != acc.ID || got.DisplayName != "Ada" || got.Email != "ada@clinic.example" {
			t.Fatalf("own account: %+v, %v", got, err)
		}
		if _, err := svc.Account(ctx, gate.Actor{}); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("account without a sign-in: %v, want Unauthenticated", err)
		}
		if _, err := svc.Rename(ctx, ada, "Ada\x07"); !errs.Is(err, errs.Invalid) {
			t.Errorf("a name with a control character: %v, want Invalid", err)
		}
		if evs := append(trail(first.ID), trail(next.ID)...); len(evs) != 0 {
			t.Errorf("reading and a refused rename left events: %+v", evs)
		}

		if got, err = svc.Rename(ctx, ada, "  Ada Lovelace "); err != nil || got.DisplayName != "Ada Lovelace" {
			t.Fatalf("rename: %+v, %v", got, err)
		}
		if got, err = svc.Rename(ctx, ada, ""); err != nil || got.DisplayName != "ada" {
			t.Fatalf("rename to nothing: %+v, %v", got, err)
		}
		if got, _ = svc.Account(ctx, ada); got.DisplayName != "ada" {
			t.Errorf("name after the renames: %q", got.DisplayName)
		}
		for _, org := range []string{first.ID, next.ID} {
			evs := trail(org)
			if len(evs) != 2 {
				t.Fatalf("trail of %s: %+v, want the two renames", org, evs)
			}
			for _, ev := range evs {
				if ev.Action != "account.rename" || ev.Outcome != audit.Success || ev.ActorAccount != acc.ID || ev.ActorSession != "s1" ||
					ev.ObjectType != "account" || ev.ObjectID != acc.ID || ev.RemoteAddr != "192.0.2.1" {
					t.Errorf("rename event %+v", ev)
				}
				for k, v := range ev.Details {
					if strings.Contains(v, "Ada") || strings.Contains(v, "Lovelace") {
						t.Errorf("the event names the name: %s=%s", k, v)
					}
				}
			}
		}
	})
}

// ByIDs finds several accounts in one statement, each once, and leaves
// out ids without an account and what is not an id.
func TestByIDsFindsEachAccountOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		var a, b accounts.Account
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if a, err = accounts.Create(ctx, tx, "a@clinic.example", "A"); err != nil {
				return err
			}
			b, err = accounts.Create(ctx, tx, "b@clinic.example", "")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := accounts.ByIDs(ctx, db, []string{a.ID, "", b.ID, a.ID, "aaaaaaaaaaaaaaaaaaaaaaaaaa", "x' OR '1'='1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[a.ID].Email != "a@clinic.example" || got[a.ID].DisplayName != "A" || got[b.ID].DisplayName != "b" {
			t.Errorf("ByIDs = %+v", got)
		}
		if got, err := accounts.ByIDs(ctx, db, nil); err != nil || len(got) != 0 {
			t.Errorf("ByIDs(nil) = %+v, %v", got, err)
		}
	})
}

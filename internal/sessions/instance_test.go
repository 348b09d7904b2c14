package sessions_test

import (
	"context"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// seededInstance opens a fresh instance on dialect d (both databases),
// seeded with the demo organization, and returns it with the demo logins
// by role. It is closed when the test ends.
func seededInstance(t *testing.T, d sqldb.Dialect) (*instance.Instance, map[authz.Role]demo.Login) {
	t.Helper()
	ctx := context.Background()
	// The databases come with the schema applied (SQLite's a copy made once
	// a process, sqldbtest.MigratedURL): instance.Open then only pairs them
	// and makes the keys, as at the first start after `custodia migrate`.
	cfg := instance.Config{
		DataDir:          t.TempDir(),
		Database:         sqldbtest.MigratedURL(t, d, sqldb.Clinical),
		IdentityDatabase: sqldbtest.MigratedURL(t, d, sqldb.Identity),
	}
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	logins, err := demo.Seed(ctx, gate.New(gate.Config{Clinical: inst.Clinical}))
	if err != nil {
		t.Fatal(err)
	}
	byRole := map[authz.Role]demo.Login{}
	for _, l := range logins {
		byRole[l.Role] = l
	}
	return inst, byRole
}

package instance

import (
	"context"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// An existing instance whose databases need migrations is refused unless
// the caller migrates (custodia migrate, serve --migrate): the server can
// then run under a database role that may not change the schema (ASVS
// V13.2.2). The refusal changes nothing; a new instance is always made.
func TestAVL03_PendingMigrationsAreRefusedUnlessMigrating(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		c := Config{DataDir: t.TempDir()}
		if d == sqldb.Postgres {
			c.Database, c.IdentityDatabase = sqldbtest.URL(t, d), sqldbtest.URL(t, d)
		}
		inst, err := Open(ctx, c)
		if err != nil {
			t.Fatalf("a new instance: %v", err)
		}
		// Take the clinical database back one version: its newest
		// migration records the backups written.
		st, err := inst.Clinical.State(ctx, sqldb.Clinical)
		if err != nil {
			t.Fatal(err)
		}
		undo := []string{`DROP TABLE backups`}
		for _, q := range append(undo, `DELETE FROM schema_migrations WHERE version = $1`) {
			args := []any{}
			if strings.Contains(q, "$1") {
				args = append(args, st.Known)
			}
			if _, err := inst.Clinical.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		inst.Close()

		if _, err := Open(ctx, c); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "custodia migrate") {
			t.Fatalf("an instance one migration behind: %v, want a refusal naming custodia migrate", err)
		}
		if _, err := OpenExisting(ctx, c); !errs.Is(err, errs.Invalid) {
			t.Fatalf("OpenExisting one migration behind: %v, want refused", err)
		}
		c.Migrate = true
		inst, err = Open(ctx, c)
		if err != nil {
			t.Fatalf("migrating: %v", err)
		}
		defer inst.Close()
		if st, err := inst.Clinical.State(ctx, sqldb.Clinical); err != nil || st.Applied != st.Known {
			t.Errorf("after migrating: %+v, %v", st, err)
		}
	})
}

package instance

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestCRY09_IdentityDatabaseOfAnotherInstanceIsRefused(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		cfg := func() Config {
			c := Config{DataDir: t.TempDir()}
			if d == sqldb.Postgres {
				c.Database, c.IdentityDatabase = sqldbtest.URL(t, d), sqldbtest.URL(t, d)
			}
			return c.WithDefaults()
		}
		a, b := cfg(), cfg()
		for _, c := range []Config{a, b} {
			inst, err := Open(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if err := inst.Ready(ctx); err != nil {
				t.Errorf("fresh instance not ready: %v", err)
			}
			inst.Close()
		}
		// Reopening keeps the instance id.
		i1, _ := Open(ctx, a)
		i2, err := Open(ctx, a)
		if err != nil || i1.ID != i2.ID || i1.ID == "" {
			t.Fatalf("reopen: %v, ids %q %q", err, i1.ID, i2.ID)
		}
		i1.Close()
		i2.Close()
		mixed := a
		mixed.IdentityDatabase = b.IdentityDatabase
		if _, err := Open(ctx, mixed); err == nil || !strings.Contains(err.Error(), "another instance") {
			t.Errorf("A's clinical with B's identity database: %v, want refusal", err)
		}
	})
}

func TestIdentityDatabaseMustBeSeparate(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(context.Background(), Config{DataDir: dir, IdentityDatabase: "sqlite:" + filepath.Join(dir, ".", "clinical.db")})
	if err == nil || !strings.Contains(err.Error(), "separate") {
		t.Errorf("same file for both: %v", err)
	}
}

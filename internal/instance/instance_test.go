package instance

import (
	"context"
	"errors"
	"os"
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

// dbFile is the SQLite file of a database URL, "" for PostgreSQL.
func dbFile(url string) string {
	p, ok := strings.CutPrefix(url, "sqlite:")
	if !ok {
		return ""
	}
	return p
}

// populated makes an instance at c with an organization, as after its
// first start and custodia init.
func populated(t *testing.T, c Config) string {
	t.Helper()
	ctx := context.Background()
	inst, err := Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if _, err := inst.Clinical.ExecContext(ctx, `INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)`,
		"org1", "lab", "Lab", sqldb.Now()); err != nil {
		t.Fatal(err)
	}
	return inst.ID
}

// emptied stands for a lost database: a SQLite file truncated to 0 bytes
// or deleted, or a PostgreSQL URL naming a fresh, empty database. It
// returns the URL to open it with.
func emptied(t *testing.T, d sqldb.Dialect, url string, remove bool) string {
	t.Helper()
	if d == sqldb.Postgres {
		return sqldbtest.URL(t, d)
	}
	p := dbFile(url)
	for _, f := range []string{p + "-wal", p + "-shm"} {
		os.Remove(f)
	}
	if remove {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		return url
	}
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	return url
}

// untouched fails the test if opening wrote to the lost database: a SQLite
// file made or grown, tables made in PostgreSQL.
func untouched(t *testing.T, d sqldb.Dialect, url string, removed bool) {
	t.Helper()
	if d == sqldb.SQLite {
		fi, err := os.Stat(dbFile(url))
		switch {
		case removed && !errors.Is(err, os.ErrNotExist):
			t.Errorf("the deleted database %s was made again (%v)", dbFile(url), err)
		case !removed && (err != nil || fi.Size() != 0):
			t.Errorf("the emptied database %s was written to (%v)", dbFile(url), err)
		}
		return
	}
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if has, err := db.HasTable(context.Background(), "schema_migrations"); err != nil || has {
		t.Errorf("the empty PostgreSQL database was migrated (%v, %v)", has, err)
	}
}

func pgConfig(t *testing.T, d sqldb.Dialect) Config {
	c := Config{DataDir: t.TempDir()}
	if d == sqldb.Postgres {
		c.Database, c.IdentityDatabase = sqldbtest.URL(t, d), sqldbtest.URL(t, d)
	}
	return c.WithDefaults()
}

// TestAVL03_LostDatabaseIsRefusedNotMadeAnew: a database that the other
// one says should hold data is never made or paired anew, and the refusal
// writes nothing to it.
func TestAVL03_LostDatabaseIsRefusedNotMadeAnew(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		for _, remove := range []bool{false, true} {
			if remove && d == sqldb.Postgres {
				continue
			}
			// The identity database lost beside a clinical database with
			// organizations.
			c := pgConfig(t, d)
			inst := populated(t, c)
			lost := c
			lost.IdentityDatabase = emptied(t, d, c.IdentityDatabase, remove)
			for _, open := range []func(context.Context, Config) (*Instance, error){Open, OpenExisting} {
				_, err := open(ctx, lost)
				if err == nil || !strings.Contains(err.Error(), "restore the identity database from a backup") || !strings.Contains(err.Error(), inst) {
					t.Errorf("identity database lost (removed %t): %v, want a refusal naming instance %s", remove, err, inst)
				}
			}
			untouched(t, d, lost.IdentityDatabase, remove)

			// The clinical database lost beside a paired identity database.
			c = pgConfig(t, d)
			inst = populated(t, c)
			lost = c
			lost.Database = emptied(t, d, c.Database, remove)
			for _, open := range []func(context.Context, Config) (*Instance, error){Open, OpenExisting} {
				_, err := open(ctx, lost)
				if err == nil || !strings.Contains(err.Error(), "restore the clinical database from a backup") || !strings.Contains(err.Error(), inst) {
					t.Errorf("clinical database lost (removed %t): %v, want a refusal naming instance %s", remove, err, inst)
				}
			}
			untouched(t, d, lost.Database, remove)
		}

		// Both lost, in a data folder that holds the audit key of the
		// instance they belonged to.
		c := pgConfig(t, d)
		inst := populated(t, c)
		if err := os.MkdirAll(filepath.Join(c.DataDir, "audit"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.DataDir, "audit", "verifier.pub"), []byte("custodia-audit-"+inst+"+01234567+AQID\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		lost := c
		lost.Database, lost.IdentityDatabase = emptied(t, d, c.Database, false), emptied(t, d, c.IdentityDatabase, false)
		if _, err := Open(ctx, lost); err == nil || !strings.Contains(err.Error(), "audit key of instance "+inst) {
			t.Errorf("both databases lost: %v, want a refusal naming the audit key of %s", err, inst)
		}
		untouched(t, d, lost.Database, false)
		untouched(t, d, lost.IdentityDatabase, false)
	})
}

// TestAVL03_PairingInterruptedAtFirstStartIsCompleted: a crash between the
// two first writes leaves a clinical instance without organizations and an
// identity database without an instance; the next start pairs them.
func TestAVL03_PairingInterruptedAtFirstStartIsCompleted(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		c := pgConfig(t, d)
		inst, err := Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		id := inst.ID
		if _, err := inst.Identity.ExecContext(ctx, `DELETE FROM instance`); err != nil {
			t.Fatal(err)
		}
		inst.Close()
		inst, err = OpenExisting(ctx, c)
		if err != nil {
			t.Fatalf("reopen after an interrupted pairing: %v", err)
		}
		defer inst.Close()
		if got, _ := readInstanceID(ctx, inst.Identity); got != id || inst.ID != id {
			t.Errorf("identity paired with %q, instance %q, want %q", got, inst.ID, id)
		}
	})
}

// TestWEB05_CommandsRefuseAPlaceWithoutInstanceAndWriteNothing: opening an
// existing instance where none is makes no folder, no file and no table.
func TestWEB05_CommandsRefuseAPlaceWithoutInstanceAndWriteNothing(t *testing.T) {
	ctx := context.Background()
	typo := filepath.Join(t.TempDir(), "typo")
	if _, err := OpenExisting(ctx, Config{DataDir: typo}); err == nil || !strings.Contains(err.Error(), "no Custodia instance at "+typo) {
		t.Errorf("missing data folder: %v", err)
	}
	if _, err := os.Lstat(typo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data folder %s was made (%v)", typo, err)
	}
	if _, _, err := OpenClinical(ctx, Config{DataDir: typo}); err == nil || !strings.Contains(err.Error(), "no Custodia instance") {
		t.Errorf("audit reading a missing data folder: %v", err)
	}
	if _, err := os.Lstat(typo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data folder %s was made (%v)", typo, err)
	}
	empty := t.TempDir()
	if _, err := OpenExisting(ctx, Config{DataDir: empty}); err == nil || !strings.Contains(err.Error(), "clinical.db is missing or empty") {
		t.Errorf("empty data folder: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) > 0 {
		t.Errorf("refused, but wrote %d entries into %s", len(entries), empty)
	}
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		if d != sqldb.Postgres {
			return
		}
		c := Config{DataDir: t.TempDir(), Database: sqldbtest.URL(t, d), IdentityDatabase: sqldbtest.URL(t, d)}
		if _, err := OpenExisting(ctx, c); err == nil || !strings.Contains(err.Error(), "holds no instance") {
			t.Errorf("empty PostgreSQL databases: %v", err)
		}
		untouched(t, d, c.Database, false)
		untouched(t, d, c.IdentityDatabase, false)
	})
}

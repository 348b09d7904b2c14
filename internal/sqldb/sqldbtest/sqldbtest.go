// Package sqldbtest gives tests fresh databases of every dialect Custodia
// supports, so one test body runs against SQLite and PostgreSQL alike.
//
// SQLite databases live in the test's temporary folder. PostgreSQL databases
// are created on the server named by CUSTODIA_TEST_POSTGRES (a URL whose
// user may create databases) and dropped when the test ends. Without that
// variable the PostgreSQL variant is skipped, except under CI=true, where it
// fails: CI must never pass by skipping.
package sqldbtest

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// EnvPostgres names the variable holding the test server's URL.
const EnvPostgres = "CUSTODIA_TEST_POSTGRES"

// Each runs body once per dialect as a subtest named after the dialect.
func Each(t *testing.T, body func(t *testing.T, d sqldb.Dialect)) {
	t.Helper()
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			if d == sqldb.Postgres {
				RequirePostgres(t)
			}
			body(t, d)
		})
	}
}

// RequirePostgres skips the test when no PostgreSQL server is configured,
// or fails it under CI, and returns the server's URL.
func RequirePostgres(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvPostgres)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set; under CI the PostgreSQL tests must run", EnvPostgres)
		}
		t.Skipf("%s not set; skipping PostgreSQL variant", EnvPostgres)
	}
	return u
}

// URL returns the address of a fresh, empty database of dialect d, removed
// when the test ends.
func URL(t testing.TB, d sqldb.Dialect) string {
	t.Helper()
	switch d {
	case sqldb.SQLite:
		return "sqlite:" + filepath.Join(t.TempDir(), "test.db")
	case sqldb.Postgres:
		return postgresDatabase(t, RequirePostgres(t))
	}
	t.Fatalf("unknown dialect %q", d)
	return ""
}

// Open returns a fresh database of dialect d with schema s applied.
func Open(t testing.TB, d sqldb.Dialect, s sqldb.Schema) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, URL(t, d))
	if err != nil {
		t.Fatalf("open %s: %v", d, err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx, s); err != nil {
		t.Fatalf("migrate %s: %v", d, err)
	}
	return db
}

func postgresDatabase(t testing.TB, server string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	defer admin.Close()
	name := "custodia_test_" + ids.New()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database on %s: %v", sqldb.Redact(server), err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", server)
		if err != nil {
			return
		}
		defer admin.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin.ExecContext(cctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

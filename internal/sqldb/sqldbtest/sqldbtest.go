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
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	if d == sqldb.SQLite {
		// A copy of the process's migrated file (MigratedURL).
		db, err := sqldb.Open(ctx, MigratedURL(t, d, s))
		if err != nil {
			t.Fatalf("open %s: %v", d, err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
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

// MigratedURL returns the address of a fresh database of dialect d with
// schema s applied, removed when the test ends, for a test that opens it
// itself (as instance.Open does). Tests of the migrations themselves start
// from URL instead.
//
// A SQLite database is a copy of one made once per test process: applying
// the schema's steps costs the pure-Go SQLite most of a second under the
// race detector, so every test migrating its own file took most of the
// time of the packages that make many. The copy holds the same schema and
// the same schema_migrations rows; Migrate on it applies nothing.
func MigratedURL(t testing.TB, d sqldb.Dialect, s sqldb.Schema) string {
	t.Helper()
	if d != sqldb.SQLite {
		ctx := context.Background()
		u := URL(t, d)
		db, err := sqldb.Open(ctx, u)
		if err != nil {
			t.Fatalf("open %s: %v", d, err)
		}
		defer db.Close()
		if _, err := db.Migrate(ctx, s); err != nil {
			t.Fatalf("migrate %s: %v", d, err)
		}
		return u
	}
	file, err := sqliteTemplate(s)
	if err != nil {
		t.Fatalf("migrate %s: %v", d, err)
	}
	path := filepath.Join(t.TempDir(), "test.db")
	// Owner-only, as sqldb.Open makes the file (and requires it).
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return "sqlite:" + path
}

// sqliteTemplates holds the migrated SQLite files, by schema and the
// checksums of its steps, so that a test's own schema of the same name
// never takes another's file.
var sqliteTemplates sync.Map // string -> *sqliteTemplateFile

type sqliteTemplateFile struct {
	once sync.Once
	file []byte
	err  error
}

// sqliteTemplate returns the content of a SQLite file with schema s
// applied, made on the first call.
func sqliteTemplate(s sqldb.Schema) ([]byte, error) {
	ms, err := s.Migrations(sqldb.SQLite)
	if err != nil {
		return nil, err
	}
	key := s.Name
	for _, m := range ms {
		key += " " + m.Checksum
	}
	v, _ := sqliteTemplates.LoadOrStore(key, new(sqliteTemplateFile))
	tf := v.(*sqliteTemplateFile)
	tf.once.Do(func() { tf.file, tf.err = makeSQLiteTemplate(s) })
	return tf.file, tf.err
}

func makeSQLiteTemplate(s sqldb.Schema) ([]byte, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "custodia-sqldbtest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "template.db")
	db, err := sqldb.Open(ctx, "sqlite:"+path)
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx, s); err != nil {
		db.Close()
		return nil, err
	}
	// Closing the last connection writes the write-ahead log into the
	// file and removes it: the file alone is then the whole database.
	if err := db.Close(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("the %s template kept a write-ahead log of %d bytes after closing", s.Name, fi.Size())
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	file, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(string(file), "SQLite format 3\x00") {
		return nil, fmt.Errorf("the %s template is not a SQLite file", s.Name)
	}
	return file, nil
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

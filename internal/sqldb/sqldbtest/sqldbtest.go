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
		return postgresDatabase(t, RequirePostgres(t), "")
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

// MigratedFile writes at path, which must not exist, a SQLite database
// with schema s applied: a copy of the file MigratedURL copies, for a test
// that needs it at a given place (an instance's data folder).
func MigratedFile(t testing.TB, path string, s sqldb.Schema) {
	t.Helper()
	file, err := sqliteTemplate(s)
	if err != nil {
		t.Fatalf("migrate %s: %v", sqldb.SQLite, err)
	}
	// Owner-only, as sqldb.Open makes the file (and requires it).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(file); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
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
	file, err := readClosedSQLite(path)
	if err != nil {
		return nil, fmt.Errorf("the %s template: %w", s.Name, err)
	}
	return file, nil
}

// A Template is a database made once a test process, outside any test
// (for instance migrated and seeded), that tests start from a copy of
// (Copy): a copy costs a file copy or a CREATE DATABASE, where making the
// content again may cost seconds under the race detector.
type Template struct {
	Dialect sqldb.Dialect
	// URL is the template's address, for making its content. Nothing may
	// hold it open once tests copy it.
	URL string

	server, name string // PostgreSQL: the server and the database's name
	mu           sync.Mutex
	file         []byte // SQLite: the file's content, read at the first copy
}

// NewTemplate makes an empty template database of dialect d: a file in the
// folder dir for SQLite (which the caller removes), a database on the
// server CUSTODIA_TEST_POSTGRES names for PostgreSQL (which Remove drops).
func NewTemplate(d sqldb.Dialect, dir string) (*Template, error) {
	switch d {
	case sqldb.SQLite:
		return &Template{Dialect: d, URL: "sqlite:" + filepath.Join(dir, "template-"+ids.New()+".db")}, nil
	case sqldb.Postgres:
		server := os.Getenv(EnvPostgres)
		if server == "" {
			return nil, fmt.Errorf("%s not set", EnvPostgres)
		}
		admin, err := sql.Open("pgx", server)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", EnvPostgres, err)
		}
		defer admin.Close()
		name := "custodia_template_" + ids.New()
		if _, err := admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
			return nil, fmt.Errorf("create template database on %s: %v", sqldb.Redact(server), err)
		}
		u, err := url.Parse(server)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", EnvPostgres, err)
		}
		u.Path = "/" + name
		return &Template{Dialect: d, URL: u.String(), server: server, name: name}, nil
	}
	return nil, fmt.Errorf("unknown dialect %q", d)
}

// Copy returns the address of a fresh database holding what the template
// holds, removed when the test ends. The template must be closed: a
// SQLite template's write-ahead log must have been written into its file.
func (tp *Template) Copy(t testing.TB) string {
	t.Helper()
	if tp.Dialect == sqldb.Postgres {
		return postgresDatabase(t, tp.server, tp.name)
	}
	file, err := tp.sqliteFile()
	if err != nil {
		t.Fatalf("copy the SQLite template: %v", err)
	}
	path := filepath.Join(t.TempDir(), "test.db")
	// Owner-only, as sqldb.Open makes the file (and requires it).
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return "sqlite:" + path
}

func (tp *Template) sqliteFile() ([]byte, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.file != nil {
		return tp.file, nil
	}
	path := strings.TrimPrefix(tp.URL, "sqlite:")
	file, err := readClosedSQLite(path)
	if err != nil {
		return nil, fmt.Errorf("the template %s: %w", path, err)
	}
	tp.file = file
	return file, nil
}

// Remove drops a PostgreSQL template; a SQLite template's file goes with
// its folder.
func (tp *Template) Remove() {
	if tp == nil || tp.Dialect != sqldb.Postgres {
		return
	}
	dropPostgres(tp.server, tp.name)
}

// postgresDatabase creates a database on server, a copy of the database
// template ("" for the server's default, an empty one), dropped when the
// test ends, and returns its URL.
func postgresDatabase(t testing.TB, server, template string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	defer admin.Close()
	name := "custodia_test_" + ids.New()
	create := "CREATE DATABASE " + name
	if template != "" {
		create += " TEMPLATE " + template
	}
	if _, err := admin.ExecContext(ctx, create); err != nil {
		t.Fatalf("create test database on %s: %v", sqldb.Redact(server), err)
	}
	t.Cleanup(func() { dropPostgres(server, name) })
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

func dropPostgres(server, name string) {
	admin, err := sql.Open("pgx", server)
	if err != nil {
		return
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// readClosedSQLite reads the SQLite file at path, which must be closed:
// with no write-ahead log left beside it, the file is the whole database.
func readClosedSQLite(path string) ([]byte, error) {
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("a write-ahead log of %d bytes is left: close the database first", fi.Size())
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	file, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(string(file), "SQLite format 3\x00") {
		return nil, errors.New("not a SQLite file")
	}
	return file, nil
}

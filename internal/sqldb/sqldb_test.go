package sqldb_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestMigrateAppliesOnceAndRecords(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		for _, s := range []sqldb.Schema{sqldb.Clinical, sqldb.Identity} {
			db, err := sqldb.Open(ctx, sqldbtest.URL(t, d))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			st, err := db.State(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if st.Applied != 0 || st.Current() {
				t.Fatalf("fresh %s database: state %+v, want nothing applied", s.Name, st)
			}
			n, err := db.Migrate(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if n != st.Known || n == 0 {
				t.Fatalf("Migrate applied %d, want %d", n, st.Known)
			}
			n, err = db.Migrate(ctx, s)
			if err != nil || n != 0 {
				t.Fatalf("second Migrate = %d, %v; want 0, nil", n, err)
			}
			st, err = db.State(ctx, s)
			if err != nil || !st.Current() {
				t.Fatalf("after Migrate: %+v, %v", st, err)
			}
		}
	})
}

func TestMigrateRefusesEditedOrUnknownSteps(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, err := sqldb.Open(ctx, sqldbtest.URL(t, d))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		v1 := sqldb.Schema{Name: "t", FS: fstest.MapFS{
			string(d) + "/0001_one.sql": {Data: []byte("CREATE TABLE one (x INTEGER);")},
			string(d) + "/0002_two.sql": {Data: []byte("CREATE TABLE two (x INTEGER);")},
		}}
		if _, err := db.Migrate(ctx, v1); err != nil {
			t.Fatal(err)
		}
		edited := sqldb.Schema{Name: "t", FS: fstest.MapFS{
			string(d) + "/0001_one.sql": {Data: []byte("CREATE TABLE one (x INTEGER, y INTEGER);")},
			string(d) + "/0002_two.sql": {Data: []byte("CREATE TABLE two (x INTEGER);")},
		}}
		if _, err := db.Migrate(ctx, edited); err == nil || !strings.Contains(err.Error(), "never be edited") {
			t.Errorf("edited migration: err = %v, want refusal", err)
		}
		older := sqldb.Schema{Name: "t", FS: fstest.MapFS{
			string(d) + "/0001_one.sql": {Data: []byte("CREATE TABLE one (x INTEGER);")},
		}}
		if _, err := db.State(ctx, older); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
			t.Errorf("older binary: err = %v, want refusal", err)
		}
	})
}

func TestFailedMigrationLeavesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, err := sqldb.Open(ctx, sqldbtest.URL(t, d))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		bad := sqldb.Schema{Name: "t", FS: fstest.MapFS{
			string(d) + "/0001_bad.sql": {Data: []byte("CREATE TABLE half (x INTEGER); THIS IS NOT SQL;")},
		}}
		if _, err := db.Migrate(ctx, bad); err == nil {
			t.Fatal("Migrate of broken SQL succeeded")
		}
		_, err = db.ExecContext(ctx, "INSERT INTO half (x) VALUES (1)")
		if err == nil {
			t.Error("table of a failed migration exists")
		}
	})
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in      string
		dialect sqldb.Dialect
		bad     string
	}{
		{in: "sqlite:data/x.db", dialect: sqldb.SQLite},
		{in: "sqlite:/abs/x.db", dialect: sqldb.SQLite},
		{in: "postgres://u@db.example:5432/custodia?sslmode=verify-full", dialect: sqldb.Postgres},
		{in: "postgresql://u@localhost/c", dialect: sqldb.Postgres},
		{in: "sqlite:", bad: "no file path"},
		{in: "sqlite:x.db?mode=memory", bad: "may not contain"},
		{in: "mysql://u@h/db", bad: "unsupported database URL"},
		{in: "postgres://u:secret@h:notaport/db", bad: "malformed PostgreSQL URL"},
		{in: "postgres://u@h:5432", bad: "names no database"},
		{in: "x.db", bad: "unsupported database URL"},
	} {
		got, err := sqldb.ParseURL(tc.in)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) || errs.KindOf(err) != errs.Invalid {
				t.Errorf("ParseURL(%q) err = %v, want Invalid %q", tc.in, err, tc.bad)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseURL(%q) error reveals the password: %v", tc.in, err)
			}
			continue
		}
		if err != nil || got.Dialect != tc.dialect {
			t.Errorf("ParseURL(%q) = %+v, %v; want %s", tc.in, got, err, tc.dialect)
		}
	}
}

func TestRedactHidesPasswords(t *testing.T) {
	for _, in := range []string{
		"postgres://alice:s3cr3t@db:5432/c",
		"postgres://alice@db/c?password=s3cr3t",
	} {
		if out := sqldb.Redact(in); strings.Contains(out, "s3cr3t") {
			t.Errorf("Redact(%q) = %q", in, out)
		}
	}
}

func TestSQLiteSettings(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.URL(t, sqldb.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for pragma, want := range map[string]string{
		"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "10000", "secure_delete": "1", "temp_store": "2",
		"wal_autocheckpoint": "10000",
	} {
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

func TestOpenSQLiteInMissingFolder(t *testing.T) {
	_, err := sqldb.Open(context.Background(), "sqlite:"+t.TempDir()+"/missing/x.db")
	if err == nil || !strings.Contains(err.Error(), "not usable") {
		t.Fatalf("err = %v", err)
	}
}

func TestSQLiteFilesAreOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/c.db"
	db, err := sqldb.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(context.Background(), sqldb.Clinical); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, f := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(f); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
	os.Chmod(path, 0o644)
	if _, err := sqldb.Open(context.Background(), "sqlite:"+path); err == nil || !strings.Contains(err.Error(), "readable by other users") {
		t.Errorf("open of a world-readable database: %v", err)
	}
}

// Placeholder writes "?" on SQLite and "$i" on PostgreSQL, and a
// statement of many rows written with it (AppendRow) stores each value in
// its place on both.
func TestPlaceholdersBindEachValueInItsPlace(t *testing.T) {
	if got := sqldb.Placeholders(sqldb.SQLite, 3, 3); got != "?, ?, ?" {
		t.Errorf("SQLite placeholders = %q", got)
	}
	if got := sqldb.Placeholders(sqldb.Postgres, 3, 3); got != "$3, $4, $5" {
		t.Errorf("PostgreSQL placeholders = %q", got)
	}
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		if _, err := db.ExecContext(ctx, `CREATE TABLE placed (a BIGINT, b TEXT, c BIGINT)`); err != nil {
			t.Fatal(err)
		}
		const rows = 400 // 1,200 parameters: where binding by name cost most
		param := sqldb.Placeholder(d)
		var q strings.Builder
		q.WriteString(`INSERT INTO placed (a, b, c) VALUES `)
		var args []any
		for i := range rows {
			if i > 0 {
				q.WriteString(", ")
			}
			args = sqldb.AppendRow(&q, param, args, int64(i), fmt.Sprintf("row %d", i), int64(-i))
		}
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			t.Fatal(err)
		}
		var n, wrong int64
		if err := db.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(CASE WHEN b = 'row ' || a AND c = -a THEN 0 ELSE 1 END), 0) FROM placed`).
			Scan(&n, &wrong); err != nil {
			t.Fatal(err)
		}
		if n != rows || wrong != 0 {
			t.Errorf("%d rows stored, %d with a value out of place", n, wrong)
		}
	})
}

// TestViolationsAreToldApart provokes a unique and a foreign-key failure
// on both databases: each is recognised as what it is and not as the
// other.
func TestViolationsAreToldApart(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		for _, stmt := range []string{
			`CREATE TABLE parent (id TEXT PRIMARY KEY)`,
			`CREATE TABLE child (id TEXT PRIMARY KEY, parent_id TEXT NOT NULL REFERENCES parent (id))`,
			`INSERT INTO parent (id) VALUES ('p')`,
			`INSERT INTO child (id, parent_id) VALUES ('c', 'p')`,
		} {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		_, unique := db.ExecContext(ctx, `INSERT INTO child (id, parent_id) VALUES ('c', 'p')`)
		_, foreign := db.ExecContext(ctx, `INSERT INTO child (id, parent_id) VALUES ('d', 'nobody')`)
		if !sqldb.IsUniqueViolation(unique) || sqldb.IsForeignKeyViolation(unique) {
			t.Errorf("a second row of one key: %v", unique)
		}
		if !sqldb.IsForeignKeyViolation(foreign) || sqldb.IsUniqueViolation(foreign) {
			t.Errorf("a row naming a missing parent: %v", foreign)
		}
		if sqldb.IsUniqueViolation(nil) || sqldb.IsForeignKeyViolation(nil) {
			t.Error("no error taken for a violation")
		}
	})
}

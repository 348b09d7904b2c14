package backup

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/sqldb"
)

// A column's kind is how its values are written in a backup, whatever the
// dialect's own type: a backup of SQLite restores into PostgreSQL and back.
type kind string

const (
	kindText  kind = "text"
	kindInt   kind = "int"
	kindBool  kind = "bool"
	kindBytes kind = "bytes"
)

// column is one column of a table, as the backup records it.
type column struct {
	Name string `json:"name"`
	Kind kind   `json:"kind"`
}

// table is one table of a database: its columns in name order and the
// columns of its primary key, the order its rows are written in.
type table struct {
	Name    string
	Columns []column
	Key     []string
	// Refers are the tables its foreign keys name (itself left out).
	Refers []string
}

// kindOf maps a declared column type of either dialect to its kind.
func kindOf(declared string) (kind, bool) {
	switch strings.ToLower(strings.TrimSpace(declared)) {
	case "text", "jsonb", "character varying", "varchar":
		return kindText, true
	case "bigint", "integer", "int", "smallint":
		return kindInt, true
	case "boolean", "bool":
		return kindBool, true
	case "blob", "bytea":
		return kindBytes, true
	}
	return "", false
}

// tables lists the database's tables other than the migrations' own
// record, in name order. q is the snapshot's transaction.
func tables(ctx context.Context, q sqldb.Querier, d sqldb.Dialect) ([]table, error) {
	var list string
	switch d {
	case sqldb.SQLite:
		list = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'`
	default:
		list = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()
			AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'`
	}
	names, err := strings1(ctx, q, list)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	slices.Sort(names)
	out := make([]table, 0, len(names))
	for _, name := range names {
		t, err := describe(ctx, q, d, name)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func describe(ctx context.Context, q sqldb.Querier, d sqldb.Dialect, name string) (table, error) {
	t := table{Name: name}
	var cols, keys, refers string
	switch d {
	case sqldb.SQLite:
		cols = `SELECT name, type FROM pragma_table_info($1)`
		keys = `SELECT name FROM pragma_table_info($1) WHERE pk > 0 ORDER BY pk`
		refers = `SELECT DISTINCT "table" FROM pragma_foreign_key_list($1)`
	default:
		cols = `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1`
		keys = `SELECT a.attname FROM pg_index i
			JOIN pg_class c ON c.oid = i.indrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
			WHERE n.nspname = current_schema() AND c.relname = $1 AND i.indisprimary
			ORDER BY array_position(i.indkey::int2[], a.attnum)`
		refers = `SELECT DISTINCT r.relname FROM pg_constraint k
			JOIN pg_class c ON c.oid = k.conrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			JOIN pg_class r ON r.oid = k.confrelid
			WHERE k.contype = 'f' AND n.nspname = current_schema() AND c.relname = $1`
	}
	rows, err := q.QueryContext(ctx, cols, name)
	if err != nil {
		return t, fmt.Errorf("describe table %s: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c, declared string
		if err := rows.Scan(&c, &declared); err != nil {
			return t, err
		}
		k, ok := kindOf(declared)
		if !ok {
			return t, fmt.Errorf("table %s column %s has type %q, which backups do not know", name, c, declared)
		}
		t.Columns = append(t.Columns, column{Name: c, Kind: k})
	}
	if err := rows.Err(); err != nil {
		return t, err
	}
	slices.SortFunc(t.Columns, func(a, b column) int { return strings.Compare(a.Name, b.Name) })
	if t.Key, err = strings1(ctx, q, keys, name); err != nil {
		return t, fmt.Errorf("primary key of %s: %w", name, err)
	}
	if len(t.Key) == 0 {
		for _, c := range t.Columns {
			t.Key = append(t.Key, c.Name)
		}
	}
	all, err := strings1(ctx, q, refers, name)
	if err != nil {
		return t, fmt.Errorf("foreign keys of %s: %w", name, err)
	}
	for _, r := range all {
		if r != name {
			t.Refers = append(t.Refers, r)
		}
	}
	slices.Sort(t.Refers)
	return t, nil
}

// loadOrder sorts tables so that every table comes after the tables its
// foreign keys name.
func loadOrder(ts []table) ([]table, error) {
	byName := make(map[string]table, len(ts))
	for _, t := range ts {
		byName[t.Name] = t
	}
	var out []table
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("the foreign keys of table %s form a cycle", name)
		case 2:
			return nil
		}
		t, ok := byName[name]
		if !ok {
			return nil // a table the target does not have is reported elsewhere
		}
		state[name] = 1
		for _, r := range t.Refers {
			if err := visit(r); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, t)
		return nil
	}
	for _, t := range ts {
		if err := visit(t.Name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func strings1(ctx context.Context, q sqldb.Querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// quote quotes an identifier read from the database's own catalogue.
func quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// orderBy is the ORDER BY clause that writes t's rows in the same order on
// both dialects: text in byte order (PostgreSQL's collation "C", SQLite's
// BINARY).
func orderBy(t table, d sqldb.Dialect) string {
	kinds := map[string]kind{}
	for _, c := range t.Columns {
		kinds[c.Name] = c.Kind
	}
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = quote(k)
		if d == sqldb.Postgres && kinds[k] == kindText {
			parts[i] += ` COLLATE "C"`
		}
	}
	return strings.Join(parts, ", ")
}

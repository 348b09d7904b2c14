package sqldb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
)

// Schema is one database's set of embedded migrations, one folder per
// dialect ("sqlite", "postgres"), files named NNNN_description.sql. A
// released migration is never edited: its checksum is recorded when applied
// and a changed file stops the start.
type Schema struct {
	Name string // "clinical" or "identity"
	FS   fs.FS  // holds sqlite/ and postgres/
}

// Migration is one numbered schema step.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations lists the schema's steps for a dialect, in order.
func (s Schema) Migrations(d Dialect) ([]Migration, error) {
	dir := string(d)
	entries, err := fs.ReadDir(s.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("read %s migrations for %s: %w", s.Name, d, err)
	}
	var out []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s/%s: name must be NNNN_description.sql", dir, e.Name())
		}
		b, err := fs.ReadFile(s.FS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("%s migrations for %s: expected version %04d, found %04d", s.Name, d, i+1, m.Version)
		}
	}
	return out, nil
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	checksum   TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`

// MigrationState compares the database with the schema.
type MigrationState struct {
	Applied int // steps recorded in the database
	Known   int // steps this binary knows
}

// Current reports whether every known step is applied.
func (s MigrationState) Current() bool { return s.Applied == s.Known }

// Migrate applies the schema's missing steps, each in its own transaction,
// and returns how many it applied. Several processes may call it at once:
// on PostgreSQL an advisory lock serializes them, on SQLite the write lock.
func (db *DB) Migrate(ctx context.Context, s Schema) (int, error) {
	return db.MigrateTo(ctx, s, 0)
}

// MigrateTo applies the schema's missing steps up to version (all of them
// for 0), as Migrate does: a restore brings an empty database to its
// backup's version first.
func (db *DB) MigrateTo(ctx context.Context, s Schema, version int) (int, error) {
	ms, err := s.Migrations(db.Dialect)
	if err != nil {
		return 0, err
	}
	if version > len(ms) {
		return 0, errs.E(errs.Invalid, "the %s schema has no version %d (this binary knows %d)", s.Name, version, len(ms))
	}
	upto := ms
	if version > 0 {
		upto = ms[:version]
	}
	if _, err := db.ExecContext(ctx, createMigrationsTable); err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "create migrations table in "+s.Name+" database")
	}
	// A database whose schema is current, as at every start but the first
	// after an upgrade, is told in one read; steps, once recorded, stay.
	if current, err := db.migrated(ctx, s, ms, upto); err != nil || current {
		return 0, err
	}
	n := 0
	for _, m := range upto {
		applied := false
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			if db.Dialect == Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7301984)`); err != nil {
					return err
				}
			}
			recorded, err := appliedMigrations(ctx, tx)
			if err != nil {
				return err
			}
			if err := checkRecorded(s, ms, recorded); err != nil {
				return err
			}
			if _, done := recorded[m.Version]; done {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply %s migration %04d_%s: %w", s.Name, m.Version, m.Name, err)
			}
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)`,
				m.Version, m.Name, m.Checksum, Now()); err != nil {
				return err
			}
			applied = true
			return nil
		})
		if err != nil {
			return n, err
		}
		if applied {
			n++
		}
	}
	return n, nil
}

// migrated reports whether every step of upto is recorded, checking the
// record against the schema's steps ms.
func (db *DB) migrated(ctx context.Context, s Schema, ms, upto []Migration) (bool, error) {
	var recorded map[int]string
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		recorded, err = appliedMigrations(ctx, tx)
		return err
	})
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "read the "+s.Name+" database's migrations")
	}
	if err := checkRecorded(s, ms, recorded); err != nil {
		return false, err
	}
	for _, m := range upto {
		if _, ok := recorded[m.Version]; !ok {
			return false, nil
		}
	}
	return true, nil
}

// State reports how far the database's schema is applied, and fails if the
// database holds a step this binary does not know or one whose text changed.
func (db *DB) State(ctx context.Context, s Schema) (MigrationState, error) {
	ms, err := s.Migrations(db.Dialect)
	if err != nil {
		return MigrationState{}, err
	}
	var recorded map[int]string
	var exists bool
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		exists, err = tableExists(ctx, tx, db.Dialect, "schema_migrations")
		if err != nil || !exists {
			return err
		}
		recorded, err = appliedMigrations(ctx, tx)
		return err
	})
	if err != nil {
		return MigrationState{}, err
	}
	if err := checkRecorded(s, ms, recorded); err != nil {
		return MigrationState{}, err
	}
	return MigrationState{Applied: len(recorded), Known: len(ms)}, nil
}

func appliedMigrations(ctx context.Context, tx *sql.Tx) (map[int]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version, checksum FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[int]string)
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, err
		}
		out[v] = sum
	}
	return out, rows.Err()
}

func checkRecorded(s Schema, ms []Migration, recorded map[int]string) error {
	for v, sum := range recorded {
		if v < 1 || v > len(ms) {
			return errs.E(errs.Invalid, "the %s database has schema version %04d, newer than this binary knows (%04d); upgrade custodia", s.Name, v, len(ms))
		}
		if m := ms[v-1]; m.Checksum != sum {
			return errs.E(errs.Invalid, "%s migration %04d_%s differs from the one applied to the database; released migrations must never be edited", s.Name, m.Version, m.Name)
		}
	}
	return nil
}

func tableExists(ctx context.Context, tx *sql.Tx, d Dialect, name string) (bool, error) {
	var q string
	switch d {
	case SQLite:
		q = `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1`
	default:
		q = `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`
	}
	var n int
	if err := tx.QueryRowContext(ctx, q, name).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

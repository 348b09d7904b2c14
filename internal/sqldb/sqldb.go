// Package sqldb opens Custodia's databases and keeps their schemas current.
// It knows two dialects: SQLite (modernc.org/sqlite, pure Go, the embedded
// default) and PostgreSQL (pgx). Both accept $1 placeholders, so a domain
// package writes one statement text for both wherever the dialects agree.
//
// The package owns connections, transactions and migrations; the tables
// themselves belong to the domain packages that query them.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect names the database engine behind a DB.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is an open database of one dialect.
type DB struct {
	*sql.DB
	Dialect Dialect
	// Location describes the database for people: a file path, or the
	// PostgreSQL URL with its password removed.
	Location string
	// prepared keeps SQLite's statements prepared (stmts.go).
	prepared prepared
	// trips counts the statements sent to PostgreSQL (RoundTrips).
	trips *roundTrips
	// reader is a second pool on the same database whose connections
	// refuse every write (Reader).
	reader *DB
}

// Reader returns the handle for reads: a pool of connections that refuse
// every write, whatever the statement, inside a transaction or out of one
// (on SQLite query_only, on PostgreSQL default_transaction_read_only). A
// read-only transaction then needs no switch of its connection, and a
// lookup of one statement needs no transaction at all. A DB without one
// (a reader itself) is its own.
func (db *DB) Reader() *DB {
	if db.reader != nil {
		return db.reader
	}
	return db
}

// Close closes the database and its reader.
func (db *DB) Close() error {
	if db.reader != nil {
		db.reader.Close()
	}
	db.stopPreparing()
	return db.DB.Close()
}

// Target is a parsed database URL.
type Target struct {
	Dialect Dialect
	Path    string // SQLite file
	URL     string // PostgreSQL connection URL
	Host    string // PostgreSQL host, for the production checks
	SSLMode string // PostgreSQL sslmode ("" when not given)
}

// ParseURL parses a --database value: "sqlite:PATH" or a postgres:// URL.
func ParseURL(raw string) (Target, error) {
	switch {
	case strings.HasPrefix(raw, "sqlite:"):
		p := strings.TrimPrefix(raw, "sqlite:")
		p = strings.TrimPrefix(p, "//") // accept sqlite://PATH as well
		if p == "" {
			return Target{}, errs.E(errs.Invalid, "database URL %q has no file path (want sqlite:PATH)", raw)
		}
		if strings.ContainsAny(p, "?#\x00") {
			return Target{}, errs.E(errs.Invalid, "SQLite path %q may not contain '?', '#' or NUL", p)
		}
		return Target{Dialect: SQLite, Path: p}, nil
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		u, err := url.Parse(raw)
		if err != nil {
			return Target{}, errs.E(errs.Invalid, "malformed PostgreSQL URL %q", Redact(raw))
		}
		if _, err := pgx.ParseConfig(raw); err != nil {
			return Target{}, errs.E(errs.Invalid, "malformed PostgreSQL URL %q", Redact(raw))
		}
		if strings.TrimPrefix(u.Path, "/") == "" {
			return Target{}, errs.E(errs.Invalid, "PostgreSQL URL %q names no database", Redact(raw))
		}
		host := u.Hostname()
		if h := u.Query().Get("host"); h != "" {
			host = h
		}
		return Target{Dialect: Postgres, URL: raw, Host: host, SSLMode: u.Query().Get("sslmode")}, nil
	default:
		return Target{}, errs.E(errs.Invalid, "unsupported database URL %q (want sqlite:PATH or postgres://…)", Redact(raw))
	}
}

// IsLocalHost reports whether a PostgreSQL host is this machine: loopback or a
// Unix socket directory.
func (t Target) IsLocalHost() bool {
	if t.Host == "" || strings.HasPrefix(t.Host, "/") || t.Host == "localhost" {
		return true
	}
	ip := net.ParseIP(t.Host)
	return ip != nil && ip.IsLoopback()
}

// Redact removes a password from a database URL so it can be printed.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		if i := strings.Index(raw, "@"); i >= 0 {
			return "…" + raw[i:]
		}
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Open connects to the database that raw names and checks that it answers.
// A SQLite file is created if missing, in a folder that must exist; it runs in
// WAL mode with synchronous=FULL, so a committed transaction survives a crash
// of the process or the machine.
func Open(ctx context.Context, raw string) (*DB, error) {
	t, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	return OpenTarget(ctx, t)
}

// OpenTarget is Open for a parsed URL.
func OpenTarget(ctx context.Context, t Target) (*DB, error) {
	switch t.Dialect {
	case SQLite:
		return openSQLite(ctx, t.Path)
	case Postgres:
		return openPostgres(ctx, t.URL)
	}
	return nil, errs.E(errs.Invalid, "unknown database dialect %q", t.Dialect)
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, fmt.Sprintf("database folder %s is not usable", dir))
	}
	if !fi.IsDir() {
		return nil, errs.E(errs.Invalid, "database folder %s is not a folder", dir)
	}
	// Create the file owner-only before SQLite does (its WAL and shared
	// memory files take the same mode), and refuse one others can read.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		f.Close()
	case errors.Is(err, os.ErrExist):
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, errs.E(errs.Invalid, "SQLite database %s is readable by other users (mode %04o); restrict it with chmod 600", path, fi.Mode().Perm())
		}
	default:
		return nil, errs.Wrap(errs.Invalid, err, "create SQLite database "+path)
	}
	// Every transaction of the writers' pool takes the write lock at BEGIN
	// ("immediate"), so two writers queue on busy_timeout instead of failing
	// when a read lock is upgraded.
	db, err := openSQLitePool(path, 8, []string{
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"foreign_keys(1)",
		"busy_timeout(10000)",
		// Deleted content (a destroyed key, a purged value) is overwritten,
		// not left in free pages (LIFE-03).
		"secure_delete(1)",
		// The journals of savepoints (one per request in a batch of the
		// gate) stay in memory instead of a temporary file.
		"temp_store(MEMORY)",
		// The log is copied into the database file (a checkpoint, which
		// also flushes that file to disk) once it holds 10,000 pages
		// (40 MB) rather than SQLite's 1,000: a page written again and
		// again meanwhile, such as the last page of a table or of an index
		// in time order, is copied once. Commits still wait for the log's
		// flush (synchronous FULL), so no committed write waits on the
		// checkpoint to be durable.
		"wal_autocheckpoint(10000)",
	}, "immediate")
	if err != nil {
		return nil, err
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		db.Close()
		return nil, errs.Wrap(errs.Unavailable, err, "open SQLite database "+path)
	}
	if mode != "wal" {
		db.Close()
		return nil, errs.E(errs.Unavailable, "SQLite database %s could not switch to WAL mode (mode %q)", path, mode)
	}
	reader, err := openSQLitePool(path, 4, []string{"query_only(1)", "foreign_keys(1)", "busy_timeout(10000)"}, "")
	if err != nil {
		db.Close()
		return nil, err
	}
	return &DB{DB: db, Dialect: SQLite, Location: path, reader: &DB{DB: reader, Dialect: SQLite, Location: path}}, nil
}

// openSQLitePool opens a pool of up to conns connections to the SQLite
// file at path, each set up with pragmas; txlock is the mode of BEGIN
// ("" for SQLite's deferred).
func openSQLitePool(path string, conns int, pragmas []string, txlock string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	if txlock != "" {
		q.Set("_txlock", txlock)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "open SQLite database "+path)
	}
	// Idle connections are kept as many as may be open: opening one runs
	// the pragmas and reads the schema again.
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

func openPostgres(ctx context.Context, raw string) (*DB, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "malformed PostgreSQL URL "+Redact(raw))
	}
	trips := &roundTrips{}
	cfg.Tracer = trips
	// The readers' connections are opened read-only: the server refuses
	// every write on them, transaction or not.
	rcfg := cfg.Copy()
	rcfg.RuntimeParams["default_transaction_read_only"] = "on"
	// Idle connections are kept as many as may be open: a new one costs
	// a round of authentication (and of TLS).
	pool := func(cfg *pgx.ConnConfig, conns int) *sql.DB {
		db := stdlib.OpenDB(*cfg)
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		db.SetConnMaxIdleTime(5 * time.Minute)
		return db
	}
	db, reader := pool(cfg, 20), pool(rcfg, 8)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		reader.Close()
		return nil, errs.Wrap(errs.Unavailable, err, "connect to PostgreSQL "+Redact(raw)+": "+pgReason(err))
	}
	return &DB{DB: db, Dialect: Postgres, Location: Redact(raw), trips: trips,
		reader: &DB{DB: reader, Dialect: Postgres, Location: Redact(raw), trips: trips}}, nil
}

// roundTrips counts the statements sent to a PostgreSQL server, each a
// round trip (a string of statements without parameters is one).
type roundTrips struct{ n atomic.Int64 }

func (t *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	t.n.Add(1)
	return ctx
}

func (t *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// RoundTrips is how many statements the database's connections have sent
// to the server so far: on PostgreSQL each costs a round trip, which the
// gate's batches and the request path keep few (docs/benchmarks.md). It
// is 0 on SQLite, which runs in the process.
func (db *DB) RoundTrips() int64 {
	if db.trips == nil {
		return 0
	}
	return db.trips.n.Load()
}

// pgReason turns a connection error into a short reason without internals
// such as passwords (pgx never includes them).
func pgReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		msg = msg[i+3:]
	}
	return msg
}

// InTx runs fn in a transaction, committing if fn returns nil and rolling
// back otherwise (also when fn panics).
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "begin transaction")
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
		if err != nil {
			tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return errs.Wrap(errs.Unavailable, err, "commit transaction")
	}
	return nil
}

// IsUniqueViolation reports whether err is a unique-constraint failure in
// either dialect.
func IsUniqueViolation(err error) bool {
	return violates(err, "23505", "UNIQUE constraint failed")
}

// IsForeignKeyViolation reports whether err is a foreign-key failure (a
// row naming one that does not exist) in either dialect.
func IsForeignKeyViolation(err error) bool {
	return violates(err, "23503", "FOREIGN KEY constraint failed")
}

// violates reports whether err is PostgreSQL's error of SQLSTATE state or
// SQLite's whose message holds sqlite.
func violates(err error, state, sqlite string) bool {
	if err == nil {
		return false
	}
	type pgErr interface{ SQLState() string }
	var pe pgErr
	if errors.As(err, &pe) {
		return pe.SQLState() == state
	}
	return strings.Contains(err.Error(), sqlite)
}

// Now is the time stored in databases: Unix microseconds, UTC.
func Now() int64 { return time.Now().UnixMicro() }

// Querier is what both *sql.DB and *sql.Tx offer; read functions take it so
// a caller can read inside or outside a transaction.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx is a transaction as a domain function that writes sees it: a
// *sql.Tx of the storage and command-line plumbing, or the gate's view of a
// request's transaction (gate.Tx), which hands out its queries only once
// the request was authorized. A function taking a Tx expects its writes to
// commit or roll back together with the caller's other work.
type Tx interface {
	Querier
}

func (db *DB) dialect() Dialect { return db.Dialect }

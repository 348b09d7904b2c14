package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"syscall"

	"github.com/custodia/custodia/internal/errs"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// IsOutage reports whether err says that the database cannot serve now,
// whatever the statement was: the connection was lost or refused, the
// server is shutting down (PostgreSQL SQLSTATE 57P01 admin_shutdown when
// pg_terminate_backend ends a session), it lacks resources (class 53: disk
// full, out of memory, too many connections), or the disk fails under
// SQLite (full, I/O error). Such a failure is the database's, not the
// request's: the request may succeed later, so it is answered as
// Unavailable (503), never as an internal error.
func IsOutage(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),  // insufficient resources: disk full, out of memory, too many connections
			strings.HasPrefix(pe.Code, "57P"), // operator intervention: admin or crash shutdown, cannot connect now
			pe.Code == "58030":                // io_error
			return true
		}
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary result code
		case 10, // SQLITE_IOERR
			13, // SQLITE_FULL
			14, // SQLITE_CANTOPEN
			26: // SQLITE_NOTADB: the file is not (or no longer) a database
			return true
		}
		return false
	}
	// pgconn's own failures (connecting, writing to or reading from the
	// server, a timeout) carry a SafeToRetry method; a network error met
	// elsewhere (a KMS over HTTPS) does not, and is not the database's.
	var ce *pgconn.ConnectError
	var conn interface{ SafeToRetry() bool }
	if errors.As(err, &ce) || pgconn.Timeout(err) ||
		errors.As(err, &conn) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// database/sql's own error for a handle that was closed, and pgx's for a
	// connection it closed after a fatal error, have no type to match.
	msg := err.Error()
	return strings.Contains(msg, "sql: database is closed") || strings.Contains(msg, "conn closed")
}

// Unavailable returns err as an Unavailable error saying that the database
// named what ("clinical", "identity", or "" for either) cannot serve now,
// if err is an outage (IsOutage) that no error of a more useful kind
// explains already; any other err is returned as it is.
func Unavailable(err error, what string) error {
	if err == nil || !IsOutage(err) || errs.KindOf(err) != errs.Internal {
		return err
	}
	if what != "" {
		what += " "
	}
	return errs.Wrap(errs.Unavailable, err, "the "+what+"database is unavailable, so the request was not carried out")
}

// HasTable reports whether the database holds a table of that name (in the
// connection's schema for PostgreSQL). It only reads.
func (db *DB) HasTable(ctx context.Context, name string) (bool, error) {
	q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1`
	if db.Dialect == Postgres {
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`
	}
	var n int
	if err := db.QueryRowContext(ctx, q, name).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

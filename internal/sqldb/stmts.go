package sqldb

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// SQLite prepares a statement anew each time it is run, and preparing
// (parsing and planning) costs more than running most of ours. A DB on
// SQLite therefore keeps each statement it runs prepared, by its text, on
// each connection (database/sql's *sql.Stmt), and runs it from there,
// inside transactions too (In). pgx keeps its own per-connection cache, so
// a DB on PostgreSQL runs statements as given.

// maxPrepared bounds the cache: statements whose text is built (a list of
// placeholders of varying length) are not kept beyond it.
const maxPrepared = 512

type prepared struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
	// pending are the statements being prepared for transactions (see
	// stmtInTx), by goroutines that Close stops (stop) and waits for
	// (running), so that none of them opens a connection, and with it the
	// database's file, once the database is closed.
	pending map[string]bool
	running sync.WaitGroup
	stop    context.Context
	cancel  context.CancelFunc
	closed  bool
}

// stopPreparing stops the preparing goroutines and waits for them; a
// closing DB calls it before it closes its pool.
func (db *DB) stopPreparing() {
	db.prepared.mu.Lock()
	db.prepared.closed = true
	if db.prepared.cancel != nil {
		db.prepared.cancel()
	}
	db.prepared.mu.Unlock()
	db.prepared.running.Wait()
}

// stmt returns query prepared, or nil to run it unprepared.
func (db *DB) stmt(ctx context.Context, query string) *sql.Stmt {
	if db.Dialect != SQLite {
		return nil
	}
	db.prepared.mu.Lock()
	s, ok := db.prepared.m[query]
	full := len(db.prepared.m) >= maxPrepared
	db.prepared.mu.Unlock()
	if ok || full {
		return s
	}
	return db.prepare(context.WithoutCancel(ctx), query)
}

// stmtInTx is stmt for a statement run in a transaction. Preparing takes a
// connection of the pool, and the transaction holds one already: callers
// that each hold one and wait for another would wait for ever once the
// pool is spent. So a statement not prepared yet runs unprepared in the
// transaction, and is prepared beside it for the next time.
func (db *DB) stmtInTx(query string) *sql.Stmt {
	if db.Dialect != SQLite {
		return nil
	}
	db.prepared.mu.Lock()
	defer db.prepared.mu.Unlock()
	s, ok := db.prepared.m[query]
	if ok || len(db.prepared.m) >= maxPrepared || db.prepared.pending[query] || db.prepared.closed {
		return s
	}
	if db.prepared.pending == nil {
		db.prepared.pending = map[string]bool{}
		db.prepared.stop, db.prepared.cancel = context.WithCancel(context.Background())
	}
	db.prepared.pending[query] = true
	db.prepared.running.Add(1)
	stop := db.prepared.stop
	go func() {
		defer db.prepared.running.Done()
		db.prepare(stop, query)
		db.prepared.mu.Lock()
		delete(db.prepared.pending, query)
		db.prepared.mu.Unlock()
	}()
	return nil
}

// prepare prepares query on the pool and keeps it, or answers nil.
func (db *DB) prepare(ctx context.Context, query string) *sql.Stmt {
	s, err := db.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil // run unprepared, and report its error there
	}
	db.prepared.mu.Lock()
	defer db.prepared.mu.Unlock()
	if db.prepared.m == nil {
		db.prepared.m = map[string]*sql.Stmt{}
	}
	if other, ok := db.prepared.m[query]; ok {
		s.Close()
		return other
	}
	db.prepared.m[query] = s
	return s
}

// ExecContext runs a statement.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := db.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return db.DB.ExecContext(ctx, query, args...)
}

// QueryContext runs a query.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := db.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return db.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a query for one row.
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := db.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return db.DB.QueryRowContext(ctx, query, args...)
}

// In returns the querier of tx, a transaction of db, which runs statements
// prepared on tx's connection.
func (db *DB) In(tx *sql.Tx) Querier { return inTx{db: db, tx: tx} }

type inTx struct {
	db *DB
	tx *sql.Tx
}

func (q inTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := q.db.stmtInTx(query); s != nil {
		return q.tx.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return q.tx.ExecContext(ctx, query, args...)
}

func (q inTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := q.db.stmtInTx(query); s != nil {
		return q.tx.StmtContext(ctx, s).QueryContext(ctx, args...)
	}
	return q.tx.QueryContext(ctx, query, args...)
}

func (q inTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := q.db.stmtInTx(query); s != nil {
		return q.tx.StmtContext(ctx, s).QueryRowContext(ctx, args...)
	}
	return q.tx.QueryRowContext(ctx, query, args...)
}

func (q inTx) dialect() Dialect { return q.db.Dialect }

// DialectOf returns the dialect of q when q is a querier of this package (a
// DB, or a transaction's from In), for a statement that one dialect can
// write in fewer round trips; "" when it cannot tell.
func DialectOf(q Querier) Dialect {
	if d, ok := q.(interface{ dialect() Dialect }); ok {
		return d.dialect()
	}
	return ""
}

// Placeholder returns what writes the placeholder of the i-th parameter
// (from 1) of a statement whose parameters each appear once, in their
// order: "?" on SQLite, "$i" on PostgreSQL. SQLite takes "$i" for a
// parameter named "$i", and binding a statement's parameters looks each
// name up in the list of all of them, in time quadratic in their number:
// a multi-row insert of a batch of audit events (fourteen parameters an
// event) spent most of its time binding. An anonymous "?" takes the next
// number and binds without a name.
func Placeholder(d Dialect) func(b *strings.Builder, i int) {
	if d == SQLite {
		return func(b *strings.Builder, _ int) { b.WriteByte('?') }
	}
	return func(b *strings.Builder, i int) {
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(i))
	}
}

// AppendRow writes the row "(p, p, …)" of a multi-row INSERT to b, a
// placeholder (param) for each value, and returns args with the values
// appended, each once and in order, as Placeholder wants.
func AppendRow(b *strings.Builder, param func(b *strings.Builder, i int), args []any, row ...any) []any {
	b.WriteByte('(')
	for j, v := range row {
		if j > 0 {
			b.WriteString(", ")
		}
		args = append(args, v)
		param(b, len(args))
	}
	b.WriteByte(')')
	return args
}

// Placeholders returns the placeholders of n parameters numbered from
// from, separated by commas (Placeholder).
func Placeholders(d Dialect, from, n int) string {
	param := Placeholder(d)
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		param(&b, from+i)
	}
	return b.String()
}

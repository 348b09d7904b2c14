package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func openSQLiteTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Statements kept prepared follow the schema: a statement prepared before
// a table changed, was dropped and made anew answers for the table as it
// is, inside transactions and outside.
func TestPreparedStatementsFollowTheSchema(t *testing.T) {
	ctx := context.Background()
	db := openSQLiteTest(t)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	read := func(q Querier) (n int, err error) {
		err = q.QueryRowContext(ctx, `SELECT count(*) FROM things WHERE kind = $1`, "a").Scan(&n)
		return n, err
	}
	exec(`CREATE TABLE things (kind TEXT)`)
	exec(`INSERT INTO things (kind) VALUES ($1)`, "a")
	if n, err := read(db); err != nil || n != 1 {
		t.Fatalf("read: %d %v", n, err)
	}
	exec(`DROP TABLE things`)
	if _, err := read(db); err == nil {
		t.Error("a prepared statement read a dropped table")
	}
	exec(`CREATE TABLE things (id INTEGER PRIMARY KEY, kind TEXT)`)
	exec(`INSERT INTO things (kind) VALUES ($1)`, "a")
	exec(`INSERT INTO things (kind) VALUES ($1)`, "a")
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := db.In(tx).ExecContext(ctx, `INSERT INTO things (kind) VALUES ($1)`, "a"); err != nil {
			return err
		}
		n, err := read(db.In(tx))
		if n != 3 {
			t.Errorf("inside the transaction: %d things, want 3", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := read(db); err != nil || n != 3 {
		t.Errorf("after the commit: %d %v, want 3", n, err)
	}
	if db.prepared.m[`SELECT count(*) FROM things WHERE kind = $1`] == nil {
		t.Error("the statement was not kept prepared")
	}
}

// Statements whose text is built each time do not fill memory.
func TestPreparedStatementsAreBounded(t *testing.T) {
	ctx := context.Background()
	db := openSQLiteTest(t)
	for i := range maxPrepared + 100 {
		var n int
		if err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT %d`, i)).Scan(&n); err != nil || n != i {
			t.Fatalf("SELECT %d: %d %v", i, n, err)
		}
	}
	if got := len(db.prepared.m); got != maxPrepared {
		t.Errorf("%d statements kept, want %d", got, maxPrepared)
	}
}

// Transactions that hold every connection of a pool still run statements
// that are not prepared yet: preparing one would wait for a connection
// that none of them gives back.
func TestStatementsRunWhileTransactionsHoldThePool(t *testing.T) {
	ctx := context.Background()
	db := openSQLiteTest(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE things (kind TEXT)`); err != nil {
		t.Fatal(err)
	}
	reader := db.Reader()
	const conns = 4 // the reader pool's connections
	var txs []*sql.Tx
	for range conns {
		tx, err := reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		// A read takes the connection's snapshot, so the transaction
		// holds its connection from here on.
		if _, err := reader.In(tx).ExecContext(ctx, `SELECT 1`); err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	done := make(chan error, conns)
	for i, tx := range txs {
		go func() {
			var n int
			done <- reader.In(tx).QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) + %d FROM things`, i%2)).Scan(&n)
		}()
	}
	for range conns {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a statement in a transaction waited for a connection of the pool its transaction holds")
		}
	}
}

// A closed database leaves its file alone: the statements its
// transactions left to prepare beside them are stopped and waited for,
// so none opens a connection, which would make the file anew, after Close.
func TestClosedDatabaseOpensNoConnection(t *testing.T) {
	ctx := context.Background()
	for i := range 10 {
		path := filepath.Join(t.TempDir(), "t.db")
		db, err := Open(ctx, "sqlite:"+path)
		if err != nil {
			t.Fatal(err)
		}
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			for j := range 20 {
				var n int
				if err := db.In(tx).QueryRowContext(ctx, fmt.Sprintf(`SELECT %d + %d`, i, j)).Scan(&n); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db.prepared.mu.Lock()
		pending := len(db.prepared.pending)
		db.prepared.mu.Unlock()
		if pending > 0 {
			t.Fatalf("run %d: %d statements still being prepared after Close", i, pending)
		}
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			os.Remove(f)
		}
		time.Sleep(20 * time.Millisecond)
		if _, err := os.Stat(path); err == nil {
			t.Fatalf("run %d: the database's file was made anew after Close", i)
		}
	}
}

package backup_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestAVL01_ScheduledBackupsAreWrittenOncePerPeriodAndKept: three nodes
// look at once and one backup is written; none is due within the period;
// past it the next is written, and only the newest Keep stay in the
// folder, the others removed and recorded so.
func TestAVL01_ScheduledBackupsAreWrittenOncePerPeriodAndKept(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		clinical := sqldbtest.Open(t, d, sqldb.Clinical)
		identity := sqldbtest.Open(t, d, sqldb.Identity)
		skey, _, err := note.GenerateKey(rand.Reader, "custodia-audit-test")
		if err != nil {
			t.Fatal(err)
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		_, public, err := backup.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		rs, names, err := backup.ParseRecipients(public)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		target, err := backup.Dir(dir)
		if err != nil {
			t.Fatal(err)
		}
		node := func(name string) *backup.Schedule {
			return &backup.Schedule{
				Source:     backup.Source{Instance: "test", Clinical: clinical, Identity: identity, Signer: signer},
				Recipients: rs, Names: names, Target: target, Every: time.Hour, Keep: 2, Holder: name,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Record: func(ctx context.Context, res backup.Result) error {
					return clinical.InTx(ctx, func(tx *sql.Tx) error { return backup.Record(ctx, tx, res) })
				},
				Removed: func(ctx context.Context, loc string) error {
					return clinical.InTx(ctx, func(tx *sql.Tx) error { return backup.MarkRemoved(ctx, tx, loc) })
				},
			}
		}
		nodes := []*backup.Schedule{node("a"), node("b"), node("c")}
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					if err := n.Turn(ctx); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		files := func() []string {
			f, _ := filepath.Glob(filepath.Join(dir, "*"+backup.Suffix))
			return f
		}
		if f := files(); len(f) != 1 {
			t.Fatalf("three nodes looking three times wrote %d backups, want 1", len(f))
		}
		last, ok, err := backup.Latest(ctx, clinical)
		if err != nil || !ok || last.Location != files()[0] {
			t.Fatalf("latest: %+v %v %v", last, ok, err)
		}
		// Past the period, each look writes the next; two are kept.
		for i := range 3 {
			if _, err := clinical.ExecContext(ctx, `UPDATE backups SET created_at = created_at - $1`, int64(2*time.Hour/time.Microsecond)); err != nil {
				t.Fatal(err)
			}
			if err := nodes[i].Turn(ctx); err != nil {
				t.Fatal(err)
			}
		}
		kept := files()
		if len(kept) != 2 {
			t.Fatalf("%d backups in the folder, want 2: %v", len(kept), kept)
		}
		var removed, all int
		clinical.QueryRowContext(ctx, `SELECT count(*) FROM backups WHERE removed_at IS NOT NULL`).Scan(&removed)
		clinical.QueryRowContext(ctx, `SELECT count(*) FROM backups`).Scan(&all)
		if all != 4 || removed != 2 {
			t.Errorf("backups recorded %d, removed %d; want 4 and 2", all, removed)
		}
		for _, f := range kept {
			if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v", f, fi.Mode(), err)
			}
		}
	})
}

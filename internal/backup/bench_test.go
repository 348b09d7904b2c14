package backup_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// BenchmarkBackup writes and restores a backup of a clinical database of
// 200,000 rows (the record of backups, a table of five columns), beside
// SQLite's own copy of the same file (VACUUM INTO) as the baseline of the
// same run: read the ratio.
//
//	go test -run '^$' -bench Backup ./internal/backup/
func BenchmarkBackup(b *testing.B) {
	ctx := context.Background()
	const rows = 200000
	clinical := sqldbtest.Open(b, sqldb.SQLite, sqldb.Clinical)
	identity := sqldbtest.Open(b, sqldb.SQLite, sqldb.Identity)
	err := clinical.InTx(ctx, func(tx *sql.Tx) error {
		for i := range rows {
			if _, err := tx.ExecContext(ctx, `INSERT INTO backups (location, name, created_at, size, sha256) VALUES ($1, $2, $3, $4, $5)`,
				fmt.Sprintf("/backups/%08d", i), fmt.Sprintf("%08d", i), int64(i), int64(i*7), fmt.Sprintf("%064x", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	skey, vkey, _ := note.GenerateKey(rand.Reader, "custodia-audit-bench")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	secret, public, _ := backup.GenerateKey()
	rs, names, _ := backup.ParseRecipients(public)
	ids, _ := backup.ParseKey(secret)
	src := backup.Source{Instance: "bench", Clinical: clinical, Identity: identity, Signer: signer}

	b.Run("vacuum-into", func(b *testing.B) {
		for i := range b.N {
			out := filepath.Join(b.TempDir(), fmt.Sprintf("copy-%d.db", i))
			if _, err := clinical.ExecContext(ctx, `VACUUM INTO '`+out+`'`); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	var file string
	kept := b.TempDir()
	b.Run("write", func(b *testing.B) {
		for range b.N {
			dir, err := os.MkdirTemp(kept, "")
			if err != nil {
				b.Fatal(err)
			}
			target, err := backup.Dir(dir)
			if err != nil {
				b.Fatal(err)
			}
			res, err := backup.Write(ctx, src, rs, names, target, nil)
			if err != nil {
				b.Fatal(err)
			}
			file = res.Where
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("restore", func(b *testing.B) {
		for range b.N {
			f, err := backup.Open(file, verifier)
			if err != nil {
				b.Fatal(err)
			}
			c := sqldbtest.Open(b, sqldb.SQLite, sqldb.Clinical)
			id := sqldbtest.Open(b, sqldb.SQLite, sqldb.Identity)
			// An empty target: the template's migrations are the backup's.
			if _, err := f.Restore(ctx, backup.Targets{Clinical: c, Identity: id}, ids, nil); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

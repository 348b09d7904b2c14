package gate_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// BenchmarkGroupCommit writes one row per request from 32 concurrent
// requesters: through the gate (authorized, audited, group committed) and,
// as the baseline of the same run, plain (one transaction per row, no
// authorization, no event), both with the same durability. Compare the
// two sub-benchmarks' ns/op:
//
//	go test -run '^$' -bench GroupCommit ./internal/gate/
func BenchmarkGroupCommit(b *testing.B) {
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			if d == sqldb.Postgres {
				sqldbtest.RequirePostgres(b)
			}
			f := setup(b, d)
			ctx := context.Background()
			var n atomic.Int64
			b.Run("gate", func(b *testing.B) {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						name := fmt.Sprintf("Gate %d", n.Add(1))
						work := createStudy(f, name, func() error { return nil })
						if err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error { return work(ctx, t) }); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("plain", func(b *testing.B) {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						name := fmt.Sprintf("Plain %d", n.Add(1))
						if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
							_, err := orgs.CreateStudy(ctx, f.db.In(tx), f.org.ID, orgs.KindStudy, name)
							return err
						}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

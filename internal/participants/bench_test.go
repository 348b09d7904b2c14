package participants_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// BenchmarkEnrol enrols participants with identity data from 32
// concurrent requesters through the service, the gate and both databases:
//
//	go test -run '^$' -bench Enrol ./internal/participants/
func BenchmarkEnrol(b *testing.B) {
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			if d == sqldb.Postgres {
				sqldbtest.RequirePostgres(b)
			}
			f := setup(b, d)
			var n atomic.Int64
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := ada()
					id[participants.NationalID] = fmt.Sprintf("QX%d", n.Add(1))
					if _, err := f.svc.Enrol(context.Background(), f.investigator, f.org.Slug, f.study.ID, f.north.ID, id); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

package entries_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// The benchmarks of data capture run on SQLite and, with
// CUSTODIA_TEST_POSTGRES set, on PostgreSQL, one after the other in the
// same run (sub-benchmarks sqlite/… and postgres/…).
var benchDialects = []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres}

// BenchmarkExport exports a study of 100,000 and of 1,000,000 values (100
// fields a form, one form a visit, the participants' entries at a
// repeating visit) as CSV, through the service and the gate, to a writer
// that counts; it reports values/s, the seconds a million values take, and
// the peak heap in use and peak RSS of the process while it runs, which
// stay the same whatever the size:
//
//	go test -run '^$' -bench Export -benchtime 3x ./internal/entries/
func BenchmarkExport(b *testing.B) {
	for _, d := range benchDialects {
		for _, size := range []int{100_000, 1_000_000} {
			b.Run(string(d)+"/"+strconv.Itoa(size), func(b *testing.B) {
				f := seedValues(b, d, size)
				a := f.dataManager
				m := startPeaks()
				b.ResetTimer()
				for range b.N {
					a.ConfirmedAt = time.Now()
					var n countWriter
					if err := f.svc.Export(context.Background(), a, "clinic", f.study.ID, entries.FormatCSV, func() (io.Writer, error) { return &n, nil }); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				m.report(b)
				perSecond := float64(size) * float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(perSecond, "values/s")
				b.ReportMetric(1e6/perSecond, "s/1M-values")
			})
		}
	}
}

// peaks samples the heap in use while a benchmark runs, and reads the
// process's peak RSS since it started (Linux: reset through clear_refs).
type peaks struct {
	heap atomic.Uint64
	stop chan struct{}
	rss  bool
}

func startPeaks() *peaks {
	runtime.GC()
	p := &peaks{stop: make(chan struct{})}
	p.rss = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	go func() {
		var m runtime.MemStats
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > p.heap.Load() {
				p.heap.Store(m.HeapInuse)
			}
		}
	}()
	return p
}

func (p *peaks) report(b *testing.B) {
	close(p.stop)
	b.ReportMetric(float64(p.heap.Load())/(1<<20), "peak-heap-MB")
	if !p.rss {
		return
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for l := range strings.Lines(string(status)) {
		if kb, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")))
			if err == nil {
				b.ReportMetric(float64(n)/1024, "peak-RSS-MB")
			}
		}
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// packedValues packs an entry's values in clear as the entries store them
// (cells.go): [field, row, value], in the order of field.
func packedValues(values [][2]string) string {
	var w strings.Builder
	w.WriteByte('[')
	for i, v := range values {
		if i > 0 {
			w.WriteByte(',')
		}
		fmt.Fprintf(&w, "[%q,0,%q]", v[0], v[1])
	}
	w.WriteByte(']')
	return w.String()
}

// seedValues makes a study whose entries hold size values, written
// straight to the database, in clear (100 fields of text an entry).
func seedValues(b *testing.B, d sqldb.Dialect, size int) *fixture {
	b.Helper()
	ctx := context.Background()
	f := setup(b, d)
	const fields = 100
	def := &forms.Form{Key: "big", Title: "Big"}
	for i := range fields {
		def.Fields = append(def.Fields, forms.Field{Name: fmt.Sprintf("f%03d", i), Label: "F", Type: forms.Text})
	}
	f.publish(b, def)
	if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
		{Key: "visit", Label: "Visit", Repeating: true, Forms: []string{"big"}}}); err != nil {
		b.Fatal(err)
	}
	var visitID, formID string
	if err := f.db.QueryRowContext(ctx, `SELECT v.id, f.id FROM visits v, forms f WHERE v.visit_key = 'visit' AND f.form_key = 'big'`).Scan(&visitID, &formID); err != nil {
		b.Fatal(err)
	}
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		now := sqldb.Now()
		var p participants.Participant
		values := make([][2]string, fields)
		for e := range size / fields {
			if e%10 == 0 {
				var err error
				if p, err = participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID); err != nil {
					return err
				}
			}
			for i := range fields {
				values[i] = [2]string{fmt.Sprintf("f%03d", i), fmt.Sprintf("value %d of entry %d", i, e)}
			}
			cells := packedValues(values)
			id := ids.New()
			if _, err := tx.ExecContext(ctx, `INSERT INTO entries (id, org_id, study_id, site_id, participant_id, visit_id, visit_repeat,
				form_id, form_version, status, revision, created_by, created_at, saved_by, saved_at, cells)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'complete', 1, $9, $10, $9, $10, $11)`,
				id, f.org.ID, f.study.ID, f.north.ID, p.Pseudonym, visitID, e%10+1, formID, f.investigatorID, now, cells); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO entry_revisions (entry_id, revision, form_version, status, saved_by, saved_at, changes)
				VALUES ($1, 1, 1, 'complete', $2, $3, $4)`, id, f.investigatorID, now, cells); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkImport imports 100,000 and 1,000,000 values (entries of 100
// fields) from CSV through the service and the gate, each file in one
// transaction; it reports values/s and the seconds a million values take:
//
//	go test -run '^$' -bench Import -benchtime 1x ./internal/entries/
func BenchmarkImport(b *testing.B) {
	for _, d := range benchDialects {
		for _, size := range []int{100_000, 1_000_000} {
			b.Run(string(d)+"/"+strconv.Itoa(size), func(b *testing.B) { benchImport(b, d, size) })
		}
	}
}

func benchImport(b *testing.B, d sqldb.Dialect, size int) {
	ctx := context.Background()
	const fields = 100
	entriesPerRun := size / fields
	f := setup(b, d)
	def := &forms.Form{Key: "big", Title: "Big"}
	for i := range fields {
		def.Fields = append(def.Fields, forms.Field{Name: fmt.Sprintf("f%03d", i), Label: "F", Type: forms.Text})
	}
	f.publish(b, def)
	if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
		{Key: "visit", Label: "Visit", Repeating: true, Forms: []string{"big"}}}); err != nil {
		b.Fatal(err)
	}
	files := make([]string, b.N)
	for n := range b.N {
		var people []string
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			for range entriesPerRun / 10 {
				p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
				if err != nil {
					return err
				}
				people = append(people, p.Pseudonym)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		var w strings.Builder
		w.WriteString(strings.Join(entries.ExportColumns, ",") + "\n")
		for e := range entriesPerRun {
			for i := range fields {
				fmt.Fprintf(&w, "%s,%s,visit,%d,big,1,f%03d,0,value %d of entry %d\n", people[e/10], f.north.ID, e%10+1, i, i, e)
			}
		}
		files[n] = w.String()
	}
	m := startPeaks()
	b.ResetTimer()
	for n := range b.N {
		got, err := f.svc.Import(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatCSV, strings.NewReader(files[n]))
		if err != nil || got.Values != fields*entriesPerRun {
			b.Fatalf("%+v, %v", got, err)
		}
	}
	b.StopTimer()
	m.report(b)
	perSecond := float64(size) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(perSecond, "values/s")
	b.ReportMetric(1e6/perSecond, "s/1M-values")
}

// BenchmarkSave saves a form of 20 fields (two of them sensitive) about a
// participant from 32 concurrent requesters, through the service and the
// gate (authorize, validate, seal, version, audit, one transaction per
// group of requests), and, as the baseline in the same run, inserts the
// same rows plain on the same database (the entry and its first revision,
// values packed in clear; one transaction each, no audit, no sealing, the
// same durability):
//
//	go test -run '^$' -bench Save -benchtime 5s ./internal/entries/
func BenchmarkSave(b *testing.B) {
	for _, d := range benchDialects {
		b.Run(string(d), func(b *testing.B) { benchSave(b, d) })
	}
}

func benchSave(b *testing.B, d sqldb.Dialect) {
	ctx := context.Background()
	f := setup(b, d)
	def := &forms.Form{Key: "twenty", Title: "Twenty"}
	for i := range 20 {
		def.Fields = append(def.Fields, forms.Field{Name: fmt.Sprintf("f%02d", i), Label: "F", Type: forms.Text, Sensitive: i < 2})
	}
	f.publish(b, def)
	if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
		{Key: "visit", Label: "Visit", Repeating: true, Forms: []string{"twenty"}}}); err != nil {
		b.Fatal(err)
	}
	var visitID, formID string
	if err := f.db.QueryRowContext(ctx, `SELECT v.id, f.id FROM visits v, forms f WHERE v.visit_key = 'visit' AND f.form_key = 'twenty'`).Scan(&visitID, &formID); err != nil {
		b.Fatal(err)
	}
	var people []string
	if err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		for range 400 {
			p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
			if err != nil {
				return err
			}
			people = append(people, p.Pseudonym)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	values := map[string]string{}
	for i := range 20 {
		values[fmt.Sprintf("f%02d", i)] = fmt.Sprintf("answer %d", i)
	}
	// The plain baseline stores the same values, packed, in clear.
	var plain [][2]string
	for i := range 20 {
		plain = append(plain, [2]string{fmt.Sprintf("f%02d", i), fmt.Sprintf("answer %d", i)})
	}
	cells := packedValues(plain)
	var next atomic.Int64
	place := func() (string, int) {
		n := int(next.Add(1))
		return people[n%len(people)], n/len(people) + 1
	}
	b.Run("guarded", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p, repeat := place()
				e := entries.Place{StudyID: f.study.ID, SiteID: f.north.ID, Participant: p, Visit: "visit", Repeat: repeat, Form: "twenty"}
				if _, err := f.svc.Save(ctx, f.investigator, "clinic", e, entries.Save{Values: values, Complete: true}); err != nil {
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
				p, repeat := place()
				err := f.db.InTx(ctx, func(tx *sql.Tx) error {
					id, now := ids.New(), sqldb.Now()
					if _, err := tx.ExecContext(ctx, `INSERT INTO entries (id, org_id, study_id, site_id, participant_id, visit_id, visit_repeat,
						form_id, form_version, status, revision, created_by, created_at, saved_by, saved_at, cells)
						VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'complete', 1, $9, $10, $9, $10, $11)`,
						id, f.org.ID, f.study.ID, f.north.ID, p, visitID, repeat, formID, f.investigatorID, now, cells); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, `INSERT INTO entry_revisions (entry_id, revision, form_version, status, saved_by, saved_at, changes)
						VALUES ($1, 1, 1, 'complete', $2, $3, $4)`, id, f.investigatorID, now, cells)
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

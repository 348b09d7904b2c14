package entries_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
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

// BenchmarkExport exports a study of 100,000 and of 1,000,000 values (100
// fields a form, one form a visit, the participants' entries at a
// repeating visit) as CSV, through the service and the gate, to a writer
// that counts; it reports values/s and the peak heap in use while it
// runs, which stays the same whatever the size:
//
//	go test -run '^$' -bench Export -benchtime 3x ./internal/entries/
func BenchmarkExport(b *testing.B) {
	for _, size := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			f := seedValues(b, size)
			a := f.dataManager
			var peak atomic.Uint64
			stop := make(chan struct{})
			go func() {
				var m runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					runtime.ReadMemStats(&m)
					if m.HeapInuse > peak.Load() {
						peak.Store(m.HeapInuse)
					}
				}
			}()
			b.ResetTimer()
			for range b.N {
				a.ConfirmedAt = time.Now()
				var n countWriter
				if err := f.svc.Export(context.Background(), a, "clinic", f.study.ID, entries.FormatCSV, func() (io.Writer, error) { return &n, nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			close(stop)
			b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
		})
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// seedValues makes a study whose entries hold size values, written
// straight to the database.
func seedValues(b *testing.B, size int) *fixture {
	b.Helper()
	ctx := context.Background()
	f := setup(b, sqldb.SQLite)
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
		for e := range size / fields {
			if e%10 == 0 {
				var err error
				if p, err = participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID); err != nil {
					return err
				}
			}
			id := ids.New()
			if _, err := tx.ExecContext(ctx, `INSERT INTO entries (id, org_id, study_id, site_id, participant_id, visit_id, visit_repeat,
				form_id, form_version, status, revision, created_by, created_at, saved_by, saved_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'complete', 1, $9, $10, $9, $10)`,
				id, f.org.ID, f.study.ID, f.north.ID, p.Pseudonym, visitID, e%10+1, formID, f.investigatorID, now); err != nil {
				return err
			}
			for i := range fields {
				if _, err := tx.ExecContext(ctx, `INSERT INTO entry_values (entry_id, field, row_no, value) VALUES ($1, $2, 0, $3)`,
					id, fmt.Sprintf("f%03d", i), fmt.Sprintf("value %d of entry %d", i, e)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkImport imports 100,000 values (1,000 entries of 100 fields) from
// CSV through the service and the gate, all in one transaction:
//
//	go test -run '^$' -bench Import -benchtime 3x ./internal/entries/
func BenchmarkImport(b *testing.B) {
	ctx := context.Background()
	const fields, entriesPerRun = 100, 1000
	f := setup(b, sqldb.SQLite)
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
	b.ResetTimer()
	for n := range b.N {
		got, err := f.svc.Import(ctx, f.dataManager, "clinic", f.study.ID, entries.FormatCSV, strings.NewReader(files[n]))
		if err != nil || got.Values != fields*entriesPerRun {
			b.Fatalf("%+v, %v", got, err)
		}
	}
	b.ReportMetric(float64(fields*entriesPerRun)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
}

// BenchmarkSave saves a form of 20 fields (two of them sensitive) about a
// participant from 32 concurrent requesters, through the service and the
// gate (authorize, validate, seal, version, audit, one transaction per
// group of requests), and, as the baseline in the same run, inserts the
// same rows plain on the same database (one transaction each, no audit, no
// sealing, the same durability):
//
//	go test -run '^$' -bench Save -benchtime 5s ./internal/entries/
func BenchmarkSave(b *testing.B) {
	ctx := context.Background()
	f := setup(b, sqldb.SQLite)
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
						form_id, form_version, status, revision, created_by, created_at, saved_by, saved_at)
						VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'complete', 1, $9, $10, $9, $10)`,
						id, f.org.ID, f.study.ID, f.north.ID, p, visitID, repeat, formID, f.investigatorID, now); err != nil {
						return err
					}
					for k, v := range values {
						if _, err := tx.ExecContext(ctx, `INSERT INTO entry_values (entry_id, field, row_no, value) VALUES ($1, $2, 0, $3)`, id, k, v); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

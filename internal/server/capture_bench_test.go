package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// BenchmarkExportOverHTTPS exports a study of 100,000 and of 1,000,000
// values (100 fields a form) as CSV through the whole handler over HTTPS
// (TLS on loopback, signed in as the demo site investigator, the body read
// to the end by the client), on SQLite and, with CUSTODIA_TEST_POSTGRES,
// on PostgreSQL. It reports values/s, the seconds a million values take,
// the bytes sent, and the peak heap and peak RSS of the process (server
// and client) while it runs:
//
//	go test -run '^$' -bench ExportOverHTTPS -benchtime 1x ./internal/server/
func BenchmarkExportOverHTTPS(b *testing.B) {
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		for _, size := range []int{100_000, 1_000_000} {
			b.Run(string(d)+"/"+strconv.Itoa(size), func(b *testing.B) {
				url, c := seedExport(b, d, size)
				p := startBenchPeaks()
				var sent int64
				b.ResetTimer()
				for range b.N {
					resp, err := c.Get(url)
					if err != nil {
						b.Fatal(err)
					}
					n, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Fatalf("export: %d, %v", resp.StatusCode, err)
					}
					sent = n
				}
				b.StopTimer()
				p.report(b)
				perSecond := float64(size) * float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(perSecond, "values/s")
				b.ReportMetric(1e6/perSecond, "s/1M-values")
				b.ReportMetric(float64(sent)/(1<<20), "MB-sent")
			})
		}
	}
}

// captureServer is a server over a fresh instance with the demo
// organization, whose demo study has a published form at a repeating
// visit, and, on the same listener, a plain handler (PUT /bench/plain/…)
// that stores an entry's values as the entries do, with none of the rest.
type captureServer struct {
	inst                          *instance.Instance
	url, base                     string // the server; the demo study's API path
	org, study, site              string
	visitID, formID, investigator string
	signIn                        func(authz.Role) *http.Client
	transport                     *http.Transport
}

func startCapture(b testing.TB, d sqldb.Dialect, form map[string]any) *captureServer {
	b.Helper()
	ctx := context.Background()
	cfg := instance.Config{DataDir: b.TempDir()}
	if d == sqldb.Postgres {
		cfg.Database, cfg.IdentityDatabase = sqldbtest.URL(b, d), sqldbtest.URL(b, d)
	}
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inst.Close() })
	logins, err := demo.Seed(ctx, gate.New(gate.Config{Clinical: inst.Clinical}))
	if err != nil {
		b.Fatal(err)
	}
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		b.Fatal(err)
	}
	h, _ := NewHandler(Deps{Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Instance: inst, KEK: kek})
	cs := &captureServer{inst: inst}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("PUT /bench/plain/{participant}/{repeat}", cs.plain())
	srv := httptest.NewTLSServer(mux)
	b.Cleanup(srv.Close)
	cs.url, cs.transport = srv.URL, srv.Client().Transport.(*http.Transport)
	byRole := map[authz.Role]demo.Login{}
	for _, l := range logins {
		byRole[l.Role] = l
	}
	cs.signIn = func(role authz.Role) *http.Client {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Transport: cs.transport, Jar: jar}
		call(b, c, srv.URL, "POST", "/api/v1/auth/login", map[string]string{"email": byRole[role].Email, "password": byRole[role].Password}, http.StatusOK)
		return c
	}
	o, err := orgs.OrganizationBySlug(ctx, inst.Clinical, demo.Slug)
	if err != nil {
		b.Fatal(err)
	}
	cs.org = o.ID
	studies, err := orgs.Studies(ctx, inst.Clinical, o.ID)
	if err != nil {
		b.Fatal(err)
	}
	for _, st := range studies {
		if st.Name == "Demo Study" {
			cs.study = st.ID
		}
	}
	sites, err := orgs.Sites(ctx, inst.Clinical, o.ID, cs.study)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range sites {
		if s.Name == "North Clinic" {
			cs.site = s.ID
		}
	}
	cs.base = "/api/v1/orgs/" + demo.Slug + "/studies/" + cs.study
	designer := cs.signIn(authz.StudyAdmin)
	var v struct{ Digest string }
	json.Unmarshal(call(b, designer, srv.URL, "POST", cs.base+"/forms", form, http.StatusCreated), &v)
	call(b, designer, srv.URL, "POST", cs.base+"/forms/"+form["key"].(string)+"/publish", map[string]string{"digest": v.Digest}, http.StatusOK)
	call(b, designer, srv.URL, "PUT", cs.base+"/schedule", map[string]any{"visits": []map[string]any{
		{"key": "visit", "label": "Visit", "day": 0, "repeating": true, "forms": []string{form["key"].(string)}}}}, http.StatusOK)
	if err := inst.Clinical.QueryRowContext(ctx, `SELECT v.id, f.id FROM visits v, forms f WHERE v.visit_key = 'visit' AND f.form_key = $2 AND v.study_id = $1 AND f.study_id = $1`,
		cs.study, form["key"]).Scan(&cs.visitID, &cs.formID); err != nil {
		b.Fatal(err)
	}
	if err := inst.Clinical.QueryRowContext(ctx, `SELECT id FROM accounts WHERE email = $1`, byRole[authz.SiteInvestigator].Email).Scan(&cs.investigator); err != nil {
		b.Fatal(err)
	}
	return cs
}

// plain stores an entry's values as the entries do (the entry and its
// first revision, the values packed), in clear, in one transaction: no
// session, authorization, validation, sealing or audit.
func (cs *captureServer) plain() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Values map[string]string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		names := slices.Sorted(maps.Keys(in.Values))
		var cells strings.Builder
		cells.WriteByte('[')
		for i, k := range names {
			if i > 0 {
				cells.WriteByte(',')
			}
			fmt.Fprintf(&cells, "[%q,0,%q]", k, in.Values[k])
		}
		cells.WriteByte(']')
		repeat, _ := strconv.Atoi(r.PathValue("repeat"))
		err := cs.inst.Clinical.InTx(r.Context(), func(tx *sql.Tx) error {
			id, now := ids.New(), sqldb.Now()
			if _, err := tx.ExecContext(r.Context(), `INSERT INTO entries (id, org_id, study_id, site_id, participant_id, visit_id, visit_repeat,
				form_id, form_version, status, revision, created_by, created_at, saved_by, saved_at, cells)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'complete', 1, $9, $10, $9, $10, $11)`,
				id, cs.org, cs.study, cs.site, r.PathValue("participant"), cs.visitID, repeat, cs.formID, cs.investigator, now, cells.String()); err != nil {
				return err
			}
			_, err := tx.ExecContext(r.Context(), `INSERT INTO entry_revisions (entry_id, revision, form_version, status, saved_by, saved_at, changes)
				VALUES ($1, 1, 1, 'complete', $2, $3, $4)`, id, cs.investigator, now, cells.String())
			return err
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"revision":1}`))
	})
}

// enrol makes n participants at North Clinic, straight in the database.
func (cs *captureServer) enrol(b testing.TB, n int) []string {
	b.Helper()
	var out []string
	err := cs.inst.Clinical.InTx(context.Background(), func(tx *sql.Tx) error {
		for range n {
			p, err := participants.Create(context.Background(), tx, cs.org, cs.study, cs.site)
			if err != nil {
				return err
			}
			out = append(out, p.Pseudonym)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// seedExport starts a capture server with a form of 100 text fields and
// writes entries holding size values at North Clinic straight to the
// database, and answers the export's URL and a client signed in as the
// site investigator.
func seedExport(b *testing.B, d sqldb.Dialect, size int) (string, *http.Client) {
	b.Helper()
	ctx := context.Background()
	const fields = 100
	var defs []map[string]any
	for i := range fields {
		defs = append(defs, map[string]any{"name": fmt.Sprintf("f%03d", i), "label": "F", "type": "text"})
	}
	cs := startCapture(b, d, map[string]any{"key": "big", "title": "Big", "fields": defs})
	people := cs.enrol(b, size/fields/10)
	err := cs.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		now := sqldb.Now()
		var cells strings.Builder
		for e := range size / fields {
			// The values packed as the entries store them: [field, row, value].
			cells.Reset()
			cells.WriteByte('[')
			for i := range fields {
				if i > 0 {
					cells.WriteByte(',')
				}
				fmt.Fprintf(&cells, `["f%03d",0,"value %d of entry %d"]`, i, i, e)
			}
			cells.WriteByte(']')
			if _, err := tx.ExecContext(ctx, `INSERT INTO entries (id, org_id, study_id, site_id, participant_id, visit_id, visit_repeat,
				form_id, form_version, status, revision, created_by, created_at, saved_by, saved_at, cells)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'complete', 1, $9, $10, $9, $10, $11)`,
				ids.New(), cs.org, cs.study, cs.site, people[e/10], cs.visitID, e%10+1, cs.formID, cs.investigator, now, cells.String()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return cs.url + cs.base + "/export?format=csv", cs.signIn(authz.SiteInvestigator)
}

// BenchmarkSaveOverHTTPS saves a form of 20 fields (two of them sensitive)
// from 32 concurrent clients over HTTPS, each on its own TLS connection,
// through the whole handler as the demo site investigator (session,
// authorize, validate, seal, version, audit), and, as the baseline in the
// same run, on the same server and database, PUTs the same values to a
// handler that stores the same rows plain (captureServer.plain); each for
// a fixed time, on SQLite and, with CUSTODIA_TEST_POSTGRES, on PostgreSQL.
// It reports both throughputs, their ratio, and each one's p50 and p99:
//
//	go test -run '^$' -bench SaveOverHTTPS -benchtime 1x ./internal/server/
func BenchmarkSaveOverHTTPS(b *testing.B) {
	const clients, phase = 32, 5 * time.Second
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			var defs []map[string]any
			values := map[string]string{}
			for i := range 20 {
				name := fmt.Sprintf("f%02d", i)
				defs = append(defs, map[string]any{"name": name, "label": "F", "type": "text", "sensitive": i < 2})
				values[name] = fmt.Sprintf("answer %d", i)
			}
			cs := startCapture(b, d, map[string]any{"key": "twenty", "title": "Twenty", "fields": defs})
			inv := cs.signIn(authz.SiteInvestigator)
			body, _ := json.Marshal(map[string]any{"revision": 0, "complete": true, "values": values})
			guarded := cs.enrol(b, clients)
			plainPeople := cs.enrol(b, clients)
			run := func(path func(w, i int) string) (float64, time.Duration, time.Duration) {
				return cs.closedLoop(b, clients, phase, inv.Jar, func(w, i int) (*http.Request, int) {
					req, _ := http.NewRequest("PUT", cs.url+path(w, i), bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Origin", cs.url)
					return req, http.StatusOK
				})
			}
			b.ResetTimer()
			gRate, g50, g99 := run(func(w, i int) string {
				return fmt.Sprintf("%s/sites/%s/participants/%s/entries/visit/%d/twenty", cs.base, cs.site, guarded[w], i+1)
			})
			pRate, p50, p99 := run(func(w, i int) string { return fmt.Sprintf("/bench/plain/%s/%d", plainPeople[w], i+1) })
			b.StopTimer()
			b.ReportMetric(gRate, "saves/s")
			b.ReportMetric(pRate, "plain/s")
			b.ReportMetric(gRate/pRate, "saves÷plain")
			b.ReportMetric(float64(g50.Microseconds())/1000, "save-p50-ms")
			b.ReportMetric(float64(g99.Microseconds())/1000, "save-p99-ms")
			b.ReportMetric(float64(p50.Microseconds())/1000, "plain-p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "plain-p99-ms")
		})
	}
}

// entriesMaxRepeat bounds the saves of one client in a phase: each is a
// new time the repeating visit was held, up to entries.MaxRepeat.
const entriesMaxRepeat = 1000

// call sends a JSON request and fails the benchmark unless it is answered
// want.
func call(b testing.TB, c *http.Client, base, method, path string, body any, want int) []byte {
	b.Helper()
	j, _ := json.Marshal(body)
	req, err := http.NewRequest(method, base+path, bytes.NewReader(j))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

// benchPeaks samples the heap in use while a benchmark runs, and reads the
// process's peak RSS since it started (Linux: reset through clear_refs).
type benchPeaks struct {
	heap atomic.Uint64
	stop chan struct{}
	rss  bool
}

func startBenchPeaks() *benchPeaks {
	runtime.GC()
	p := &benchPeaks{stop: make(chan struct{})}
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

func (p *benchPeaks) report(b *testing.B) {
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
			if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB"))); err == nil {
				b.ReportMetric(float64(n)/1024, "peak-RSS-MB")
			}
		}
	}
}

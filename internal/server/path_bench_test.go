package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/sqldb"
)

// BenchmarkParticipantPathOverHTTPS drives the two requests of
// cmd/custodia's throughput rows, an audited read of a participant and an
// enrolment with identity data, from 32 clients over HTTPS through the
// whole handler in this process, for 5 s each, so that a CPU profile sees
// the request path whole. On PostgreSQL it also reports the statements
// sent per request (trips/read, trips/enrol; batches share theirs), each
// a round trip:
//
//	go test -run '^$' -bench ParticipantPath -benchtime 1x -cpuprofile cpu.out ./internal/server/
func BenchmarkParticipantPathOverHTTPS(b *testing.B) {
	const clients, phase = 32, 5 * time.Second
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			cs := startCapture(b, d, map[string]any{"key": "one", "title": "One", "fields": []map[string]any{
				{"name": "f", "label": "F", "type": "text"}}})
			inv := cs.signIn(authz.SiteInvestigator)
			people := cs.enrol(b, clients)
			participants := cs.base + "/sites/" + cs.site + "/participants"
			var n atomic.Int64
			run := func(send func(w int) (*http.Request, int)) (float64, time.Duration, time.Duration) {
				return cs.closedLoop(b, clients, phase, inv.Jar, func(w, _ int) (*http.Request, int) { return send(w) })
			}
			b.ResetTimer()
			trips := func() int64 { return cs.inst.Clinical.RoundTrips() + cs.inst.Identity.RoundTrips() }
			t0 := trips()
			readRate, r50, r99 := run(func(w int) (*http.Request, int) {
				req, _ := http.NewRequest("GET", cs.url+participants+"/"+people[w], nil)
				return req, http.StatusOK
			})
			t1 := trips()
			enrolRate, e50, e99 := run(func(int) (*http.Request, int) {
				body, _ := json.Marshal(map[string]string{"name": "Ada Lovelace", "birth_date": "1952-03-11",
					"email": "ada@example.org", "phone": "+441234567890", "national_id": fmt.Sprintf("QX%d", n.Add(1))})
				req, _ := http.NewRequest("POST", cs.url+participants, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Origin", cs.url)
				return req, http.StatusCreated
			})
			b.StopTimer()
			t2 := trips()
			if d == sqldb.Postgres {
				b.ReportMetric(float64(t1-t0)/(readRate*phase.Seconds()), "trips/read")
				b.ReportMetric(float64(t2-t1)/(enrolRate*phase.Seconds()), "trips/enrol")
			}
			b.ReportMetric(readRate, "reads/s")
			b.ReportMetric(float64(r50.Microseconds())/1000, "read-p50-ms")
			b.ReportMetric(float64(r99.Microseconds())/1000, "read-p99-ms")
			b.ReportMetric(enrolRate, "enrolments/s")
			b.ReportMetric(float64(e50.Microseconds())/1000, "enrol-p50-ms")
			b.ReportMetric(float64(e99.Microseconds())/1000, "enrol-p99-ms")
		})
	}
}

// closedLoop runs clients closed-loop clients of cs, each on a TLS
// connection of its own with jar's cookies, for phase, each sending the
// requests send makes (the client's number, and how many it sent before)
// until the phase is over or it sent entriesMaxRepeat; it fails the
// benchmark if any request is not answered as send says, and returns the
// rate of requests and their median and 99th percentile latencies.
func (cs *captureServer) closedLoop(b *testing.B, clients int, phase time.Duration, jar http.CookieJar,
	send func(w, i int) (*http.Request, int)) (float64, time.Duration, time.Duration) {
	var wg sync.WaitGroup
	lat := make([][]time.Duration, clients)
	var failed atomic.Int64
	deadline := time.Now().Add(phase)
	start := time.Now()
	for w := range clients {
		c := &http.Client{Transport: cs.transport.Clone(), Jar: jar}
		wg.Go(func() {
			defer c.CloseIdleConnections()
			for i := 0; i < entriesMaxRepeat && time.Now().Before(deadline); i++ {
				t0 := time.Now()
				req, want := send(w, i)
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					if failed.Add(1) == 1 {
						b.Logf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, got)
					}
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	if n := failed.Load(); n > 0 || len(all) == 0 {
		b.Fatalf("%d requests failed, %d succeeded", n, len(all))
	}
	slices.Sort(all)
	return float64(len(all)) / elapsed.Seconds(), all[len(all)/2], all[len(all)*99/100]
}

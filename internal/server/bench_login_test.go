package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/instance"
)

// floodResult is one flood of wrong-password sign-ins.
type floodResult struct {
	concurrency int
	logins      int
	elapsed     time.Duration
	peakHeap    uint64 // bytes in use by the heap, highest sample
}

func (f floodResult) rate() float64 { return float64(f.logins) / f.elapsed.Seconds() }

// heapInUse reads what ReadMemStats calls HeapInuse (objects and the
// unused space of spans in use) from runtime/metrics, which does not stop
// the world.
func heapInUse(s []metrics.Sample) uint64 {
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

// flood fires logins wrong-password sign-ins over HTTPS, concurrency at a
// time, each from its own address (X-Forwarded-For behind a trusted proxy)
// and for its own e-mail address, so no rate limit answers in place of the
// password check, while a goroutine samples the heap every millisecond.
func flood(b *testing.B, ts *httptest.Server, c *http.Client, seq *atomic.Int64, concurrency, logins int) floodResult {
	b.Helper()
	runtime.GC()
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	var peak atomic.Uint64
	peak.Store(heapInUse(samples))
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s := []metrics.Sample{{Name: samples[0].Name}, {Name: samples[1].Name}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v := heapInUse(s); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	work := make(chan int64, logins)
	for range logins {
		work <- seq.Add(1)
	}
	close(work)
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for n := range work {
				body := fmt.Sprintf(`{"email":"flood-%d@bench.example","password":"not the password %d"}`, n, n)
				req, _ := http.NewRequest("POST", ts.URL+"/api/v1/auth/login", bytes.NewReader([]byte(body)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255))
				resp, err := c.Do(req)
				if err != nil {
					failed.Store(err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					failed.Store(fmt.Sprintf("status %d", resp.StatusCode))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if f := failed.Load(); f != nil {
		b.Fatalf("a wrong-password sign-in was not answered 401: %v", f)
	}
	return floodResult{concurrency: concurrency, logins: logins, elapsed: elapsed, peakHeap: peak.Load()}
}

// BenchmarkLoginFlood measures what a credential-stuffing flood costs the
// server (issue 4): wrong-password sign-ins over HTTPS against the real
// handler, one at a time (the baseline), 20 and 200 at once, in the same
// run. It reports sign-ins per second and the heap's peak for each, and as
// ratios: throughput at 200 against the baseline, and peak memory at 200
// against 20, which the hashing pool of package accounts keeps near 1
// (each of its slots holds one argon2id hash's 19 MiB, however many
// requests wait). Run with -benchtime=1x; it never fails on a figure.
func BenchmarkLoginFlood(b *testing.B) {
	ctx := context.Background()
	inst, err := instance.Open(ctx, instance.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inst.Close() })
	h, _ := NewHandler(Deps{
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Instance: inst,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")},
	})
	ts := httptest.NewTLSServer(h)
	b.Cleanup(ts.Close)
	tr := ts.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	c := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	var seq atomic.Int64
	flood(b, ts, c, &seq, 4, 8) // warm up: connections, the dummy hash, the schema

	var base, twenty, twoHundred floodResult
	b.ResetTimer()
	for range b.N {
		base = flood(b, ts, c, &seq, 1, 20)
		twenty = flood(b, ts, c, &seq, 20, 200)
		twoHundred = flood(b, ts, c, &seq, 200, 200)
	}
	b.StopTimer()
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	b.ReportMetric(base.rate(), "logins/s@1")
	b.ReportMetric(twenty.rate(), "logins/s@20")
	b.ReportMetric(twoHundred.rate(), "logins/s@200")
	b.ReportMetric(twoHundred.rate()/base.rate(), "throughput-200/1")
	b.ReportMetric(mib(base.peakHeap), "peak-MiB@1")
	b.ReportMetric(mib(twenty.peakHeap), "peak-MiB@20")
	b.ReportMetric(mib(twoHundred.peakHeap), "peak-MiB@200")
	b.ReportMetric(float64(twoHundred.peakHeap)/float64(twenty.peakHeap), "peak-mem-200/20")
	b.ReportMetric(0, "ns/op") // the figures above are the result
}

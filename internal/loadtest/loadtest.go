// Package loadtest drives a closed-loop load and summarizes it. A fixed
// number of workers each send a request, wait for its answer and send the
// next at once, for a fixed time; the package counts what was answered and
// what failed and reports the rate and the latency percentiles.
//
// Closed loop means the load adapts to the system under test: a slower
// system gets fewer requests, never a growing queue, so two systems measured
// with the same workers for the same time compare by their rates. The
// package knows nothing of HTTP or of what a request is; a caller gives a
// Request that does one unit of work and says whether it succeeded.
package loadtest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Request does one unit of work for worker (0 to Workers-1); i counts that
// worker's requests from 0, warm-up included, so worker and i together name
// a request uniquely within one Run. It returns nil on success. A Request
// must not block forever: give it a timeout of its own.
type Request func(ctx context.Context, worker, i int) error

// Load is how hard and how long to push.
type Load struct {
	Workers  int
	Duration time.Duration // measured
	// Warmup runs before the measured Duration, with the same workers, and
	// is not recorded: connections are opened and caches filled.
	Warmup time.Duration
	// Meters are cumulative counters read at the start of the measured
	// period and once its last request is answered, such as the processor
	// time a program has used; Result.Metered holds what each grew by.
	Meters map[string]Meter
}

// Meter reads a counter that only grows.
type Meter func() float64

// maxFailureKinds bounds the distinct error messages a Result keeps, so a
// request that puts a unique id in every error cannot grow it without end.
const maxFailureKinds = 20

// otherFailures is the key under which failures beyond maxFailureKinds
// distinct messages are counted.
const otherFailures = "(other errors)"

// Result is what one Run measured. Latencies and the rate count successful
// requests only; failures are counted apart.
type Result struct {
	Workers   int
	Succeeded int
	Failed    int
	// Failures counts the failed requests by error message.
	Failures map[string]int
	// Elapsed runs from the start of the measured period until the last
	// request begun in it was answered: a request in flight at the deadline
	// is waited for and counted, not cut off.
	Elapsed time.Duration
	P50     time.Duration
	P99     time.Duration
	// Metered is what each of Load.Meters grew by in the measured period.
	Metered map[string]float64
}

// PerRequest is what meter grew by for each request answered in the
// measured period, or 0 without one.
func (r Result) PerRequest(meter string) float64 {
	if r.Requests() == 0 {
		return 0
	}
	return r.Metered[meter] / float64(r.Requests())
}

// Requests is the number of requests answered, successful or not.
func (r Result) Requests() int { return r.Succeeded + r.Failed }

// Rate is successful requests per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Succeeded) / r.Elapsed.Seconds()
}

// ErrorShare is the failed requests' share of all requests, 0 to 1.
func (r Result) ErrorShare() float64 {
	if r.Requests() == 0 {
		return 0
	}
	return float64(r.Failed) / float64(r.Requests())
}

// worker is what one worker recorded in the measured period.
type worker struct {
	latencies []time.Duration
	failures  map[string]int
	failed    int
}

// Run applies the load until Warmup+Duration has passed or ctx ends, and
// returns what the measured period recorded. Workers stop starting requests
// at the deadline and Run waits for those in flight.
func (l Load) Run(ctx context.Context, req Request) Result {
	n := max(l.Workers, 1)
	began := time.Now()
	measureFrom := began.Add(l.Warmup)
	deadline := measureFrom.Add(l.Duration)
	workers := make([]worker, n)
	var wg sync.WaitGroup
	startReadings := make(chan map[string]float64, 1)
	go func() {
		t := time.NewTimer(time.Until(measureFrom))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		startReadings <- read(l.Meters)
	}()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := &workers[w]
			rec.failures = map[string]int{}
			for i := 0; ; i++ {
				start := time.Now()
				if !start.Before(deadline) || ctx.Err() != nil {
					return
				}
				err := req(ctx, w, i)
				took := time.Since(start)
				if start.Before(measureFrom) {
					continue
				}
				if err != nil {
					rec.failed++
					rec.failures[err.Error()]++
					continue
				}
				rec.latencies = append(rec.latencies, took)
			}
		}()
	}
	wg.Wait()
	end := time.Now()
	ended := read(l.Meters)
	atStart := <-startReadings

	res := Result{Workers: n, Failures: map[string]int{}, Elapsed: end.Sub(measureFrom), Metered: map[string]float64{}}
	for name, v := range ended {
		res.Metered[name] = v - atStart[name]
	}
	if end.Before(measureFrom) { // ctx ended during the warm-up
		res.Elapsed = 0
	}
	var all []time.Duration
	for _, rec := range workers {
		all = append(all, rec.latencies...)
		res.Failed += rec.failed
		for msg, c := range rec.failures {
			if _, ok := res.Failures[msg]; !ok && len(res.Failures) >= maxFailureKinds {
				msg = otherFailures
			}
			res.Failures[msg] += c
		}
	}
	res.Succeeded = len(all)
	slices.Sort(all)
	res.P50 = Percentile(all, 50)
	res.P99 = Percentile(all, 99)
	return res
}

// read reads every meter.
func read(meters map[string]Meter) map[string]float64 {
	out := make(map[string]float64, len(meters))
	for name, m := range meters {
		out[name] = m()
	}
	return out
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value that at least p percent of the
// values do not exceed. It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	if p <= 0 || p > 100 {
		panic(fmt.Sprintf("loadtest: percentile %v is not in (0, 100]", p))
	}
	rank := int(math.Ceil(p * float64(len(sorted)) / 100))
	return sorted[max(rank, 1)-1]
}

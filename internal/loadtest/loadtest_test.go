package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentileOfAKnownSample(t *testing.T) {
	var hundred []time.Duration // 1ms … 100ms
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	ms := time.Millisecond
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"median of 1…100", hundred, 50, 50 * ms},
		{"99th of 1…100", hundred, 99, 99 * ms},
		{"100th of 1…100", hundred, 100, 100 * ms},
		{"1st of 1…100", hundred, 1, 1 * ms},
		{"median of an odd count", []time.Duration{1 * ms, 2 * ms, 3 * ms}, 50, 2 * ms},
		{"99th of three", []time.Duration{1 * ms, 2 * ms, 3 * ms}, 99, 3 * ms},
		{"one value", []time.Duration{7 * ms}, 50, 7 * ms},
		{"empty", nil, 50, 0},
	}
	for _, tc := range cases {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: Percentile(p=%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestPercentileRefusesAnImpossibleRank(t *testing.T) {
	for _, p := range []float64{0, -1, 100.5} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Percentile(p=%v) did not panic", p)
				}
			}()
			Percentile([]time.Duration{1}, p)
		}()
	}
}

// TestRunCountsEveryRequestAndError lets every third request fail and checks
// that the result accounts for each request the workers made, with the
// failures apart from the successes and grouped by message.
func TestRunCountsEveryRequestAndError(t *testing.T) {
	var calls, fails atomic.Int64
	var mu sync.Mutex
	seen := map[[2]int]bool{}
	res := Load{Workers: 4, Duration: 150 * time.Millisecond}.Run(context.Background(), func(ctx context.Context, w, i int) error {
		mu.Lock()
		dup := seen[[2]int{w, i}]
		seen[[2]int{w, i}] = true
		mu.Unlock()
		if dup {
			t.Errorf("worker %d request %d made twice", w, i)
		}
		calls.Add(1)
		time.Sleep(time.Millisecond)
		if i%3 == 2 {
			fails.Add(1)
			return errors.New("status 503")
		}
		return nil
	})
	if res.Requests() != int(calls.Load()) {
		t.Errorf("Requests() = %d, but the workers made %d", res.Requests(), calls.Load())
	}
	if res.Failed != int(fails.Load()) || res.Failed == 0 {
		t.Errorf("Failed = %d, want the %d failures returned (and some)", res.Failed, fails.Load())
	}
	if res.Failures["status 503"] != res.Failed || len(res.Failures) != 1 {
		t.Errorf("Failures = %v, want {\"status 503\": %d}", res.Failures, res.Failed)
	}
	if share := res.ErrorShare(); share < 0.2 || share > 0.4 {
		t.Errorf("ErrorShare() = %.2f, want about a third", share)
	}
	if res.Workers != 4 {
		t.Errorf("Workers = %d, want 4", res.Workers)
	}
	if res.P50 < time.Millisecond || res.P99 < res.P50 {
		t.Errorf("P50 %v, P99 %v: want P99 >= P50 >= the 1ms each request sleeps", res.P50, res.P99)
	}
	if got, want := res.Rate(), float64(res.Succeeded)/res.Elapsed.Seconds(); got != want {
		t.Errorf("Rate() = %v, want successes per second %v", got, want)
	}
}

// TestRunStopsAtTheDeadline checks that no request starts after the
// deadline and that Run returns once those in flight are answered.
func TestRunStopsAtTheDeadline(t *testing.T) {
	const (
		duration = 200 * time.Millisecond
		each     = 20 * time.Millisecond
	)
	began := time.Now()
	var lastStart atomic.Int64
	res := Load{Workers: 3, Duration: duration}.Run(context.Background(), func(ctx context.Context, w, i int) error {
		lastStart.Store(int64(time.Since(began)))
		time.Sleep(each)
		return nil
	})
	took := time.Since(began)
	if last := time.Duration(lastStart.Load()); last >= duration {
		t.Errorf("a request started %v after the start, past the %v deadline", last, duration)
	}
	if took < duration || took > duration+each+time.Second {
		t.Errorf("Run took %v, want the %v duration plus at most one request in flight", took, duration)
	}
	if res.Elapsed < duration || res.Elapsed > took {
		t.Errorf("Elapsed = %v, want between %v and the %v Run took", res.Elapsed, duration, took)
	}
	// 3 workers × about 10 requests of 20ms in 200ms.
	if res.Succeeded < 15 || res.Succeeded > 33 {
		t.Errorf("Succeeded = %d, want about 30", res.Succeeded)
	}
}

// Requests that start during the warm-up are not recorded. The test tells
// them by the clock: a request that sees a time before the warm-up's end
// (counted from a moment before Run began) surely started before it,
// however slowly a loaded machine runs the workers.
func TestRunLeavesTheWarmupOut(t *testing.T) {
	const warmup, duration = 100 * time.Millisecond, 100 * time.Millisecond
	var calls, warm atomic.Int64
	warmEnds := time.Now().Add(warmup)
	res := Load{Workers: 2, Warmup: warmup, Duration: duration}.Run(context.Background(), func(ctx context.Context, w, i int) error {
		calls.Add(1)
		if time.Now().Before(warmEnds) {
			warm.Add(1)
		}
		time.Sleep(5 * time.Millisecond)
		return nil
	})
	if warm.Load() == 0 {
		t.Fatal("no request ran during the warm-up: the test shows nothing")
	}
	if n := int64(res.Requests()); n == 0 || n > calls.Load()-warm.Load() {
		t.Errorf("recorded %d of %d requests, %d of them in the warm-up; want only those after it", n, calls.Load(), warm.Load())
	}
	if res.Elapsed < duration || res.Elapsed > duration+time.Second {
		t.Errorf("Elapsed = %v, want the measured %v and at most a request in flight, without the warm-up's", res.Elapsed, duration)
	}
}

func TestRunEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	Load{Workers: 2, Duration: time.Hour}.Run(ctx, func(ctx context.Context, w, i int) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
			return nil
		}
	})
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Run took %v after its context ended", took)
	}
}

func TestRunBoundsTheDistinctFailures(t *testing.T) {
	res := Load{Workers: 1, Duration: 50 * time.Millisecond}.Run(context.Background(), func(ctx context.Context, w, i int) error {
		time.Sleep(100 * time.Microsecond)
		return fmt.Errorf("failure number %d", i)
	})
	if len(res.Failures) > maxFailureKinds+1 {
		t.Errorf("%d distinct failure messages kept, want at most %d and one for the rest", len(res.Failures), maxFailureKinds)
	}
	total := 0
	for _, c := range res.Failures {
		total += c
	}
	if total != res.Failed || res.Succeeded != 0 {
		t.Errorf("failures add up to %d of %d failed (succeeded %d)", total, res.Failed, res.Succeeded)
	}
}

// TestMetersCountTheMeasuredPeriodOnly meters the requests answered and
// checks that the meter grew by those of the measured period: the requests
// counted, and at most one more per worker, begun in the warm-up and
// answered after it; none of the warm-up's own.
func TestMetersCountTheMeasuredPeriodOnly(t *testing.T) {
	var answered atomic.Int64
	l := Load{Workers: 3, Warmup: 100 * time.Millisecond, Duration: 200 * time.Millisecond,
		Meters: map[string]Meter{"answered": func() float64 { return float64(answered.Load()) }}}
	res := l.Run(context.Background(), func(ctx context.Context, worker, i int) error {
		time.Sleep(2 * time.Millisecond)
		answered.Add(1)
		return nil
	})
	got := res.Metered["answered"]
	if got < float64(res.Requests()) || got > float64(res.Requests()+l.Workers) {
		t.Errorf("the meter grew by %v in the measured period, which answered %d requests (%d workers)", got, res.Requests(), l.Workers)
	}
	if total := answered.Load(); got >= float64(total) {
		t.Errorf("the meter grew by %v, all %d requests, warm-up included", got, total)
	}
	if per := res.PerRequest("answered"); per < 1 || per > 1+float64(l.Workers)/float64(res.Requests()) {
		t.Errorf("PerRequest = %v, want about 1", per)
	}
	if res.PerRequest("unknown") != 0 {
		t.Errorf("PerRequest of a meter not given = %v, want 0", res.PerRequest("unknown"))
	}
}

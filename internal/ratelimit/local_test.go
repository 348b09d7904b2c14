package ratelimit

import (
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
)

// Local admits a burst of Limit, then one attempt every Window/Limit, per
// bucket, and refuses the rest as rate-limited with the wait; a rule of
// limit 0 admits everything (ASVS V2.4.1).
func TestLocalPacesABucketAndTellsTheWait(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := &Local{Now: func() time.Time { return now }}
	rule := Rule{Bucket: "enrol:account:a", Limit: 4, Window: time.Hour}
	for i := range 4 {
		if err := l.Check(rule); err != nil {
			t.Fatalf("attempt %d of the burst: %v", i+1, err)
		}
	}
	err := l.Check(rule)
	if !errs.Is(err, errs.RateLimited) {
		t.Fatalf("fifth attempt within the hour: %v, want rate-limited", err)
	}
	if w := RetryAfter(err); w <= 0 || w > 15*time.Minute {
		t.Fatalf("retry after %s, want at most one step (15m)", w)
	}
	if err := l.Check(Rule{Bucket: "enrol:account:b", Limit: 4, Window: time.Hour}); err != nil {
		t.Fatalf("another bucket: %v", err)
	}
	now = now.Add(15 * time.Minute)
	if err := l.Check(rule); err != nil {
		t.Fatalf("one step later: %v", err)
	}
	if err := l.Check(rule); !errs.Is(err, errs.RateLimited) {
		t.Fatalf("a second attempt in the same step: %v", err)
	}
	for range 100 {
		if err := l.Check(Rule{Bucket: "x", Limit: 0, Window: time.Hour}); err != nil {
			t.Fatalf("limit 0: %v", err)
		}
	}
}

// Under concurrency Local admits exactly the burst.
func TestLocalHoldsUnderConcurrency(t *testing.T) {
	l := &Local{}
	rule := Rule{Bucket: "b", Limit: 50, Window: time.Hour}
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if l.Check(rule) == nil {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 50 {
		t.Fatalf("admitted %d of 200, want 50", admitted)
	}
}

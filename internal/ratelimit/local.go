package ratelimit

import (
	"sync"
	"time"

	"github.com/custodia/custodia/internal/errs"
)

// Local counts attempts in this process's memory, by the same algorithm as
// Limiter: for functions that many requests of one account may call each
// second (enrolment, searches), where a row in the database that every
// request of the account updates would make them wait for each other. Each
// node counts for itself, so n nodes admit up to n times the limit: it
// paces automation, it is not a budget for guessing (which Limiter keeps).
//
// The zero value is ready to use; its buckets are swept as they empty.
type Local struct {
	Now func() time.Time // for tests; time.Now when nil

	mu      sync.Mutex
	tat     map[string]time.Time
	checked int
}

// Check records an attempt against rule, or refuses it with an error of
// kind errs.RateLimited whose cause is an *Exceeded, as Limiter.Check does.
// A rule whose Limit is 0 or less admits everything.
func (l *Local) Check(rule Rule) error {
	if rule.Limit <= 0 {
		return nil
	}
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	step := rule.Window / time.Duration(rule.Limit)
	key := rule.Bucket + "/" + rule.Window.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tat == nil {
		l.tat = map[string]time.Time{}
	}
	if l.checked++; l.checked%4096 == 0 {
		for k, t := range l.tat {
			if t.Before(now) {
				delete(l.tat, k)
			}
		}
	}
	tat := l.tat[key]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(step)
	if next.After(now.Add(rule.Window)) {
		wait := max(next.Sub(now.Add(rule.Window)), time.Microsecond)
		return errs.Wrap(errs.RateLimited, &Exceeded{Rule: rule, Wait: wait}, Message)
	}
	l.tat[key] = next // times of time.Now compare by the monotonic clock
	return nil
}

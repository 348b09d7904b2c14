package server

import (
	"context"
	"log/slog"
	"time"
)

// ClockWatch logs a step of the system's wall clock: a jump forward or back
// of at least Step between two looks Every apart, measured against the
// monotonic clock, which steps do not move. A clock that ran a day fast
// leaves times a day ahead in the databases (sessions, rate limits,
// leases, which refuse or correct them); an operator should learn of it at
// once, at error level, not from its consequences.
type ClockWatch struct {
	Log   *slog.Logger
	Every time.Duration // default 10 s
	Step  time.Duration // default 30 s

	// For tests: the wall clock, and the time elapsed since start as the
	// monotonic clock tells it.
	wall func() time.Time
	mono func() time.Duration
}

// Run looks at the clock until ctx ends.
func (w *ClockWatch) Run(ctx context.Context) {
	every := w.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	look := w.start()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			look = look.next(w)
		}
	}
}

// look is one reading of both clocks.
type look struct {
	wall time.Time
	mono time.Duration
}

func (w *ClockWatch) start() look {
	if w.wall == nil {
		began := time.Now()
		w.wall = func() time.Time { return time.Now().Round(0) }
		w.mono = func() time.Duration { return time.Since(began) }
	}
	return look{wall: w.wall(), mono: w.mono()}
}

// next reads both clocks again and logs a step since prev.
func (prev look) next(w *ClockWatch) look {
	now := look{wall: w.wall(), mono: w.mono()}
	step := now.wall.Sub(prev.wall) - (now.mono - prev.mono)
	limit := w.Step
	if limit <= 0 {
		limit = 30 * time.Second
	}
	if step >= limit || step <= -limit {
		w.Log.Error("the system clock stepped; times recorded while it was wrong may be too: sessions made ahead of the clock end, rate limits and leases correct themselves; check the time service (NTP)",
			"by", step.Round(time.Second).String(), "now", now.wall.UTC().Format(time.RFC3339))
	}
	return now
}

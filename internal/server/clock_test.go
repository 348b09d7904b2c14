package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A step of the wall clock against the monotonic clock is logged at error
// level, forward and back; the clock's ordinary advance is not.
func TestAVL04_ClockStepIsLoggedLoudly(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	wall := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var mono time.Duration
	w := &ClockWatch{Log: slog.New(slog.NewJSONHandler(&buf, nil)),
		wall: func() time.Time { return wall }, mono: func() time.Duration { return mono }}
	l := w.start()
	advance := func(wallBy, monoBy time.Duration) {
		wall, mono = wall.Add(wallBy), mono+monoBy
		l = l.next(w)
	}
	advance(10*time.Second, 10*time.Second)
	advance(10*time.Second+time.Second, 10*time.Second) // drift, not a step
	if buf.Len() != 0 {
		t.Fatalf("logged without a step: %s", buf.String())
	}
	advance(24*time.Hour+10*time.Second, 10*time.Second)
	if !strings.Contains(buf.String(), `"level":"ERROR"`) || !strings.Contains(buf.String(), `"by":"24h0m0s"`) {
		t.Errorf("a day forward: %s", buf.String())
	}
	buf.Reset()
	advance(-24*time.Hour+10*time.Second, 10*time.Second)
	if !strings.Contains(buf.String(), `"by":"-24h0m0s"`) {
		t.Errorf("a day back: %s", buf.String())
	}
}

package ids

import (
	"testing"
	"time"
)

func TestACL08_IdentifiersAreRandomAndWellFormed(t *testing.T) {
	seen := make(map[string]bool)
	for range 10000 {
		id := New()
		if !Valid(id) {
			t.Fatalf("New() = %q, not Valid", id)
		}
		if seen[id] {
			t.Fatalf("duplicate identifier %q", id)
		}
		seen[id] = true
	}
}

func TestValidRejectsMalformed(t *testing.T) {
	good := New()
	for _, s := range []string{
		"", "1", good[:Len-1], good + "a", "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
		"aaaaaaaaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaaaaaaaa/", "aaaaaaaaaaaaaaaaaaaaaaaaaz",
		"../../../../../../etc/pas",
	} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
	if !Valid("aaaaaaaaaaaaaaaaaaaaaaaaaa") {
		t.Error("all-zero identifier rejected")
	}
}

func TestTimedIdentifiersSortAsTheirTimes(t *testing.T) {
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	var prev string
	for _, step := range []time.Duration{0, time.Millisecond, time.Millisecond, 25 * time.Millisecond,
		time.Second, time.Hour, 24 * time.Hour, 365 * 24 * time.Hour, 40 * 365 * 24 * time.Hour} {
		start = start.Add(step)
		id := Timed(start)
		if !Valid(id) {
			t.Fatalf("Timed(%v) = %q, not Valid", start, id)
		}
		if prev != "" && id <= prev && step > 0 {
			t.Errorf("Timed(%v) = %q sorts before or with the earlier %q", start, id, prev)
		}
		// Identifiers of the same millisecond differ in their random part.
		if again := Timed(start); again == id || again[:timedDigits] != id[:timedDigits] {
			t.Errorf("two identifiers of %v: %q and %q", start, id, again)
		}
		prev = id
	}
	if id := Timed(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)); !Valid(id) || id[:timedDigits] != "aaaaaaaaaa" {
		t.Errorf("Timed of a time before 1970 = %q, want a valid id beginning as 1970's", id)
	}
}

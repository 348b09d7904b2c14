package ids

import "testing"

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

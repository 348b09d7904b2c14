package api

import "testing"

// A key named twice in one object, at any depth, is found; the same key in
// two objects, or a value that looks like a key, is not.
func TestWEB05_DuplicateKeysAreFound(t *testing.T) {
	for body, want := range map[string]string{
		`{"a":1,"a":2}`:                       "a",
		`{"a":{"b":1,"b":2}}`:                 "b",
		`{"a":[{"c":1},{"c":2,"c":3}]}`:       "c",
		`{"a":"a","b":"a"}`:                   "",
		`{"a":{"x":1},"b":{"x":1}}`:           "",
		`[{"a":1},{"a":1}]`:                   "",
		`{"a":[1,"a",{"a":1}],"b":{"a":"a"}}`: "",
		`not json`:                            "",
	} {
		got, dup := duplicateKey([]byte(body))
		if got != want || dup != (want != "") {
			t.Errorf("duplicateKey(%s) = %q, %v; want %q", body, got, dup, want)
		}
	}
}

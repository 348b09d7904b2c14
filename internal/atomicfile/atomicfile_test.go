package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Create makes a new file with its mode and never touches an existing
// one; Write replaces; neither leaves a temporary file behind.
func TestCreateAndWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kek.key")
	if err := Create(path, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(path, []byte("second\n"), 0o600); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over an existing file: %v, want os.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first\n" {
		t.Fatalf("the existing file became %q", b)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if err := Write(path, []byte("third\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "third\n" {
		t.Fatalf("Write left %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode after Write %v, want 0644", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("folder holds %v (%v), want the one file", entries, err)
	}
	if err := Write(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600); err == nil {
		t.Fatal("Write into a missing folder succeeded")
	}
}

package keys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custodia/custodia/internal/errs"
)

func TestCRY04_LocalKEKFileMustBeOwnerOnly(t *testing.T) {
	data := t.TempDir()
	kek, err := OpenLocalKEK(data)
	if err != nil {
		t.Fatalf("OpenLocalKEK: %v", err)
	}
	path := filepath.Join(data, "keys", "kek.key")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("key folder mode %04o, want 0700", di.Mode().Perm())
	}
	again, err := OpenLocalKEK(data)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if again.ID() != kek.ID() || !strings.HasPrefix(kek.ID(), "local:") {
		t.Fatalf("reopened key %s, first %s", again.ID(), kek.ID())
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o602, 0o644, 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := OpenLocalKEK(data)
		if err == nil {
			t.Fatalf("mode %04o: key file accepted", mode)
		}
		msg := err.Error()
		if errs.KindOf(err) != errs.Invalid || !strings.Contains(msg, path) || !strings.Contains(msg, "chmod 600 "+path) || strings.Contains(msg, "\n") {
			t.Fatalf("mode %04o: error %q should be one line naming %s and the chmod fix", mode, msg, path)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalKEK(data); err != nil {
		t.Fatalf("mode 0400 refused: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Dir(path)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalKEK(data); err == nil || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Fatalf("key folder 0755: err = %v, want a refusal naming chmod 700", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalKEK(data); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("malformed key file: err = %v", err)
	}
}

func TestCRY04_LocalKEKConcurrentFirstStartAgreesOnOneKey(t *testing.T) {
	data := t.TempDir()
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := OpenLocalKEK(data)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.ID()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent starts made different keys: %v", ids)
		}
	}
	left, _ := filepath.Glob(filepath.Join(data, "keys", ".*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

func TestCRY04_LocalKEKWrapIsBoundToItsAssociatedData(t *testing.T) {
	ctx := context.Background()
	kek, err := OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if kek.ID() == other.ID() {
		t.Fatal("two fresh keys share an id")
	}
	secret := bytes.Repeat([]byte{0x5c}, 32)
	ad := []byte("row a")
	w, err := kek.Wrap(ctx, secret, ad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, secret[:8]) {
		t.Fatal("wrapped key contains the key")
	}
	got, err := kek.Unwrap(ctx, w, ad)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	if _, err := kek.Unwrap(ctx, w, []byte("row b")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap with other associated data: %v", err)
	}
	if _, err := other.Unwrap(ctx, w, ad); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap with other key: %v", err)
	}
	for n := range len(w) {
		if _, err := kek.Unwrap(ctx, w[:n], ad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("unwrap of %d-byte prefix: %v", n, err)
		}
	}
	for i := range w {
		c := bytes.Clone(w)
		c[i] ^= 0x01
		if _, err := kek.Unwrap(ctx, c, ad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("unwrap with byte %d altered: %v", i, err)
		}
	}
	// A wrapped key is not a sealed value, nor the other way round: the
	// associated data of the two uses never coincide.
	if _, err := Open(ctx, staticRing{}, w, testContext); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrapped key opened as a sealed value: %v", err)
	}
}

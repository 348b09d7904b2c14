// Package instancetest gives tests an instance with the demo organization
// quickly: migrated and seeded once a test binary, copied for each test.
package instancetest

import (
	"context"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
)

// seeded is a data folder holding a migrated instance with the demo
// organization, made once a test binary: each test's server starts on a
// copy of it (SeededCopy). Migrating both databases and seeding the demo
// took most of a test server's start under the race detector (seconds
// each); copying the folder takes milliseconds. Every copy has the same
// keys and the same demo accounts, in a folder of its own.
var seeded struct {
	once   sync.Once
	dir    string
	logins []demo.Login
	err    error
}

// SeededCopy copies the seeded folder into a fresh temporary folder of t
// and returns it with the demo accounts. The seeding runs with the
// package's settings as the first caller finds them (e.g. the argon2 cost a
// TestMain set). A package's TestMain calls RemoveSeeded after its tests.
func SeededCopy(t testing.TB) (string, []demo.Login) {
	t.Helper()
	seeded.once.Do(func() {
		ctx := context.Background()
		dir, err := os.MkdirTemp("", "custodia-seeded-")
		if err != nil {
			seeded.err = err
			return
		}
		seeded.dir = dir
		inst, err := instance.Open(ctx, instance.Config{DataDir: dir})
		if err != nil {
			seeded.err = err
			return
		}
		defer inst.Close()
		seeded.logins, seeded.err = demo.Seed(ctx, gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey}))
	})
	if seeded.err != nil {
		t.Fatalf("seed the instance the test servers copy: %v", seeded.err)
	}
	dst := t.TempDir()
	if err := CopyDir(seeded.dir, dst); err != nil {
		t.Fatal(err)
	}
	return dst, seeded.logins
}

// RemoveSeeded removes the seeded folder once the tests are done.
func RemoveSeeded() {
	if seeded.dir != "" {
		os.RemoveAll(seeded.dir)
	}
}

// CopyDir copies the folder src into dst, which exists, keeping each
// file's and folder's mode (the instance refuses files others may read).
func CopyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.Mkdir(to, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// Main runs a package's tests (a TestMain's body) with passwords hashed at
// argon2id's lowest cost that accounts accepts (8 MiB, one pass) instead of
// the production cost, and removes the seeded folder afterwards. Tests
// seed accounts and sign in, and under the race detector the hashes took
// much of a package's time; no test that calls it depends on a hash's
// cost (package signintiming times sign-ins with the production cost). The
// cost is set before any test runs, so the dummy hash of unknown accounts,
// made once a process, costs what the accounts' hashes cost, as in
// production. A run of benchmarks keeps the production cost, so that they
// measure what the real hash costs.
func Main(m *testing.M) {
	flag.Parse()
	if flag.Lookup("test.bench").Value.String() == "" {
		accounts.DefaultArgon2 = accounts.Argon2Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1}
	}
	code := m.Run()
	RemoveSeeded()
	os.Exit(code)
}

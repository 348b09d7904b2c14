package web

import (
	"flag"
	"os"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/instance/instancetest"
)

// TestMain hashes the tests' passwords at argon2id's lowest cost that
// accounts accepts (8 MiB, one pass) instead of the production cost, as
// internal/server's tests do: the tests seed accounts, and under the race
// detector the hashes took much of the package's time. No test here
// depends on a hash's cost.
func TestMain(m *testing.M) {
	flag.Parse()
	if flag.Lookup("test.bench").Value.String() == "" {
		accounts.DefaultArgon2 = accounts.Argon2Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1}
	}
	code := m.Run()
	instancetest.RemoveSeeded()
	os.Exit(code)
}

package server

import (
	"flag"
	"os"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/instance/instancetest"
)

// TestMain hashes the tests' passwords at argon2id's lowest cost that
// accounts accepts (8 MiB, one pass) instead of the production 19 MiB and
// two: every test seeds the demo accounts and signs in, and under the race
// detector the hashes took much of the package's time. No test here
// depends on a hash's cost (package signintiming times sign-ins with the
// production cost). The cost is set before any test runs, so the dummy
// hash of unknown accounts, made once a process, costs what the accounts'
// hashes cost, as in production. A run of benchmarks keeps the production
// cost: BenchmarkLoginFlood measures what the real hash costs a flood.
func TestMain(m *testing.M) {
	flag.Parse()
	if flag.Lookup("test.bench").Value.String() == "" {
		accounts.DefaultArgon2 = accounts.Argon2Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1}
	}
	code := m.Run()
	instancetest.RemoveSeeded()
	os.Exit(code)
}

package sessions_test

import (
	"os"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
)

// TestMain hashes the tests' passwords at argon2id's lowest cost that
// accounts accepts (8 MiB, one pass) instead of the production 19 MiB and
// two: every test seeds accounts and signs in, and under the race detector
// the hashes took a fifth of the package's time. No test here depends on a
// hash's cost; the one that times sign-ins is in package signintiming,
// whose process keeps the production cost. The cost is set before any
// test runs, so the dummy hash of unknown accounts, made once a process,
// costs what the accounts' hashes cost, as in production. The seeded
// instances the tests copy are removed afterwards.
func TestMain(m *testing.M) {
	accounts.DefaultArgon2 = accounts.Argon2Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1}
	code := m.Run()
	removeTemplates()
	os.Exit(code)
}

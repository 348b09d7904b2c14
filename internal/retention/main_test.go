package retention

import (
	"testing"

	"github.com/custodia/custodia/internal/instance/instancetest"
)

// TestMain hashes the tests' passwords at argon2id's lowest cost, as
// instancetest.Main says why.
func TestMain(m *testing.M) { instancetest.Main(m) }

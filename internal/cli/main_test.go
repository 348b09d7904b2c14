package cli

import (
	"path/filepath"
	"testing"

	"github.com/custodia/custodia/internal/instance/instancetest"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestMain hashes the tests' passwords at argon2id's lowest cost, as
// instancetest.Main says why.
func TestMain(m *testing.M) { instancetest.Main(m) }

// migratedSQLite puts into the data folder dir the instance's two SQLite
// databases with their schemas applied and nothing else, as `custodia
// migrate` leaves them, and returns dir. init then makes the instance as
// on a fresh folder (a new instance id, keys, organization and
// administrator) without applying the migrations, which took most of its
// time under the race detector: the tests that use init to set up an
// instance start from it, and the tests of init and migrate themselves
// from an empty folder.
func migratedSQLite(t *testing.T, dir string) string {
	t.Helper()
	sqldbtest.MigratedFile(t, filepath.Join(dir, "clinical.db"), sqldb.Clinical)
	sqldbtest.MigratedFile(t, filepath.Join(dir, "identity.db"), sqldb.Identity)
	return dir
}

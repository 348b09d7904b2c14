package sessions_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/instance/instancetest"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// seededInstance opens a fresh instance on dialect d (both databases),
// seeded with the demo organization, and returns it with the demo logins
// by role. It is closed when the test ends.
//
// The instance is a copy of one opened and seeded once a test process for
// each dialect (seededTemplate): its data folder (keys) and both databases
// are copied, so each test has an instance of its own, and opening it
// applies no migration and seeds nothing.
func seededInstance(t *testing.T, d sqldb.Dialect) (*instance.Instance, map[authz.Role]demo.Login) {
	t.Helper()
	ctx := context.Background()
	tmpl := templateOf(d)
	tmpl.once.Do(tmpl.make)
	if tmpl.err != nil {
		t.Fatalf("seed the %s instance the tests copy: %v", d, tmpl.err)
	}
	cfg := instance.Config{
		DataDir:          t.TempDir(),
		Database:         tmpl.clinical.Copy(t),
		IdentityDatabase: tmpl.identity.Copy(t),
	}
	if err := instancetest.CopyDir(tmpl.dataDir, cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	byRole := map[authz.Role]demo.Login{}
	for _, l := range tmpl.logins {
		byRole[l.Role] = l
	}
	return inst, byRole
}

// seededTemplate is an instance of one dialect, migrated and seeded with
// the demo organization, closed, for tests to copy.
type seededTemplate struct {
	d                  sqldb.Dialect
	once               sync.Once
	dir                string // holds the data folder and SQLite's files
	dataDir            string
	clinical, identity *sqldbtest.Template
	logins             []demo.Login
	err                error
}

var (
	templatesMu sync.Mutex
	templates   = map[sqldb.Dialect]*seededTemplate{}
)

func templateOf(d sqldb.Dialect) *seededTemplate {
	templatesMu.Lock()
	defer templatesMu.Unlock()
	if templates[d] == nil {
		templates[d] = &seededTemplate{d: d}
	}
	return templates[d]
}

func (s *seededTemplate) make() {
	ctx := context.Background()
	if s.dir, s.err = os.MkdirTemp("", "custodia-sessions-seeded-"); s.err != nil {
		return
	}
	s.dataDir = filepath.Join(s.dir, "data")
	if s.clinical, s.err = sqldbtest.NewTemplate(s.d, s.dir); s.err != nil {
		return
	}
	if s.identity, s.err = sqldbtest.NewTemplate(s.d, s.dir); s.err != nil {
		return
	}
	inst, err := instance.Open(ctx, instance.Config{
		DataDir:          s.dataDir,
		Database:         s.clinical.URL,
		IdentityDatabase: s.identity.URL,
	})
	if err != nil {
		s.err = err
		return
	}
	s.logins, s.err = demo.Seed(ctx, gate.New(gate.Config{Clinical: inst.Clinical}))
	if err := inst.Close(); err != nil && s.err == nil {
		s.err = err
	}
}

// removeTemplates removes the seeded instances once the tests are done.
func removeTemplates() {
	templatesMu.Lock()
	defer templatesMu.Unlock()
	for _, s := range templates {
		s.clinical.Remove()
		s.identity.Remove()
		if s.dir != "" {
			os.RemoveAll(s.dir)
		}
	}
}

// Package instance opens one Custodia installation: its data folder, its
// clinical database and its separate identity database (CRY-09), with their
// schemas current. The CLI commands and the server all start here.
package instance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Config names where an instance keeps its data.
type Config struct {
	DataDir          string // default ./custodia-data
	Database         string // default sqlite:<DataDir>/clinical.db
	IdentityDatabase string // default sqlite:<DataDir>/identity.db
}

// DefaultDataDir is the data folder used when none is given.
const DefaultDataDir = "custodia-data"

// WithDefaults fills in unset locations.
func (c Config) WithDefaults() Config {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Database == "" {
		c.Database = "sqlite:" + filepath.Join(c.DataDir, "clinical.db")
	}
	if c.IdentityDatabase == "" {
		c.IdentityDatabase = "sqlite:" + filepath.Join(c.DataDir, "identity.db")
	}
	return c
}

// Targets parses both database URLs and checks that they name two different
// databases. It reads and writes nothing.
func (c Config) Targets() (clinical, identity sqldb.Target, err error) {
	c = c.WithDefaults()
	if clinical, err = sqldb.ParseURL(c.Database); err != nil {
		return clinical, identity, fmt.Errorf("--database: %w", err)
	}
	if identity, err = sqldb.ParseURL(c.IdentityDatabase); err != nil {
		return clinical, identity, fmt.Errorf("--identity-database: %w", err)
	}
	same := clinical.Dialect == identity.Dialect &&
		(clinical.Dialect == sqldb.SQLite && filepath.Clean(clinical.Path) == filepath.Clean(identity.Path) ||
			clinical.Dialect == sqldb.Postgres && clinical.URL == identity.URL)
	if same {
		return clinical, identity, errs.E(errs.Invalid, "--identity-database must name a database separate from --database")
	}
	return clinical, identity, nil
}

// Instance is an open installation.
type Instance struct {
	ID       string
	DataDir  string
	Clinical *sqldb.DB
	Identity *sqldb.DB
	// AuditKey signs the instance's audit events and checkpoints, and
	// AuditVerifier checks them (AUD-02). The data folder holds the key
	// (<data>/audit/signing.key), never a database, so that whoever holds
	// only a database, or a backup of one, cannot write the trail.
	AuditKey      note.Signer
	AuditVerifier note.Verifier
}

// AuditKeyName is the name of the instance's audit key in signed notes.
func AuditKeyName(instanceID string) string { return "custodia-audit-" + instanceID }

// AuditOrigin is the origin line of the instance's audit checkpoints.
func AuditOrigin(instanceID string) string { return "custodia.audit/" + instanceID }

// Open prepares the data folder (mode 0700), connects to both databases and
// applies pending migrations, then pairs the two databases: both record the
// same instance id, so one instance's identity data are never joined with
// another's clinical data.
func Open(ctx context.Context, c Config) (*Instance, error) {
	c = c.WithDefaults()
	clinicalT, identityT, err := c.Targets()
	if err != nil {
		return nil, err
	}
	if err := prepareDataDir(c.DataDir); err != nil {
		return nil, err
	}
	inst := &Instance{DataDir: c.DataDir}
	if inst.Clinical, err = sqldb.OpenTarget(ctx, clinicalT); err != nil {
		return nil, fmt.Errorf("clinical database: %w", err)
	}
	if inst.Identity, err = sqldb.OpenTarget(ctx, identityT); err != nil {
		inst.Close()
		return nil, fmt.Errorf("identity database: %w", err)
	}
	for _, p := range []struct {
		db *sqldb.DB
		s  sqldb.Schema
	}{{inst.Clinical, sqldb.Clinical}, {inst.Identity, sqldb.Identity}} {
		if _, err := p.db.Migrate(ctx, p.s); err != nil {
			inst.Close()
			return nil, fmt.Errorf("migrate %s database: %w", p.s.Name, err)
		}
	}
	if inst.ID, err = pair(ctx, inst.Clinical, inst.Identity); err != nil {
		inst.Close()
		return nil, err
	}
	if inst.AuditKey, inst.AuditVerifier, err = audit.LoadOrCreateKey(inst.DataDir, AuditKeyName(inst.ID)); err != nil {
		inst.Close()
		return nil, err
	}
	return inst, nil
}

func prepareDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return errs.Wrap(errs.Invalid, err, "create data folder "+dir)
		}
		return nil
	case err != nil:
		return errs.Wrap(errs.Invalid, err, "data folder "+dir+" is not usable")
	case !fi.IsDir():
		return errs.E(errs.Invalid, "data folder %s is not a folder", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		// The folder holds keys and databases: only the service may enter.
		if err := os.Chmod(dir, 0o700); err != nil {
			return errs.Wrap(errs.Invalid, err, "restrict data folder "+dir+" to its owner")
		}
	}
	probe, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "data folder "+dir+" is not writable")
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

func readInstanceID(ctx context.Context, db *sqldb.DB) (string, error) {
	var id string
	err := db.QueryRowContext(ctx, `SELECT instance_id FROM instance WHERE singleton = 1`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

func writeInstanceID(ctx context.Context, db *sqldb.DB, id string) error {
	_, err := db.ExecContext(ctx,
		`INSERT INTO instance (singleton, instance_id, created_at) VALUES (1, $1, $2)`, id, sqldb.Now())
	return err
}

func pair(ctx context.Context, clinical, identity *sqldb.DB) (string, error) {
	cid, err := readInstanceID(ctx, clinical)
	if err != nil {
		return "", fmt.Errorf("read clinical instance id: %w", err)
	}
	iid, err := readInstanceID(ctx, identity)
	if err != nil {
		return "", fmt.Errorf("read identity instance id: %w", err)
	}
	switch {
	case cid != "" && iid != "" && cid != iid:
		return "", errs.E(errs.Invalid, "the identity database belongs to another instance (%s, not %s)", iid, cid)
	case cid == "" && iid == "":
		cid = ids.New()
		if err := writeInstanceID(ctx, clinical, cid); err != nil && !sqldb.IsUniqueViolation(err) {
			return "", fmt.Errorf("record instance id: %w", err)
		}
		// Another node may have won the race; take what is recorded.
		return pair(ctx, clinical, identity)
	case cid == "":
		return "", errs.E(errs.Invalid, "the identity database belongs to an instance whose clinical database is not this one")
	case iid == "":
		if err := writeInstanceID(ctx, identity, cid); err != nil && !sqldb.IsUniqueViolation(err) {
			return "", fmt.Errorf("record instance id: %w", err)
		}
		return pair(ctx, clinical, identity)
	}
	return cid, nil
}

// Ready reports whether both databases answer and their schemas are current.
func (i *Instance) Ready(ctx context.Context) error {
	for _, p := range []struct {
		db *sqldb.DB
		s  sqldb.Schema
	}{{i.Clinical, sqldb.Clinical}, {i.Identity, sqldb.Identity}} {
		st, err := p.db.State(ctx, p.s)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, p.s.Name+" database not reachable")
		}
		if !st.Current() {
			return errs.E(errs.Unavailable, "%s database schema at %d of %d migrations", p.s.Name, st.Applied, st.Known)
		}
	}
	return nil
}

// Close closes both databases.
func (i *Instance) Close() error {
	var err error
	if i.Clinical != nil {
		err = i.Clinical.Close()
	}
	if i.Identity != nil {
		err = errors.Join(err, i.Identity.Close())
	}
	return err
}

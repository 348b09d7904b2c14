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
	"strings"

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
	// Migrate brings the schemas of an existing instance up to date.
	// Without it an instance whose databases need migrations is refused,
	// writing nothing, so that the server runs under a database role that
	// may not change the schema (ASVS V13.2.2) and the migrations come from
	// `custodia migrate`. The databases of a new instance are always made.
	Migrate bool
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
	//
	// With a key-encryption key kept outside the data folder the audit key
	// is sealed by it (auditkey.go): AuditKey refuses to sign until OpenAuditKey.
	AuditKey      note.Signer
	AuditVerifier note.Verifier
	// AuditIssued are the events this process's gate wrote, which its
	// audit sequencer adopts without checking their signatures again.
	AuditIssued *audit.Issued
}

// AuditKeyName is the name of the instance's audit key in signed notes.
func AuditKeyName(instanceID string) string { return "custodia-audit-" + instanceID }

// AuditOrigin is the origin line of the instance's audit checkpoints.
func AuditOrigin(instanceID string) string { return "custodia.audit/" + instanceID }

// Open opens the instance c names, making it if its databases hold none:
// the commands that may create an instance (serve, init, migrate) use it.
// It prepares the data folder (mode 0700), connects to both databases and
// applies pending migrations, then pairs the two databases: both record the
// same instance id, so one instance's identity data are never joined with
// another's clinical data.
//
// A database that the other one says should hold data is never made or
// paired anew (see Records): a missing or emptied identity database beside
// a clinical database with organizations, or an emptied clinical database
// beside an identity database that belongs to an instance, is refused with
// nothing written, and so are two empty databases in a data folder that
// holds the audit key of an instance.
func Open(ctx context.Context, c Config) (*Instance, error) {
	return open(ctx, c, true)
}

// OpenExisting opens an instance that exists, as Open does, and refuses,
// with nothing written (no folder, no file, no table), a data folder or a
// database that holds none: the commands that work on an instance (user,
// keys, audit) use it, so that a mistyped --data names the mistake instead
// of making a new instance there.
func OpenExisting(ctx context.Context, c Config) (*Instance, error) {
	return open(ctx, c, false)
}

// OpenClinical opens only the clinical database of an instance that
// exists, for reading (custodia audit verify): no migration, no pairing,
// and a missing or empty SQLite file is refused without being made. It
// returns what the database holds beside the handle.
func OpenClinical(ctx context.Context, c Config) (*sqldb.DB, Records, error) {
	c = c.WithDefaults()
	t, _, err := c.Targets()
	if err != nil {
		return nil, Records{}, err
	}
	s := &side{schema: sqldb.Clinical, flag: "--database", target: t}
	if s.absent, err = absentFile(t); err != nil {
		return nil, Records{}, err
	}
	if s.absent {
		return nil, Records{}, errs.E(errs.NotFound, "no Custodia instance at %s: %s (check --data and --database)", c.DataDir, s.none())
	}
	db, err := sqldb.OpenTarget(ctx, t)
	if err != nil {
		return nil, Records{}, fmt.Errorf("clinical database: %w", err)
	}
	recs, err := readRecords(ctx, db, sqldb.Clinical)
	if err != nil {
		db.Close()
		return nil, Records{}, err
	}
	if !recs.Schema {
		db.Close()
		return nil, Records{}, errs.E(errs.NotFound, "no Custodia instance at %s: the clinical database %s holds no tables (check --data and --database)", c.DataDir, s.location())
	}
	return db, recs, nil
}

// side is one of the two databases while an instance is opened.
type side struct {
	schema sqldb.Schema
	flag   string
	target sqldb.Target
	db     *sqldb.DB
	recs   Records
	// absent: a SQLite file that does not exist or is empty, not opened
	// (opening it would write a header).
	absent bool
}

// none says that the database holds no instance, and how so.
func (s *side) none() string {
	if s.absent {
		return fmt.Sprintf("the %s database %s is missing or empty", s.schema.Name, s.location())
	}
	return fmt.Sprintf("the %s database %s holds no instance", s.schema.Name, s.location())
}

func (s *side) location() string {
	if s.target.Dialect == sqldb.SQLite {
		return s.target.Path
	}
	return sqldb.Redact(s.target.URL)
}

func open(ctx context.Context, c Config, create bool) (inst *Instance, err error) {
	c = c.WithDefaults()
	clinicalT, identityT, err := c.Targets()
	if err != nil {
		return nil, err
	}
	if create {
		err = prepareDataDir(c.DataDir)
	} else {
		err = existingDataDir(c.DataDir)
	}
	if err != nil {
		return nil, err
	}
	// The audit key is made after the databases record the instance, so
	// read before them it cannot belong to an instance that another node
	// is making at this moment.
	owner := auditKeyOwner(c.DataDir)
	cl := &side{schema: sqldb.Clinical, flag: "--database", target: clinicalT}
	id := &side{schema: sqldb.Identity, flag: "--identity-database", target: identityT}
	defer func() {
		if err != nil {
			for _, s := range []*side{cl, id} {
				if s.db != nil {
					s.db.Close()
				}
			}
		}
	}()
	// First look, writing nothing: what each database holds.
	for _, s := range []*side{cl, id} {
		if s.absent, err = absentFile(s.target); err != nil {
			return nil, err
		}
		if s.absent {
			continue
		}
		if s.db, err = sqldb.OpenTarget(ctx, s.target); err != nil {
			return nil, fmt.Errorf("%s database: %w", s.schema.Name, err)
		}
		if s.recs, err = readRecords(ctx, s.db, s.schema); err != nil {
			return nil, err
		}
	}
	if err := decide(cl, id, c.DataDir, owner, create); err != nil {
		return nil, err
	}
	// Then make what is missing, bring the schemas up to date and pair.
	for _, s := range []*side{cl, id} {
		if s.db == nil {
			if s.db, err = sqldb.OpenTarget(ctx, s.target); err != nil {
				return nil, fmt.Errorf("%s database: %w", s.schema.Name, err)
			}
		}
		if !c.Migrate {
			st, err := s.db.State(ctx, s.schema)
			if err != nil {
				return nil, fmt.Errorf("%s database: %w", s.schema.Name, err)
			}
			if st.Applied > 0 && st.Applied < st.Known {
				return nil, errs.E(errs.Invalid, "the %s database (%s) has schema version %d and this binary needs %d: "+
					"run `custodia migrate` (with a database role that may change the schema), then start again, or start with --migrate",
					s.schema.Name, s.db.Location, st.Applied, st.Known)
			}
		}
		if _, err := s.db.Migrate(ctx, s.schema); err != nil {
			return nil, fmt.Errorf("migrate %s database: %w", s.schema.Name, err)
		}
	}
	inst = &Instance{DataDir: c.DataDir, Clinical: cl.db, Identity: id.db, AuditIssued: &audit.Issued{}}
	if inst.ID, err = pair(ctx, inst.Clinical, inst.Identity); err != nil {
		return nil, err
	}
	if err = inst.loadAuditKey(); err != nil {
		inst.Close()
		return nil, err
	}
	return inst, nil
}

// decide refuses what must not be made or paired anew, before anything is
// written. The clinical database is the authority: it records the instance
// first, and the identity database is paired with it at once, before any
// organization exists.
func decide(cl, id *side, dataDir, keyOwner string, create bool) error {
	cid, iid := cl.recs.InstanceID, id.recs.InstanceID
	switch {
	case cid != "" && iid != "" && cid != iid:
		return errs.E(errs.Invalid, "the identity database belongs to another instance (%s, not %s)", iid, cid)
	case cid == "" && iid != "":
		return errs.E(errs.Invalid, "%s, but the identity database %s belongs to instance %s: "+
			"restore the clinical database from a backup, or point %s at it", cl.none(), id.location(), iid, cl.flag)
	case cid != "" && iid == "" && cl.recs.People:
		// Only a crash between the two first writes leaves a clinical
		// instance without its pair, and then it has no organization yet.
		return errs.E(errs.Invalid, "%s, but the clinical database %s belongs to instance %s, which has organizations and accounts: "+
			"restore the identity database from a backup, or point %s at it", id.none(), cl.location(), cid, id.flag)
	case cid == "" && iid == "" && id.recs.People:
		return errs.E(errs.Invalid, "the identity database %s holds identity data but no instance: restore both databases from one backup", id.location())
	case cid == "" && !cl.recs.People && !create:
		return errs.E(errs.NotFound, "no Custodia instance at %s: %s (check --data and %s; custodia init or serve makes an instance)",
			dataDir, cl.none(), cl.flag)
	case cid == "" && iid == "" && !cl.recs.People:
		if keyOwner != "" {
			return errs.E(errs.Invalid, "both databases hold no instance, but the data folder %s holds the audit key of instance %s: "+
				"restore the databases from a backup, or make a new instance in an empty data folder", dataDir, keyOwner)
		}
	}
	return nil
}

// Records is what a database holds, as far as opening an instance cares.
type Records struct {
	// Schema: at least one migration is applied.
	Schema bool
	// InstanceID is the instance the database belongs to, "" if none.
	InstanceID string
	// People: the clinical database holds organizations or accounts, or
	// the identity database holds identities or participant keys.
	People bool
}

// ReadRecords reads what db, a database of schema s, holds, writing
// nothing: tables that do not exist yet count as empty.
func ReadRecords(ctx context.Context, db *sqldb.DB, s sqldb.Schema) (Records, error) {
	return readRecords(ctx, db, s)
}

func readRecords(ctx context.Context, db *sqldb.DB, s sqldb.Schema) (Records, error) {
	var r Records
	fail := func(err error) (Records, error) {
		return Records{}, errs.Wrap(errs.Unavailable, err, "read the "+s.Name+" database "+db.Location)
	}
	has := func(table string) (bool, error) { return db.HasTable(ctx, table) }
	ok, err := has("schema_migrations")
	if err != nil {
		return fail(err)
	}
	if !ok {
		return r, nil
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) > 0 FROM schema_migrations`).Scan(&r.Schema); err != nil {
		return fail(err)
	}
	if ok, err = has("instance"); err != nil {
		return fail(err)
	} else if ok {
		if r.InstanceID, err = readInstanceID(ctx, db); err != nil {
			return fail(err)
		}
	}
	tables := []string{"organizations", "accounts"}
	if s.Name == sqldb.Identity.Name {
		tables = []string{"identities", "data_keys"}
	}
	for _, t := range tables {
		if ok, err = has(t); err != nil {
			return fail(err)
		} else if !ok {
			continue
		}
		// The table name is one of the constants above, never input.
		if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+t+`)`).Scan(&r.People); err != nil {
			return fail(err)
		}
		if r.People {
			break
		}
	}
	return r, nil
}

// absentFile reports whether t is a SQLite file that does not exist or is
// empty (0 bytes): a database that holds nothing, which opening would
// write to.
func absentFile(t sqldb.Target) (bool, error) {
	if t.Dialect != sqldb.SQLite {
		return false, nil
	}
	fi, err := os.Stat(t.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, nil
	case err != nil:
		return false, errs.Wrap(errs.Invalid, err, "SQLite database "+t.Path+" is not usable")
	}
	return fi.Size() == 0, nil
}

// auditKeyOwner names the instance whose audit verifier key the data
// folder holds ("" if none): the key is named custodia-audit-<instance id>.
func auditKeyOwner(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, "audit", "verifier.pub"))
	if err != nil {
		return ""
	}
	name, _, _ := strings.Cut(strings.TrimSpace(string(b)), "+")
	id, _ := strings.CutPrefix(name, "custodia-audit-")
	if id == name {
		return ""
	}
	return id
}

// existingDataDir checks, writing nothing, that dir is the folder of an
// instance.
func existingDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errs.E(errs.NotFound, "no Custodia instance at %s: the data folder does not exist (check --data)", dir)
	case err != nil:
		return errs.Wrap(errs.Invalid, err, "data folder "+dir+" is not usable")
	case !fi.IsDir():
		return errs.E(errs.Invalid, "data folder %s is not a folder", dir)
	}
	return nil
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

// Package keys owns encryption at rest: sealed values, the key hierarchy and
// the key-encryption-key providers.
//
// Values are sealed with XChaCha20-Poly1305 under data keys (CRY-03), or
// with AES-256-GCM in FIPS mode (CRY-11, fips.go). A
// sealed value names its key (id and version) in a header and is bound to
// its organization, study, record and field (CRY-05). Data keys exist per
// organization, per study and per participant, are random, and are stored
// only wrapped by a key-encryption key (CRY-04). A key version is immutable
// once written: rotation adds a version, and old versions keep opening the
// values sealed under them (CRY-07). Destroying a scope's keys makes every
// value sealed under them unreadable for good (LIFE-03).
//
// Unwrapped keys live only in memory, in a small cache of limited life.
package keys

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// ScopeKind names what a data key protects.
type ScopeKind string

const (
	// KindOrg is the key of an organization's data outside any study.
	KindOrg ScopeKind = "org"
	// KindStudy is the key of one study's data.
	KindStudy ScopeKind = "study"
	// KindParticipant is the key of one participant's identity data,
	// named by pseudonym, so that it can be destroyed alone (LIFE-03).
	KindParticipant ScopeKind = "participant"
	// KindIndex is an organization's blind-index key, from which the keys
	// of BlindIndex are derived. It never seals values.
	KindIndex ScopeKind = "index"
)

// Scope is the unit a data key protects: an organization, one of its
// studies, or one of its participants.
type Scope struct {
	OrgID string
	Kind  ScopeKind
	ID    string // study id or participant pseudonym; empty for KindOrg and KindIndex
}

// OrgScope is an organization's own key.
func OrgScope(orgID string) Scope { return Scope{OrgID: orgID, Kind: KindOrg} }

// StudyScope is the key of one study.
func StudyScope(orgID, studyID string) Scope {
	return Scope{OrgID: orgID, Kind: KindStudy, ID: studyID}
}

// ParticipantScope is the key of one participant's identity data.
func ParticipantScope(orgID, pseudonym string) Scope {
	return Scope{OrgID: orgID, Kind: KindParticipant, ID: pseudonym}
}

func indexScope(orgID string) Scope { return Scope{OrgID: orgID, Kind: KindIndex} }

func (s Scope) validate() error {
	if s.OrgID == "" {
		return errs.E(errs.Internal, "key scope without organization")
	}
	switch s.Kind {
	case KindOrg, KindIndex:
		if s.ID != "" {
			return errs.E(errs.Internal, "key scope %s takes no id", s.Kind)
		}
	case KindStudy, KindParticipant:
		if s.ID == "" {
			return errs.E(errs.Internal, "key scope %s needs an id", s.Kind)
		}
	default:
		return errs.E(errs.Internal, "unknown key scope kind %q", s.Kind)
	}
	return nil
}

func (s Scope) String() string {
	if s.ID == "" {
		return string(s.Kind) + " key of organization " + s.OrgID
	}
	return string(s.Kind) + " key " + s.ID + " of organization " + s.OrgID
}

// KeyID is a data key's identifier, the same for every version of one
// scope's key. In the database it is written in hex.
type KeyID [KeyIDSize]byte

// keyIDTimeBytes is how many leading bytes of a new key id hold the time.
const keyIDTimeBytes = 6

// newKeyID returns a key id for a key made at now: its time in milliseconds
// since 1970 (before 1970 counts as 1970) in its first six bytes, big-endian,
// and 80 random bits. New ids sort, bytes and hex alike, in the order the
// keys were made, so that a key's row joins the end of the table's primary
// index rather than a page anywhere in it: a batch of enrolments writes one
// page of that index instead of one each. A key id is no secret (every
// sealed value names its key), and two keys made in the same millisecond
// differ in 80 random bits.
func newKeyID(now time.Time) (KeyID, error) {
	var id KeyID
	ms := uint64(max(now.UnixMilli(), 0))
	for i := keyIDTimeBytes - 1; i >= 0; i-- {
		id[i] = byte(ms)
		ms >>= 8
	}
	_, err := rand.Read(id[keyIDTimeBytes:])
	return id, err
}

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

func parseKeyID(s string) (KeyID, error) {
	var id KeyID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != KeyIDSize {
		return id, errs.E(errs.Internal, "malformed data key id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// DataKey is one version of an unwrapped data key. Its key material is not
// reachable from outside the package: it only seals and opens.
type DataKey struct {
	ID      KeyID
	Version uint32
	Scope   Scope
	aead    *sealKey
	secret  []byte // kept for KindIndex keys only
}

func newDataKey(id KeyID, version uint32, scope Scope, raw []byte) (DataKey, error) {
	a, err := newSealKey(raw, sealGCMLabel)
	if err != nil {
		return DataKey{}, errs.Wrap(errs.Internal, err, "data key "+id.String())
	}
	dk := DataKey{ID: id, Version: version, Scope: scope, aead: a}
	if scope.Kind == KindIndex {
		dk.secret = raw
	} else {
		clear(raw)
	}
	return dk, nil
}

var (
	// ErrKeyDestroyed is the answer for a value whose key was destroyed
	// (LIFE-03): it will never open again.
	ErrKeyDestroyed = errs.E(errs.NotFound, "the key of this value has been destroyed")
	// ErrUnknownKey is the answer of ByID for a key this database does not
	// hold. Open reports it as ErrCorrupt.
	ErrUnknownKey = errs.E(errs.Invalid, "unknown data key")
)

// Keyring keeps the data keys of one database, wrapped by KEK, in table
// data_keys. The zero values of the cache settings mean 1024 keys for 5
// minutes. A Keyring is safe for concurrent use; several keyrings (one per
// server node) may share a database.
type Keyring struct {
	DB  *sqldb.DB
	KEK KEK
	// EpochDir is where erasure epoch keys are kept when the key provider
	// keeps none of its own (LIFE-03): a folder outside every database,
	// normally <data>/keys/epochs.
	EpochDir string

	CacheSize int
	CacheTTL  time.Duration

	// EpochSize is how many participants an erasure epoch takes
	// (epochs.go); zero means DefaultEpochSize.
	EpochSize int

	once      sync.Once
	cache     *keyCache
	fill      epochFill
	fresh     sync.Mutex // one fresh epoch at a time (freshEpoch)
	indexRows indexRows  // blindindex.go

	dirOnce   sync.Once
	dirEpochs *localEpochs // the epochs in EpochDir
}

func (k *Keyring) keys() *keyCache {
	k.once.Do(func() {
		size, ttl := k.CacheSize, k.CacheTTL
		if size <= 0 {
			size = 1024
		}
		if ttl <= 0 {
			ttl = 5 * time.Minute
		}
		k.cache = newKeyCache(size, ttl)
	})
	return k.cache
}

// row is one stored key version.
type row struct {
	id        KeyID
	version   uint32
	scope     Scope
	kekID     string
	wrapped   []byte
	destroyed bool
	epoch     string // the erasure epoch of a participant key, or ""
}

const selectRow = `SELECT id, version, org_id, scope_kind, scope_id, kek_id, wrapped, destroyed_at, epoch FROM data_keys `

type scanner interface{ Scan(dest ...any) error }

func scanRow(r scanner) (row, error) {
	var (
		out       row
		id        string
		version   int64
		destroyed sql.NullInt64
	)
	err := r.Scan(&id, &version, &out.scope.OrgID, &out.scope.Kind, &out.scope.ID, &out.kekID, &out.wrapped, &destroyed, &out.epoch)
	if err != nil {
		return row{}, err
	}
	if out.id, err = parseKeyID(id); err != nil {
		return row{}, err
	}
	if version < 1 || version > math.MaxUint32 {
		return row{}, errs.E(errs.Internal, "data key %s has version %d", id, version)
	}
	out.version = uint32(version)
	out.destroyed = destroyed.Valid
	return out, nil
}

// latest reads the newest version of a scope's key, or sql.ErrNoRows.
func latest(ctx context.Context, q sqldb.Querier, s Scope) (row, error) {
	return scanRow(q.QueryRowContext(ctx, selectRow+
		`WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3 ORDER BY version DESC LIMIT 1`,
		s.OrgID, string(s.Kind), s.ID))
}

// wrapAD binds a wrapped key to its row: a wrapped key copied to another
// organization, scope, id or version does not unwrap.
func wrapAD(id KeyID, version uint32, s Scope) []byte {
	b := appendFields(nil, "custodia.data-key.v1", s.OrgID, string(s.Kind), s.ID, id.String())
	return append(b, byte(version>>24), byte(version>>16), byte(version>>8), byte(version))
}

// Current returns the newest version of scope's data key, creating version
// 1 within q on first use. Two nodes that use a new scope at once agree on
// one key: the unique (org_id, scope_kind, scope_id, version) lets one
// insert win and the other reads the winner. q should be the transaction
// that stores the values sealed with the key, so a key and its first
// values commit together.
func (k *Keyring) Current(ctx context.Context, q sqldb.Querier, scope Scope) (DataKey, error) {
	if err := scope.validate(); err != nil {
		return DataKey{}, err
	}
	for range 3 {
		r, err := latest(ctx, q, scope)
		switch {
		case err == nil:
			if r.destroyed {
				return DataKey{}, ErrKeyDestroyed
			}
			return k.unwrap(ctx, r)
		case !errors.Is(err, sql.ErrNoRows):
			return DataKey{}, errs.Wrap(errs.Unavailable, err, "read "+scope.String())
		}
		id, err := newKeyID(time.Now())
		if err != nil {
			return DataKey{}, errs.Wrap(errs.Internal, err, "generate data key id")
		}
		dk, created, err := k.insert(ctx, q, id, 1, scope)
		if err != nil || created {
			return dk, err
		}
		// Another transaction created version 1 first; read its key.
	}
	return DataKey{}, errs.E(errs.Unavailable, "could not create the %s; try again", scope)
}

// Create is Current for a scope the caller has just named (a new
// participant): it makes version 1 without first looking for a key. If the
// scope has one after all, it answers that one, as Current does.
func (k *Keyring) Create(ctx context.Context, q sqldb.Querier, scope Scope) (DataKey, error) {
	if err := scope.validate(); err != nil {
		return DataKey{}, err
	}
	id, err := newKeyID(time.Now())
	if err != nil {
		return DataKey{}, errs.Wrap(errs.Internal, err, "generate data key id")
	}
	dk, created, err := k.insert(ctx, q, id, 1, scope)
	if err != nil || created {
		return dk, err
	}
	return k.Current(ctx, q, scope)
}

// Rotate adds a version to scope's data key and returns it (CRY-07). New
// values are sealed under it; values sealed under older versions still open
// and a rotation re-seals them (Keyring.Reseal). If another node rotated the same scope
// at the same moment, one new version results and both callers get it.
// KindIndex keys are not rotated: every blind index would change.
func (k *Keyring) Rotate(ctx context.Context, tx sqldb.Querier, scope Scope) (DataKey, error) {
	if err := scope.validate(); err != nil {
		return DataKey{}, err
	}
	if scope.Kind == KindIndex {
		return DataKey{}, errs.E(errs.Invalid, "the blind-index key cannot be rotated without rebuilding every index")
	}
	r, err := latest(ctx, tx, scope)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return k.Current(ctx, tx, scope)
	case err != nil:
		return DataKey{}, errs.Wrap(errs.Unavailable, err, "read "+scope.String())
	case r.destroyed:
		return DataKey{}, ErrKeyDestroyed
	case r.version >= math.MaxInt32:
		return DataKey{}, errs.E(errs.Conflict, "the %s has no versions left", scope)
	}
	dk, created, err := k.insert(ctx, tx, r.id, r.version+1, scope)
	if err != nil || created {
		return dk, err
	}
	return k.Current(ctx, tx, scope)
}

// insert stores a fresh random key as (id, version) of scope unless that
// version exists already, which it reports as created == false.
func (k *Keyring) insert(ctx context.Context, q sqldb.Querier, id KeyID, version uint32, scope Scope) (DataKey, bool, error) {
	if k.KEK == nil {
		return DataKey{}, false, errs.E(errs.Internal, "keyring without key-encryption key")
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return DataKey{}, false, errs.Wrap(errs.Internal, err, "generate data key")
	}
	created, wrapped, err := k.store(ctx, q, id, version, scope, raw)
	if err != nil || !created {
		clear(raw)
		return DataKey{}, false, err
	}
	dk, err := newDataKey(id, version, scope, raw)
	if err != nil {
		return DataKey{}, false, err
	}
	k.keys().put(dk, wrapped)
	return dk, true, nil
}

const (
	insertKey = `INSERT INTO data_keys
		(id, version, org_id, scope_kind, scope_id, kek_id, wrapped, created_at, epoch)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`
	// insertKeyInLive stores the key only if its epoch ($9) still takes
	// keys, and locks the epoch's row as pickEpoch's choice would.
	insertKeyInLive = `INSERT INTO data_keys
		(id, version, org_id, scope_kind, scope_id, kek_id, wrapped, created_at, epoch)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
		WHERE EXISTS (SELECT 1 FROM key_epochs WHERE id = $9 AND retired_at IS NULL) ON CONFLICT DO NOTHING`
	insertKeyInLivePostgres = `INSERT INTO data_keys
		(id, version, org_id, scope_kind, scope_id, kek_id, wrapped, created_at, epoch)
		SELECT $1::text, $2::integer, $3::text, $4::text, $5::text, $6::text, $7::bytea, $8::bigint, $9::text
		WHERE EXISTS (SELECT 1 FROM key_epochs WHERE id = $9 AND retired_at IS NULL FOR SHARE) ON CONFLICT DO NOTHING`
)

// store wraps raw, under the erasure epoch of a participant key, and
// stores it as (id, version) of scope unless that version exists already.
// The epoch the keyring counted last is checked by the insert itself; if
// an erasure retired it meanwhile, store picks another and tries again.
func (k *Keyring) store(ctx context.Context, q sqldb.Querier, id KeyID, version uint32, scope Scope, raw []byte) (bool, []byte, error) {
	mayTake := true
	for {
		epoch, unchecked := "", false
		if scope.Kind == KindParticipant {
			var err error
			if epoch, unchecked, err = k.pickEpoch(ctx, q, scope, version, mayTake); err != nil {
				return false, nil, err
			}
		}
		wrapped, err := k.wrap(ctx, epoch, raw, wrapAD(id, version, scope))
		if unchecked && errors.Is(err, ErrEpochDestroyed) {
			k.fill.reset() // retired and destroyed meanwhile
			mayTake = false
			continue
		}
		if err != nil {
			return false, nil, errs.Wrap(errs.Unavailable, err, "wrap new "+scope.String())
		}
		stmt := insertKey
		if unchecked {
			stmt = insertKeyInLive
			if k.shareLock() != "" {
				stmt = insertKeyInLivePostgres
			}
		}
		res, err := q.ExecContext(ctx, stmt,
			id.String(), int64(version), scope.OrgID, string(scope.Kind), scope.ID, k.KEK.ID(), wrapped, sqldb.Now(), epoch)
		if err != nil {
			return false, nil, errs.Wrap(errs.Unavailable, err, "store new "+scope.String())
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			return true, wrapped, nil
		}
		if unchecked {
			// Either the epoch was retired meanwhile or the version exists.
			live, err := k.epochLive(ctx, q, epoch)
			if err != nil {
				return false, nil, err
			}
			if !live {
				k.fill.reset()
				mayTake = false
				continue
			}
		}
		return false, nil, nil
	}
}

// ByID returns the data key version a sealed value names, reading the
// database outside any transaction. Every call checks the stored row, so a
// key destroyed by any node is refused at once; the cache only spares the
// key-encryption key a round trip.
func (k *Keyring) ByID(ctx context.Context, id KeyID, version uint32) (DataKey, error) {
	return k.byID(ctx, k.DB, id, version)
}

// In returns a Ring that reads keys within q, which sees keys created
// earlier in the same transaction.
func (k *Keyring) In(q sqldb.Querier) Ring { return txRing{k: k, q: q} }

type txRing struct {
	k *Keyring
	q sqldb.Querier
}

func (r txRing) ByID(ctx context.Context, id KeyID, version uint32) (DataKey, error) {
	return r.k.byID(ctx, r.q, id, version)
}

func (k *Keyring) byID(ctx context.Context, q sqldb.Querier, id KeyID, version uint32) (DataKey, error) {
	if version < 1 || version > math.MaxInt32 {
		return DataKey{}, ErrUnknownKey
	}
	r, err := scanRow(q.QueryRowContext(ctx, selectRow+`WHERE id = $1 AND version = $2`, id.String(), int64(version)))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return DataKey{}, ErrUnknownKey
	case err != nil:
		return DataKey{}, errs.Wrap(errs.Unavailable, err, "read data key")
	case r.destroyed:
		return DataKey{}, ErrKeyDestroyed
	}
	return k.unwrap(ctx, r)
}

// unwrap returns the key of a live row, from the cache when it holds the
// very same wrapped bytes.
func (k *Keyring) unwrap(ctx context.Context, r row) (DataKey, error) {
	if dk, ok := k.keys().get(r.id, r.version, r.wrapped); ok {
		return dk, nil
	}
	if k.KEK == nil {
		return DataKey{}, errs.E(errs.Internal, "keyring without key-encryption key")
	}
	if !opensVersion(k.KEK, r.kekID) { // the current version, or an older one kept during rotation (CRY-07)
		return DataKey{}, errs.E(errs.Internal, "the %s (version %d) is wrapped by key-encryption key %s, but this instance has %s", r.scope, r.version, r.kekID, k.KEK.ID())
	}
	raw, err := k.unwrapRaw(ctx, r)
	if err != nil {
		return DataKey{}, err
	}
	dk, err := newDataKey(r.id, r.version, r.scope, raw)
	if err != nil {
		return DataKey{}, err
	}
	k.keys().put(dk, r.wrapped)
	return dk, nil
}

// Destroy crypto-shreds scope (LIFE-03): the wrapped key material of every
// version is deleted and the versions are marked destroyed, so every value
// sealed under them is unreadable for good, and the scope never gets a key
// again. A scope that never had a key is recorded as destroyed all the
// same. The key also leaves this keyring's cache at once; other nodes
// refuse it because every lookup checks the stored row.
//
// A participant's key reaches further: its erasure epoch is retired in tx
// and the other live keys of the epoch move to a fresh one (epochs.go), and
// DestroyRetiredEpochs, after the commit, has the provider destroy the
// retired epoch, so that backups taken before no longer open the key. A
// provider without epochs refuses with ErrEpochsUnsupported. Other scopes'
// keys are gone from the live database only: what the database keeps of
// deleted bytes is the database's affair (SQLite needs secure_delete,
// PostgreSQL a VACUUM), and backups taken before still hold them.
func (k *Keyring) Destroy(ctx context.Context, tx sqldb.Querier, scope Scope) error {
	if err := scope.validate(); err != nil {
		return err
	}
	now := sqldb.Now()
	var epochs []string
	if scope.Kind == KindParticipant {
		var err error
		if epochs, err = k.epochsOfScope(ctx, tx, scope); err != nil {
			return err
		}
	}
	if scope.Kind == KindIndex {
		k.indexRows.forget(scope.OrgID)
	}
	r, err := latest(ctx, tx, scope)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		id, err := newKeyID(time.Now())
		if err != nil {
			return errs.Wrap(errs.Internal, err, "generate data key id")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO data_keys
			(id, version, org_id, scope_kind, scope_id, kek_id, wrapped, created_at, destroyed_at)
			VALUES ($1, 1, $2, $3, $4, '', NULL, $5, $5) ON CONFLICT DO NOTHING`,
			id.String(), scope.OrgID, string(scope.Kind), scope.ID, now); err != nil {
			return errs.Wrap(errs.Unavailable, err, "destroy the "+scope.String())
		}
		// A key created meanwhile by another transaction is destroyed too.
	case err != nil:
		return errs.Wrap(errs.Unavailable, err, "read "+scope.String())
	default:
		k.keys().evict(r.id)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE data_keys SET wrapped = NULL, destroyed_at = $4
		WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3 AND destroyed_at IS NULL`,
		scope.OrgID, string(scope.Kind), scope.ID, now); err != nil {
		return errs.Wrap(errs.Unavailable, err, "destroy the "+scope.String())
	}
	for _, e := range epochs {
		if err := k.retireEpoch(ctx, tx, e, now); err != nil {
			return err
		}
	}
	return nil
}

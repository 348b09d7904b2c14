package gate

import (
	"context"
	"database/sql"
	"errors"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// Vault seals and opens values with the data keys of one database, inside
// the request's transaction on that database: Tx.Vault for the clinical
// database (organization and study keys), IdentityTx.Vault for the identity
// database (participant keys). Work never holds a data key, only sealed
// values and their plaintext.
//
// A vault answers only after authz allowed the work, and only for the
// organization the request is about. A key that cannot be had (the
// key-encryption key or its KMS unreachable, a wrapped key that does not
// unwrap) fails the request as Unavailable, and the gate commits nothing.
// A sealed value that does not open where it is read (damaged, or copied
// from another organization, study, record or field: CRY-05) fails the
// whole request, whatever the work does with the error, and is recorded as
// a failed security event.
type Vault struct {
	t    *Tx
	ring *keys.Keyring
	q    sqldb.Querier
}

// errNoKeys answers a vault asked for on a gate without a keyring.
var errNoKeys = errs.E(errs.Unavailable, "encryption at rest is not configured on this server, so the request was not carried out")

// keysUnavailable reports a key that could not be had; the cause, which
// names the key but holds no key material, goes to the log.
func keysUnavailable(err error) error {
	return errs.Wrap(errs.Unavailable, err, "the keys of this data are unavailable, so the request was not carried out")
}

// unavailable reports a key that could not be had because the database
// that holds it failed (a lost connection, a full disk) as that database's
// outage, not as keys that are missing; any other failure is
// keysUnavailable.
func (v *Vault) unavailable(err error) error {
	if !sqldb.IsOutage(err) {
		return keysUnavailable(err)
	}
	db := "clinical"
	if v.ring == v.t.gate.identityKeys {
		db = "identity"
	}
	return errs.Wrap(errs.Unavailable, err, "the "+db+" database is unavailable, so the request was not carried out")
}

// errIntegrity is the answer of a request that met a sealed value that does
// not open where it is stored.
func errIntegrity(err error) error {
	return errs.Wrap(errs.Unavailable, err, "a stored value failed its integrity check, so nothing was served")
}

// Vault returns the vault of the clinical database's keys within the
// request's transaction.
func (t *Tx) Vault() *Vault {
	return &Vault{t: t, ring: t.gate.keys, q: t}
}

// StreamVault returns the vault of the clinical database's keys for the
// read of a Stream: an export opens the sealed values it sends with it. Its
// keys are read from the database itself, not from the stream's read,
// which is busy with its rows (PostgreSQL answers one query at a time on a
// connection), so a key destroyed meanwhile is refused at once. It answers
// only for work that was allowed, as Vault does.
func (t *Tx) StreamVault() *Vault {
	return &Vault{t: t, ring: t.gate.keys, q: t.gate.db}
}

func (v *Vault) check(orgs ...string) error {
	if v.ring == nil {
		return errNoKeys
	}
	if !v.t.authorized || v.t.denied != nil {
		return errs.E(errs.Internal, "keys were asked for before authz allowed the work")
	}
	for _, o := range orgs {
		if o != v.t.org.ID {
			return errs.E(errs.Internal, "keys of organization %s asked for in a request about organization %s", o, v.t.org.ID)
		}
	}
	return nil
}

// Seal encrypts plaintext under the current key of scope for the place at
// names (CRY-03, CRY-05), creating the scope's key in the vault's
// transaction on first use. A destroyed scope answers keys.ErrKeyDestroyed.
func (v *Vault) Seal(ctx context.Context, scope keys.Scope, at keys.Context, plaintext []byte) ([]byte, error) {
	if err := v.check(scope.OrgID, at.OrgID); err != nil {
		return nil, err
	}
	held := heldKey{v.ring, scope}
	dk, ok := v.t.held[held]
	if !ok {
		var err error
		dk, err = v.ring.Current(ctx, v.q, scope)
		switch {
		case errors.Is(err, keys.ErrKeyDestroyed):
			return nil, err
		case err != nil:
			return nil, v.unavailable(err)
		}
		if v.t.held == nil {
			v.t.held = map[heldKey]keys.DataKey{}
		}
		v.t.held[held] = dk
	}
	return keys.Seal(dk, plaintext, at)
}

// Create makes the key of a scope the request has just named (a new
// participant) without looking for one first, so that Seal under it reads
// nothing. A scope that has a key already keeps it.
func (v *Vault) Create(ctx context.Context, scope keys.Scope) error {
	if err := v.check(scope.OrgID); err != nil {
		return err
	}
	dk, err := v.ring.Create(ctx, v.q, scope)
	switch {
	case errors.Is(err, keys.ErrKeyDestroyed):
		return err
	case err != nil:
		return v.unavailable(err)
	}
	if v.t.held == nil {
		v.t.held = map[heldKey]keys.DataKey{}
	}
	v.t.held[heldKey{v.ring, scope}] = dk
	return nil
}

// heldKey names the current key of a scope in one keyring, which a request
// looks up once however many values it seals under it.
type heldKey struct {
	ring  *keys.Keyring
	scope keys.Scope
}

// Open decrypts a value sealed for the place at names. A value whose key
// was destroyed answers keys.ErrKeyDestroyed (LIFE-03); one that does not
// open fails the request (see Vault).
func (v *Vault) Open(ctx context.Context, at keys.Context, sealed []byte) ([]byte, error) {
	if err := v.check(at.OrgID); err != nil {
		return nil, err
	}
	pt, err := keys.Open(ctx, v.ring.In(v.q), sealed, at)
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, keys.ErrKeyDestroyed):
		return nil, err
	case errors.Is(err, keys.ErrCorrupt):
		v.t.integrity = true
		return nil, errIntegrity(err)
	}
	return nil, v.unavailable(err)
}

// BlindIndex returns the search token of value for field within scope (see
// keys.Keyring.BlindIndex); the caller normalizes value first.
func (v *Vault) BlindIndex(ctx context.Context, scope keys.Scope, field string, value []byte) (string, error) {
	if err := v.check(scope.OrgID); err != nil {
		return "", err
	}
	tok, err := v.ring.BlindIndex(ctx, v.q, scope, field, value)
	if err != nil {
		return "", v.unavailable(err)
	}
	return tok, nil
}

// Destroy crypto-shreds scope (LIFE-03) within the vault's transaction and
// flags the request's event as a security event naming the destroyed key's
// scope.
func (v *Vault) Destroy(ctx context.Context, scope keys.Scope) error {
	if err := v.check(scope.OrgID); err != nil {
		return err
	}
	delete(v.t.held, heldKey{v.ring, scope})
	if err := v.ring.Destroy(ctx, v.q, scope); err != nil {
		if errors.Is(err, keys.ErrEpochsUnsupported) {
			return err // a setting to change, not an outage
		}
		return v.unavailable(err)
	}
	v.t.Security()
	v.t.Detail("destroyed_key_kind", string(scope.Kind))
	return nil
}

// IdentityTx is the work's transaction on the identity database (CRY-09),
// begun by Tx.Identity. The gate ends it together with the clinical
// transaction, in the order that keeps the two databases safe without a
// distributed transaction:
//
//   - By default its changes (new identity data) commit after the work and
//     its audit event are written and just before the clinical transaction
//     commits. A crash between the two commits leaves identity data whose
//     participant the clinical database does not know: no request can reach
//     it, and the sweep of the participants package shreds it.
//   - After CommitAfterEvent (for removals: erasure), its changes commit
//     only after the clinical transaction and its event. A crash between
//     leaves the clinical database recording the removal, which every later
//     request honours, and the sweep repeats the removal.
//
// Either way no identity data becomes readable, and none is removed,
// without its audit event. With group commit (batch.go) the identity
// transaction is the batch's, and the request's changes are in a savepoint
// of their own in it. Like Tx, IdentityTx is the work's querier on its
// database.
type IdentityTx struct {
	txQuerier
	vault *Vault
}

// Identity returns the request's transaction on the identity database,
// beginning it on first use. Like a vault, it is there only after authz
// allowed the work.
func (t *Tx) Identity(ctx context.Context) (*IdentityTx, error) {
	if t.identity != nil {
		return t.identity, nil
	}
	if t.gate.identity == nil {
		return nil, errs.E(errs.Unavailable, "the identity database is not configured on this server")
	}
	if !t.authorized || t.denied != nil {
		return nil, errs.E(errs.Internal, "the identity database was asked for before authz allowed the work")
	}
	var q txQuerier
	if t.reading {
		var err error
		if q, err = t.readIdentityTx(); err != nil {
			return nil, err
		}
	} else {
		tx, err := t.job.identity()
		if err != nil {
			return nil, err
		}
		q = txQuerier{tx, t.gate.identity}
	}
	t.identity = &IdentityTx{txQuerier: q, vault: &Vault{t: t, ring: t.gate.identityKeys, q: q}}
	return t.identity, nil
}

// Vault returns the vault of the identity database's keys (the participant
// keys and the organizations' blind-index keys) within this transaction.
func (it *IdentityTx) Vault() *Vault { return it.vault }

// CommitAfterEvent marks the transaction's changes as a removal, committed
// only once the clinical transaction and its audit event are (see
// IdentityTx). Only work run with Gate.DoAlone may: in a batch, the
// identity transaction commits before the clinical one for every request.
func (it *IdentityTx) CommitAfterEvent() {
	t := it.vault.t
	if !t.alone {
		if t.misuse == nil {
			t.misuse = errs.Wrap(errs.Internal, errAlone, "work for "+t.event.Action)
		}
		return
	}
	t.job.b.identityAfter = true
}

// txQuerier runs statements in one transaction of db: the querier of the
// gate's views that may query from the start (an identity transaction,
// begun only for allowed work; operator and account work).
type txQuerier struct {
	tx *sql.Tx
	db *sqldb.DB // whose prepared statements run in tx
}

// ExecContext runs a statement in the transaction. Like every statement of
// the gate's transactions, it is not cancelled with its request (see
// batch.go).
func (q txQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return q.db.In(q.tx).ExecContext(context.WithoutCancel(ctx), query, args...)
}

// QueryContext runs a query in the transaction.
func (q txQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.db.In(q.tx).QueryContext(context.WithoutCancel(ctx), query, args...)
}

// QueryRowContext runs a query for one row in the transaction.
func (q txQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return q.db.In(q.tx).QueryRowContext(context.WithoutCancel(ctx), query, args...)
}

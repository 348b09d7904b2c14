// Package gate is the one door to protected data. The clinical and identity
// databases are reachable only through it: no other package of the server
// holds a handle on them (the import-layer test in internal/deps_test.go
// keeps it so). Every read or change of organization data runs as work
// inside Gate.Do, which
//
//  1. resolves the organization the request names, loads the requester's
//     current roles in it (so a revoked role never outlives the request
//     that revoked it) and refuses, before any data is read, a request from
//     outside the network ranges of the organization or of a study the work
//     names (ACL-07),
//  2. runs the work in a transaction, in a savepoint of its own within
//     the transaction that concurrent requests share (group commit, see
//     batch.go). The work has nothing to query with until it asks authz
//     (Tx.Authorize, or Tx.Allowed answering yes) for what it touches: a
//     query before that fails the request at once, and work that never
//     asked is refused (fail closed),
//  3. appends the audit event in the same savepoint, so data and event
//     commit together or not at all (AUD-01), and answers only once they
//     are committed, and
//  4. on a denial rolls the work back, records the denied attempt in its
//     place, and reports the object as not found (ACL-08).
//
// Work runs on its lane's leader, one request's after another: it is
// short, and it does not call the gate again. Work that only reads goes through
// Gate.Read instead: the same steps, but it runs in a read-only snapshot
// of its own beside the lanes, and only its event joins a batch (read.go).
//
// The work receives its keys through the Tx, never as key material:
// Tx.Vault seals and opens values with the clinical database's organization
// and study keys, and Tx.Identity gives a transaction on the separate
// identity database (CRY-09) whose vault holds the participant keys. Both
// answer only after authz allowed the work and only for the request's
// organization; a key that cannot be had fails the request closed
// (Unavailable, nothing committed), and a sealed value that does not open
// where it is read (CRY-05) fails the whole request and is recorded as a
// failed security event. How the two databases' commits are ordered is
// told at IdentityTx.
package gate

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Gate runs work on protected data.
type Gate struct {
	db *sqldb.DB
	// keys holds the data keys of db, wrapped by the key-encryption key.
	keys *keys.Keyring
	// identity is the identity database and identityKeys its keyring,
	// which holds the participant keys (CRY-09). Without them, work that
	// asks for identity data fails as Unavailable.
	identity     *sqldb.DB
	identityKeys *keys.Keyring
	// auditKey signs every event the gate appends (AUD-02).
	auditKey note.Signer
	// lanes commit the work of concurrent requests together (batch.go).
	lanes []*lane
	// health is how their latest writes went (health.go).
	health *writeHealth
	next   atomic.Uint32
	// known holds the organizations resolved so far, by slug and by id
	// (resolve).
	known sync.Map
	// overTx is a transaction that is over, the querier of refused work.
	overOnce sync.Once
	overTx   *sql.Tx
}

// Config names what a gate guards.
type Config struct {
	// Clinical is the clinical database and Keys its keyring.
	Clinical *sqldb.DB
	Keys     *keys.Keyring
	// Identity is the identity database and IdentityKeys its keyring;
	// both optional.
	Identity     *sqldb.DB
	IdentityKeys *keys.Keyring
	// AuditKey is the instance's audit key (Instance.AuditKey), which
	// signs every event the gate appends, so that the trail's sequencer and
	// verifier tell them from rows that SQL alone wrote (AUD-02). Every
	// server and command gives it; without it events are unsigned, which
	// only a test's trail may be.
	AuditKey note.Signer
	// Issued, if not nil, is told every batch's events once committed, so
	// that the trail's sequencer in this process need not check their
	// signatures again (Instance.AuditIssued).
	Issued *audit.Issued
}

// New returns the gate of the databases c names.
func New(c Config) *Gate {
	g := &Gate{db: c.Clinical, keys: c.Keys, identity: c.Identity, identityKeys: c.IdentityKeys, health: &writeHealth{}, auditKey: c.AuditKey}
	// SQLite has one writer; PostgreSQL takes several at once.
	n := 1
	if c.Clinical.Dialect == sqldb.Postgres {
		n = postgresLanes
	}
	for range n {
		l := newLane(c.Clinical, c.Identity, g.health, c.AuditKey)
		l.issued = c.Issued
		g.lanes = append(g.lanes, l)
	}
	return g
}

// postgresLanes is how many batches a gate on PostgreSQL runs at once.
const postgresLanes = 4

// lane picks the lane of the next request.
func (g *Gate) lane() *lane {
	return g.lanes[int(g.next.Add(1))%len(g.lanes)]
}

// Dialect is the clinical database's dialect, for work whose statements
// differ between SQLite and PostgreSQL.
func (g *Gate) Dialect() sqldb.Dialect { return g.db.Dialect }

// Org names the organization a request is about: by the slug of its URLs
// (Slug) or by its id (OrgID).
type Org struct{ slug, id string }

// Slug names an organization by its slug.
func Slug(slug string) Org { return Org{slug: slug} }

// OrgID names an organization by its id.
func OrgID(id string) Org { return Org{id: id} }

// resolve finds the organization o names. A malformed or unknown name is
// ErrDenied, the one answer for what does not exist and what the requester
// may not see (ACL-08); whether the requester belongs to it is asked next.
//
// An organization, once made, is never changed nor removed, so what was
// found is kept and found again without a query, on every node alike.
// What was not found is not kept: another node may make it.
func (g *Gate) resolve(ctx context.Context, o Org) (orgs.Organization, error) {
	key := "slug:" + o.slug
	if o.id != "" {
		key = "id:" + o.id
	}
	if org, ok := g.known.Load(key); ok {
		return org.(orgs.Organization), nil
	}
	var (
		org orgs.Organization
		err error
	)
	switch {
	case o.id != "":
		org, err = orgs.OrganizationByID(ctx, g.db, o.id)
	case orgs.CheckSlug(o.slug) == nil:
		org, err = orgs.OrganizationBySlug(ctx, g.db, o.slug)
	default:
		return orgs.Organization{}, ErrDenied
	}
	if errs.Is(err, errs.NotFound) {
		return orgs.Organization{}, ErrDenied
	}
	if err == nil {
		g.known.Store("slug:"+org.Slug, org)
		g.known.Store("id:"+org.ID, org)
	}
	return org, err
}

// Do runs work for actor within the organization org, audited as action.
// It answers only once the work and its audit event are committed, or the
// refusal is on the trail. The work of concurrent requests commits
// together (batch.go).
func (g *Gate) Do(ctx context.Context, actor Actor, org Org, action string, work func(t *Tx) error) error {
	return g.do(ctx, actor, org, action, false, work)
}

// DoAlone is Do for work that commits on its own rather than with other
// requests: work whose identity changes are removals, committed only after
// its event (IdentityTx.CommitAfterEvent).
func (g *Gate) DoAlone(ctx context.Context, actor Actor, org Org, action string, work func(t *Tx) error) error {
	return g.do(ctx, actor, org, action, true, work)
}

func (g *Gate) do(ctx context.Context, actor Actor, org Org, action string, alone bool, work func(t *Tx) error) error {
	t, err := g.admit(ctx, actor, org, action)
	if err != nil {
		return g.answer(err)
	}
	t.alone = alone
	err = g.lane().do(ctx, alone, func(j *job) error {
		return g.settle(ctx, t, j, g.run(t, j, work))
	})
	if err != nil || t.stream == nil {
		return g.answer(err)
	}
	return g.answer(g.streamRead(ctx, t))
}

// admit prepares the request's Tx: its organization, the requester's roles
// there and the network policy. A requester without a role in the
// organization, or outside its network ranges, leaves with t.denied set.
func (g *Gate) admit(ctx context.Context, actor Actor, org Org, action string) (*Tx, error) {
	if actor.AccountID == "" {
		return nil, errs.E(errs.Unauthenticated, "sign-in required")
	}
	o, err := g.resolve(ctx, org)
	if err != nil {
		return nil, err
	}
	// Network restriction (ACL-07) comes before any data is read: the
	// organization's ranges here, a study's as soon as the work names it.
	subj, network, err := g.admission(ctx, actor.AccountID, o.ID)
	if err != nil {
		return nil, err
	}
	t := newTx(g, actor, o, subj, network, action)
	switch {
	case !network.AllowsOrganization(actor.RemoteAddr):
		t.denied = &authz.Decision{Reason: netpolicy.Refusal}
	case len(subj.Assignments) == 0:
		t.denied = &authz.Decision{Reason: "no role in this organization"}
	}
	return t, nil
}

// run runs the work in the request's savepoint of its batch, and leaves
// its event, validated, to be written at the batch's commit. The verdict
// on the work (t.verdict) is taken inside it: only work that asked, was
// allowed and met no broken seal stays in the batch.
func (g *Gate) run(t *Tx, j *job, work func(t *Tx) error) error {
	if t.denied != nil {
		return ErrDenied
	}
	if err := j.begin(); err != nil {
		return err
	}
	t.job, t.tx = j, j.b.clinical
	err := t.verdict(work(t))
	if err == nil {
		t.event.Outcome = audit.Success
		if err = j.deferEvents(t.events()); err != nil {
			err = errs.Wrap(errs.Unavailable, err, "the request could not be audited, so it was not carried out")
		}
	}
	if err != nil {
		j.undo()
		return err
	}
	return j.keep()
}

// settle records on the trail what ended a request that did not commit,
// and gives the requester the answer (conclude).
func (g *Gate) settle(ctx context.Context, t *Tx, j *job, err error) error {
	if err == nil {
		return nil
	}
	answer, recorded := conclude(t, err)
	if !recorded {
		return answer
	}
	if err := j.append(ctx, t.event); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the request could not be audited")
	}
	return answer
}

// conclude decides from what the work answered how the request goes on the
// trail: it sets the event's outcome, and the detail that says why, and
// returns the requester's answer, one not found for every denial and every
// missing object (ACL-08). Nothing is recorded (recorded false) for work
// that misused the gate or met an outage: nothing was done, and the
// failure is answered as it is.
func conclude(t *Tx, err error) (answer error, recorded bool) {
	outcome := func(o audit.Outcome, key, value string, answer error) (error, bool) {
		t.event.Outcome = o
		t.Detail(key, value)
		return answer, true
	}
	switch {
	case err == nil:
		t.event.Outcome = audit.Success
		return nil, true
	case t.integrity && t.denied == nil:
		// A value that does not open where it is stored was moved or
		// damaged behind the application's back (CRY-05).
		t.event.Security = true
		return outcome(audit.Failure, "error", "integrity", err)
	case t.denied != nil:
		return outcome(audit.Denied, "reason", t.denied.Reason, ErrDenied)
	case t.stepUp:
		return outcome(audit.Denied, "reason", "step-up required", ErrStepUpRequired)
	case t.misuse != nil:
		return t.misuse, false
	}
	switch k := errs.KindOf(err); k {
	case errs.NotFound:
		// A failed attempt leaves no data, but is on the record (AUTH-11),
		// with what the work recorded of what was tried.
		return outcome(audit.Failure, "error", k.String(), ErrDenied)
	case errs.Invalid, errs.Conflict, errs.Forbidden, errs.RateLimited:
		return outcome(audit.Failure, "error", k.String(), err)
	}
	return err, false
}

// appendAlone appends ev, in a batch, as a request of its own.
func (g *Gate) appendAlone(ctx context.Context, ev audit.Event) error {
	return g.lane().do(ctx, false, func(j *job) error { return j.append(ctx, ev) })
}

// streamRead runs the read the work registered with Stream in a read-only
// snapshot and records what it sent.
func (g *Gate) streamRead(ctx context.Context, t *Tx) error {
	tx, err := g.db.BeginTx(ctx, snapshot(g.db.Dialect))
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "begin the read")
	}
	sent, err := t.stream(tx)
	tx.Rollback()
	ev := t.event
	ev.ID, ev.Time, ev.Action, ev.Details = "", time.Time{}, ev.Action+".sent", sent
	if err != nil {
		ev.Outcome = audit.Failure
		detail(&ev, "error", errs.KindOf(err).String())
	}
	aerr := g.appendAlone(ctx, ev)
	if err != nil {
		return err
	}
	if aerr != nil {
		return errs.Wrap(errs.Unavailable, aerr, "what was sent could not be recorded")
	}
	return nil
}

// IsDenied reports whether err is the gate's denial.
func IsDenied(err error) bool { return errors.Is(err, ErrDenied) }

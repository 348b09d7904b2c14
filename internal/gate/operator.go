package gate

import (
	"context"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// OpTx is the view of work outside any organization's authorization:
//
//   - operator work (Operate): what the instance does by itself or on its
//     operator's command (the sweeps, the command line), whose actor is the
//     operator;
//   - an account's work on its own data (Own): the organizations it
//     belongs to, its own participant records, its sessions and factors,
//     whose actor and subject is the account itself.
//
// Like a request's work, it reads and writes in one transaction on the
// clinical database that commits together with its audit event; an
// organization, object and participant it names go on the event. Work that
// finds nothing to do, or only reads what its subject may always read,
// says so (Nothing): then nothing is written and no event recorded.
type OpTx struct {
	txQuerier
	event    audit.Event
	gate     *Gate
	identity *OpIdentity
	nothing  bool
	alone    bool // Operate: a batch of its own
	// echoes are the other organizations whose trails record the event.
	echoes []string
	// confirmedAt is when the actor's session last confirmed its owner
	// (Own); stepUp, that the work was refused for want of a recent one.
	confirmedAt time.Time
	stepUp      bool
}

// Operate runs operator work, recorded as action. It commits on its own
// (see DoAlone): its removals on the identity database commit after it.
func (g *Gate) Operate(ctx context.Context, action string, work func(o *OpTx) error) error {
	return g.unscoped(ctx, g.lane(), audit.Event{Action: action, ActorRole: "operator", RemoteAddr: "local"}, true, work)
}

// Own runs work of the account actor on its own data, recorded as action.
// It commits together with concurrent requests (batch.go).
func (g *Gate) Own(ctx context.Context, actor Actor, action string, work func(o *OpTx) error) error {
	if actor.AccountID == "" {
		return errs.E(errs.Unauthenticated, "sign-in required")
	}
	return g.unscoped(ctx, g.lane(), audit.Event{Action: action, ActorAccount: actor.AccountID, ActorSession: actor.SessionID,
		RemoteAddr: actor.RemoteAddr, UserAgent: actor.UserAgent}, false, func(o *OpTx) error {
		o.confirmedAt = actor.ConfirmedAt
		return work(o)
	})
}

// RequireStepUp asks, in own work (Own), for a confirmation of the actor's
// session within StepUpWindow before now, the clock of the service that
// keeps the session (ACL-09), as Tx.RequireStepUp does for organization
// work. Without one the work is rolled back, recorded as denied (a security
// event, reason "step-up required", in the trails the work named) and
// answered ErrStepUpRequired; the work returns the error as it gets it.
func (o *OpTx) RequireStepUp(now time.Time) error {
	if o.confirmedAt.IsZero() || now.Sub(o.confirmedAt) > StepUpWindow || o.confirmedAt.After(now.Add(time.Minute)) {
		o.stepUp = true
		return ErrStepUpRequired
	}
	o.Detail("step_up_age_s", strconv.FormatInt(int64(now.Sub(o.confirmedAt)/time.Second), 10))
	return nil
}

// unscoped runs work outside any organization's authorization in lane l.
func (g *Gate) unscoped(ctx context.Context, l *lane, ev audit.Event, alone bool, work func(o *OpTx) error) error {
	ev.Outcome = audit.Success
	o := &OpTx{gate: g, event: ev, alone: alone}
	defer o.endIdentity()
	err := l.do(ctx, alone, func(j *job) error {
		if err := j.begin(); err != nil {
			return err
		}
		o.tx, o.db = j.b.clinical, g.db
		err := work(o)
		if err == nil && !o.nothing {
			for _, ev := range o.events() {
				if _, err = audit.Append(context.WithoutCancel(ctx), o.db.In(o.tx), o.gate.auditKey, ev); err != nil {
					err = errs.Wrap(errs.Unavailable, err, "the operation could not be audited, so it was not carried out")
					break
				}
			}
		}
		if err != nil || o.nothing {
			j.undo()
			if o.stepUp {
				return o.refuseStepUp(ctx, j)
			}
			return err
		}
		return j.keep()
	})
	if err != nil || o.nothing {
		return g.answer(err)
	}
	return g.answer(o.commitIdentity())
}

// Nothing tells the gate the work found nothing to do, or only read what
// its subject may always read: what it did is rolled back and no event
// recorded.
func (o *OpTx) Nothing() { o.nothing = true }

// Org names the organization the operation is about.
func (o *OpTx) Org(orgID string) { o.event.OrgID = orgID }

// AlsoIn records the operation's event, once the work is done, in the
// trail of organization orgID as well, as it stands: for an account's own
// change that the administrators of each of its organizations find in
// their trail (a new name), where Org names the first of them.
func (o *OpTx) AlsoIn(orgID string) { o.echoes = append(o.echoes, orgID) }

// events are the operation's event and its echoes in other organizations'
// trails.
func (o *OpTx) events() []audit.Event {
	evs := []audit.Event{o.event}
	for _, id := range o.echoes {
		echo := o.event
		echo.OrgID = id
		evs = append(evs, echo)
	}
	return evs
}

// InEach records the operation's event in the trail of each of orgIDs:
// the first as the operation's organization, the others as well (AlsoIn);
// with none, in no organization's. For an account's change that the
// administrators of each of its organizations find in their trail.
func (o *OpTx) InEach(orgIDs []string) {
	o.Org("")
	for i, id := range orgIDs {
		if i == 0 {
			o.Org(id)
		} else {
			o.AlsoIn(id)
		}
	}
}

// Object names the object the operation is about.
func (o *OpTx) Object(kind, id string) { o.event.ObjectType, o.event.ObjectID = kind, id }

// Study names the study and site the operation is about, if any.
func (o *OpTx) Study(studyID, siteID string) { o.event.StudyID, o.event.SiteID = studyID, siteID }

// Participant names the participant (by pseudonym) the operation is about.
func (o *OpTx) Participant(pseudonym string) { o.event.ParticipantID = pseudonym }

// Security flags the event as a security event (AUD-05).
func (o *OpTx) Security() { o.event.Security = true }

// Detail adds a reference to the event, never a clear-text value or a
// secret.
func (o *OpTx) Detail(key, value string) { detail(&o.event, key, value) }

// IdentityKeys is the identity database's keyring, for operator work that
// maintains erasure epochs (adoption, retirement, destruction: each
// recorded through Operate); nil when the gate has no identity database.
func (g *Gate) IdentityKeys() *keys.Keyring {
	if g.identity == nil {
		return nil
	}
	return g.identityKeys
}

// OpIdentity is operator work's transaction on the identity database. The
// operator removes there (the sweep shreds what no request can reach), so
// it commits only after the clinical transaction and its event: a removal
// is never without its event (see IdentityTx).
type OpIdentity struct {
	txQuerier
	ring *keys.Keyring
	done bool
}

// Identity returns the operation's transaction on the identity database,
// beginning it on first use.
func (o *OpTx) Identity(ctx context.Context) (*OpIdentity, error) {
	if o.identity != nil {
		return o.identity, nil
	}
	if o.gate.identity == nil || o.gate.identityKeys == nil {
		return nil, errs.E(errs.Unavailable, "the identity database is not configured on this server")
	}
	if !o.alone {
		return nil, errs.Wrap(errs.Internal, errAlone, "an account's own work")
	}
	tx, err := o.gate.identity.BeginTx(ctx, nil)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "the identity database is unavailable")
	}
	o.identity = &OpIdentity{txQuerier: txQuerier{tx, o.gate.identity}, ring: o.gate.identityKeys}
	return o.identity, nil
}

// Reseal re-encrypts a value of the identity database under scope's
// current key and algorithm if it is under others (keys.Keyring.Reseal),
// in the identity transaction: the re-encryption of a rotation.
func (it *OpIdentity) Reseal(ctx context.Context, scope keys.Scope, at keys.Context, sealed []byte) ([]byte, bool, error) {
	return it.ring.Reseal(ctx, it.txQuerier, scope, sealed, at)
}

// Destroy crypto-shreds scope (LIFE-03) in the identity transaction.
func (it *OpIdentity) Destroy(ctx context.Context, scope keys.Scope) error {
	return it.ring.Destroy(ctx, it.tx, scope)
}

func (o *OpTx) commitIdentity() error {
	it := o.identity
	if it == nil || it.done {
		return nil
	}
	it.done = true
	if err := it.tx.Commit(); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the operation is recorded, but the identity database did not confirm it; it is repeated by the next run")
	}
	return nil
}

func (o *OpTx) endIdentity() {
	if it := o.identity; it != nil && !it.done {
		it.done = true
		it.tx.Rollback()
	}
}

// Dialect is the SQL dialect of the clinical database, for the statements
// that differ (a row lock on PostgreSQL).
func (o *OpTx) Dialect() sqldb.Dialect { return o.gate.db.Dialect }

// refuseStepUp records own work refused for want of a confirmation, its
// work rolled back, and answers ErrStepUpRequired.
func (o *OpTx) refuseStepUp(ctx context.Context, j *job) error {
	o.event.Outcome = audit.Denied
	o.event.Security = true
	detail(&o.event, "reason", "step-up required")
	for _, ev := range o.events() {
		if err := j.append(ctx, ev); err != nil {
			return errs.Wrap(errs.Unavailable, err, "the request could not be audited")
		}
	}
	return ErrStepUpRequired
}

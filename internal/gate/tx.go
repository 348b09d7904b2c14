package gate

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Actor is who makes a request, as the shells learn it.
type Actor struct {
	AccountID  string
	SessionID  string
	RemoteAddr string
	UserAgent  string
	// ConfirmedAt is when the requester last proved, with a password or a
	// second-factor code, to be the account's owner (sign-in or step-up);
	// zero for requests without such a proof, e.g. with an access token.
	ConfirmedAt time.Time
}

// StepUpWindow is how recent the requester's confirmation must be for work
// that calls Tx.RequireStepUp (ACL-09).
const StepUpWindow = 5 * time.Minute

// ErrStepUpRequired answers work that needs a fresh confirmation of the
// requester's identity when the last one is older than StepUpWindow.
var ErrStepUpRequired = errs.E(errs.StepUpRequired,
	"confirm it is you (your password or a second-factor code) and try again")

// ErrDenied is returned by Authorize; work returns it (wrapped or not).
var ErrDenied = errs.E(errs.NotFound, "not found")

// Tx is the work's view of one request: the requester, the organization,
// the audit event that will be committed with the work and, once authz
// allowed the work, its transaction. Tx is the work's querier
// (sqldb.Querier): a query before the first allowing Authorize or Allowed
// ends the transaction and fails the request (see Tx.ExecContext).
type Tx struct {
	Subject authz.Subject
	org     orgs.Organization
	event   audit.Event
	// tx is the batch's transaction and job the request's part of the
	// batch (batch.go); only query, which checks the work asked first,
	// hands tx out. alone is set for DoAlone.
	tx    *sql.Tx
	job   *job
	alone bool
	// db is the database whose prepared statements run in tx: the
	// clinical database's, or its reader's for Read.
	db *sqldb.DB
	// reading is set for work run by Read, in a read-only snapshot of its
	// own; readIdentity is its snapshot of the identity database, if the
	// work asked for one.
	reading      bool
	readIdentity *sql.Tx
	authorized   bool
	denied       *authz.Decision
	stepUp       bool  // RequireStepUp refused
	misuse       error // the work queried before it was allowed
	// network and addr decide whether the requester's address may reach a
	// study the work names (ACL-07).
	network netpolicy.Policy
	addr    string
	// confirmedAt and now decide RequireStepUp.
	confirmedAt time.Time
	now         time.Time
	// gate serves the vaults; identity is the request's transaction on
	// the identity database, if the work began one; integrity records
	// that a sealed value failed to open.
	gate      *Gate
	identity  *IdentityTx
	integrity bool
	// held are the current keys the request's vaults sealed with.
	held map[heldKey]keys.DataKey
	// echoes are the other organizations whose trails record the event.
	echoes []string
	// stream is the read that follows the commit (Stream).
	stream func(q sqldb.Querier) (map[string]string, error)
}

func newTx(g *Gate, a Actor, o orgs.Organization, subj authz.Subject, network netpolicy.Policy, action string) *Tx {
	return &Tx{
		Subject: subj, org: o, network: network, addr: a.RemoteAddr,
		confirmedAt: a.ConfirmedAt, now: time.Now(), gate: g, db: g.db,
		event: audit.Event{
			OrgID: o.ID, ActorAccount: a.AccountID, ActorSession: a.SessionID,
			RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent, Action: action,
			ActorRole: roleNames(subj),
		},
	}
}

// Org is the organization the request is about.
func (t *Tx) Org() orgs.Organization { return t.org }

// Dialect is the clinical database's dialect.
func (t *Tx) Dialect() sqldb.Dialect { return t.gate.db.Dialect }

// Authorize asks authz whether the requester may take action on resource,
// records the resource in the audit event and returns ErrDenied if not.
// Work may call it more than once; every call must allow. The first call
// that allows gives the work its querier.
func (t *Tx) Authorize(action authz.Action, r authz.Resource) error {
	return t.ask(authz.Decide(t.Subject, action, r), r)
}

// AuthorizeList asks authz whether the requester may take action on
// anything within scope (the scope itself, or a study or site in it that
// one of their roles reaches), as work that lists asks before it reads,
// whether or not the list then finds anything; the work keeps, with
// Allowed, the items the requester may see. Like Authorize, it returns
// ErrDenied if not, and its first allowing call gives the work its querier.
func (t *Tx) AuthorizeList(action authz.Action, scope authz.Resource) error {
	return t.ask(authz.DecideWithin(t.Subject, action, scope), scope)
}

// ask records the resource in the audit event, applies the network policy
// of the study it names (ACL-07) and then authz's decision d.
func (t *Tx) ask(d authz.Decision, r authz.Resource) error {
	// A made-up id of a probe is not copied onto the event (see Object).
	if ids.Valid(r.StudyID) {
		t.event.StudyID = r.StudyID
	}
	if ids.Valid(r.SiteID) {
		t.event.SiteID = r.SiteID
	}
	if !t.network.AllowsStudy(r.StudyID, t.addr) {
		return t.refuse(authz.Decision{Reason: netpolicy.Refusal})
	}
	if !d.Allow {
		return t.refuse(d)
	}
	if t.denied == nil {
		t.authorized = true
	}
	return nil
}

// Allowed reports whether the requester may take action on resource,
// without failing the request: work that lists objects, after authorizing
// the list on its scope, keeps those the requester may see. An answer yes
// counts as authorizing.
func (t *Tx) Allowed(action authz.Action, r authz.Resource) bool {
	ok := t.network.AllowsStudy(r.StudyID, t.addr) && authz.Decide(t.Subject, action, r).Allow
	if ok && t.denied == nil {
		t.authorized = true
	}
	return ok
}

// refuse denies the request. From then on its querier answers nothing, so
// that work which went on regardless can read nothing more through it; the
// gate rolls back what it did once it returns.
func (t *Tx) refuse(d authz.Decision) error {
	t.denied = &d
	t.authorized = false
	return ErrDenied
}

// query hands out the transaction, with the context its statements run
// under, to work that was allowed. Work that asks for it earlier fails the
// request, so the mistake shows in the first test that runs it; a refused
// or failed request gets a transaction that is over (sql.ErrTxDone), so no
// statement of it reaches the batch. A statement is not cancelled with its
// request (see batch.go).
func (t *Tx) query(ctx context.Context) (*sql.Tx, context.Context) {
	if !t.authorized && t.denied == nil && t.misuse == nil {
		t.misuse = errs.E(errs.Internal, "work for %s queried the database before authz allowed it", t.event.Action)
	}
	if t.denied != nil || t.misuse != nil {
		if over := t.gate.over(); over != nil {
			return over, ctx
		}
		return t.tx, ended
	}
	return t.tx, context.WithoutCancel(ctx)
}

// over returns a transaction that is over, whose statements all answer
// sql.ErrTxDone; nil if none could be begun.
func (g *Gate) over() *sql.Tx {
	g.overOnce.Do(func() {
		// Read-only, so that beginning it waits for no writer.
		tx, err := g.db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
		if err == nil {
			tx.Rollback()
			g.overTx = tx
		}
	})
	return g.overTx
}

// ended is the context of statements that must not run, should no
// transaction that is over be at hand.
var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// ExecContext runs a statement in the request's transaction, once authz
// allowed the work.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	tx, ctx := t.query(ctx)
	return t.db.In(tx).ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the request's transaction, once authz
// allowed the work.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	tx, ctx := t.query(ctx)
	return t.db.In(tx).QueryContext(ctx, query, args...)
}

// QueryRowContext runs a query for one row in the request's transaction,
// once authz allowed the work.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	tx, ctx := t.query(ctx)
	return t.db.In(tx).QueryRowContext(ctx, query, args...)
}

// verdict decides, inside the transaction, whether the work may commit:
// only work that asked, was allowed, needed no confirmation it lacked and
// met no broken seal.
func (t *Tx) verdict(err error) error {
	switch {
	case t.misuse != nil:
		return t.misuse
	case err != nil:
		return err
	case t.denied != nil:
		return ErrDenied
	case t.stepUp:
		return ErrStepUpRequired
	case !t.authorized:
		return errs.E(errs.Internal, "work for %s did not ask for authorization", t.event.Action)
	case t.integrity:
		return errIntegrity(errors.New("work went on after a sealed value failed to open"))
	}
	return nil
}

// AlsoIn records the request's event, once it succeeds, in the trail of
// organization orgID as well, naming the request's organization (by_org):
// for work whose effect reaches the requester's other organizations, e.g.
// lifting an account's lockout, which locked it everywhere.
func (t *Tx) AlsoIn(orgID string) { t.echoes = append(t.echoes, orgID) }

// Stream registers read, to run once the work and its event are committed,
// for answers too large to hold (exports): the request is authorized and
// on the trail before its first byte is sent, and read streams from one
// consistent snapshot (a read-only transaction of its own) without holding
// the write lock. What read returns (what was sent: a count and a digest,
// never the data) is recorded as a second event, the request's action with
// ".sent", as is a read that failed half way.
func (t *Tx) Stream(read func(q sqldb.Querier) (sent map[string]string, err error)) {
	t.stream = read
}

// events are the request's event and, once it succeeds, its echoes in
// other organizations' trails.
func (t *Tx) events() []audit.Event {
	evs := []audit.Event{t.event}
	if t.event.Outcome != audit.Success {
		return evs
	}
	for _, id := range t.echoes {
		echo := t.event
		echo.OrgID, echo.StudyID, echo.SiteID, echo.ParticipantID, echo.ActorRole = id, "", "", "", ""
		echo.Details = map[string]string{"by_org": t.org.ID}
		evs = append(evs, echo)
	}
	return evs
}

// RequireStepUp refuses the work unless the requester confirmed their
// identity within StepUpWindow (ACL-09): role changes, exports, key
// operations and re-identification call it after Authorize allowed them, so
// that only someone allowed learns that a confirmation is wanted. The
// refusal rolls the work back and is on the audit trail as denied.
func (t *Tx) RequireStepUp() error {
	if !t.authorized || t.denied != nil {
		return errs.E(errs.Internal, "RequireStepUp before Authorize allowed the work")
	}
	if t.confirmedAt.IsZero() || t.now.Sub(t.confirmedAt) > StepUpWindow || t.confirmedAt.After(t.now.Add(time.Minute)) {
		t.stepUp = true
		return ErrStepUpRequired
	}
	t.Detail("step_up_age_s", strconv.FormatInt(int64(t.now.Sub(t.confirmedAt)/time.Second), 10))
	return nil
}

// Object names the object the request is about, for the audit event. An
// id that is not one of ours (a probe with a made-up or oversized id) is
// recorded as such rather than copied, so that the event can always be
// written and the attempt is on the trail.
func (t *Tx) Object(kind, id string) {
	if !ids.Valid(id) {
		id = "invalid"
	}
	t.event.ObjectType, t.event.ObjectID = kind, id
}

// VisibleFields keeps, of fields (form-qualified names) of r's study, those
// the requester may see when taking action (a read) on r, under the
// study's field-visibility rules (ACL-04). Work that answers with fields
// of a study leaves out every field it drops: absent, not blanked.
func (t *Tx) VisibleFields(ctx context.Context, action authz.Action, r authz.Resource, fields []string) ([]string, error) {
	rules, err := authz.FieldRulesOf(ctx, t, r.OrgID, r.StudyID)
	if err != nil {
		return nil, err
	}
	return authz.VisibleFields(t.Subject, action, r, rules, fields), nil
}

// Participant names the participant (by pseudonym) the request is about,
// for the audit event.
func (t *Tx) Participant(pseudonym string) { t.event.ParticipantID = pseudonym }

// Security flags the event as a security event (AUD-05): role, factor,
// key and policy changes.
func (t *Tx) Security() { t.event.Security = true }

// Detail adds a reference to the audit event: an id, a digest or a reason,
// never a clear-text value or a secret.
func (t *Tx) Detail(key, value string) { detail(&t.event, key, value) }

// detail adds key=value to ev's details.
func detail(ev *audit.Event, key, value string) {
	if ev.Details == nil {
		ev.Details = map[string]string{}
	}
	ev.Details[key] = value
}

func roleNames(s authz.Subject) string {
	out := ""
	seen := map[authz.Role]bool{}
	for _, a := range s.Assignments {
		if !seen[a.Role] {
			if out != "" {
				out += ","
			}
			out += string(a.Role)
			seen[a.Role] = true
		}
	}
	return out
}

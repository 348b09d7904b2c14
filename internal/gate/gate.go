// Package gate is the one path to protected data. Every read or change of
// organization data runs as work inside Gate.Do, which
//
//  1. loads the requester's current roles in the organization (so a revoked
//     role never outlives the request that revoked it) and refuses, before
//     any data is read, a request from outside the network ranges of the
//     organization or of a study the work names (ACL-07),
//  2. opens one database transaction and runs the work, which must call
//     Tx.Authorize for what it touches before it returns: authz decides, and
//     work that never asked is refused (fail closed),
//  3. appends the audit event to the same transaction, so data and event
//     commit together or not at all (AUD-01), and
//  4. on a denial rolls everything back, records the denied attempt in a
//     transaction of its own, and reports the object as not found (ACL-08).
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
	"fmt"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/netpolicy"
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

// Gate runs work on protected data.
type Gate struct {
	DB *sqldb.DB
	// Keys holds the data keys of DB, wrapped by the key-encryption key.
	Keys *keys.Keyring
	// Identity is the identity database and IdentityKeys its keyring,
	// which holds the participant keys (CRY-09). Without them, work that
	// asks for identity data fails as Unavailable.
	Identity     *sqldb.DB
	IdentityKeys *keys.Keyring
}

// Tx is the work's view of one request: its transaction, the requester and
// the audit event that will be committed with the work.
type Tx struct {
	*sql.Tx
	Subject    authz.Subject
	event      audit.Event
	authorized bool
	denied     *authz.Decision
	stepUp     bool // RequireStepUp refused
	// network and addr decide whether the requester's address may reach a
	// study the work names (ACL-07).
	network netpolicy.Policy
	addr    string
	// confirmedAt and now decide RequireStepUp.
	confirmedAt time.Time
	now         time.Time
	// gate and orgID serve the vaults; identity is the request's
	// transaction on the identity database, if the work began one;
	// integrity records that a sealed value failed to open.
	gate      *Gate
	orgID     string
	identity  *IdentityTx
	integrity bool
}

// ErrDenied is returned by Authorize; work returns it (wrapped or not).
var ErrDenied = errs.E(errs.NotFound, "not found")

// Authorize asks authz whether the requester may take action on resource,
// records the resource in the audit event and returns ErrDenied if not.
// Work may call it more than once; every call must allow.
func (t *Tx) Authorize(action authz.Action, r authz.Resource) error {
	d := authz.Decide(t.Subject, action, r)
	if r.StudyID != "" {
		t.event.StudyID = r.StudyID
	}
	if r.SiteID != "" {
		t.event.SiteID = r.SiteID
	}
	if !t.network.AllowsStudy(r.StudyID, t.addr) {
		return t.refuseNetwork()
	}
	if !d.Allow {
		t.denied = &d
		t.authorized = false
		return ErrDenied
	}
	if t.denied == nil {
		t.authorized = true
	}
	return nil
}

// Allowed reports whether the requester may take action on resource,
// without failing the request: work that lists objects keeps those the
// requester may see. Consulting authz this way counts as authorizing.
func (t *Tx) Allowed(action authz.Action, r authz.Resource) bool {
	if t.denied == nil {
		t.authorized = true
	}
	return t.network.AllowsStudy(r.StudyID, t.addr) && authz.Decide(t.Subject, action, r).Allow
}

// refuseNetwork denies the request because the requester's address may not
// reach the study, and ends the transaction at once, so that work which
// went on regardless could read nothing more through it.
func (t *Tx) refuseNetwork() error {
	t.denied = &authz.Decision{Reason: netpolicy.Refusal}
	t.authorized = false
	if t.Tx != nil {
		t.Tx.Rollback()
	}
	return ErrDenied
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
	rules, err := authz.FieldRulesOf(ctx, t.Tx, r.OrgID, r.StudyID)
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
func (t *Tx) Detail(key, value string) {
	if t.event.Details == nil {
		t.event.Details = map[string]string{}
	}
	t.event.Details[key] = value
}

// Do runs work for actor within organization orgID, audited as action.
func (g *Gate) Do(ctx context.Context, actor Actor, orgID, action string, work func(t *Tx) error) error {
	ev := audit.Event{
		OrgID: orgID, ActorAccount: actor.AccountID, ActorSession: actor.SessionID,
		RemoteAddr: actor.RemoteAddr, UserAgent: actor.UserAgent, Action: action,
	}
	subj, err := g.subject(ctx, actor.AccountID, orgID)
	if err != nil {
		return err
	}
	// Network restriction (ACL-07) comes before any data is read: the
	// organization's ranges here, a study's as soon as the work names it.
	network, err := netpolicy.Load(ctx, g.DB, orgID)
	if err != nil {
		return err
	}
	t := &Tx{Subject: subj, event: ev, network: network, addr: actor.RemoteAddr, confirmedAt: actor.ConfirmedAt, now: time.Now(), gate: g, orgID: orgID}
	if !network.AllowsOrganization(actor.RemoteAddr) {
		t.event.ActorRole = roleNames(subj)
		t.denied = &authz.Decision{Reason: netpolicy.Refusal}
		return g.refuse(ctx, t)
	}
	if len(subj.Assignments) == 0 {
		t.denied = &authz.Decision{Reason: "no role in this organization"}
		return g.refuse(ctx, t)
	}
	t.event.ActorRole = roleNames(subj)
	defer func() {
		if t.identity != nil {
			t.identity.rollback()
		}
	}()
	err = g.DB.InTx(ctx, func(tx *sql.Tx) error {
		t.Tx = tx
		if err := work(t); err != nil {
			return err
		}
		if t.denied != nil {
			return ErrDenied
		}
		if t.stepUp {
			return ErrStepUpRequired
		}
		if !t.authorized {
			return errs.E(errs.Internal, "work for %s did not ask for authorization", action)
		}
		if t.integrity {
			return errIntegrity(errors.New("work went on after a sealed value failed to open"))
		}
		t.event.Outcome = audit.Success
		if _, err := audit.Append(ctx, tx, t.event); err != nil {
			return errs.Wrap(errs.Unavailable, err, "the request could not be audited, so it was not carried out")
		}
		if t.identity != nil && !t.identity.after {
			return t.identity.commit()
		}
		return nil
	})
	if t.identity != nil && t.identity.after && err == nil {
		if err := t.identity.commit(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "the change is recorded, but the identity database did not confirm it; repeat the request")
		}
	}
	if t.integrity && t.denied == nil {
		// A value that does not open where it is stored was moved or
		// damaged behind the application's back (CRY-05).
		t.event.Outcome = audit.Failure
		t.event.Security = true
		t.Detail("error", "integrity")
		if aerr := g.append(ctx, t.event); aerr != nil {
			return aerr
		}
		return err
	}
	if t.denied != nil {
		return g.refuse(ctx, t)
	}
	if t.stepUp {
		t.event.Outcome = audit.Denied
		t.Detail("reason", "step-up required")
		if aerr := g.append(ctx, t.event); aerr != nil {
			return aerr
		}
		return ErrStepUpRequired
	}
	switch k := errs.KindOf(err); {
	case err == nil:
		return nil
	case k == errs.Invalid || k == errs.NotFound || k == errs.Conflict || k == errs.Forbidden:
		// A failed attempt leaves no data, but is on the record (AUTH-11).
		t.event.Outcome = audit.Failure
		t.Detail("error", k.String()) // with what the work recorded: what was tried
		if aerr := g.append(ctx, t.event); aerr != nil {
			return aerr
		}
		if k == errs.NotFound {
			return ErrDenied // one answer for missing and hidden objects
		}
	}
	return err
}

func (g *Gate) append(ctx context.Context, ev audit.Event) error {
	err := g.DB.InTx(ctx, func(tx *sql.Tx) error {
		_, err := audit.Append(ctx, tx, ev)
		return err
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the request could not be audited")
	}
	return nil
}

// refuse records a denied attempt and answers not found.
func (g *Gate) refuse(ctx context.Context, t *Tx) error {
	t.event.Outcome = audit.Denied
	t.Detail("reason", t.denied.Reason)
	if err := g.append(ctx, t.event); err != nil {
		return err
	}
	return ErrDenied
}

func (g *Gate) subject(ctx context.Context, accountID, orgID string) (authz.Subject, error) {
	if accountID == "" {
		return authz.Subject{}, errs.E(errs.Unauthenticated, "sign-in required")
	}
	as, err := authz.AssignmentsOf(ctx, g.DB, orgID, accountID)
	if err != nil {
		return authz.Subject{}, fmt.Errorf("load roles: %w", err)
	}
	subj := authz.Subject{AccountID: accountID, OrgID: orgID, Assignments: as}
	// The relations (ACL-05) matter only to roles that reach participants
	// through them.
	for _, a := range as {
		if _, scoped := authz.RelationshipScoped(a.Role); scoped {
			if subj.Relations, err = authz.RelationsOf(ctx, g.DB, orgID, accountID); err != nil {
				return authz.Subject{}, fmt.Errorf("load relations: %w", err)
			}
			break
		}
	}
	return subj, nil
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

// IsDenied reports whether err is the gate's denial.
func IsDenied(err error) bool { return errors.Is(err, ErrDenied) }

package participants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sqldb"
)

// A participant's own account (ACL-05). Those who may enrol participants
// at a site invite one of its participants by e-mail address; the
// invitation is a setup link (accounts.PurposeSetup) that names the
// participant. Only when the link is accepted does the account receive the
// participant role at the participant's site and the self relation to the
// pseudonym, both in the transaction that consumes the link, so an
// invitation never opened grants nothing.
//
// A person is not both staff and participant of one organization: an
// address whose account holds any role other than participant there is
// refused (Conflict), as is a participant who has an account already.

// ErrStaffAddress refuses an invitation to an address of the
// organization's staff.
var ErrStaffAddress = errs.E(errs.Conflict, "this address belongs to a member of the organization's staff; a person cannot be staff and participant of one organization")

// errHasAccount refuses a second own account of one participant.
var errHasAccount = errs.E(errs.Conflict, "this participant has an account already")

// AccountInvitation is an issued invitation, for the e-mail that carries
// its link.
type AccountInvitation struct {
	Email   string // normalized
	Token   string // the setup link's secret; only its hash is stored
	OrgName string
	// Existing reports that the address has an account with a password
	// already: the link is accepted with that password.
	Existing bool
}

// InviteAccount invites the participant to an account of their own at
// email, valid for ttl. The invitation is a security event naming the
// participant; the address itself (identifying data) enters neither the
// event nor the clinical database beyond the account it names.
func (s *Service) InviteAccount(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym, email string, ttl time.Duration) (AccountInvitation, error) {
	norm, err := accounts.NormalizeEmail(email)
	if err != nil {
		return AccountInvitation{}, err
	}
	inv := AccountInvitation{Email: norm}
	err = s.Gate.Do(ctx, a, gate.Slug(slug), "participant.account_invite", func(t *gate.Tx) error {
		org := t.Org()
		inv.OrgName = org.Name
		p, err := withoutAccount(ctx, t, org.ID, studyID, siteID, pseudonym, "you may not invite participants at this site", errHasAccount)
		if err != nil {
			return err
		}
		// The invitation sends an e-mail (ASVS V2.4.1).
		if err := (&ratelimit.Limiter{DB: t, Now: s.now}).Check(ctx, ratelimit.InviteRules(t.Subject.AccountID, org.ID, ids.Digest(norm))...); err != nil {
			return err
		}
		acc, err := accounts.ByEmail(ctx, t, norm)
		switch {
		case errs.Is(err, errs.NotFound):
			if acc, err = accounts.Create(ctx, t, norm, ""); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			as, err := authz.AssignmentsOf(ctx, t, org.ID, acc.ID)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(as, func(x authz.Assignment) bool { return x.Role != authz.Participant }) {
				return ErrStaffAddress
			}
		}
		inv.Existing = acc.HasPassword
		if inv.Token, err = accounts.IssueLink(ctx, t, acc.ID, accounts.PurposeSetup, ttl); err != nil {
			return err
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO participant_invitations
			(token_hash, org_id, participant_id, account_id, invited_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			ids.Digest(inv.Token), org.ID, p.Pseudonym, acc.ID, a.AccountID, sqldb.Now()); err != nil {
			return fmt.Errorf("store participant invitation: %w", err)
		}
		t.Detail("account", acc.ID)
		return nil
	})
	if err != nil {
		return AccountInvitation{}, err
	}
	return inv, nil
}

// errNoPendingInvitation answers a withdrawal when the participant has no
// invitation whose link is still usable (none, or all used or expired).
var errNoPendingInvitation = errs.E(errs.Conflict, "this participant has no pending invitation")

// errAccountLinked refuses a withdrawal once an invitation was accepted: the
// account is the participant's own, which withdrawing a link cannot undo.
var errAccountLinked = errs.E(errs.Conflict, "this participant's invitation was accepted and their account is linked; it cannot be withdrawn here")

// WithdrawAccountInvitation withdraws the participant's pending
// invitations (a mistyped address, a participant who withdrew before
// accepting): their setup links stop working in the transaction that
// records the withdrawal, so no link accepted afterwards grants anything.
// It takes the permission of the invitation at the participant's site. The
// event names the participant and the invited accounts, never an address.
// A withdrawn invitation may be followed by a new one.
func (s *Service) WithdrawAccountInvitation(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "participant.account_withdraw", func(t *gate.Tx) error {
		org := t.Org()
		p, err := withoutAccount(ctx, t, org.ID, studyID, siteID, pseudonym, "you may not withdraw invitations at this site", errAccountLinked)
		if err != nil {
			return err
		}
		// The links end as used ones do (accounts.EndLinks).
		digests, err := invitationDigests(ctx, t, org.ID, p.Pseudonym)
		if err != nil {
			return err
		}
		invited, err := accounts.EndLinks(ctx, t, accounts.PurposeSetup, digests)
		if err != nil {
			return err
		}
		if len(invited) == 0 {
			return errNoPendingInvitation
		}
		t.Detail("withdrawn", strconv.Itoa(len(invited)))
		slices.Sort(invited)
		t.Detail("account", strings.Join(slices.Compact(invited), ","))
		return nil
	})
}

// withoutAccount finds, in t, the participant whose own-account invitation
// the work changes (at), marks the event a security event, and checks that the
// requester may invite at their site (refusal when the participant is
// visible but the action is not theirs) and that the participant has no
// account of their own yet (linked otherwise).
func withoutAccount(ctx context.Context, t *gate.Tx, orgID, studyID, siteID, pseudonym, refusal string, linked error) (Participant, error) {
	t.Object("participant", pseudonym)
	t.Security()
	p, err := authorizeAt(ctx, t, authz.ParticipantEnrol, studyID, siteID, pseudonym, refusal)
	if err != nil {
		return Participant{}, err
	}
	rels, err := authz.RelationsOfParticipant(ctx, t, orgID, p.Pseudonym)
	if err != nil {
		return Participant{}, err
	}
	if slices.ContainsFunc(rels, func(r authz.Relation) bool { return r.Kind == authz.RelationSelf }) {
		return Participant{}, linked
	}
	return p, nil
}

// invitationDigests lists the digests of the links of every invitation of
// the participant, pending or not.
func invitationDigests(ctx context.Context, q sqldb.Querier, orgID, pseudonym string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT token_hash FROM participant_invitations
		WHERE org_id = $1 AND participant_id = $2`, orgID, pseudonym)
	if err != nil {
		return nil, fmt.Errorf("read participant invitations: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("read participant invitations: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// PendingAccount is the participant a setup link makes its account the own
// account of, if any.
type PendingAccount struct {
	OrgID, StudyID, SiteID, Pseudonym, AccountID string
}

// InvitationOf reports the participant a setup link (its token) invites
// to, and false for a link that invites to no participant.
func InvitationOf(ctx context.Context, q sqldb.Querier, token string) (PendingAccount, bool, error) {
	var pa PendingAccount
	err := q.QueryRowContext(ctx, `SELECT pi.org_id, p.study_id, p.site_id, pi.participant_id, pi.account_id
		FROM participant_invitations pi JOIN participants p ON p.org_id = pi.org_id AND p.id = pi.participant_id
		WHERE pi.token_hash = $1 AND NOT EXISTS (SELECT 1 FROM participant_deletions d
		  WHERE d.org_id = p.org_id AND d.participant_id = p.id)`, ids.Digest(token)).Scan(&pa.OrgID, &pa.StudyID, &pa.SiteID, &pa.Pseudonym, &pa.AccountID)
	if errors.Is(err, sql.ErrNoRows) {
		return PendingAccount{}, false, nil
	}
	if err != nil {
		return PendingAccount{}, false, fmt.Errorf("find participant invitation: %w", err)
	}
	return pa, true, nil
}

// LinkTx is the transaction that consumes an invitation's link: it records
// the link's event beside its own (gate.OpTx, acting as the account that
// accepts it, OpTx.As).
type LinkTx interface {
	sqldb.Querier
	Record(ctx context.Context, ev audit.Event, orgIDs ...string) error
}

// LinkAccount makes the account the participant's own, in tx (the one that
// consumed the invitation's link): the participant role at their site and
// the self relation, with a security event, participant.account_link, that
// tx records as its actor's in the participant role. A participant who got
// an own account meanwhile is a Conflict, and nothing is granted.
func LinkAccount(ctx context.Context, tx LinkTx, pa PendingAccount) error {
	as, err := authz.AssignmentsOf(ctx, tx, pa.OrgID, pa.AccountID)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(as, func(x authz.Assignment) bool { return x.Role != authz.Participant }) {
		return ErrStaffAddress
	}
	if !slices.ContainsFunc(as, func(x authz.Assignment) bool { return x.SiteID == pa.SiteID }) {
		if _, err := authz.Assign(ctx, tx, authz.Assignment{OrgID: pa.OrgID, AccountID: pa.AccountID,
			Role: authz.Participant, StudyID: pa.StudyID, SiteID: pa.SiteID}); err != nil {
			return err
		}
	}
	if _, err := authz.Relate(ctx, tx, authz.Relation{OrgID: pa.OrgID, ParticipantID: pa.Pseudonym,
		AccountID: pa.AccountID, Kind: authz.RelationSelf}); err != nil {
		if errs.Is(err, errs.Conflict) {
			return errHasAccount
		}
		return err
	}
	return tx.Record(ctx, audit.Event{
		Action: "participant.account_link", OrgID: pa.OrgID, StudyID: pa.StudyID, SiteID: pa.SiteID,
		ActorAccount: pa.AccountID, ActorRole: string(authz.Participant),
		ObjectType: "participant", ObjectID: pa.Pseudonym, ParticipantID: pa.Pseudonym,
		Outcome: audit.Success, Security: true, Details: map[string]string{"role": string(authz.Participant), "relation": string(authz.RelationSelf)},
	})
}

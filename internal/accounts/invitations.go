package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// An invitation asks a person to join an organization with a role (ACL-02).
// The role is granted only when the person accepts, through the one-time
// link e-mailed to the address: by choosing the password of a new account,
// or by giving the password of the account the address has. Until then the
// inviting organization sees the address it typed and that it is invited,
// the same whether or not the address has an account, and its security
// policy binds no one. A person who holds a role the organization's
// administrators see already (staff) is a member: their new role needs no
// consent and is granted at once.

// Invitation is a pending or decided invitation.
type Invitation struct {
	ID        string
	OrgID     string
	AccountID string // the invited address's account; never shown to the inviter
	Email     string // the address the inviter typed, normalized
	Grant     authz.Assignment
	InvitedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Invited is what Invite did.
type Invited struct {
	Invitation Invitation
	// Link is the one-time link's secret to e-mail; empty when Member.
	Link string
	// HasPassword: the address's account has a password already, so the
	// person accepts with it instead of choosing one.
	HasPassword bool
	// Member: the person is staff of the organization already and was
	// given the role at once (Grant holds it).
	Member bool
	Grant  authz.Assignment
}

// Invite invites the person with this (normalized) address to grant's
// organization in tx: a new account, without password or role, for an
// address without one, and a pending invitation with its one-time link,
// valid for ttl. A member of staff of the organization gets the role at
// once.
func Invite(ctx context.Context, tx sqldb.Tx, email string, grant authz.Assignment, invitedBy string, ttl time.Duration) (Invited, error) {
	acc, err := ByEmail(ctx, tx, email)
	switch {
	case errs.Is(err, errs.NotFound):
		if acc, err = Create(ctx, tx, email, ""); err != nil {
			return Invited{}, err
		}
	case err != nil:
		return Invited{}, err
	}
	held, err := authz.AssignmentsOf(ctx, tx, grant.OrgID, acc.ID)
	if err != nil {
		return Invited{}, err
	}
	if slices.ContainsFunc(held, func(a authz.Assignment) bool { return a.Role != authz.Participant }) {
		grant.AccountID = acc.ID
		a, err := authz.Assign(ctx, tx, grant)
		return Invited{Member: true, Grant: a}, err
	}
	// The scope is checked now, so a bad one is refused to the inviter
	// rather than to the person who accepts.
	if err := authz.CheckScope(ctx, tx, &grant); err != nil {
		return Invited{}, err
	}
	link, err := IssueLink(ctx, tx, acc.ID, PurposeSetup, ttl)
	if err != nil {
		return Invited{}, err
	}
	now := time.Now()
	inv := Invitation{ID: ids.New(), OrgID: grant.OrgID, AccountID: acc.ID, Email: email, Grant: grant,
		InvitedBy: invitedBy, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO member_invitations (id, token_hash, org_id, account_id, email, role, study_id, site_id, invited_by, created_at, expires_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		inv.ID, ids.Digest(link), inv.OrgID, inv.AccountID, inv.Email, string(grant.Role),
		nullString(grant.StudyID), nullString(grant.SiteID), invitedBy, now.UnixMicro(), inv.ExpiresAt.UnixMicro())
	if err != nil {
		return Invited{}, fmt.Errorf("record invitation: %w", err)
	}
	return Invited{Invitation: inv, Link: link, HasPassword: acc.HasPassword}, nil
}

const invitationColumns = `id, org_id, account_id, email, role, COALESCE(study_id, ''), COALESCE(site_id, ''),
	invited_by, created_at, expires_at`

func scanInvitation(row interface{ Scan(...any) error }) (Invitation, error) {
	var inv Invitation
	var role string
	var created, expires int64
	err := row.Scan(&inv.ID, &inv.OrgID, &inv.AccountID, &inv.Email, &role, &inv.Grant.StudyID, &inv.Grant.SiteID,
		&inv.InvitedBy, &created, &expires)
	inv.Grant.Role, inv.Grant.OrgID, inv.Grant.AccountID = authz.Role(role), inv.OrgID, inv.AccountID
	inv.CreatedAt, inv.ExpiresAt = time.UnixMicro(created), time.UnixMicro(expires)
	return inv, err
}

// InvitationOf returns the pending invitation whose one-time link is
// token, and false when the link is not an invitation's.
func InvitationOf(ctx context.Context, q sqldb.Querier, token string) (Invitation, bool, error) {
	inv, err := scanInvitation(q.QueryRowContext(ctx, `SELECT `+invitationColumns+`
		FROM member_invitations WHERE token_hash = $1 AND decided_at IS NULL`, ids.Digest(token)))
	if errors.Is(err, sql.ErrNoRows) {
		return Invitation{}, false, nil
	}
	if err != nil {
		return Invitation{}, false, fmt.Errorf("find invitation: %w", err)
	}
	return inv, true, nil
}

// ErrParticipantAddress refuses a staff role to the account of a
// participant of the organization, whose account holds the participant's
// role alone.
var ErrParticipantAddress = errs.E(errs.Conflict,
	"this address is a participant's account in this organization; ask to be invited at another address")

// Accept grants the invitation's role in tx, which spent its link, and
// records the decision. The role is the one offered, in the scope
// offered, whatever changed since.
func (inv Invitation) Accept(ctx context.Context, tx sqldb.Tx) (authz.Assignment, error) {
	held, err := authz.AssignmentsOf(ctx, tx, inv.OrgID, inv.AccountID)
	if err != nil {
		return authz.Assignment{}, err
	}
	if slices.ContainsFunc(held, func(a authz.Assignment) bool { return a.Role == authz.Participant }) {
		return authz.Assignment{}, ErrParticipantAddress
	}
	a, err := authz.Assign(ctx, tx, inv.Grant)
	if err != nil {
		return authz.Assignment{}, err
	}
	return a, inv.decide(ctx, tx, "accepted")
}

// Decline records that the person declined the invitation, in tx, which
// spent its link.
func (inv Invitation) Decline(ctx context.Context, tx sqldb.Tx) error {
	return inv.decide(ctx, tx, "declined")
}

func (inv Invitation) decide(ctx context.Context, tx sqldb.Tx, decision string) error {
	res, err := tx.ExecContext(ctx, `UPDATE member_invitations SET decided_at = $1, decision = $2
		WHERE id = $3 AND decided_at IS NULL`, sqldb.Now(), decision, inv.ID)
	if err != nil {
		return fmt.Errorf("record the invitation's decision: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errs.E(errs.NotFound, "this link is invalid, used or expired")
	}
	return nil
}

// PendingInvitations lists the organization's invitations that wait for
// an answer and have not expired, newest first.
func PendingInvitations(ctx context.Context, q sqldb.Querier, orgID string) ([]Invitation, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+invitationColumns+` FROM member_invitations
		WHERE org_id = $1 AND decided_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id`, orgID, sqldb.Now())
	if err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	defer rows.Close()
	out := []Invitation{}
	for rows.Next() {
		inv, err := scanInvitation(rows)
		if err != nil {
			return nil, fmt.Errorf("list invitations: %w", err)
		}
		out = append(out, inv)
	}
	return out, rows.Err()
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

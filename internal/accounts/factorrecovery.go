package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// PurposeFactorRecovery links let a member who lost every second factor
// prove control of their e-mail address, with their password, in the
// recovery an administrator started (ASVS V6.4.4).
const PurposeFactorRecovery Purpose = "factor-recovery"

// FactorRecoveryTTL is how long a recovery waits for the person and the
// second administrator.
const FactorRecoveryTTL = 72 * time.Hour

// FactorRecovery is the recovery of a member's second factors: started by
// one administrator, proved by the person through the e-mailed link with
// their password, approved by a second administrator; done once both.
type FactorRecovery struct {
	ID          string
	OrgID       string
	AccountID   string
	Email       string // the member's address, for the administrators' list
	RequestedBy string
	RequestedAt time.Time
	ExpiresAt   time.Time
	ProvedAt    time.Time // zero until the person proved
	ApprovedBy  string
	ApprovedAt  time.Time
	DoneAt      time.Time
}

// Proved, Approved and Done say how far the recovery is.
func (r FactorRecovery) Proved() bool   { return !r.ProvedAt.IsZero() }
func (r FactorRecovery) Approved() bool { return r.ApprovedBy != "" }
func (r FactorRecovery) Done() bool     { return !r.DoneAt.IsZero() }

// Live reports whether the recovery can still go on at now.
func (r FactorRecovery) Live(now time.Time) bool { return !r.Done() && now.Before(r.ExpiresAt) }

var (
	// ErrRecoveryNotFound is the one answer to a recovery that does not
	// exist, is another organization's, ended or expired.
	ErrRecoveryNotFound = errs.E(errs.NotFound, "factor recovery not found, ended or expired")
	// ErrRecoveryOwnRequest refuses the approval of one's own request, or
	// of one's own recovery: two other people vouch for the person.
	ErrRecoveryOwnRequest = errs.E(errs.Conflict, "a second administrator, other than the one who started it and the person recovered, approves a factor recovery")
)

// StartFactorRecovery records a recovery of account's factors in org,
// started by requestedBy, and issues its one-time link, whose token it
// returns for the e-mail. Earlier live recoveries of the account in org
// end: only the newest link counts.
func StartFactorRecovery(ctx context.Context, tx sqldb.Tx, orgID, accountID, requestedBy string, now time.Time) (FactorRecovery, string, error) {
	if _, err := tx.ExecContext(ctx, `UPDATE factor_recoveries SET expires_at = $1
		WHERE org_id = $2 AND account_id = $3 AND done_at IS NULL AND expires_at > $1`, now.UnixMicro(), orgID, accountID); err != nil {
		return FactorRecovery{}, "", fmt.Errorf("end earlier factor recoveries: %w", err)
	}
	token, err := IssueLink(ctx, tx, accountID, PurposeFactorRecovery, FactorRecoveryTTL)
	if err != nil {
		return FactorRecovery{}, "", err
	}
	r := FactorRecovery{ID: ids.New(), OrgID: orgID, AccountID: accountID, RequestedBy: requestedBy,
		RequestedAt: now, ExpiresAt: now.Add(FactorRecoveryTTL)}
	if _, err := tx.ExecContext(ctx, `INSERT INTO factor_recoveries
		(id, org_id, account_id, token_hash, requested_by, requested_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.ID, orgID, accountID, ids.Digest(token), requestedBy, now.UnixMicro(), r.ExpiresAt.UnixMicro()); err != nil {
		return FactorRecovery{}, "", fmt.Errorf("store factor recovery: %w", err)
	}
	return r, token, nil
}

const recoveryColumns = `r.id, r.org_id, r.account_id, a.email, r.requested_by, r.requested_at, r.expires_at,
	r.proved_at, r.approved_by, r.approved_at, r.done_at`

func scanRecovery(s interface{ Scan(...any) error }) (FactorRecovery, error) {
	var (
		r                            FactorRecovery
		reqAt, expAt                 int64
		provedAt, approvedAt, doneAt sql.NullInt64
		approvedBy                   sql.NullString
	)
	if err := s.Scan(&r.ID, &r.OrgID, &r.AccountID, &r.Email, &r.RequestedBy, &reqAt, &expAt, &provedAt, &approvedBy, &approvedAt, &doneAt); err != nil {
		return FactorRecovery{}, err
	}
	at := func(v sql.NullInt64) time.Time {
		if !v.Valid {
			return time.Time{}
		}
		return time.UnixMicro(v.Int64).UTC()
	}
	r.RequestedAt, r.ExpiresAt = time.UnixMicro(reqAt).UTC(), time.UnixMicro(expAt).UTC()
	r.ProvedAt, r.ApprovedAt, r.DoneAt = at(provedAt), at(approvedAt), at(doneAt)
	r.ApprovedBy = approvedBy.String
	return r, nil
}

// FactorRecoveryByID reads a live recovery of org; any other is
// ErrRecoveryNotFound.
func FactorRecoveryByID(ctx context.Context, q sqldb.Querier, orgID, id string, now time.Time) (FactorRecovery, error) {
	r, err := scanRecovery(q.QueryRowContext(ctx, `SELECT `+recoveryColumns+`
		FROM factor_recoveries r JOIN accounts a ON a.id = r.account_id WHERE r.id = $1 AND r.org_id = $2`, id, orgID))
	if errors.Is(err, sql.ErrNoRows) || err == nil && !r.Live(now) {
		return FactorRecovery{}, ErrRecoveryNotFound
	}
	if err != nil {
		return FactorRecovery{}, fmt.Errorf("read factor recovery: %w", err)
	}
	return r, nil
}

// FactorRecoveryOf reads the live recovery whose link token is, without
// spending the link; any other token is ErrRecoveryNotFound.
func FactorRecoveryOf(ctx context.Context, q sqldb.Querier, token string, now time.Time) (FactorRecovery, error) {
	if _, err := PeekLink(ctx, q, PurposeFactorRecovery, token); err != nil {
		return FactorRecovery{}, ErrRecoveryNotFound
	}
	r, err := scanRecovery(q.QueryRowContext(ctx, `SELECT `+recoveryColumns+`
		FROM factor_recoveries r JOIN accounts a ON a.id = r.account_id WHERE r.token_hash = $1`, ids.Digest(token)))
	if errors.Is(err, sql.ErrNoRows) || err == nil && !r.Live(now) {
		return FactorRecovery{}, ErrRecoveryNotFound
	}
	if err != nil {
		return FactorRecovery{}, fmt.Errorf("read factor recovery: %w", err)
	}
	return r, nil
}

// PendingFactorRecoveries lists org's live recoveries, newest first.
func PendingFactorRecoveries(ctx context.Context, q sqldb.Querier, orgID string, now time.Time) ([]FactorRecovery, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+recoveryColumns+`
		FROM factor_recoveries r JOIN accounts a ON a.id = r.account_id
		WHERE r.org_id = $1 AND r.done_at IS NULL AND r.expires_at > $2 ORDER BY r.requested_at DESC`, orgID, now.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("list factor recoveries: %w", err)
	}
	defer rows.Close()
	var out []FactorRecovery
	for rows.Next() {
		r, err := scanRecovery(rows)
		if err != nil {
			return nil, fmt.Errorf("list factor recoveries: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ProveFactorRecovery spends the recovery's link and records that the
// person proved control of the address, in tx.
func ProveFactorRecovery(ctx context.Context, tx sqldb.Tx, r *FactorRecovery, token string, now time.Time) error {
	id, err := RedeemLink(ctx, tx, PurposeFactorRecovery, token)
	if err != nil || id != r.AccountID {
		return ErrRecoveryNotFound
	}
	res, err := tx.ExecContext(ctx, `UPDATE factor_recoveries SET proved_at = $1
		WHERE id = $2 AND proved_at IS NULL AND done_at IS NULL AND expires_at > $1`, now.UnixMicro(), r.ID)
	if err != nil {
		return fmt.Errorf("prove factor recovery: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return ErrRecoveryNotFound
	}
	r.ProvedAt = now
	return nil
}

// ApproveFactorRecovery records the approval by an administrator other
// than the one who started it and than the person, in tx.
func ApproveFactorRecovery(ctx context.Context, tx sqldb.Tx, r *FactorRecovery, by string, now time.Time) error {
	if by == r.RequestedBy || by == r.AccountID {
		return ErrRecoveryOwnRequest
	}
	res, err := tx.ExecContext(ctx, `UPDATE factor_recoveries SET approved_by = $1, approved_at = $2
		WHERE id = $3 AND approved_by IS NULL AND done_at IS NULL AND expires_at > $2`, by, now.UnixMicro(), r.ID)
	if err != nil {
		return fmt.Errorf("approve factor recovery: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return ErrRecoveryNotFound
	}
	r.ApprovedBy, r.ApprovedAt = by, now
	return nil
}

// FinishFactorRecovery marks a proved and approved recovery done, in tx.
func FinishFactorRecovery(ctx context.Context, tx sqldb.Tx, r *FactorRecovery, now time.Time) error {
	if !r.Proved() || !r.Approved() {
		return errs.E(errs.Internal, "factor recovery %s finished before it was proved and approved", r.ID)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE factor_recoveries SET done_at = $1 WHERE id = $2 AND done_at IS NULL`, now.UnixMicro(), r.ID); err != nil {
		return fmt.Errorf("finish factor recovery: %w", err)
	}
	r.DoneAt = now
	return nil
}

// RecoveryProof is what a recovery's link is proved with: the account's
// own password, read with the recovery and checked outside any
// transaction, as a sign-in checks it.
type RecoveryProof struct {
	Recovery FactorRecovery
	hash     sql.NullString
	disabled bool
}

// ReadRecoveryProof reads the live recovery of token and what its proof
// is checked against.
func ReadRecoveryProof(ctx context.Context, q sqldb.Querier, token string, now time.Time) (RecoveryProof, error) {
	r, err := FactorRecoveryOf(ctx, q, token, now)
	if err != nil {
		return RecoveryProof{}, err
	}
	p := RecoveryProof{Recovery: r}
	if err := q.QueryRowContext(ctx, `SELECT password_hash, disabled_at IS NOT NULL FROM accounts WHERE id = $1`, r.AccountID).Scan(&p.hash, &p.disabled); err != nil {
		return RecoveryProof{}, fmt.Errorf("read account: %w", err)
	}
	return p, nil
}

// Check checks the person's password; a disabled account, or one without
// a password, fails as a wrong password does.
func (p RecoveryProof) Check(ctx context.Context, password string) error {
	if !p.hash.Valid || len(password) > 1024 {
		Verify(ctx, dummy(), password)
		return ErrBadCredentials
	}
	ok, _, err := Verify(ctx, p.hash.String, password)
	if err != nil {
		return fmt.Errorf("check password: %w", err)
	}
	if !ok || p.disabled {
		return ErrBadCredentials
	}
	return nil
}

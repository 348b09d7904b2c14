package sso

import (
	"context"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// LeaveOrg removes, in q, what links an account to organization orgID's
// provider: its subject's link and the record of the roles its groups
// gave. The purge of an inactive member (LIFE-02) calls it once the
// member's roles there are gone; a later sign-in through the provider
// finds no account, as for a stranger.
func LeaveOrg(ctx context.Context, q sqldb.Querier, orgID, accountID string) error {
	for _, stmt := range []string{
		`DELETE FROM sso_identities WHERE org_id = $1 AND account_id = $2`,
		`DELETE FROM sso_grants WHERE org_id = $1 AND account_id = $2`,
	} {
		if _, err := q.ExecContext(ctx, stmt, orgID, accountID); err != nil {
			return errs.Wrap(errs.Unavailable, err, "remove the account's single sign-on links")
		}
	}
	return nil
}

// Links lists, for a data subject's bundle, the providers an account is
// linked to: issuer and subject, by organization id.
func Links(ctx context.Context, q sqldb.Querier, accountID string) ([]Link, error) {
	rows, err := q.QueryContext(ctx, `SELECT org_id, issuer, subject, created_at, last_used_at FROM sso_identities WHERE account_id = $1 ORDER BY org_id, issuer, subject`, accountID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the account's single sign-on links")
	}
	defer rows.Close()
	var out []Link
	for rows.Next() {
		var l Link
		if err := rows.Scan(&l.OrgID, &l.Issuer, &l.Subject, &l.CreatedAt, &l.LastUsedAt); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Link is an account's link to a provider's subject.
type Link struct {
	OrgID      string `json:"org_id"`
	Issuer     string `json:"issuer"`
	Subject    string `json:"subject"`
	CreatedAt  int64  `json:"created_at"`
	LastUsedAt int64  `json:"last_used_at"`
}

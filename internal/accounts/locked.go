package accounts

import (
	"context"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// LockedMember is a locked account holding a role in an organization, as
// its administrators see it (AUTH-04).
type LockedMember struct {
	Account  Account
	LockedAt time.Time
	Failures int
}

// LockedMembers lists the locked accounts that hold a role in the
// organization, the most recently locked first.
func LockedMembers(ctx context.Context, q sqldb.Querier, orgID string) ([]LockedMember, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT a.id, a.email, a.display_name, a.password_hash IS NOT NULL, a.created_at, a.locked_at, a.failed_logins
		 FROM accounts a
		 WHERE a.locked_at IS NOT NULL
		   AND a.id IN (SELECT r.account_id FROM role_assignments r WHERE r.org_id = $1)
		 ORDER BY a.locked_at DESC, a.email`, orgID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list locked accounts")
	}
	defer rows.Close()
	var out []LockedMember
	for rows.Next() {
		var m LockedMember
		var at int64
		if err := rows.Scan(&m.Account.ID, &m.Account.Email, &m.Account.DisplayName, &m.Account.HasPassword,
			&m.Account.CreatedAt, &at, &m.Failures); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "list locked accounts")
		}
		m.LockedAt = time.UnixMicro(at)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list locked accounts")
	}
	return out, nil
}

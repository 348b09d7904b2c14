package gate

import (
	"context"
	"fmt"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/netpolicy"
)

// admission is the one statement that reads what admit decides on: the
// roles of the account $2 in the organization $1 and the organization's
// network ranges, as the packages that own them write their statements.
// Each row is one or the other, told by its first column; the columns of
// the other kind are blank.
const admission = `SELECT 'role', a.*, '', '' FROM (` + authz.AccountAssignments + `) a
	UNION ALL
	SELECT 'range', '', '', '', '', '', '', 0, '', '', r.* FROM (` + netpolicy.OrganizationRanges + `) r
	ORDER BY 1, 8, 2`

// admission reads the requester's roles in the organization and its
// network policy, in one statement: a request pays one round trip for them.
// The relationships of roles that reach participants through them (ACL-05)
// are read after, for such roles only.
func (g *Gate) admission(ctx context.Context, accountID, orgID string) (authz.Subject, netpolicy.Policy, error) {
	rows, err := g.db.QueryContext(ctx, admission, orgID, accountID)
	if err != nil {
		return authz.Subject{}, netpolicy.Policy{}, fmt.Errorf("load roles and network ranges: %w", err)
	}
	defer rows.Close()
	subj := authz.Subject{AccountID: accountID, OrgID: orgID}
	var ranges []netpolicy.RangeRow
	for rows.Next() {
		var (
			kind string
			a    authz.AssignmentRow
			r    netpolicy.RangeRow
		)
		dest := append(append([]any{&kind}, a.Dest()...), r.Dest()...)
		if err := rows.Scan(dest...); err != nil {
			return authz.Subject{}, netpolicy.Policy{}, fmt.Errorf("load roles and network ranges: %w", err)
		}
		if kind == "role" {
			subj.Assignments = append(subj.Assignments, a.Assignment())
		} else {
			ranges = append(ranges, r)
		}
	}
	if err := rows.Err(); err != nil {
		return authz.Subject{}, netpolicy.Policy{}, fmt.Errorf("load roles and network ranges: %w", err)
	}
	rows.Close()
	network, err := netpolicy.FromRanges(ranges)
	if err != nil {
		return authz.Subject{}, netpolicy.Policy{}, err
	}
	for _, a := range subj.Assignments {
		if _, scoped := authz.RelationshipScoped(a.Role); scoped {
			if subj.Relations, err = authz.RelationsOf(ctx, g.db, orgID, accountID); err != nil {
				return authz.Subject{}, netpolicy.Policy{}, fmt.Errorf("load relations: %w", err)
			}
			break
		}
	}
	return subj, network, nil
}

package retention

import (
	"context"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Activity is read where the instance records use, newest of all, in
// microseconds; reading is not activity, writing and signing in are.
//
// A participant's: their enrolment, the saves of their entries, their
// files, their consents and countersignatures, their conversations' last
// message, their relations (a care provider assigned, their own account
// linked) and the sessions and access tokens of their own account.
//
// An account's (a member's): its creation, its password's last change,
// its sessions and access tokens (in any organization: they are the
// person's) and the roles it was given in this organization. A
// participant's own account is not a member of its own: it goes with its
// participant.
//
// Each column is a subquery of its own on indexed columns, and the newest
// is taken here rather than in SQL, where SQLite's max() of several
// values and PostgreSQL's GREATEST treat a missing one differently.

const participantActivity = `SELECT p.id, p.created_at,
	coalesce((SELECT max(e.saved_at) FROM entries e WHERE e.org_id = p.org_id AND e.participant_id = p.id), 0),
	coalesce((SELECT max(f.created_at) FROM files f WHERE f.org_id = p.org_id AND f.participant_id = p.id), 0),
	coalesce((SELECT max(coalesce(c.countersigned_at, c.signed_at)) FROM consents c WHERE c.org_id = p.org_id AND c.participant_id = p.id), 0),
	coalesce((SELECT max(v.last_at) FROM conversations v WHERE v.org_id = p.org_id AND v.participant_id = p.id), 0),
	coalesce((SELECT max(r.created_at) FROM participant_relations r WHERE r.org_id = p.org_id AND r.participant_id = p.id), 0),
	coalesce((SELECT max(s.last_seen_at) FROM sessions s JOIN participant_relations r ON r.account_id = s.account_id
		WHERE r.org_id = p.org_id AND r.participant_id = p.id AND r.kind = 'self'), 0),
	coalesce((SELECT max(t.last_used_at) FROM access_tokens t JOIN participant_relations r ON r.account_id = t.account_id
		WHERE r.org_id = p.org_id AND r.participant_id = p.id AND r.kind = 'self'), 0)
	FROM participants p
	WHERE p.org_id = $1 AND NOT EXISTS (SELECT 1 FROM participant_deletions d WHERE d.org_id = p.org_id AND d.participant_id = p.id) `

const accountActivity = `SELECT a.id, a.created_at, coalesce(a.password_changed_at, 0),
	coalesce((SELECT max(s.last_seen_at) FROM sessions s WHERE s.account_id = a.id), 0),
	coalesce((SELECT max(t.last_used_at) FROM access_tokens t WHERE t.account_id = a.id), 0),
	coalesce((SELECT max(r.created_at) FROM role_assignments r WHERE r.account_id = a.id AND r.org_id = $1), 0)
	FROM accounts a
	WHERE EXISTS (SELECT 1 FROM role_assignments r WHERE r.account_id = a.id AND r.org_id = $1)
	  AND NOT EXISTS (SELECT 1 FROM participant_relations r WHERE r.org_id = $1 AND r.account_id = a.id AND r.kind = 'self') `

// subjectColumn is the id column of a kind's activity statement.
var subjectColumn = map[Kind]string{Participant: "p.id", Account: "a.id"}

// activityOf is a kind's activity statement.
var activityOf = map[Kind]string{Participant: participantActivity, Account: accountActivity}

// active is a subject and its last activity.
type active struct {
	id   string
	last int64
}

// scanActive reads one row of an activity statement: the id, then the
// times whose newest is the activity.
func scanActive(rows interface{ Scan(...any) error }, kind Kind) (active, error) {
	n := 8
	if kind == Account {
		n = 5
	}
	var a active
	times := make([]int64, n)
	dest := []any{&a.id}
	for i := range times {
		dest = append(dest, &times[i])
	}
	if err := rows.Scan(dest...); err != nil {
		return active{}, err
	}
	for _, t := range times {
		a.last = max(a.last, t)
	}
	return a, nil
}

// activityPage reads the activity of up to limit subjects of a kind in
// the organization after the id after, in id order.
func activityPage(ctx context.Context, q sqldb.Querier, orgID string, kind Kind, after string, limit int) ([]active, error) {
	col := subjectColumn[kind]
	rows, err := q.QueryContext(ctx, activityOf[kind]+`AND `+col+` > $2 ORDER BY `+col+` LIMIT $3`, orgID, after, limit)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the activity")
	}
	defer rows.Close()
	var out []active
	for rows.Next() {
		a, err := scanActive(rows, kind)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the activity")
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// activityOfSubject reads the activity of one subject of the
// organization, or reports found == false: a participant deleted or gone,
// an account without a role here, or a participant's own account.
func activityOfSubject(ctx context.Context, q sqldb.Querier, orgID string, kind Kind, id string) (int64, bool, error) {
	rows, err := q.QueryContext(ctx, activityOf[kind]+`AND `+subjectColumn[kind]+` = $2`, orgID, id)
	if err != nil {
		return 0, false, errs.Wrap(errs.Unavailable, err, "read the activity")
	}
	defer rows.Close()
	if !rows.Next() {
		return 0, false, rows.Err()
	}
	a, err := scanActive(rows, kind)
	if err != nil {
		return 0, false, errs.Wrap(errs.Unavailable, err, "read the activity")
	}
	return a.last, true, nil
}

func itoa(n int) string { return strconv.Itoa(n) }

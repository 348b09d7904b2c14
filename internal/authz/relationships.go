package authz

import (
	"context"
	"fmt"
	"slices"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// RelationKind says how an account is related to a participant (ACL-05).
type RelationKind string

const (
	// RelationCare: the account is one of the participant's care
	// providers, assigned by a study or organization admin.
	RelationCare RelationKind = "care"
	// RelationSelf: the account is the participant's own.
	RelationSelf RelationKind = "self"
)

// Relation ties an account to one participant (by pseudonym) of an
// organization.
type Relation struct {
	ID            string
	OrgID         string
	ParticipantID string
	AccountID     string
	Kind          RelationKind
	CreatedBy     string
	CreatedAt     int64
}

// relationshipScoped names the roles whose permissions reach participants
// only through a relation (ACL-05): a care provider reaches the
// participants assigned to them, a participant their own record. Within
// their scope such a role still reads the study and its sites
// (scopeActions); every other permission of theirs, present or added
// later, needs a resource that names a related participant, so the rule
// fails closed.
var relationshipScoped = map[Role]RelationKind{
	CareProvider: RelationCare,
	Participant:  RelationSelf,
}

var scopeActions = []Action{StudyRead, SiteRead}

// RelationshipScoped reports whether r reaches participants only through a
// relation, and which.
func RelationshipScoped(r Role) (RelationKind, bool) {
	k, ok := relationshipScoped[r]
	return k, ok
}

// relationAllows reports whether the relation rule lets assignment as of
// subject s take action a on resource r: always for a role without the
// rule, and otherwise only for the study and site reads or for a
// participant the subject is related to in the right way.
func relationAllows(s Subject, as Assignment, a Action, r Resource) bool {
	kind, scoped := relationshipScoped[as.Role]
	if !scoped || slices.Contains(scopeActions, a) {
		return true
	}
	if r.ParticipantID == "" {
		return false
	}
	for _, rel := range s.Relations {
		if rel.Kind == kind && rel.ParticipantID == r.ParticipantID && rel.OrgID == r.OrgID && rel.AccountID == s.AccountID {
			return true
		}
	}
	return false
}

// RelationsOf lists an account's relations in an organization; the gate
// loads them with the account's roles for every request.
func RelationsOf(ctx context.Context, q sqldb.Querier, orgID, accountID string) ([]Relation, error) {
	return queryRelations(ctx, q, `WHERE org_id = $1 AND account_id = $2`, orgID, accountID)
}

// RelationsOfParticipant lists the accounts related to a participant.
func RelationsOfParticipant(ctx context.Context, q sqldb.Querier, orgID, participantID string) ([]Relation, error) {
	return queryRelations(ctx, q, `WHERE org_id = $1 AND participant_id = $2`, orgID, participantID)
}

func queryRelations(ctx context.Context, q sqldb.Querier, where string, args ...any) ([]Relation, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, org_id, participant_id, account_id, kind, COALESCE(created_by, ''), created_at
		FROM participant_relations `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list relations: %w", err)
	}
	defer rows.Close()
	out := []Relation{}
	for rows.Next() {
		var r Relation
		if err := rows.Scan(&r.ID, &r.OrgID, &r.ParticipantID, &r.AccountID, &r.Kind, &r.CreatedBy, &r.CreatedAt); err != nil {
			return nil, fmt.Errorf("list relations: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Relate records a relation. The participant must be one of r.OrgID's (the
// database refuses another's); a relation that exists already, or a second
// own account of one participant, is a Conflict.
func Relate(ctx context.Context, tx sqldb.Tx, r Relation) (Relation, error) {
	if r.Kind != RelationCare && r.Kind != RelationSelf {
		return Relation{}, errs.E(errs.Invalid, "unknown relation %q", errs.Clip(string(r.Kind), 16))
	}
	if !ids.Valid(r.ParticipantID) || !ids.Valid(r.AccountID) {
		return Relation{}, errs.E(errs.NotFound, "participant or account not found")
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM participants WHERE org_id = $1 AND id = $2`,
		r.OrgID, r.ParticipantID).Scan(&n); err != nil {
		return Relation{}, fmt.Errorf("relate: %w", err)
	}
	if n == 0 {
		return Relation{}, errs.E(errs.NotFound, "participant not found")
	}
	r.ID, r.CreatedAt = ids.New(), sqldb.Now()
	_, err := tx.ExecContext(ctx, `INSERT INTO participant_relations
		(id, org_id, participant_id, account_id, kind, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.ID, r.OrgID, r.ParticipantID, r.AccountID, string(r.Kind), nullable(r.CreatedBy), r.CreatedAt)
	if sqldb.IsUniqueViolation(err) {
		if r.Kind == RelationSelf {
			return Relation{}, errs.E(errs.Conflict, "this participant has an account already")
		}
		return Relation{}, errs.E(errs.Conflict, "this person is assigned to this participant already")
	}
	if err != nil {
		return Relation{}, fmt.Errorf("relate: %w", err)
	}
	return r, nil
}

// Unrelate removes a relation; one that does not exist is NotFound.
func Unrelate(ctx context.Context, tx sqldb.Tx, orgID, participantID, accountID string, kind RelationKind) (Relation, error) {
	rels, err := queryRelations(ctx, tx, `WHERE org_id = $1 AND participant_id = $2 AND account_id = $3 AND kind = $4`,
		orgID, participantID, accountID, string(kind))
	if err != nil {
		return Relation{}, err
	}
	if len(rels) == 0 {
		return Relation{}, errs.E(errs.NotFound, "no such assignment to this participant")
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM participant_relations WHERE org_id = $1 AND id = $2`, orgID, rels[0].ID); err != nil {
		return Relation{}, fmt.Errorf("unrelate: %w", err)
	}
	return rels[0], nil
}

// UnrelateParticipant removes every relation to a participant, for the
// purge of a deleted participant (LIFE-01), and answers how many.
func UnrelateParticipant(ctx context.Context, tx sqldb.Tx, orgID, participantID string) (int64, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM participant_relations WHERE org_id = $1 AND participant_id = $2`, orgID, participantID)
	if err != nil {
		return 0, fmt.Errorf("unrelate participant: %w", err)
	}
	return res.RowsAffected()
}

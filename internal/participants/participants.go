// Package participants owns the people a study enrols.
//
// The clinical database knows a participant only by a random pseudonym, the
// site that enrolled them and whether identifying data exist (CRY-09). The
// identifying data themselves (name, birth date, e-mail, phone, national
// id) live in the separate identity database, each field sealed under the
// participant's own key (CRY-03, CRY-04), whose wrapped form lives there
// too, and bound to organization, study, pseudonym and field (CRY-05). A
// blind index of the national id refuses a second enrolment of one person
// in a study without the id being stored in clear.
//
// Every request runs through the gate: authorized, in one transaction,
// audited. Re-identification is a permission of its own (identity.reveal),
// needs a fresh confirmation of the requester (ACL-09) and is an audit event
// naming the participant and the fields shown; the sensitive fields (birth
// date, national id) open only for a requester holding a decrypt grant for
// the study and site (CRY-06), and otherwise are reported as present. Erasure
// destroys the participant's key (LIFE-03): the identity answers "erased"
// for good, the pseudonymous record remains.
//
// The two databases are written without a distributed transaction. The
// clinical database is the authority: identity data are served only for a
// participant it records as having them. Enrolment commits the identity
// data just before the clinical record and its event; erasure commits the
// clinical record and its event first, then destroys the key (see
// gate.IdentityTx). A crash between the two leaves identity data no request
// can reach, which Sweep shreds.
package participants

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sqldb"
)

// IdentityState says whether identifying data exist for a participant.
type IdentityState string

const (
	// IdentityNone: none was given at enrolment.
	IdentityNone IdentityState = "none"
	// IdentityRecorded: identifying data are in the identity database.
	IdentityRecorded IdentityState = "recorded"
	// IdentityErased: the participant's key was destroyed (LIFE-03).
	IdentityErased IdentityState = "erased"
)

// Participant is the pseudonymous record of one enrolled person.
type Participant struct {
	Pseudonym string
	OrgID     string
	StudyID   string
	SiteID    string
	Status    string
	Identity  IdentityState
	CreatedAt time.Time
	ErasedAt  time.Time // zero unless erased
	// Arm is the study arm the participant is assigned to ("": none yet);
	// the visits of the schedule held in other arms are not theirs.
	Arm string
}

// Service offers participants to requests.
type Service struct {
	Gate *gate.Gate
	// Now is the clock of grant expiry and the sweep; time.Now if nil.
	Now func() time.Time
	// EnrolmentsPerHour paces enrolment per account, and ten times as many
	// per organization, in this process (ASVS V2.4.1: no garbage data by
	// script); 0 does not pace it. serve's --enrolments-per-hour sets it.
	EnrolmentsPerHour int
	pace              ratelimit.Local
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// site finds a site of the organization that belongs to studyID.
func site(ctx context.Context, q sqldb.Querier, orgID, studyID, siteID string) (orgs.Site, error) {
	st, err := orgs.SiteByID(ctx, q, orgID, siteID)
	if err != nil {
		return orgs.Site{}, err
	}
	if st.StudyID != studyID {
		return orgs.Site{}, errs.E(errs.NotFound, "site not found")
	}
	return st, nil
}

// resourceOf names the participant too, so that a care provider or a
// participant is allowed only for a related participant (ACL-05).
func resourceOf(p Participant) authz.Resource {
	return authz.Resource{OrgID: p.OrgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Pseudonym}
}

// Create stores the pseudonymous record of a new participant at a site of
// the organization, without identifying data, in tx. Enrol is the audited
// way; Create serves seeding and tests.
func Create(ctx context.Context, tx sqldb.Tx, orgID, studyID, siteID string) (Participant, error) {
	if _, err := site(ctx, tx, orgID, studyID, siteID); err != nil {
		return Participant{}, err
	}
	return insert(ctx, tx, orgID, studyID, siteID, ids.New(), IdentityNone)
}

func insert(ctx context.Context, tx sqldb.Tx, orgID, studyID, siteID, pseudonym string, state IdentityState) (Participant, error) {
	now := sqldb.Now()
	p := Participant{Pseudonym: pseudonym, OrgID: orgID, StudyID: studyID, SiteID: siteID,
		Status: "enrolled", Identity: state, CreatedAt: time.UnixMicro(now)}
	_, err := tx.ExecContext(ctx, `INSERT INTO participants
		(id, org_id, study_id, site_id, status, identity, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		p.Pseudonym, orgID, studyID, siteID, p.Status, string(state), now)
	switch {
	case sqldb.IsForeignKeyViolation(err):
		return Participant{}, errs.E(errs.NotFound, "site not found")
	case err != nil:
		return Participant{}, fmt.Errorf("store participant: %w", err)
	}
	return p, nil
}

const selectParticipant = `SELECT id, org_id, study_id, site_id, status, identity, created_at, erased_at, arm FROM participants `

// notDeleted leaves out the deleted participants (LIFE-01): a condition of
// a statement on participants.
const notDeleted = ` AND NOT EXISTS (SELECT 1 FROM participant_deletions d
	WHERE d.org_id = participants.org_id AND d.participant_id = participants.id)`

func scanParticipant(sc interface{ Scan(...any) error }) (Participant, error) {
	var (
		p       Participant
		state   string
		created int64
		erased  sql.NullInt64
		arm     sql.NullString
	)
	if err := sc.Scan(&p.Pseudonym, &p.OrgID, &p.StudyID, &p.SiteID, &p.Status, &state, &created, &erased, &arm); err != nil {
		return Participant{}, err
	}
	p.Arm = arm.String
	p.Identity, p.CreatedAt = IdentityState(state), time.UnixMicro(created)
	if erased.Valid {
		p.ErasedAt = time.UnixMicro(erased.Int64)
	}
	return p, nil
}

// ByPseudonym finds a participant of the organization. One of another
// organization, or one deleted (LIFE-01), is reported exactly like one that
// does not exist (ACL-08): every request about a participant finds them
// here, so a deleted participant is hidden and locked at once.
func ByPseudonym(ctx context.Context, q sqldb.Querier, orgID, pseudonym string) (Participant, error) {
	return byPseudonym(ctx, q, orgID, pseudonym, notDeleted)
}

// byPseudonym is ByPseudonym with a further condition (notDeleted, or none).
func byPseudonym(ctx context.Context, q sqldb.Querier, orgID, pseudonym, cond string) (Participant, error) {
	if !ids.Valid(pseudonym) {
		return Participant{}, errs.E(errs.NotFound, "participant not found")
	}
	p, err := scanParticipant(q.QueryRowContext(ctx, selectParticipant+`WHERE org_id = $1 AND id = $2`+cond, orgID, pseudonym))
	if errors.Is(err, sql.ErrNoRows) {
		return Participant{}, errs.E(errs.NotFound, "participant not found")
	}
	if err != nil {
		return Participant{}, fmt.Errorf("find participant: %w", err)
	}
	return p, nil
}

// at finds, in t, the participant at the site and study a request names
// (the same pseudonym under another site or study is not found), and names
// them as the object of the request's audit event, found or not.
func at(ctx context.Context, t *gate.Tx, orgID, studyID, siteID, pseudonym string) (Participant, error) {
	t.Object("participant", pseudonym)
	p, err := ByPseudonym(ctx, t, orgID, pseudonym)
	if err != nil {
		return Participant{}, err
	}
	if p.StudyID != studyID || p.SiteID != siteID {
		return Participant{}, errs.E(errs.NotFound, "participant not found")
	}
	t.Participant(p.Pseudonym)
	return p, nil
}

// SetArm records the arm of a participant ("": none). Whether the study
// has that arm, and whether the participant's entries allow the change,
// are the caller's to check.
func SetArm(ctx context.Context, q sqldb.Querier, orgID, pseudonym, arm string) error {
	var v any
	if arm != "" {
		v = arm
	}
	if _, err := q.ExecContext(ctx, `UPDATE participants SET arm = $1 WHERE org_id = $2 AND id = $3`, v, orgID, pseudonym); err != nil {
		return errs.Wrap(errs.Unavailable, err, "record the participant's arm")
	}
	return nil
}

// MaxPage is the most participants List returns at once.
const MaxPage = 500

// List lists the participants of a site by pseudonym, in pseudonym order,
// after the pseudonym after (empty: from the start), at most limit (1 to
// MaxPage; 0 means MaxPage).
func (s *Service) List(ctx context.Context, a gate.Actor, slug, studyID, siteID, after string, limit int) ([]Participant, error) {
	if limit == 0 {
		limit = MaxPage
	}
	if limit < 1 || limit > MaxPage {
		return nil, errs.E(errs.Invalid, "limit must be between 1 and %d", MaxPage)
	}
	if after != "" && !ids.Valid(after) {
		return nil, errs.E(errs.Invalid, "after must be a pseudonym")
	}
	out := []Participant{}
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "participant.list", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("site", siteID)
		if err := t.Authorize(authz.ParticipantRead, authz.Resource{OrgID: org.ID, StudyID: studyID, SiteID: siteID}); err != nil {
			return err
		}
		st, err := site(ctx, t, org.ID, studyID, siteID)
		if err != nil {
			return err
		}
		rows, err := t.QueryContext(ctx, selectParticipant+
			`WHERE org_id = $1 AND site_id = $2 AND id > $3`+notDeleted+` ORDER BY id LIMIT $4`, org.ID, st.ID, after, limit)
		if err != nil {
			return fmt.Errorf("list participants: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			p, err := scanParticipant(rows)
			if err != nil {
				return fmt.Errorf("list participants: %w", err)
			}
			out = append(out, p)
		}
		t.Detail("count", fmt.Sprint(len(out)))
		return rows.Err()
	})
	return out, err
}

// Get returns the pseudonymous record of one participant.
func (s *Service) Get(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym string) (Participant, error) {
	var p Participant
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "participant.read", func(t *gate.Tx) error {
		var err error
		p, err = authorizeAt(ctx, t, authz.ParticipantRead, studyID, siteID, pseudonym, "")
		return err
	})
	return p, err
}

// authorizeAt allows action on the participant a request names by study,
// site and pseudonym, then finds them (at). Refused, the request is
// answered not found when the requester may not even read the participant;
// with refusal (when not empty) as forbidden when they may read an existing
// participant but not take the action, so that only those who see the
// participant learn that the action exists.
func authorizeAt(ctx context.Context, t *gate.Tx, action authz.Action, studyID, siteID, pseudonym, refusal string) (Participant, error) {
	// The attempt is on the trail as one about the participant named,
	// allowed or not, so that they see refused attempts in their access
	// log.
	t.Object("participant", pseudonym)
	if ids.Valid(pseudonym) {
		t.Participant(pseudonym)
	}
	r := authz.Resource{OrgID: t.Org().ID, StudyID: studyID, SiteID: siteID, ParticipantID: pseudonym}
	if refusal == "" || t.Allowed(action, r) || !t.Allowed(authz.ParticipantRead, r) {
		if err := t.Authorize(action, r); err != nil {
			return Participant{}, err
		}
		return at(ctx, t, t.Org().ID, studyID, siteID, pseudonym)
	}
	if _, err := at(ctx, t, t.Org().ID, studyID, siteID, pseudonym); err != nil {
		return Participant{}, err
	}
	return Participant{}, errs.E(errs.Forbidden, "%s", refusal)
}

func joinFields(fs []Field) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, ",")
}

package entries

import (
	"context"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
)

// AssignArm assigns a participant to one of the arms the study's schedule
// names ("" takes the arm away): the visits held in other arms are then
// not theirs to fill in. It takes the permission to enrol at the
// participant's site. A change that would leave entries at visits the
// new arm does not hold is refused, naming them: those entries were
// recorded under the arm they have.
func (s *Service) AssignArm(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym, arm string) (participants.Participant, error) {
	var out participants.Participant
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "participant.arm", func(t *gate.Tx) error {
		org := t.Org()
		p := Place{StudyID: studyID, SiteID: siteID, Participant: pseudonym}
		pt, err := authorize(ctx, t, authz.ParticipantEnrol, p, "assigning an arm is not among your permissions here")
		if err != nil {
			return err
		}
		schedule, err := forms.Schedule(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		arm = strings.TrimSpace(arm)
		if arm != "" && !slices.Contains(forms.Arms(schedule), arm) {
			return errs.E(errs.Invalid, "the study's schedule names no arm %s", errs.Clip(arm, 64))
		}
		t.Detail("arm", forms.KeyForTrail(arm))
		rows, err := t.QueryContext(ctx, `SELECT DISTINCT v.visit_key, v.arms FROM entries e JOIN visits v ON v.id = e.visit_id
			WHERE e.org_id = $1 AND e.participant_id = $2`, org.ID, pseudonym)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the participant's entries")
		}
		var held []forms.FieldError
		for rows.Next() {
			var key, arms string
			if err := rows.Scan(&key, &arms); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "read the participant's entries")
			}
			if (scheduled{arms: arms}).visit().For(arm) {
				continue
			}
			held = append(held, forms.FieldError{Field: key, Error: "holds entries, and is not held in arm " + errs.Clip(arm, 64)})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the participant's entries")
		}
		if len(held) > 0 {
			pr := &forms.Problems{Fields: held}
			return errs.Wrap(errs.Conflict, pr, pr.Error())
		}
		if err := participants.SetArm(ctx, t, org.ID, pseudonym, arm); err != nil {
			return err
		}
		out = pt
		out.Arm = arm
		return nil
	})
	return out, err
}

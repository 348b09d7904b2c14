package consent

import (
	"context"
	"strconv"

	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/notify"
)

// QueueToSign queues a notice (notify.Consent) for every participant with
// an account of their own whose study has a published consent document
// and who has a consent to give: none yet, or a newer version to sign
// again. Each is noticed once for each version they are asked to sign.
// One operator transaction a study, recorded as consent.due with the
// count. It answers how many notices it queued.
func (s *Service) QueueToSign(ctx context.Context) (int, error) {
	type study struct{ org, id string }
	var studies []study
	err := s.Gate.Operate(ctx, "consent.due", func(o *gate.OpTx) error {
		o.Nothing()
		rows, err := o.QueryContext(ctx, `SELECT DISTINCT p.org_id, p.study_id FROM participants p
			JOIN participant_relations r ON r.org_id = p.org_id AND r.participant_id = p.id AND r.kind = 'self'
			WHERE EXISTS (SELECT 1 FROM consent_versions v WHERE v.org_id = p.org_id AND v.study_id = p.study_id AND v.state = 'published')`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var st study
			if err := rows.Scan(&st.org, &st.id); err != nil {
				return err
			}
			studies = append(studies, st)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, err
	}
	queued := 0
	for _, st := range studies {
		err := s.Gate.Operate(ctx, "consent.due", func(o *gate.OpTx) error {
			o.Org(st.org)
			var newest int
			if err := o.QueryRowContext(ctx, `SELECT coalesce(max(published_at), 0) FROM consent_versions
				WHERE org_id = $1 AND study_id = $2 AND state = 'published'`, st.org, st.id).Scan(&newest); err != nil {
				return err
			}
			rows, err := o.QueryContext(ctx, `SELECT p.id, r.account_id FROM participants p
				JOIN participant_relations r ON r.org_id = p.org_id AND r.participant_id = p.id AND r.kind = 'self'
				WHERE p.org_id = $1 AND p.study_id = $2 AND p.identity <> 'erased' AND NOT EXISTS (SELECT 1 FROM participant_deletions d
				  WHERE d.org_id = p.org_id AND d.participant_id = p.id)`, st.org, st.id)
			if err != nil {
				return err
			}
			type person struct{ pseudonym, account string }
			var people []person
			for rows.Next() {
				var p person
				if err := rows.Scan(&p.pseudonym, &p.account); err != nil {
					rows.Close()
					return err
				}
				people = append(people, p)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			n := 0
			for _, p := range people {
				c, err := latest(ctx, o, st.org, p.pseudonym)
				if err != nil {
					return err
				}
				status, err := statusOf(ctx, o, st.org, c)
				if err != nil {
					return err
				}
				if status != None && status != ReconsentRequired {
					continue
				}
				// One notice for each newest publication they are asked
				// to sign (a new version with re-consent asks again).
				queued, err := notify.Queue(ctx, o, p.account, st.org, notify.Consent, p.pseudonym+"/"+strconv.Itoa(newest))
				if err != nil {
					return err
				}
				if queued {
					n++
				}
			}
			if n == 0 {
				o.Nothing()
				return nil
			}
			o.Detail("participants_count", strconv.Itoa(n))
			queued += n
			return nil
		})
		if err != nil {
			return queued, err
		}
	}
	return queued, nil
}

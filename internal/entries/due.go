package entries

import (
	"context"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/notify"
)

// QueueDueForms queues a notice (notify.Form) for every participant with
// an account of their own who has a survey form waiting: at a scheduled
// visit of their arm whose day has come, not started. Each form at each
// visit is noticed once. One operator transaction a study, recorded as
// entry.due with the count. It answers how many notices it queued.
func (s *Service) QueueDueForms(ctx context.Context) (int, error) {
	type study struct{ org, id string }
	var studies []study
	err := s.Gate.Operate(ctx, "entry.due", func(o *gate.OpTx) error {
		o.Nothing()
		rows, err := o.QueryContext(ctx, `SELECT DISTINCT p.org_id, p.study_id FROM participants p
			JOIN participant_relations r ON r.org_id = p.org_id AND r.participant_id = p.id AND r.kind = 'self'`)
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
	now := s.now()
	for _, st := range studies {
		err := s.Gate.Operate(ctx, "entry.due", func(o *gate.OpTx) error {
			o.Org(st.org)
			schedule, err := forms.Schedule(ctx, o, st.org, st.id)
			if err != nil {
				return err
			}
			survey := map[string]bool{}
			for _, v := range schedule {
				for _, key := range v.Forms {
					if _, seen := survey[key]; !seen {
						ver, err := forms.VersionOf(ctx, o, st.org, st.id, key, 0)
						survey[key] = err == nil && ver.State == forms.Published && ver.Form.Survey
					}
				}
			}
			rows, err := o.QueryContext(ctx, `SELECT p.id, p.created_at, coalesce(p.arm, ''), r.account_id FROM participants p
				JOIN participant_relations r ON r.org_id = p.org_id AND r.participant_id = p.id AND r.kind = 'self'
				WHERE p.org_id = $1 AND p.study_id = $2 AND NOT EXISTS (SELECT 1 FROM participant_deletions d
				  WHERE d.org_id = p.org_id AND d.participant_id = p.id)`, st.org, st.id)
			if err != nil {
				return err
			}
			type person struct {
				pseudonym, arm, account string
				enrolled                int64
			}
			var people []person
			for rows.Next() {
				var p person
				if err := rows.Scan(&p.pseudonym, &p.enrolled, &p.arm, &p.account); err != nil {
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
				for _, v := range schedule {
					if v.Day == nil || !v.For(p.arm) || time.UnixMicro(p.enrolled).AddDate(0, 0, *v.Day).After(now) {
						continue
					}
					for _, key := range v.Forms {
						if !survey[key] {
							continue
						}
						var started int
						if err := o.QueryRowContext(ctx, `SELECT count(*) FROM entries e JOIN visits vi ON vi.id = e.visit_id
							JOIN forms f ON f.id = e.form_id WHERE e.org_id = $1 AND e.participant_id = $2
							AND vi.visit_key = $3 AND f.form_key = $4`, st.org, p.pseudonym, v.Key, key).Scan(&started); err != nil {
							return err
						}
						if started > 0 {
							continue
						}
						queued, err := notify.Queue(ctx, o, p.account, st.org, notify.Form, p.pseudonym+"/"+v.Key+"/1/"+key)
						if err != nil {
							return err
						}
						if queued {
							n++
						}
					}
				}
			}
			if n == 0 {
				o.Nothing()
				return nil
			}
			o.Detail("forms_count", strconv.Itoa(n))
			queued += n
			return nil
		})
		if err != nil {
			return queued, err
		}
	}
	return queued, nil
}

package participants_test

import (
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// BenchmarkEnrolSealed enrols a participant with all five identity fields
// through the gate: a new participant key (wrapped by the KEK), five sealed
// values, the blind index, the identity row, the clinical row and the audit
// event, in both databases. It reports its time as a multiple ("x-plain")
// of the same gate request and the same two inserts with the values stored
// unsealed, measured in the same run on SQLite.
func BenchmarkEnrolSealed(b *testing.B) {
	f := setup(b, sqldb.SQLite)
	ctx := context.Background()
	id := ada()
	plainOnce := func() error {
		return f.g.Do(ctx, f.investigator, gate.OrgID(f.org.ID), "participant.enrol", func(t *gate.Tx) error {
			if err := t.Authorize(authz.ParticipantEnrol, authz.Resource{OrgID: f.org.ID, StudyID: f.study.ID, SiteID: f.north.ID}); err != nil {
				return err
			}
			it, err := t.Identity(ctx)
			if err != nil {
				return err
			}
			p := ids.New()
			if _, err := it.ExecContext(ctx, `INSERT INTO identities
				(participant_id, org_id, study_id, name, birth_date, email, phone, national_id, national_id_index, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
				p, f.org.ID, f.study.ID, []byte(id[participants.Name]), []byte(id[participants.BirthDate]), []byte(id[participants.Email]),
				[]byte(id[participants.Phone]), []byte(id[participants.NationalID]), p, sqldb.Now()); err != nil {
				return errs.Wrap(errs.Internal, err, "insert")
			}
			if _, err := t.ExecContext(ctx, `INSERT INTO participants (id, org_id, study_id, site_id, status, identity, created_at)
				VALUES ($1, $2, $3, $4, 'enrolled', 'recorded', $5)`, p, f.org.ID, f.study.ID, f.north.ID, sqldb.Now()); err != nil {
				return errs.Wrap(errs.Internal, err, "insert")
			}
			t.Participant(p)
			return nil
		})
	}
	n := 0
	for b.Loop() {
		n++
		id[participants.NationalID] = "BENCH-" + ids.New()
		if _, err := f.svc.Enrol(ctx, f.investigator, f.org.Slug, f.study.ID, f.north.ID, id); err != nil {
			b.Fatal(err)
		}
	}
	// The baseline: as many plain enrolments, timed the same way.
	start := time.Now()
	for range n {
		if err := plainOnce(); err != nil {
			b.Fatal(err)
		}
	}
	plain := float64(time.Since(start).Nanoseconds()) / float64(n)
	b.ReportMetric(plain, "plain-ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n)/plain, "x-plain")
}

package participants_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestCRY05_SealedIdentityMovedElsewhereFailsClosed copies sealed values
// behind the application's back, as a database administrator could: to
// another participant's row, to another field of the same row, and to a
// participant of another organization. None opens; the request fails as a
// whole, serves nothing, and is recorded as a failed security event.
func TestCRY05_SealedIdentityMovedElsewhereFailsClosed(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		grant := func(a, who string, orgSlug, studyID string) {
			t.Helper()
			by := f.admin
			if orgSlug == f.other.Slug {
				by = f.otherAdmin
			}
			if _, err := f.svc.Grant(ctx, f.confirmed(by), orgSlug, studyID, participants.GrantRequest{AccountID: a, Reason: "tamper test " + who}); err != nil {
				t.Fatal(err)
			}
		}
		grant(f.admin.AccountID, "own", f.org.Slug, f.study.ID)
		grant(f.otherAdmin.AccountID, "other", f.other.Slug, f.trial2.ID)
		victim := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Bertram Olvenhurst", participants.NationalID: "B-1"})

		move := func(t *testing.T, query string, args ...any) {
			t.Helper()
			res, err := f.identity.ExecContext(ctx, query, args...)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("%s changed %d rows", query, n)
			}
		}
		cases := []struct {
			name   string
			target participants.Participant
			tamper func(t *testing.T, target participants.Participant)
		}{
			{"another participant's value", f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Carla Wendmoor"}),
				func(t *testing.T, target participants.Participant) {
					move(t, `UPDATE identities SET name = (SELECT name FROM identities WHERE participant_id = $1) WHERE participant_id = $2`,
						victim.Pseudonym, target.Pseudonym)
				}},
			{"another field's value", f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Dorian Falkquist", participants.Email: "dorian@example.org"}),
				func(t *testing.T, target participants.Participant) {
					move(t, `UPDATE identities SET email = name WHERE participant_id = $1`, target.Pseudonym)
				}},
			{"another organization's value", f.enrol(t, f.otherAdmin, f.far, participants.Identity{participants.Name: "Elsbeth Ronnequist"}),
				func(t *testing.T, target participants.Participant) {
					move(t, `UPDATE identities SET name = (SELECT name FROM identities WHERE participant_id = $1) WHERE participant_id = $2`,
						victim.Pseudonym, target.Pseudonym)
				}},
			{"a flipped bit", f.enrol(t, f.investigator, f.north, participants.Identity{participants.NationalID: "F-22"}),
				func(t *testing.T, target participants.Participant) {
					var b []byte
					if err := f.identity.QueryRowContext(ctx, `SELECT national_id FROM identities WHERE participant_id = $1`, target.Pseudonym).Scan(&b); err != nil {
						t.Fatal(err)
					}
					b[len(b)-1] ^= 1
					move(t, `UPDATE identities SET national_id = $1 WHERE participant_id = $2`, b, target.Pseudonym)
				}},
		}
		for _, c := range cases {
			t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
				who := f.confirmed(f.admin)
				if c.target.OrgID == f.other.ID {
					who = f.confirmed(f.otherAdmin)
				}
				before, err := f.reveal(who, c.target)
				if err != nil || before.State != participants.IdentityRecorded {
					t.Fatalf("before tampering: %+v, %v", before, err)
				}
				c.tamper(t, c.target)
				rv, err := f.reveal(who, c.target)
				if !errs.Is(err, errs.Unavailable) || !strings.Contains(errs.SafeMessage(err), "integrity") {
					t.Fatalf("reveal after tampering: %+v, %v; want the integrity failure", rv, err)
				}
				if len(rv.Values) != 0 || strings.Contains(err.Error(), "Bertram") {
					t.Errorf("something was served: %+v, %v", rv, err)
				}
				evs := f.events(t, c.target.OrgID)
				last := evs[0]
				if last.Action != "identity.reveal" || last.Outcome != audit.Failure || !last.Security ||
					last.Details["error"] != "integrity" || last.ParticipantID != c.target.Pseudonym {
					t.Errorf("latest event %+v, want a failed security event of the reveal", last)
				}
			})
		}
		// The untouched victim still opens.
		if rv, err := f.reveal(f.confirmed(f.admin), victim); err != nil || rv.Values[participants.Name] != "Bertram Olvenhurst" {
			t.Errorf("the untouched participant: %+v, %v", rv, err)
		}
	})
}

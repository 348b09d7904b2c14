package participants_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// After a rotation of the data keys, every identity value is re-encrypted
// under its participant key's new version (ASVS V11.2.2, CRY-07), batch by
// batch from a cursor, and still opens to what was enrolled; a value that
// does not open is counted as failed and left as it is, never overwritten;
// a second pass changes nothing.
func TestCRY07_RotationReencryptsEveryIdentityValue(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		var enrolled []participants.Participant
		for i := range 5 {
			id := ada()
			id[participants.NationalID] = fmt.Sprintf("QX-771-903-%03d", i)
			enrolled = append(enrolled, f.enrol(t, f.investigator, f.north, id))
		}
		ring := f.g.IdentityKeys()
		for cursor := ""; ; {
			b, err := ring.RotateScopes(ctx, f.org.ID, time.Now().UnixMicro(), cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			if cursor = b.Cursor; b.Done {
				break
			}
		}
		versions := func() map[uint32]int {
			out := map[uint32]int{}
			rows, err := f.identity.QueryContext(ctx, `SELECT name, birth_date, email, phone, national_id FROM identities WHERE org_id = $1`, f.org.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var v [5][]byte
				if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4]); err != nil {
					t.Fatal(err)
				}
				for _, b := range v {
					_, ver, err := keys.KeyIDOf(b)
					if err != nil {
						t.Fatal(err)
					}
					out[ver]++
				}
			}
			return out
		}
		if v := versions(); v[1] != 25 || len(v) != 1 {
			t.Fatalf("before re-encryption the values are under versions %v, want 25 under 1", v)
		}
		// A damaged value of the third participant.
		third := enrolled[2].Pseudonym
		if _, err := f.identity.ExecContext(ctx, `UPDATE identities SET phone = email WHERE participant_id = $1`, third); err != nil {
			t.Fatal(err)
		}
		var damaged []byte
		f.identity.QueryRowContext(ctx, `SELECT phone FROM identities WHERE participant_id = $1`, third).Scan(&damaged)

		re := participants.Identities{Gate: f.g}
		var resealed, failed, visited int
		for cursor := ""; ; {
			b, err := re.Reseal(ctx, f.org.ID, cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			resealed, failed, visited = resealed+b.Rewrapped, failed+b.Failed, visited+b.Visited
			if cursor = b.Cursor; b.Done {
				break
			}
		}
		if visited != 5 || resealed != 24 || failed != 1 {
			t.Fatalf("re-encryption visited %d, re-sealed %d, failed %d; want 5, 24, 1", visited, resealed, failed)
		}
		if v := versions(); v[2] != 24 || v[1] != 1 {
			t.Fatalf("after re-encryption the values are under versions %v, want 24 under 2 and the damaged one under 1", v)
		}
		var still []byte
		f.identity.QueryRowContext(ctx, `SELECT phone FROM identities WHERE participant_id = $1`, third).Scan(&still)
		if string(still) != string(damaged) {
			t.Fatal("a value that does not open was overwritten")
		}
		for i, p := range enrolled {
			rv, err := f.reveal(f.confirmed(f.investigator), p)
			if i == 2 {
				if !errs.Is(err, errs.Unavailable) {
					t.Errorf("the damaged record reveals: %v", err)
				}
				continue
			}
			if err != nil || rv.Values[participants.Name] != ada()[participants.Name] || rv.Values[participants.Email] != ada()[participants.Email] {
				t.Fatalf("participant %d after re-encryption: %+v, %v", i, rv.Values, err)
			}
		}
		// Nothing left to do: a second pass changes nothing.
		b, err := re.Reseal(ctx, f.org.ID, "", 100)
		if err != nil || b.Rewrapped != 0 || b.Failed != 1 {
			t.Fatalf("a second pass: %+v, %v", b, err)
		}
		var events int
		f.clinical.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'identity.reseal' AND org_id = $1`, f.org.ID).Scan(&events)
		if events != 4 {
			t.Errorf("%d identity.reseal events, want one per batch", events)
		}
	})
}

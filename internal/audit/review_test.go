package audit

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// TestAUD01_EventTimesAreUTC proves ASVS V16.2.2 (timestamps of security
// events in UTC): with the process's local zone far from UTC, an event
// stamped now and an event given a time in another zone are stored, and
// read back by a search, in UTC: the stored JSON's time ends in Z, names
// the same instant, and the searched event's Time is in time.UTC.
func TestAUD01_EventTimesAreUTC(t *testing.T) {
	local := time.Local
	time.Local = time.FixedZone("UTC+09:30", 9*3600+1800)
	t.Cleanup(func() { time.Local = local })

	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		org := ids.New()
		given := time.Date(2026, 3, 29, 2, 30, 0, 0, time.FixedZone("UTC-05:00", -5*3600))
		now := sampleEvent(1)
		now.OrgID = org
		at := sampleEvent(2)
		at.OrgID, at.Time = org, given
		before := time.Now()
		stored := appendEach(t, db, now, at)
		for i, ev := range stored {
			if ev.Time.Location() != time.UTC {
				t.Errorf("event %d: Append returned a time in %s", i, ev.Time.Location())
			}
		}
		if !stored[1].Time.Equal(given) {
			t.Errorf("the given time %s was stored as %s: not the same instant", given, stored[1].Time)
		}
		if d := stored[0].Time.Sub(before); d < -time.Second || d > time.Minute {
			t.Errorf("the time stamped now is %s away from now: the zone shifted it", d)
		}
		rows, err := db.QueryContext(ctx, `SELECT body FROM audit_events WHERE org_id = $1`, org)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var body string
			if err := rows.Scan(&body); err != nil {
				t.Fatal(err)
			}
			var raw struct{ Time string }
			if err := json.Unmarshal([]byte(body), &raw); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(raw.Time, "Z") {
				t.Errorf("the stored event's time %q is not UTC (…Z)", raw.Time)
			}
			n++
		}
		rows.Close()
		if n != 2 {
			t.Fatalf("%d stored events, want 2", n)
		}
		found, _, err := Search(ctx, db, Filter{OrgID: org})
		if err != nil || len(found) != 2 {
			t.Fatalf("Search: %d events, %v", len(found), err)
		}
		for _, ev := range found {
			if ev.Time.Location() != time.UTC {
				t.Errorf("Search returned a time in %s", ev.Time.Location())
			}
		}
	})
}

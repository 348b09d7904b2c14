package keyadmin

import (
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// The listing of the keys page is List's audited read (key.list) with the
// organization and the accounts its requests name, and refuses whom List
// refuses.
func TestCRY08_ListingNamesTheRequestersAndApproversInTheSameRead(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := newFixture(t, d)
		now := time.Now()
		approved := f.create(t, f.admin1, Rotate, Params{DataKeys: true}, now.Add(-time.Hour))
		if err := f.approve(f.org, approved.ID, f.admin2, now.Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		pending := f.create(t, f.admin1, Rotate, Params{DataKeys: true}, now)
		svc := &Service{Gate: gate.New(gate.Config{Clinical: f.clinical}), Now: func() time.Time { return now }}
		admin := gate.Actor{AccountID: f.admin2, RemoteAddr: "192.0.2.1"}

		l, err := svc.Listing(ctx, admin, "lab")
		if err != nil {
			t.Fatal(err)
		}
		if l.Org.ID != f.org || l.Org.Slug != "lab" || len(l.Requests) != 2 || l.Requests[0].ID != pending.ID || l.Requests[1].ID != approved.ID {
			t.Fatalf("listing: %+v", l)
		}
		if len(l.People) != 2 || l.People[f.admin1].Email != "a1@lab.example" || l.People[f.admin2].Email != "a2@lab.example" {
			t.Errorf("people named: %+v, want the requester and the approver", l.People)
		}
		list, err := svc.List(ctx, admin, "lab")
		if err != nil || len(list) != 2 {
			t.Errorf("List: %d requests, %v", len(list), err)
		}
		for _, who := range []string{f.manager, f.otherAdmin} {
			if _, err := svc.Listing(ctx, gate.Actor{AccountID: who, RemoteAddr: "192.0.2.2"}, "lab"); !errs.Is(err, errs.NotFound) {
				t.Errorf("listing by %s: %v, want NotFound", who, err)
			}
		}
		evs, _, err := audit.Search(ctx, f.clinical, audit.Filter{OrgID: f.org, Action: "key.list", Limit: audit.MaxPage})
		if err != nil {
			t.Fatal(err)
		}
		count := map[audit.Outcome]int{}
		for _, ev := range evs {
			count[ev.Outcome]++
		}
		if count[audit.Success] != 2 || count[audit.Denied] != 2 {
			t.Errorf("key.list events: %v, want two successes and two denials", count)
		}
	})
}

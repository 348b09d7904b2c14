package sessions

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A person lists their own live sessions and signs one out; a session of
// another account is not found, as one that never existed, and stays
// (AUTH-10, ACL-08). Keep-alive moves the idle limit; time left counts
// from the last activity.
func TestAUTH10_OwnSessionsListedAndEndedOneByOne(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, c, acc := setup(t, d)
		ctx := context.Background()
		var other accounts.Account
		if err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			other, err = accounts.Create(ctx, tx, "o@x.example", "")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		tokA, _, _ := s.Create(ctx, acc, "192.0.2.1", "laptop")
		_, phone, _ := s.Create(ctx, acc, "192.0.2.2", "phone")
		_, theirs, _ := s.Create(ctx, other.ID, "192.0.2.3", "theirs")
		me, err := s.Lookup(ctx, tokA)
		if err != nil {
			t.Fatal(err)
		}
		list, err := s.Devices(ctx, me)
		if err != nil || len(list) != 2 {
			t.Fatalf("devices: %+v, %v", list, err)
		}
		for _, dv := range list {
			if dv.Current != (dv.ID == me.ID) || dv.ID == theirs.ID {
				t.Errorf("device %+v", dv)
			}
		}
		for _, id := range []string{theirs.ID, ids.New(), "not-an-id"} {
			if err := s.EndDevice(ctx, me, id, "192.0.2.1", "laptop"); !errs.Is(err, errs.NotFound) {
				t.Errorf("end %s: %v, want not found", id, err)
			}
		}
		if list, _ := s.Devices(ctx, Session{ID: theirs.ID, AccountID: other.ID}); len(list) != 1 {
			t.Error("a refused end ended the other account's session")
		}
		if err := s.EndDevice(ctx, me, phone.ID, "192.0.2.1", "laptop"); err != nil {
			t.Fatal(err)
		}
		if list, _ := s.Devices(ctx, me); len(list) != 1 || !list[0].Current {
			t.Errorf("after ending the phone: %+v", list)
		}

		c.t = c.t.Add(10 * time.Minute)
		if left, _ := s.TimeLeft(ctx, me); left != 10*time.Minute {
			t.Errorf("time left after 10 idle minutes: %v", left)
		}
		if left, err := s.KeepAlive(ctx, me); err != nil || left != 20*time.Minute {
			t.Errorf("keep-alive: %v, %v", left, err)
		}
		c.t = c.t.Add(15 * time.Minute) // 25 minutes after sign-in, 15 after keep-alive
		if _, err := s.Lookup(ctx, tokA); err != nil {
			t.Errorf("session ended despite keep-alive: %v", err)
		}
		if err := s.SignOutEverywhere(ctx, me, "192.0.2.1", "laptop"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(ctx, tokA); err == nil {
			t.Error("session lives after signing out everywhere")
		}
		if _, err := s.KeepAlive(ctx, me); err == nil {
			t.Error("keep-alive revived an ended session")
		}
	})
}

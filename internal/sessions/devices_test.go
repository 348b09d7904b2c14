package sessions

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A person lists their own live sessions and signs one out; a session of
// another account is not found, as one that never existed, and stays
// (AUTH-10, ACL-08). Keep-alive moves the idle limit; time left counts
// from the last activity.
func TestAUTH10_OwnSessionsListedAndEndedOneByOne(t *testing.T) {
	t.Parallel()
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
		// 25 minutes after its confirmation, the session must confirm its
		// owner again before it ends them all (ASVS V7.5.2).
		if err := s.SignOutEverywhere(ctx, me, "192.0.2.1", "laptop"); !errors.Is(err, gate.ErrStepUpRequired) {
			t.Fatalf("sign out everywhere with a stale confirmation: %v, want ErrStepUpRequired", err)
		}
		if _, err := s.Lookup(ctx, tokA); err != nil {
			t.Fatalf("the refused sign-out ended the session: %v", err)
		}
		me.ConfirmedAt = c.t // confirmed just now (Confirm, tested on its own)
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

// Ending another of one's sessions needs a confirmation within the step-up
// window (ASVS V7.5.2), recorded as denied when missing; signing this very
// session out needs none.
func TestAUTH10_EndingAnotherSessionNeedsAFreshConfirmation(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		s, c, acc := setup(t, d)
		ctx := context.Background()
		_, me, err := s.Create(ctx, acc, "192.0.2.1", "laptop")
		if err != nil {
			t.Fatal(err)
		}
		phoneToken, phone, err := s.Create(ctx, acc, "192.0.2.2", "phone")
		if err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(gate.StepUpWindow + time.Second)
		if _, err := s.Lookup(ctx, phoneToken); err != nil {
			t.Fatal(err)
		}
		me.ConfirmedAt = c.t.Add(-gate.StepUpWindow - time.Second)
		if err := s.EndDevice(ctx, me, phone.ID, "192.0.2.1", "laptop"); !errors.Is(err, gate.ErrStepUpRequired) {
			t.Fatalf("ending the phone with a stale confirmation: %v, want ErrStepUpRequired", err)
		}
		if _, err := s.Lookup(ctx, phoneToken); err != nil {
			t.Errorf("the refused end ended the phone's session: %v", err)
		}
		var denied int
		s.DB.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'auth.session.end' AND outcome = 'denied'`).Scan(&denied)
		if denied != 1 {
			t.Errorf("%d denied auth.session.end events, want 1", denied)
		}
		if err := s.EndDevice(ctx, me, me.ID, "192.0.2.1", "laptop"); err != nil {
			t.Errorf("signing this session out: %v, want no confirmation asked", err)
		}
	})
}

package gate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// holdLane leaves f's gate one lane and holds it with a write until
// release is called; writeDone then answers the write.
func holdLane(f fixture) (release func(), writeDone <-chan error) {
	ctx := context.Background()
	gate.OneLane(f.g)
	holding, released := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- f.g.Do(ctx, f.admin, gate.Slug(f.org.Slug), "study.create",
			func(t *gate.Tx) error {
				close(holding)
				<-released
				return createStudy(f, "Held", func() error { return nil })(ctx, t)
			})
	}()
	<-holding
	return func() { close(released) }, done
}

// readSite is work for Read that reads the site id as investigator.
func readSite(f fixture, id string, got *orgs.Site) func(t *gate.Tx) error {
	return func(t *gate.Tx) error {
		t.Object("site", id)
		if err := t.Authorize(authz.SiteRead, authz.Resource{OrgID: f.org.ID, StudyID: f.study.ID, SiteID: id}); err != nil {
			return err
		}
		s, err := orgs.SiteByID(context.Background(), t, f.org.ID, id)
		*got = s
		return err
	}
}

// A read through Read is the same door as Do: allowed, it answers with its
// event on the trail; refused or missing, it answers not found with the
// attempt on the trail; and it cannot query before it asks.
func TestAUD01_ReadsThroughTheReadDoorAreAudited(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		var got orgs.Site
		if err := f.g.Read(ctx, f.investigator, gate.OrgID(f.org.ID), "site.read", readSite(f, f.north.ID, &got)); err != nil || got.ID != f.north.ID {
			t.Fatalf("read of own site: %+v, %v", got, err)
		}
		errOther := f.g.Read(ctx, f.investigator, gate.Slug(f.org.Slug), "site.read", readSite(f, f.south.ID, &got))
		errMissing := f.g.Read(ctx, f.admin, gate.Slug(f.org.Slug), "site.read", readSite(f, "aaaaaaaaaaaaaaaaaaaaaaaaaa", &got))
		if !errs.Is(errOther, errs.NotFound) || !errs.Is(errMissing, errs.NotFound) || errOther.Error() != errMissing.Error() {
			t.Errorf("other site: %v; missing site: %v; want the same not found", errOther, errMissing)
		}
		early := f.g.Read(ctx, f.admin, gate.Slug(f.org.Slug), "site.read", func(t *gate.Tx) error {
			_, err := orgs.SiteByID(ctx, t, f.org.ID, f.north.ID)
			return err
		})
		if early == nil || errs.KindOf(early) != errs.Internal {
			t.Errorf("a query before authorizing answered %v, want an internal error", early)
		}

		want := []struct {
			actor   string
			outcome audit.Outcome
			site    string
		}{
			{f.admin.AccountID, audit.Failure, "*"}, // the missing site, newest first
			{f.investigator.AccountID, audit.Denied, f.south.ID},
			{f.investigator.AccountID, audit.Success, f.north.ID},
		}
		evs := events(t, f)
		if len(evs) != len(want) {
			t.Fatalf("events = %+v, want %d (none for the misuse)", evs, len(want))
		}
		for i, w := range want {
			ev := evs[i]
			if ev.Action != "site.read" || ev.ActorAccount != w.actor || ev.Outcome != w.outcome || (w.site != "*" && ev.SiteID != w.site) {
				t.Errorf("event %d = %+v, want %s by %s on site %q", i, ev, w.outcome, w.actor, w.site)
			}
		}
	})
}

// Work run by Read cannot write: its snapshot refuses, and nothing of it
// is stored.
func TestReadWorkCannotWrite(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		err := f.g.Read(ctx, f.admin, gate.Slug(f.org.Slug), "study.create", func(t *gate.Tx) error {
			if err := t.Authorize(authz.StudyCreate, authz.Resource{OrgID: f.org.ID}); err != nil {
				return err
			}
			_, err := orgs.CreateStudy(ctx, t, f.org.ID, orgs.KindStudy, "Written in a read")
			return err
		})
		if err == nil {
			t.Fatal("work that writes succeeded through Read")
		}
		if visible(ctx, f, "Written in a read") {
			t.Error("the study written through Read is stored")
		}
	})
}

// Reads do not wait for the lane: while a batch holds its turn, a read's
// work runs to its end; its answer still waits for the commit of the batch
// that holds its event.
func TestReadsRunBesideTheBatchAndAnswerAfterTheirEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		release, writeDone := holdLane(f)

		worked, answered := make(chan struct{}), make(chan error, 1)
		var got orgs.Site
		go func() {
			answered <- f.g.Read(ctx, f.investigator, gate.Slug(f.org.Slug), "site.read", func(t *gate.Tx) error {
				err := readSite(f, f.north.ID, &got)(t)
				close(worked)
				return err
			})
		}()
		select {
		case <-worked:
		case <-time.After(10 * time.Second):
			t.Fatal("the read's work waited for the batch holding the lane")
		}
		waitQueued(t, f.g, 1) // its event waits for the turn
		select {
		case err := <-answered:
			t.Fatalf("the read answered (%v) before its event could be committed", err)
		case <-time.After(50 * time.Millisecond):
		}
		release()
		if err := <-writeDone; err != nil {
			t.Fatal(err)
		}
		if err := <-answered; err != nil || got.ID != f.north.ID {
			t.Fatalf("read: %+v, %v", got, err)
		}
		reads := 0
		for _, ev := range events(t, f) {
			if ev.Action == "site.read" && ev.Outcome == audit.Success {
				reads++
			}
		}
		if reads != 1 {
			t.Errorf("%d events of the read, want one", reads)
		}
	})
}

// The events of reads that wait for a turn together are written together,
// in one request's turn, and every read answers once they are committed.
func TestAUD01_ReadsWaitingTogetherAreRecordedTogether(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		release, writeDone := holdLane(f)
		const reads = 5
		answered := make(chan error, reads)
		for range reads {
			go func() {
				var got orgs.Site
				answered <- f.g.Read(ctx, f.investigator, gate.Slug(f.org.Slug), "site.read", readSite(f, f.north.ID, &got))
			}()
		}
		waitQueued(t, f.g, reads)
		before := gate.ReadWrites(f.g)
		release()
		if err := <-writeDone; err != nil {
			t.Fatal(err)
		}
		for range reads {
			if err := <-answered; err != nil {
				t.Errorf("read: %v", err)
			}
		}
		if n := gate.ReadWrites(f.g) - before; n != 1 {
			t.Errorf("the events of %d reads waiting together took %d writes, want 1", reads, n)
		}
		recorded := 0
		for _, ev := range events(t, f) {
			if ev.Action == "site.read" && ev.Outcome == audit.Success {
				recorded++
			}
		}
		if recorded != reads {
			t.Errorf("%d reads on the trail, want %d", recorded, reads)
		}
	})
}

// A read whose event cannot be written answers nothing.
func TestReadWithoutItsEventAnswersNothing(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	if _, err := f.db.ExecContext(ctx, `CREATE TRIGGER refuse_events BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'no events'); END`); err != nil {
		t.Fatal(err)
	}
	var got orgs.Site
	err := f.g.Read(ctx, f.investigator, gate.Slug(f.org.Slug), "site.read", readSite(f, f.north.ID, &got))
	if !errs.Is(err, errs.Unavailable) {
		t.Fatalf("read without its event answered %v, want unavailable", err)
	}
	if errors.Is(err, gate.ErrDenied) {
		t.Errorf("answered as denied: %v", err)
	}
}

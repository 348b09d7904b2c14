package participants_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// sealedName reads a participant's sealed name straight from the identity
// database, as a copy of it would hold it.
func sealedName(t *testing.T, f *fixture, p participants.Participant) []byte {
	t.Helper()
	var b []byte
	if err := f.identity.QueryRowContext(context.Background(), `SELECT name FROM identities WHERE participant_id = $1`, p.Pseudonym).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

func nameAt(p participants.Participant) keys.Context {
	return keys.Context{OrgID: p.OrgID, StudyID: p.StudyID, RecordID: p.Pseudonym, Field: "identity.name"}
}

func TestLIFE03_ErasureDestroysTheParticipantKey(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.enrol(t, f.investigator, f.north, ada())
		keep := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Gustav Ellerby"})
		old := sealedName(t, f, p)
		if pt, err := keys.Open(ctx, f.g.IdentityKeys(), old, nameAt(p)); err != nil || string(pt) != "Adelheid Quorvanne" {
			t.Fatalf("before erasure the sealed name opens: %q, %v", pt, err)
		}

		// Refused without a fresh confirmation, and then nothing changes.
		if _, err := f.svc.Erase(ctx, f.admin, f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym); !errs.Is(err, errs.StepUpRequired) {
			t.Fatalf("erase without step-up: %v", err)
		}
		if rv, err := f.reveal(f.confirmed(f.investigator), p); err != nil || rv.State != participants.IdentityRecorded {
			t.Fatalf("after the refused erasure: %+v, %v", rv, err)
		}

		erased, err := f.svc.Erase(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym)
		if err != nil || erased.Identity != participants.IdentityErased || erased.ErasedAt.IsZero() {
			t.Fatalf("erase: %+v, %v", erased, err)
		}
		// The identity answers "erased"; the pseudonymous record remains.
		rv, err := f.reveal(f.confirmed(f.investigator), p)
		if err != nil || rv.State != participants.IdentityErased || len(rv.Values) != 0 {
			t.Errorf("reveal after erasure: %+v, %v", rv, err)
		}
		got, err := f.svc.Get(ctx, f.dataManager, f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym)
		if err != nil || got.Identity != participants.IdentityErased || got.Status != "enrolled" {
			t.Errorf("pseudonymous record after erasure: %+v, %v", got, err)
		}
		// The key is gone from the identity database, and with it every
		// copy of the sealed values this database can be asked about.
		if n := count(t, f.identity, `SELECT count(*) FROM data_keys WHERE scope_kind = 'participant' AND scope_id = $1 AND (wrapped IS NOT NULL OR destroyed_at IS NULL)`, p.Pseudonym); n != 0 {
			t.Errorf("%d live key versions of the erased participant", n)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM identities WHERE participant_id = $1`, p.Pseudonym); n != 0 {
			t.Errorf("%d identity rows of the erased participant", n)
		}
		if _, err := keys.Open(ctx, f.g.IdentityKeys(), old, nameAt(p)); !errors.Is(err, keys.ErrKeyDestroyed) {
			t.Errorf("a sealed name kept from before the erasure: %v, want ErrKeyDestroyed", err)
		}
		fresh := &keys.Keyring{DB: f.identity, KEK: f.kek} // another node, empty cache
		if _, err := keys.Open(ctx, fresh, old, nameAt(p)); !errors.Is(err, keys.ErrKeyDestroyed) {
			t.Errorf("on another node: %v, want ErrKeyDestroyed", err)
		}
		// Others keep theirs.
		if rv, err := f.reveal(f.confirmed(f.investigator), keep); err != nil || rv.Values[participants.Name] != "Gustav Ellerby" {
			t.Errorf("another participant after the erasure: %+v, %v", rv, err)
		}
		// Erasing again repeats the destruction and succeeds.
		if again, err := f.svc.Erase(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym); err != nil || !again.ErasedAt.Equal(erased.ErasedAt) {
			t.Errorf("erase again: %+v, %v", again, err)
		}
		// One audited step: a security event naming the participant.
		var events int
		for _, ev := range f.events(t, f.org.ID) {
			if ev.Action == "identity.erase" && ev.Outcome == audit.Success {
				events++
				if !ev.Security || ev.ParticipantID != p.Pseudonym || ev.ActorAccount != f.admin.AccountID || ev.Details["destroyed_key_kind"] != "participant" {
					t.Errorf("erase event %+v", ev)
				}
			}
		}
		if events != 2 {
			t.Errorf("%d erase events, want 2", events)
		}
	})
}

// TestLIFE03_InterruptedEnrolmentAndErasureAreSwept builds the states a
// crash between the identity and the clinical commit leaves, and shows that
// neither serves identity data and that the sweep shreds both, leaving
// young data (a possibly running enrolment) and consistent data alone.
func TestLIFE03_InterruptedEnrolmentAndErasureAreSwept(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		orphan := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Hannelore Orphanidis"})
		halfErased := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Ingmar Halvorsen"})
		kept := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Jorinde Keppler"})
		// The enrolment whose clinical commit never happened; the erasure
		// whose key destruction never happened.
		if _, err := f.clinical.ExecContext(ctx, `DELETE FROM participants WHERE id = $1`, orphan.Pseudonym); err != nil {
			t.Fatal(err)
		}
		if _, err := f.clinical.ExecContext(ctx, `UPDATE participants SET identity = 'erased', erased_at = $1 WHERE id = $2`, sqldb.Now(), halfErased.Pseudonym); err != nil {
			t.Fatal(err)
		}
		if _, err := f.reveal(f.confirmed(f.admin), orphan); !errs.Is(err, errs.NotFound) {
			t.Errorf("the orphan: %v, want not found", err)
		}
		if rv, err := f.reveal(f.confirmed(f.admin), halfErased); err != nil || rv.State != participants.IdentityErased || len(rv.Values) != 0 {
			t.Errorf("the half-erased participant: %+v, %v, want erased", rv, err)
		}

		if n, err := f.svc.Sweep(ctx); err != nil || n != 0 {
			t.Errorf("sweep within the grace period: %d, %v; want nothing", n, err)
		}
		f.clock.t = f.clock.t.Add(participants.SweepGrace + time.Minute)
		if n, err := f.svc.Sweep(ctx); err != nil || n != 2 {
			t.Fatalf("sweep: %d, %v; want 2", n, err)
		}
		for _, p := range []participants.Participant{orphan, halfErased} {
			if n := count(t, f.identity, `SELECT count(*) FROM identities WHERE participant_id = $1`, p.Pseudonym); n != 0 {
				t.Errorf("identity row of %s survived the sweep", p.Pseudonym)
			}
			if n := count(t, f.identity, `SELECT count(*) FROM data_keys WHERE scope_id = $1 AND destroyed_at IS NULL`, p.Pseudonym); n != 0 {
				t.Errorf("key of %s survived the sweep", p.Pseudonym)
			}
		}
		if rv, err := f.reveal(f.confirmed(f.admin), kept); err != nil || rv.Values[participants.Name] != "Jorinde Keppler" {
			t.Errorf("the consistent participant after the sweep: %+v, %v", rv, err)
		}
		var swept int
		for _, ev := range f.events(t, f.org.ID) {
			if ev.Action == "identity.sweep" && ev.Security {
				swept++
			}
		}
		if swept != 2 {
			t.Errorf("%d sweep events, want 2", swept)
		}
		if n, err := f.svc.Sweep(ctx); err != nil || n != 0 {
			t.Errorf("second sweep: %d, %v; want nothing", n, err)
		}
	})
}

// TestCRY09_IdentityDataCommitOnlyWithTheirEvent makes the audit insert
// fail during an enrolment and an erasure: the identity database keeps
// nothing of the enrolment, and the erasure destroys nothing.
func TestCRY09_IdentityDataCommitOnlyWithTheirEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Kasimir Trell"})
		var inject []string
		switch d {
		case sqldb.SQLite:
			inject = []string{`CREATE TRIGGER inject_failure BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected'); END`}
		case sqldb.Postgres:
			inject = []string{
				`CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$`,
				`CREATE TRIGGER inject_failure BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION inject_failure()`,
			}
		}
		for _, s := range inject {
			if _, err := f.clinical.ExecContext(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		identities := count(t, f.identity, `SELECT count(*) FROM identities`)
		keyRows := count(t, f.identity, `SELECT count(*) FROM data_keys`)
		if _, err := f.svc.Enrol(ctx, f.investigator, f.org.Slug, f.study.ID, f.north.ID, ada()); !errs.Is(err, errs.Unavailable) {
			t.Errorf("enrol without audit: %v, want Unavailable", err)
		}
		if _, err := f.svc.Erase(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym); !errs.Is(err, errs.Unavailable) {
			t.Errorf("erase without audit: %v, want Unavailable", err)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM identities`); n != identities {
			t.Errorf("identity rows %d → %d", identities, n)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM data_keys WHERE destroyed_at IS NULL`); n != keyRows {
			t.Errorf("live identity keys %d → %d", keyRows, n)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM participants WHERE identity <> 'recorded'`); n != 0 {
			t.Errorf("%d participants changed", n)
		}
	})
}

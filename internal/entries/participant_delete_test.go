package entries_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// deletion is the fixture with an identity database: participants enrolled
// with identity data, their entries and files, and a clock to move.
type deletion struct {
	*fixture
	identity *sqldb.DB
	ring     *keys.Keyring
	people   *participants.Service
	data     *entries.Service
	now      time.Time
}

func withIdentity(t *testing.T, d sqldb.Dialect) *deletion {
	t.Helper()
	f := setup(t, d)
	x := &deletion{fixture: f, identity: sqldbtest.Open(t, d, sqldb.Identity), now: time.Now()}
	x.ring = &keys.Keyring{DB: x.identity, KEK: f.kek}
	g := gate.New(gate.Config{Clinical: f.db, Keys: &keys.Keyring{DB: f.db, KEK: f.kek}, Identity: x.identity, IdentityKeys: x.ring})
	clock := func() time.Time { return x.now }
	x.people = &participants.Service{Gate: g, Now: clock}
	x.data = &entries.Service{Gate: g, Now: clock}
	return x
}

func fresh(a gate.Actor) gate.Actor {
	a.ConfirmedAt = time.Now()
	return a
}

func denied(err error) bool {
	return errors.Is(err, gate.ErrDenied) || errs.KindOf(err) == errs.NotFound
}

// setRetention sets the organization's retention of deleted data, in days.
func (x *deletion) setRetention(t *testing.T, days int) {
	t.Helper()
	err := x.db.InTx(context.Background(), func(tx *sql.Tx) error {
		p := policy.Default()
		p.DeletionRetentionDays = days
		_, err := policy.Set(context.Background(), tx, x.org.ID, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLIFE01_ADeletedParticipantIsHiddenRestorableThenPurged deletes a
// participant with identity data, an entry and a file: only an
// organization admin, confirmed, with a reason, and not from another
// organization; the participant is then hidden from gets, lists, grids and
// exports and locked against saves, uploads and a second deletion. A data
// manager, an investigator and another organization's admin may not
// restore; the admin restores everything. Deleted again under an
// organization retention of 7 days, they are past restoring after 8 days;
// a purge that stops between its two steps (the entries' step fails) has
// erased the identity (the key destroyed, the sealed value unreadable) and
// left the participant hidden; the next purge erases entries, files and
// record, down to the SQL rows, and leaves the other participant alone.
func TestLIFE01_ADeletedParticipantIsHiddenRestorableThenPurged(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		x := withIdentity(t, d)
		p, err := x.people.Enrol(ctx, x.investigator, "clinic", x.study.ID, x.north.ID,
			participants.Identity{participants.Name: "Philippa Quenneville"})
		if err != nil {
			t.Fatal(err)
		}
		at := entries.Place{StudyID: x.study.ID, SiteID: x.north.ID, Participant: p.Pseudonym, Visit: "baseline", Repeat: 1, Form: "vitals"}
		if _, err := x.data.Save(ctx, x.investigator, "clinic", at, good()); err != nil {
			t.Fatal(err)
		}
		file, err := x.data.Upload(ctx, x.investigator, "clinic", at, "scan.pdf", bytes.NewReader([]byte("%PDF-1.7 scan")))
		if err != nil {
			t.Fatal(err)
		}
		// The other participant, with an entry of their own.
		other := x.at("baseline", 1, "vitals")
		kept := good()
		kept.Values["weight"] = "88.8"
		if _, err := x.data.Save(ctx, x.investigator, "clinic", other, kept); err != nil {
			t.Fatal(err)
		}
		var sealed []byte
		if err := x.identity.QueryRowContext(ctx, `SELECT name FROM identities WHERE participant_id = $1`, p.Pseudonym).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		del := func(a gate.Actor, slug, reason string) error {
			return x.people.Delete(ctx, a, slug, x.study.ID, x.north.ID, p.Pseudonym, reason)
		}
		restore := func(a gate.Actor, slug string) (participants.Participant, error) {
			return x.people.Restore(ctx, a, slug, x.study.ID, x.north.ID, p.Pseudonym)
		}

		// Who may delete, and how.
		if err := del(x.admin, "clinic", "enrolled twice"); !errs.Is(err, errs.StepUpRequired) {
			t.Errorf("a deletion without a fresh confirmation: %v", err)
		}
		if err := del(fresh(x.admin), "clinic", "  "); errs.KindOf(err) != errs.Invalid {
			t.Errorf("a deletion without a reason: %v", err)
		}
		if err := del(fresh(x.investigator), "clinic", "enrolled twice"); errs.KindOf(err) != errs.Forbidden {
			t.Errorf("an investigator deletes: %v", err)
		}
		if err := del(fresh(x.southInvestigator), "clinic", "enrolled twice"); !denied(err) {
			t.Errorf("an investigator of another site deletes: %v", err)
		}
		for _, slug := range []string{"clinic", "other"} {
			if err := del(fresh(x.otherAdmin), slug, "enrolled twice"); !denied(err) {
				t.Errorf("another organization's admin deletes (as %s): %v", slug, err)
			}
		}
		if err := del(fresh(x.admin), "clinic", "enrolled twice"); err != nil {
			t.Fatal(err)
		}

		// Hidden and locked.
		if _, err := x.people.Get(ctx, x.dataManager, "clinic", x.study.ID, x.north.ID, p.Pseudonym); !denied(err) {
			t.Errorf("get a deleted participant: %v", err)
		}
		list, err := x.people.List(ctx, x.admin, "clinic", x.study.ID, x.north.ID, "", 0)
		if err != nil || len(list) != 1 || list[0].Pseudonym != x.p {
			t.Errorf("the list holds %+v, %v; want the other participant only", list, err)
		}
		if _, err := x.data.Grid(ctx, x.admin, "clinic", x.study.ID, x.north.ID, p.Pseudonym); !denied(err) {
			t.Errorf("the grid of a deleted participant: %v", err)
		}
		if _, err := x.data.Get(ctx, x.admin, "clinic", at); !denied(err) {
			t.Errorf("an entry of a deleted participant: %v", err)
		}
		again := good()
		again.Revision, again.Reason = 1, "correction"
		if _, err := x.data.Save(ctx, x.investigator, "clinic", at, again); !denied(err) {
			t.Errorf("a save for a deleted participant: %v", err)
		}
		if _, err := x.data.Upload(ctx, x.investigator, "clinic", at, "more.pdf", bytes.NewReader([]byte("%PDF-1.7 more"))); !denied(err) {
			t.Errorf("an upload for a deleted participant: %v", err)
		}
		if _, _, err := x.data.Download(ctx, x.admin, "clinic", at, file.ID); !denied(err) {
			t.Errorf("a file of a deleted participant: %v", err)
		}
		if err := del(fresh(x.admin), "clinic", "twice"); !denied(err) {
			t.Errorf("a second deletion: %v", err)
		}
		for _, format := range []string{entries.FormatCSV, entries.FormatREDCap, entries.FormatODM} {
			b, err := export(t, x.fixture, x.admin, format)
			if err != nil || bytes.Contains(b, []byte(p.Pseudonym)) || !bytes.Contains(b, []byte("88.8")) {
				t.Errorf("the %s export holds the deleted participant, or not the other (%v):\n%s", format, err, b)
			}
		}

		// Restored by an organization admin only.
		if _, err := restore(x.dataManager, "clinic"); errs.KindOf(err) != errs.Forbidden {
			t.Errorf("a data manager restores: %v", err)
		}
		if _, err := restore(x.investigator, "clinic"); errs.KindOf(err) != errs.Forbidden {
			t.Errorf("an investigator restores: %v", err)
		}
		if _, err := restore(x.southInvestigator, "clinic"); !denied(err) {
			t.Errorf("an investigator of another site restores: %v", err)
		}
		for _, slug := range []string{"clinic", "other"} {
			if _, err := restore(x.otherAdmin, slug); !denied(err) {
				t.Errorf("another organization's admin restores (as %s): %v", slug, err)
			}
		}
		back, err := restore(x.admin, "clinic")
		if err != nil || back.Pseudonym != p.Pseudonym || back.Identity != participants.IdentityRecorded {
			t.Fatalf("restored: %+v, %v", back, err)
		}
		if e, err := x.data.Get(ctx, x.dataManager, "clinic", at); err != nil || e.Values["weight"] != "71.3" {
			t.Errorf("the restored participant's entry: %+v, %v", e, err)
		}
		if _, err := restore(x.admin, "clinic"); !denied(err) {
			t.Errorf("restoring a participant not deleted: %v", err)
		}

		// The organization keeps deleted data 7 days: after 8 days, past
		// restoring (with the default 30 it would not be).
		x.setRetention(t, 7)
		if err := del(fresh(x.admin), "clinic", "withdrew consent to the use of their data"); err != nil {
			t.Fatal(err)
		}
		if n, err := x.data.PurgeParticipants(ctx); err != nil || n != 0 {
			t.Fatalf("a purge within the period: %d, %v", n, err)
		}
		x.now = x.now.Add(8 * 24 * time.Hour)
		if _, err := restore(x.admin, "clinic"); !denied(err) {
			t.Errorf("a restore past the organization's period: %v", err)
		}

		// A purge that stops after its first step: the identity is erased,
		// the participant still hidden, the entries still there.
		boom := errors.New("the server stopped")
		if _, err := x.people.Purge(ctx, func(context.Context, sqldb.Querier, string, string) (string, error) {
			return "", boom
		}); !errors.Is(err, boom) {
			t.Fatalf("the interrupted purge: %v", err)
		}
		if n := count(t, x.identity, `SELECT count(*) FROM identities WHERE participant_id = $1`, p.Pseudonym); n != 0 {
			t.Errorf("%d identity rows after the purge's first step", n)
		}
		if _, err := keys.Open(ctx, &keys.Keyring{DB: x.identity, KEK: x.kek}, sealed,
			keys.Context{OrgID: x.org.ID, StudyID: x.study.ID, RecordID: p.Pseudonym, Field: "identity.name"}); !errors.Is(err, keys.ErrKeyDestroyed) {
			t.Errorf("a copy of the sealed name after the purge's first step: %v, want ErrKeyDestroyed", err)
		}
		if n := count(t, x.db, `SELECT count(*) FROM entries WHERE participant_id = $1`, p.Pseudonym); n != 1 {
			t.Errorf("%d entries after the interrupted purge, want 1 (the step was rolled back)", n)
		}
		if _, err := x.people.Get(ctx, x.admin, "clinic", x.study.ID, x.north.ID, p.Pseudonym); !denied(err) {
			t.Errorf("the half-purged participant: %v", err)
		}

		// The next purge completes it, down to the rows.
		if n, err := x.data.PurgeParticipants(ctx); err != nil || n != 1 {
			t.Fatalf("the purge: %d, %v", n, err)
		}
		for _, q := range []string{
			`SELECT count(*) FROM participants WHERE id = $1`,
			`SELECT count(*) FROM participant_deletions WHERE participant_id = $1`,
			`SELECT count(*) FROM participant_relations WHERE participant_id = $1`,
			`SELECT count(*) FROM entries WHERE participant_id = $1`,
			`SELECT count(*) FROM files WHERE participant_id = $1`,
			`SELECT count(*) FROM entry_values WHERE entry_id NOT IN (SELECT id FROM entries)`,
			`SELECT count(*) FROM entry_revisions WHERE entry_id NOT IN (SELECT id FROM entries)`,
			`SELECT count(*) FROM entry_changes WHERE entry_id NOT IN (SELECT id FROM entries)`,
		} {
			args := []any{}
			if bytes.Contains([]byte(q), []byte("$1")) {
				args = append(args, p.Pseudonym)
			}
			if n := count(t, x.db, q, args...); n != 0 {
				t.Errorf("%s: %d rows left", q, n)
			}
		}
		if n := count(t, x.identity, `SELECT count(*) FROM data_keys WHERE scope_kind = 'participant' AND scope_id = $1 AND (wrapped IS NOT NULL OR destroyed_at IS NULL)`, p.Pseudonym); n != 0 {
			t.Errorf("%d live key versions of the purged participant", n)
		}
		if e, err := x.data.Get(ctx, x.dataManager, "clinic", other); err != nil || e.Values["weight"] != "88.8" {
			t.Errorf("the other participant's entry after the purge: %+v, %v", e, err)
		}
		if n, err := x.data.PurgeParticipants(ctx); err != nil || n != 0 {
			t.Errorf("a second purge: %d, %v", n, err)
		}
		// The purge: its identity step, then its data step in the run that
		// completed it, whose identity step found nothing left to do and
		// recorded nothing.
		for action, want := range map[string]int{"participant.delete": 2, "participant.restore": 1, "participant.purge": 2} {
			if n := count(t, x.db, `SELECT count(*) FROM audit_events WHERE action = $1 AND outcome = 'success' AND participant_id = $2`, action, p.Pseudonym); n != want {
				t.Errorf("%d %s events, want %d", n, action, want)
			}
		}
	})
}

// TestLIFE01_RetentionIsTheOrganizations sets an organization's retention
// of deleted data within its bounds (1 to 365 days, 30 by default): a
// deleted entry is purged after the organization's period, not before.
func TestLIFE01_RetentionIsTheOrganizations(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		x := withIdentity(t, d)
		if got := policy.Default().DeletionRetentionDays; got != 30 {
			t.Errorf("the default retention: %d days, want 30", got)
		}
		for _, days := range []int{0, 366, -1} {
			p := policy.Default()
			p.DeletionRetentionDays = days
			if err := p.Validate(); errs.KindOf(err) != errs.Invalid {
				t.Errorf("a retention of %d days: %v", days, err)
			}
		}
		x.setRetention(t, 1)
		baseline := x.at("baseline", 1, "vitals")
		if _, err := x.data.Save(ctx, x.investigator, "clinic", baseline, good()); err != nil {
			t.Fatal(err)
		}
		if err := x.data.Delete(ctx, x.investigator, "clinic", baseline, "wrong participant"); err != nil {
			t.Fatal(err)
		}
		x.now = x.now.Add(23 * time.Hour)
		if n, err := x.data.Purge(ctx); err != nil || n != 0 {
			t.Fatalf("a purge within the day: %d, %v", n, err)
		}
		x.now = x.now.Add(2 * time.Hour)
		if _, err := x.data.Restore(ctx, x.admin, "clinic", baseline); !denied(err) {
			t.Errorf("a restore past the organization's day: %v", err)
		}
		if n, err := x.data.Purge(ctx); err != nil || n != 1 {
			t.Errorf("the purge after the day: %d, %v", n, err)
		}
	})
}

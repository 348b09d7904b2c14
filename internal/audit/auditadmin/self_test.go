package auditadmin_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// fixture: an organization with a study (sites north and south) and a
// registry, a second organization, staff, and two participants of north
// (ann and ben) with accounts of their own.
type fixture struct {
	db                  *sqldb.DB
	svc                 *auditadmin.Service
	parts               *participants.Service
	org, other          orgs.Organization
	study, registry     orgs.Study
	north, south, reg   orgs.Site
	farSite             orgs.Site
	admin, investigator gate.Actor
	monitor, otherAdmin gate.Actor
	ann, ben            gate.Actor
	annRec, benRec      participants.Participant
}

func setup(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	g := gate.New(gate.Config{Clinical: db})
	f := &fixture{db: db, svc: &auditadmin.Service{Gate: g}, parts: &participants.Service{Gate: g}}
	n := 0
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		enrol := func(org orgs.Organization, role authz.Role, studyID, siteID string) gate.Actor {
			n++
			acc, _, err := accounts.Enrol(ctx, tx, fmt.Sprintf("%s-%d@clinic.example", role, n), fmt.Sprintf("Person %d", n),
				authz.Assignment{OrgID: org.ID, Role: role, StudyID: studyID, SiteID: siteID})
			if err != nil {
				t.Fatal(err)
			}
			return gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID, RemoteAddr: fmt.Sprintf("192.0.2.%d", n)}
		}
		var err error
		must := func(e error) {
			if e != nil {
				t.Fatal(e)
			}
		}
		f.org, err = orgs.CreateOrganization(ctx, tx, "Clinic", "clinic")
		must(err)
		f.study, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindStudy, "Trial")
		must(err)
		f.north, err = orgs.CreateSite(ctx, tx, f.org.ID, f.study.ID, "North")
		must(err)
		f.south, err = orgs.CreateSite(ctx, tx, f.org.ID, f.study.ID, "South")
		must(err)
		f.registry, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindRegistry, "Registry")
		must(err)
		f.reg, err = orgs.CreateSite(ctx, tx, f.org.ID, f.registry.ID, "Centre")
		must(err)
		f.other, err = orgs.CreateOrganization(ctx, tx, "Other Hospital", "other")
		must(err)
		st, err := orgs.CreateStudy(ctx, tx, f.other.ID, orgs.KindStudy, "Other Trial")
		must(err)
		f.farSite, err = orgs.CreateSite(ctx, tx, f.other.ID, st.ID, "Far")
		must(err)
		f.admin = enrol(f.org, authz.OrgAdmin, "", "")
		f.investigator = enrol(f.org, authz.SiteInvestigator, "", f.north.ID)
		f.monitor = enrol(f.org, authz.Monitor, f.study.ID, "")
		f.otherAdmin = enrol(f.other, authz.OrgAdmin, "", "")
		f.ann = enrol(f.org, authz.Participant, "", f.north.ID)
		f.ben = enrol(f.org, authz.Participant, "", f.north.ID)
		f.annRec, err = participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
		must(err)
		f.benRec, err = participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
		must(err)
		for _, r := range []authz.Relation{
			{OrgID: f.org.ID, ParticipantID: f.annRec.Pseudonym, AccountID: f.ann.AccountID, Kind: authz.RelationSelf},
			{OrgID: f.org.ID, ParticipantID: f.benRec.Pseudonym, AccountID: f.ben.AccountID, Kind: authz.RelationSelf},
		} {
			_, err := authz.Relate(ctx, tx, r)
			must(err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// read opens a participant's record as a, the way the record pages do.
func (f *fixture) read(a gate.Actor, p participants.Participant) error {
	_, err := f.parts.Get(context.Background(), a, f.org.Slug, p.StudyID, p.SiteID, p.Pseudonym)
	return err
}

func (f *fixture) log(t *testing.T, a gate.Actor) []auditadmin.Access {
	t.Helper()
	list, next, err := f.svc.AccessLog(context.Background(), a, "", 0)
	if err != nil || next != "" {
		t.Fatalf("access log: %v (next %q)", err, next)
	}
	return list
}

// A participant sees who accessed their record: the investigator who read
// it, and another participant whose attempt was refused, by role and
// time, never by name, account or address. Their own visits, the listing
// itself among them, are left out, though the listing is on the trail.
func TestAUD01_ParticipantSeesWhoAccessedTheirRecord(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		if got := f.log(t, f.ann); len(got) != 0 {
			t.Fatalf("before any access: %v", got)
		}
		if err := f.read(f.investigator, f.annRec); err != nil {
			t.Fatal(err)
		}
		if err := f.read(f.ben, f.annRec); !gate.IsDenied(err) {
			t.Fatalf("ben reads ann's record: %v, want denied", err)
		}
		if err := f.read(f.ann, f.annRec); err != nil {
			t.Fatalf("ann reads her own record: %v", err)
		}

		got := f.log(t, f.ann)
		if len(got) != 2 {
			t.Fatalf("ann's log has %d entries, want 2: %+v", len(got), got)
		}
		probe, read := got[0], got[1]
		if read.Who != "a member of the study team" || !slices.Equal(read.Roles, []string{"site investigator"}) ||
			read.What != "looked at your record" || read.Refused || read.Organization != "Clinic" {
			t.Errorf("the investigator's read: %+v", read)
		}
		if probe.Who != "another participant" || !probe.Refused {
			t.Errorf("ben's refused attempt: %+v", probe)
		}
		b, _ := json.Marshal(got)
		for _, secret := range []string{"192.0.2.", f.investigator.AccountID, f.ben.AccountID, "Person ", "s-", f.benRec.Pseudonym} {
			if strings.Contains(string(b), secret) {
				t.Errorf("the log tells the participant %q: %s", secret, b)
			}
		}

		// The listing is an audited read by ann of her own record.
		evs, _, err := audit.Search(ctx, f.db, audit.Filter{OrgID: f.org.ID, Action: "participant.access_log"})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[0].ActorAccount != f.ann.AccountID || evs[0].ParticipantID != f.annRec.Pseudonym || evs[0].Outcome != audit.Success {
			t.Fatalf("access log events: %+v", evs)
		}
		if got := f.log(t, f.ann); len(got) != 2 {
			t.Errorf("after two listings the log has %d entries, want still 2", len(got))
		}
	})
}

// No one sees another participant's log: there is no way to name one, a
// participant's log holds only their own record's events, staff without a
// record of their own see nothing, a cursor taken from another's log
// leads nowhere else, and a participant whose role was taken away sees
// nothing (ACL-05).
func TestACL05_AccessLogNeverShowsAnotherParticipant(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		if err := f.read(f.admin, f.benRec); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := f.read(f.investigator, f.annRec); err != nil {
				t.Fatal(err)
			}
		}
		if got := f.log(t, f.ben); len(got) != 1 || got[0].Roles[0] != "organization administrator" {
			t.Fatalf("ben's log: %+v, want only the admin's read of his record", got)
		}
		annPage, next, err := f.svc.AccessLog(ctx, f.ann, "", 1)
		if err != nil || len(annPage) != 1 || next == "" {
			t.Fatalf("ann's first page: %v %v %q", annPage, err, next)
		}
		// Ann's cursor in Ben's hands pages through Ben's log only.
		if got, _, err := f.svc.AccessLog(ctx, f.ben, next, 0); err != nil || len(got) != 1 || got[0].Roles[0] != "organization administrator" {
			t.Errorf("ben with ann's cursor: %+v, %v", got, err)
		}
		// A care provider assigned to ann reads her record, but her log
		// is not theirs to read.
		var carer gate.Actor
		err = f.db.InTx(ctx, func(tx *sql.Tx) error {
			acc, _, err := accounts.Enrol(ctx, tx, "carer@clinic.example", "Carer", authz.Assignment{OrgID: f.org.ID, Role: authz.CareProvider, SiteID: f.north.ID})
			if err != nil {
				return err
			}
			carer = gate.Actor{AccountID: acc.ID, RemoteAddr: "192.0.2.99"}
			_, err = authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: f.annRec.Pseudonym, AccountID: acc.ID, Kind: authz.RelationCare})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.read(carer, f.annRec); err != nil {
			t.Fatalf("ann's care provider reads her record: %v", err)
		}
		for _, staff := range []gate.Actor{f.investigator, f.admin, f.monitor, f.otherAdmin, carer} {
			if got := f.log(t, staff); len(got) != 0 {
				t.Errorf("staff %s sees an access log: %+v", staff.AccountID, got)
			}
		}
		if _, _, err := f.svc.AccessLog(ctx, gate.Actor{}, "", 0); !errs.Is(err, errs.Unauthenticated) {
			t.Errorf("without an account: %v", err)
		}
		for _, bad := range []struct {
			cursor string
			limit  int
		}{{"not-a-cursor", 0}, {"", -1}, {"", auditadmin.MaxAccessPage + 1}} {
			if _, _, err := f.svc.AccessLog(ctx, f.ann, bad.cursor, bad.limit); !errs.Is(err, errs.Invalid) {
				t.Errorf("cursor %q limit %d: %v, want Invalid", bad.cursor, bad.limit, err)
			}
		}
		// A second own account for ann's record is refused by the
		// database, so ben cannot be made to see it.
		err = f.db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: f.annRec.Pseudonym, AccountID: f.ben.AccountID, Kind: authz.RelationSelf})
			return err
		})
		if !errs.Is(err, errs.Conflict) {
			t.Fatalf("a second own account for ann's record: %v, want Conflict", err)
		}
		// Ann loses her participant role: her record is no longer hers to
		// read, and the attempt is on the trail as denied.
		if _, err := f.db.ExecContext(ctx, `DELETE FROM role_assignments WHERE account_id = $1`, f.ann.AccountID); err != nil {
			t.Fatal(err)
		}
		if got, _, err := f.svc.AccessLog(ctx, f.ann, "", 0); err != nil || len(got) != 0 {
			t.Errorf("ann without her role: %+v, %v", got, err)
		}
	})
}

// The log pages newest first by a cursor, across every record the account
// owns, in several organizations, with no entry twice or missed.
func TestAUD04_AccessLogPagesAcrossRecords(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		// Ann is a participant of the other organization too.
		var far participants.Participant
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if _, err = authz.Assign(ctx, tx, authz.Assignment{OrgID: f.other.ID, AccountID: f.ann.AccountID, Role: authz.Participant, SiteID: f.farSite.ID}); err != nil {
				return err
			}
			if far, err = participants.Create(ctx, tx, f.other.ID, f.farSite.StudyID, f.farSite.ID); err != nil {
				return err
			}
			_, err = authz.Relate(ctx, tx, authz.Relation{OrgID: f.other.ID, ParticipantID: far.Pseudonym, AccountID: f.ann.AccountID, Kind: authz.RelationSelf})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 7 {
			if i%2 == 0 {
				_, err = f.parts.Get(ctx, f.otherAdmin, f.other.Slug, far.StudyID, far.SiteID, far.Pseudonym)
			} else {
				err = f.read(f.investigator, f.annRec)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		var all []auditadmin.Access
		cursor, pages := "", 0
		for {
			page, next, err := f.svc.AccessLog(ctx, f.ann, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			pages++
			if next == "" {
				break
			}
			if pages > 5 {
				t.Fatal("the pages do not end")
			}
			cursor = next
		}
		if len(all) != 7 || pages != 3 {
			t.Fatalf("%d entries on %d pages, want 7 on 3", len(all), pages)
		}
		orgsSeen := map[string]int{}
		for i, a := range all {
			orgsSeen[a.Organization]++
			if i > 0 && a.Time.After(all[i-1].Time) {
				t.Errorf("entry %d is newer than the one before", i)
			}
		}
		if orgsSeen["Clinic"] != 3 || orgsSeen["Other Hospital"] != 4 {
			t.Errorf("entries by organization: %v", orgsSeen)
		}
	})
}

// The trail page's search: an administrator reads the whole
// organization's trail with the actors named; a monitor of one study gets
// that study's trail when naming none, and nothing of another study
// (AUD-04).
func TestAUD04_TrailPageScopesMonitorToTheirStudy(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		if err := f.read(f.investigator, f.annRec); err != nil {
			t.Fatal(err)
		}
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := audit.Append(ctx, tx, nil, audit.Event{OrgID: f.org.ID, StudyID: f.registry.ID, Action: "study.read", Outcome: audit.Success})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.svc.Trail(ctx, f.admin, f.org.Slug, audit.Filter{Action: "participant."})
		if err != nil || !p.WholeOrganization || len(p.Studies) != 2 || len(p.Events) != 1 {
			t.Fatalf("admin: %+v, %v", p, err)
		}
		if p.People[f.investigator.AccountID] == "" || p.StudyNames[f.study.ID] != "Trial" {
			t.Errorf("admin's page names %v, studies %v", p.People, p.StudyNames)
		}

		p, err = f.svc.Trail(ctx, f.monitor, f.org.Slug, audit.Filter{})
		if err != nil || p.WholeOrganization || len(p.Studies) != 1 || p.Filter.Study != f.study.ID {
			t.Fatalf("monitor: %+v, %v", p, err)
		}
		for _, ev := range p.Events {
			if ev.StudyID != f.study.ID {
				t.Errorf("monitor sees an event of %q: %+v", ev.StudyID, ev)
			}
		}
		if _, err := f.svc.Trail(ctx, f.monitor, f.org.Slug, audit.Filter{Study: f.registry.ID}); !gate.IsDenied(err) {
			t.Errorf("monitor searches the registry: %v, want denied", err)
		}
		if _, err := f.svc.Trail(ctx, f.investigator, f.org.Slug, audit.Filter{}); !gate.IsDenied(err) {
			t.Errorf("investigator searches the trail: %v, want denied", err)
		}
		if _, err := f.svc.Trail(ctx, f.otherAdmin, f.org.Slug, audit.Filter{}); !gate.IsDenied(err) {
			t.Errorf("another organization's admin: %v, want denied", err)
		}
		if _, err := f.svc.Trail(ctx, f.admin, f.org.Slug, audit.Filter{Outcome: "maybe"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("a bad outcome: %v, want Invalid", err)
		}
	})
}

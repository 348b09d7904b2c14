package retention_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// Values that identify the participants of the fixture, to look for in
// bundles and databases.
const (
	pName      = "Ottoline Wraxhammer"
	pNational  = "NL-884-221-907"
	pSensitive = "Lupus nephritis class III"
	qName      = "Bartholomew Quillfeather"
	qValue     = "Quillfeather's own note"
	message    = "See you at the clinic on Thursday, Ottoline."
)

type fixture struct {
	clinical, identity *sqldb.DB
	g                  *gate.Gate
	svc                *retention.Service
	people             *participants.Service
	data               *entries.Service
	consents           *consent.Service
	talk               *conversations.Service
	org                orgs.Organization
	study              orgs.Study
	north              orgs.Site
	admin, otherAdmin  gate.Actor
	studyAdmin         gate.Actor
	investigator       gate.Actor
	dataManager        gate.Actor
	carer, self        gate.Actor
	staff              gate.Actor // a member who stops using the instance
	p, q               participants.Participant
	// start is when the fixture was made; now is the sweep's clock.
	start, now time.Time
}

func confirmed(a gate.Actor) gate.Actor {
	a.ConfirmedAt = time.Now()
	return a
}

func setup(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{clinical: sqldbtest.Open(t, d, sqldb.Clinical), identity: sqldbtest.Open(t, d, sqldb.Identity), start: time.Now()}
	f.now = f.start
	kek, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.g = gate.New(gate.Config{Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: kek},
		Identity: f.identity, IdentityKeys: &keys.Keyring{DB: f.identity, KEK: kek}})
	clock := func() time.Time { return f.now }
	f.svc = &retention.Service{Gate: f.g, Now: clock}
	f.people = &participants.Service{Gate: f.g}
	f.data = &entries.Service{Gate: f.g}
	f.consents = &consent.Service{Gate: f.g}
	f.talk = &conversations.Service{Gate: f.g}
	design := &formadmin.Service{Gate: f.g}
	var other orgs.Organization
	n := 0
	enrol := func(tx *sql.Tx, org orgs.Organization, role authz.Role, studyID, siteID string) gate.Actor {
		n++
		acc, _, err := accounts.Enrol(ctx, tx, fmt.Sprintf("%s-%d@clinic.example", role, n), "",
			authz.Assignment{OrgID: org.ID, Role: role, StudyID: studyID, SiteID: siteID})
		if err != nil {
			t.Fatal(err)
		}
		return gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID, RemoteAddr: "192.0.2.1"}
	}
	err = f.clinical.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if f.org, err = orgs.CreateOrganization(ctx, tx, "Clinic", "clinic"); err != nil {
			return err
		}
		if f.study, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindStudy, "Trial"); err != nil {
			return err
		}
		if f.north, err = orgs.CreateSite(ctx, tx, f.org.ID, f.study.ID, "North"); err != nil {
			return err
		}
		if other, err = orgs.CreateOrganization(ctx, tx, "Other", "other"); err != nil {
			return err
		}
		f.admin = enrol(tx, f.org, authz.OrgAdmin, "", "")
		f.studyAdmin = enrol(tx, f.org, authz.StudyAdmin, f.study.ID, "")
		f.investigator = enrol(tx, f.org, authz.SiteInvestigator, "", f.north.ID)
		f.dataManager = enrol(tx, f.org, authz.DataManager, f.study.ID, "")
		f.carer = enrol(tx, f.org, authz.CareProvider, f.study.ID, "")
		f.self = enrol(tx, f.org, authz.Participant, "", f.north.ID)
		f.staff = enrol(tx, f.org, authz.Monitor, f.study.ID, "")
		f.otherAdmin = enrol(tx, other, authz.OrgAdmin, "", "")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	vitals := &forms.Form{Key: "vitals", Title: "Vital signs", Fields: []forms.Field{
		{Name: "weight", Label: "Weight", Type: forms.Text},
		{Name: "status", Label: "Status", Type: forms.Text, Sensitive: true},
		{Name: "scan", Label: "Scan", Type: forms.File},
	}}
	v, err := design.Create(ctx, f.studyAdmin, "clinic", f.study.ID, vitals)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := design.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "vitals", v.Digest); err != nil {
		t.Fatal(err)
	}
	day0 := 0
	if _, err := design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
		{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals"}},
	}); err != nil {
		t.Fatal(err)
	}
	if f.p, err = f.people.Enrol(ctx, f.investigator, "clinic", f.study.ID, f.north.ID,
		participants.Identity{participants.Name: pName, participants.NationalID: pNational}); err != nil {
		t.Fatal(err)
	}
	if f.q, err = f.people.Enrol(ctx, f.investigator, "clinic", f.study.ID, f.north.ID,
		participants.Identity{participants.Name: qName}); err != nil {
		t.Fatal(err)
	}
	err = f.clinical.InTx(ctx, func(tx *sql.Tx) error {
		for _, r := range []authz.Relation{
			{OrgID: f.org.ID, ParticipantID: f.p.Pseudonym, AccountID: f.self.AccountID, Kind: authz.RelationSelf},
			{OrgID: f.org.ID, ParticipantID: f.p.Pseudonym, AccountID: f.carer.AccountID, Kind: authz.RelationCare},
		} {
			if _, err := authz.Relate(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// record gives P an entry saved twice with a sensitive value and a file,
// a signed consent, a conversation with a message and a file, and a
// re-identification on their access log; Q an entry of their own.
func (f *fixture) record(t *testing.T) (pdfSHA256 string) {
	t.Helper()
	ctx := context.Background()
	at := func(p participants.Participant) entries.Place {
		return entries.Place{StudyID: f.study.ID, SiteID: f.north.ID, Participant: p.Pseudonym, Visit: "baseline", Repeat: 1, Form: "vitals"}
	}
	file, err := f.data.Upload(ctx, f.investigator, "clinic", at(f.p), "scan.pdf", strings.NewReader("%PDF-1.7 the scan of P"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.data.Save(ctx, f.investigator, "clinic", at(f.p), entries.Save{Values: map[string]string{"weight": "70", "status": "unknown"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.data.Save(ctx, f.investigator, "clinic", at(f.p), entries.Save{Revision: 1, Reason: "lab results came in",
		Values: map[string]string{"weight": "71", "status": pSensitive, "scan": file.ID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.data.Save(ctx, f.investigator, "clinic", at(f.q), entries.Save{Values: map[string]string{"weight": "90", "status": qValue}}); err != nil {
		t.Fatal(err)
	}
	doc, err := f.consents.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "en", consent.Content{Title: "Consent to take part",
		Sections: []consent.Section{{Heading: "Why", Text: "We study a treatment."}}})
	if err != nil {
		t.Fatal(err)
	}
	if doc, err = f.consents.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "en", doc.Digest, false); err != nil {
		t.Fatal(err)
	}
	signed, err := f.consents.Sign(ctx, confirmed(f.self), "clinic", consent.Place{StudyID: f.study.ID, SiteID: f.north.ID, Participant: f.p.Pseudonym},
		consent.Signature{Language: "en", Version: doc.Version, Name: pName})
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.talk.Start(ctx, f.carer, "clinic", f.p.Pseudonym, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.talk.Send(ctx, f.carer, "clinic", c.ID, message); err != nil {
		t.Fatal(err)
	}
	if _, err := f.talk.Attach(ctx, f.carer, "clinic", c.ID, "leaflet.txt", strings.NewReader("A leaflet for Ottoline")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.people.Reveal(ctx, confirmed(f.investigator), "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); err != nil {
		t.Fatal(err)
	}
	return signed.PDFSHA256
}

// touch records a use of the account at: a session last seen then.
func (f *fixture) touch(t *testing.T, a gate.Actor, at time.Time) {
	t.Helper()
	_, err := f.clinical.ExecContext(context.Background(), `INSERT INTO sessions (id, token_hash, account_id, created_at, last_seen_at, expires_at, remote_addr, user_agent)
		VALUES ($1, $2, $3, $4, $4, $5, '198.51.100.7', 'test browser')`, ids.New(), ids.New(), a.AccountID, at.UnixMicro(), at.Add(time.Hour).UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
}

// days moves the sweep's clock to that many days after the fixture's start.
func (f *fixture) days(n int) { f.now = f.start.Add(time.Duration(n) * 24 * time.Hour) }

func (f *fixture) sweep(t *testing.T) retention.Swept {
	t.Helper()
	s, err := f.svc.Sweep(context.Background())
	if err != nil {
		t.Fatalf("sweep at %s: %v", f.now, err)
	}
	return s
}

func (f *fixture) count(t *testing.T, db *sqldb.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// noticed lists the subjects of the organization's notices, as its admin
// sees them.
func (f *fixture) noticed(t *testing.T) map[string]retention.Notice {
	t.Helper()
	ov, err := f.svc.List(context.Background(), f.admin, "clinic")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]retention.Notice{}
	for _, n := range ov.Notices {
		out[n.Subject] = n
	}
	return out
}

// events counts the successful events of action about object.
func (f *fixture) events(t *testing.T, action, object string) []audit.Event {
	t.Helper()
	evs, _, err := audit.Search(context.Background(), f.clinical, audit.Filter{OrgID: f.org.ID, Action: action, Outcome: audit.Success, Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	for _, ev := range evs {
		if object == "" || ev.ObjectID == object {
			out = append(out, ev)
		}
	}
	return out
}

func denied(err error) bool {
	return errors.Is(err, gate.ErrDenied) || errs.KindOf(err) == errs.NotFound
}

// TestLIFE02_InactiveSubjectsAreNoticedThenPurgedAfterTheNoticePeriod: two
// years and a day on, the participants P and Q and a member who stopped
// signing in are noticed (an event each) and the organization's admin is
// told, while the members who still sign in are not. Before the notice
// period is over nothing is purged, a second sweep notices nothing twice,
// and another server sweeping at the same time changes nothing more. After
// it, P is purged as a deleted participant is (identity key destroyed,
// entries, files, consents, conversations and record gone), their own
// account forgotten, and the member's roles taken and account forgotten
// (address, name, password, sessions), each a security event.
func TestLIFE02_InactiveSubjectsAreNoticedThenPurgedAfterTheNoticePeriod(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		f.record(t)
		f.days(729)
		for _, a := range []gate.Actor{f.admin, f.studyAdmin, f.investigator, f.dataManager, f.carer, f.otherAdmin} {
			f.touch(t, a, f.now) // they keep working
		}
		if s := f.sweep(t); s.Noticed != 0 {
			t.Fatalf("729 days on, the sweep noticed %+v", s)
		}
		f.days(731)
		if s := f.sweep(t); s.Noticed != 3 || s.Purged != 0 {
			t.Errorf("731 days on: %+v, want P, Q and the member noticed", s)
		}
		got := f.noticed(t)
		for _, id := range []string{f.p.Pseudonym, f.q.Pseudonym, f.staff.AccountID} {
			n, ok := got[id]
			if !ok {
				t.Errorf("%s is not noticed: %+v", id, got)
				continue
			}
			if want := f.now.Add(30 * 24 * time.Hour); !n.DueAt.Equal(want.UTC().Truncate(time.Microsecond)) {
				t.Errorf("%s is due %s, want %s", id, n.DueAt, want)
			}
		}
		if len(got) != 3 {
			t.Errorf("noticed %v, want three", got)
		}
		if got[f.staff.AccountID].Email == "" {
			t.Errorf("the noticed account is not named to its admin: %+v", got[f.staff.AccountID])
		}
		for _, id := range []string{f.p.Pseudonym, f.q.Pseudonym, f.staff.AccountID} {
			if evs := f.events(t, "retention.notice", id); len(evs) != 1 {
				t.Errorf("%d notice events of %s, want 1", len(evs), id)
			}
		}
		if n := f.count(t, f.clinical, `SELECT count(*) FROM notifications WHERE account_id = $1 AND kind = 'retention'`, f.admin.AccountID); n != 1 {
			t.Errorf("the admin was told %d times, want once", n)
		}

		// Before the notice period is over: nothing purged, nothing
		// noticed twice, however many servers sweep.
		f.days(760)
		done := make(chan retention.Swept, 2)
		for range 2 {
			go func() {
				s, err := (&retention.Service{Gate: f.g, Now: func() time.Time { return f.now }}).Sweep(ctx)
				if err != nil {
					t.Errorf("a concurrent sweep: %v", err)
				}
				done <- s
			}()
		}
		for range 2 {
			if s := <-done; s != (retention.Swept{}) {
				t.Errorf("a sweep within the notice period: %+v", s)
			}
		}
		if _, err := f.people.Get(ctx, f.admin, "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); err != nil {
			t.Errorf("P within the notice period: %v", err)
		}
		if n := f.count(t, f.clinical, `SELECT count(*) FROM retention_notices`); n != 3 {
			t.Errorf("%d notices, want 3", n)
		}

		// The member signed in through the organization's provider once.
		if _, err := f.clinical.ExecContext(ctx, `INSERT INTO sso_identities (org_id, issuer, subject, account_id, created_at, last_used_at)
			VALUES ($1, 'https://idp.example', 'subject-1', $2, 0, 0)`, f.org.ID, f.staff.AccountID); err != nil {
			t.Fatal(err)
		}

		// After it: purged, once, by two servers at once.
		f.days(762)
		for range 2 {
			go func() {
				s, err := (&retention.Service{Gate: f.g, Now: func() time.Time { return f.now }}).Sweep(ctx)
				if err != nil {
					t.Errorf("a concurrent sweep: %v", err)
				}
				done <- s
			}()
		}
		purged := 0
		for range 2 {
			purged += (<-done).Purged
		}
		if purged != 3 {
			t.Errorf("%d purged by two servers, want 3", purged)
		}
		if _, err := f.people.Get(ctx, f.admin, "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); !denied(err) {
			t.Errorf("P after the purge: %v", err)
		}
		for _, q := range []string{
			`SELECT count(*) FROM participants WHERE id = $1`,
			`SELECT count(*) FROM entries WHERE participant_id = $1`,
			`SELECT count(*) FROM files WHERE participant_id = $1`,
			`SELECT count(*) FROM consents WHERE participant_id = $1`,
			`SELECT count(*) FROM conversations WHERE participant_id = $1`,
			`SELECT count(*) FROM participant_relations WHERE participant_id = $1`,
			`SELECT count(*) FROM retention_notices WHERE subject_id = $1`,
		} {
			if n := f.count(t, f.clinical, q, f.p.Pseudonym); n != 0 {
				t.Errorf("%s: %d rows left of P", q, n)
			}
		}
		if n := f.count(t, f.identity, `SELECT count(*) FROM identities WHERE participant_id = $1`, f.p.Pseudonym); n != 0 {
			t.Errorf("P's identity is left: %d rows", n)
		}
		if n := f.count(t, f.identity, `SELECT count(*) FROM data_keys WHERE scope_kind = 'participant' AND scope_id = $1 AND destroyed_at IS NULL`, f.p.Pseudonym); n != 0 {
			t.Errorf("P's key is not destroyed: %d live versions", n)
		}
		for _, a := range []gate.Actor{f.self, f.staff} {
			acc, err := accounts.ByID(ctx, f.clinical, a.AccountID)
			if err != nil || acc.Email != accounts.ForgottenEmail(a.AccountID) || acc.DisplayName != "" || acc.HasPassword {
				t.Errorf("the account %s after the purge: %+v, %v", a.AccountID, acc, err)
			}
			if n := f.count(t, f.clinical, `SELECT count(*) FROM role_assignments WHERE account_id = $1`, a.AccountID); n != 0 {
				t.Errorf("the account %s keeps %d roles", a.AccountID, n)
			}
			if n := f.count(t, f.clinical, `SELECT count(*) FROM sessions WHERE account_id = $1`, a.AccountID); n != 0 {
				t.Errorf("the account %s keeps %d sessions", a.AccountID, n)
			}
			if n := f.count(t, f.clinical, `SELECT count(*) FROM sso_identities WHERE account_id = $1`, a.AccountID); n != 0 {
				t.Errorf("the account %s keeps %d links to the provider", a.AccountID, n)
			}
			if at, err := accounts.DisabledAt(ctx, f.clinical, a.AccountID); err != nil || at.IsZero() {
				t.Errorf("the forgotten account %s is not disabled: %v", a.AccountID, err)
			}
		}
		for _, id := range []string{f.p.Pseudonym, f.q.Pseudonym, f.staff.AccountID} {
			evs := f.events(t, "retention.purge", id)
			if len(evs) == 0 || !evs[0].Security {
				t.Errorf("the purge of %s is not a security event on the trail: %+v", id, evs)
			}
		}
		// The members who work are kept, and the other organization is
		// untouched.
		for _, a := range []gate.Actor{f.admin, f.investigator, f.otherAdmin} {
			if n := f.count(t, f.clinical, `SELECT count(*) FROM role_assignments WHERE account_id = $1`, a.AccountID); n != 1 {
				t.Errorf("the account %s holds %d roles after the purge", a.AccountID, n)
			}
		}
		if s := f.sweep(t); s != (retention.Swept{}) {
			t.Errorf("a sweep after the purge: %+v", s)
		}
	})
}

// TestLIFE02_LegalHoldKeepsASubjectAndActivityEndsANotice: P and Q are
// noticed; the admin holds Q (a confirmation and a reason needed, on the
// trail as a security event), which ends Q's notice; P signs in to the
// portal, which ends P's notice at the next sweep. Past the notice period
// neither is purged. Once the hold is lifted, Q is noticed again with a
// full notice period, and purged only after it.
func TestLIFE02_LegalHoldKeepsASubjectAndActivityEndsANotice(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		for _, a := range []gate.Actor{f.admin, f.studyAdmin, f.investigator, f.dataManager, f.carer, f.staff, f.otherAdmin} {
			f.touch(t, a, f.start.Add(800*24*time.Hour))
		}
		f.days(731)
		f.sweep(t)
		if got := f.noticed(t); len(got) != 2 {
			t.Fatalf("noticed %v, want P and Q", got)
		}
		hold := func(a gate.Actor, reason string) error {
			_, err := f.svc.SetHold(ctx, a, "clinic", retention.Participant, f.q.Pseudonym, reason)
			return err
		}
		if err := hold(f.admin, "litigation"); !errs.Is(err, errs.StepUpRequired) {
			t.Errorf("a hold without a fresh confirmation: %v", err)
		}
		if err := hold(confirmed(f.admin), " "); errs.KindOf(err) != errs.Invalid {
			t.Errorf("a hold without a reason: %v", err)
		}
		if err := hold(confirmed(f.investigator), "litigation"); !denied(err) {
			t.Errorf("an investigator holds: %v", err)
		}
		if err := hold(confirmed(f.admin), "litigation pending, case 2024-17"); err != nil {
			t.Fatal(err)
		}
		evs := f.events(t, "retention.hold", f.q.Pseudonym)
		if len(evs) != 1 || !evs[0].Security || evs[0].ParticipantID != f.q.Pseudonym || strings.Contains(fmt.Sprint(evs[0].Details), "litigation") {
			t.Errorf("the hold's events: %+v", evs)
		}
		if _, ok := f.noticed(t)[f.q.Pseudonym]; ok {
			t.Errorf("Q is held and still noticed")
		}
		f.days(735)
		f.touch(t, f.self, f.now) // P uses the portal
		f.days(740)
		if s := f.sweep(t); s.Ended != 1 || s.Noticed != 0 {
			t.Errorf("the sweep after P's activity: %+v", s)
		}
		if got := f.noticed(t); len(got) != 0 {
			t.Errorf("noticed %v after P's activity and Q's hold", got)
		}
		if evs := f.events(t, "retention.end", f.p.Pseudonym); len(evs) != 1 || evs[0].Details["reason"] != "active" {
			t.Errorf("the end of P's notice: %+v", evs)
		}
		f.days(800)
		if s := f.sweep(t); s.Purged != 0 || s.Noticed != 0 {
			t.Errorf("past the notice period: %+v", s)
		}
		for _, p := range []participants.Participant{f.p, f.q} {
			if _, err := f.people.Get(ctx, f.admin, "clinic", f.study.ID, f.north.ID, p.Pseudonym); err != nil {
				t.Errorf("%s was purged: %v", p.Pseudonym, err)
			}
		}
		ov, err := f.svc.List(ctx, f.admin, "clinic")
		if err != nil || len(ov.Holds) != 1 || ov.Holds[0].Subject != f.q.Pseudonym || ov.Holds[0].Reason != "litigation pending, case 2024-17" {
			t.Errorf("the holds: %+v, %v", ov, err)
		}

		// Lifted: noticed again, with a full notice period.
		if err := f.svc.LiftHold(ctx, confirmed(f.admin), "clinic", retention.Participant, f.q.Pseudonym); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.LiftHold(ctx, confirmed(f.admin), "clinic", retention.Participant, f.q.Pseudonym); !denied(err) {
			t.Errorf("lifting a hold twice: %v", err)
		}
		f.days(801)
		if s := f.sweep(t); s.Noticed != 1 {
			t.Errorf("after the hold is lifted: %+v", s)
		}
		f.days(830)
		if s := f.sweep(t); s.Purged != 0 {
			t.Errorf("29 days after the new notice: %+v", s)
		}
		f.days(832)
		if s := f.sweep(t); s.Purged != 1 {
			t.Errorf("31 days after the new notice: %+v", s)
		}
		if _, err := f.people.Get(ctx, f.admin, "clinic", f.study.ID, f.north.ID, f.q.Pseudonym); !denied(err) {
			t.Errorf("Q after the purge: %v", err)
		}
		if _, err := f.people.Get(ctx, f.admin, "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); err != nil {
			t.Errorf("P, active, after Q's purge: %v", err)
		}
	})
}

// TestLIFE02_PeriodsAreTheOrganizationsAndBounded: the policy takes an
// inactivity period of 90 to 3650 days and a notice period of 7 to 365,
// refuses others, and the sweep follows the organization's own; a
// participant enrolled without identifying data, and one whose identity
// was erased before, are purged as any other.
func TestLIFE02_PeriodsAreTheOrganizationsAndBounded(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		def := policy.Default()
		if def.InactivityDays != 730 || def.InactivityNoticeDays != 30 {
			t.Errorf("the default periods: %d and %d days", def.InactivityDays, def.InactivityNoticeDays)
		}
		for _, bad := range [][2]int{{89, 30}, {3651, 30}, {730, 6}, {730, 366}} {
			p := policy.Default()
			p.InactivityDays, p.InactivityNoticeDays = bad[0], bad[1]
			if err := p.Validate(); errs.KindOf(err) != errs.Invalid {
				t.Errorf("periods %v: %v", bad, err)
			}
		}
		p := policy.Default()
		p.InactivityDays, p.InactivityNoticeDays = 365, 7
		if err := f.clinical.InTx(ctx, func(tx *sql.Tx) error { _, err := policy.Set(ctx, tx, f.org.ID, p); return err }); err != nil {
			t.Fatal(err)
		}
		for _, a := range []gate.Actor{f.admin, f.studyAdmin, f.investigator, f.dataManager, f.carer, f.staff, f.self} {
			f.touch(t, a, f.start.Add(900*24*time.Hour))
		}
		// A participant enrolled without identifying data is purged too.
		var bare participants.Participant
		if err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			bare, err = participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		f.days(364)
		if s := f.sweep(t); s.Noticed != 0 {
			t.Errorf("364 days on: %+v", s)
		}
		f.days(366)
		if s := f.sweep(t); s.Noticed != 2 {
			t.Errorf("366 days on: %+v, want Q and the bare participant", s) // P's own account keeps P active
		}
		// Q's identity is erased meanwhile: the purge takes the rest.
		if _, err := f.people.Erase(ctx, confirmed(f.admin), "clinic", f.study.ID, f.north.ID, f.q.Pseudonym); err != nil {
			t.Fatal(err)
		}
		f.days(372)
		if s := f.sweep(t); s.Purged != 0 {
			t.Errorf("6 days after the notice: %+v", s)
		}
		f.days(374)
		if s := f.sweep(t); s.Purged != 2 {
			t.Errorf("8 days after the notice: %+v", s)
		}
		for _, p := range []participants.Participant{f.q, bare} {
			if n := f.count(t, f.clinical, `SELECT count(*) FROM participants WHERE id = $1`, p.Pseudonym); n != 0 {
				t.Errorf("%s is left after the purge", p.Pseudonym)
			}
		}
		if _, err := f.people.Get(ctx, f.admin, "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); err != nil {
			t.Errorf("P, active, after the purge: %v", err)
		}
	})
}

// TestLIFE02_AnotherOrganizationsAdminCannotListHoldOrExport: the admin
// of another organization, and members of this one without the
// permissions, neither list the notices, nor hold, nor export, whichever
// organization they name; the attempts are on the trail.
func TestLIFE02_AnotherOrganizationsAdminCannotListHoldOrExport(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		for _, slug := range []string{"clinic", "other"} {
			if slug == "clinic" {
				if _, err := f.svc.List(ctx, f.otherAdmin, slug); !denied(err) {
					t.Errorf("another organization's admin lists: %v", err)
				}
			}
			for _, kind := range []retention.Kind{retention.Participant, retention.Account} {
				subject := f.p.Pseudonym
				if kind == retention.Account {
					subject = f.staff.AccountID
				}
				if _, err := f.svc.SetHold(ctx, confirmed(f.otherAdmin), slug, kind, subject, "mine now"); !denied(err) {
					t.Errorf("another organization's admin holds a %s (as %s): %v", kind, slug, err)
				}
			}
			if _, err := f.svc.Export(ctx, confirmed(f.otherAdmin), slug, f.study.ID, f.north.ID, f.p.Pseudonym); !denied(err) {
				t.Errorf("another organization's admin exports (as %s): %v", slug, err)
			}
		}
		if ov, err := f.svc.List(ctx, f.otherAdmin, "other"); err != nil || len(ov.Notices) != 0 {
			t.Errorf("the other admin's own list: %+v, %v", ov, err)
		}
		for _, a := range []gate.Actor{f.investigator, f.dataManager, f.studyAdmin, f.carer, f.self} {
			if _, err := f.svc.List(ctx, a, "clinic"); !denied(err) {
				t.Errorf("%s lists: %v", a.AccountID, err)
			}
			if _, err := f.svc.SetHold(ctx, confirmed(a), "clinic", retention.Participant, f.p.Pseudonym, "mine"); !denied(err) {
				t.Errorf("%s holds: %v", a.AccountID, err)
			}
		}
		for _, a := range []gate.Actor{f.investigator, f.dataManager, f.self} {
			if _, err := f.svc.Export(ctx, confirmed(a), "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); errs.KindOf(err) != errs.Forbidden {
				t.Errorf("%s, who reads P, exports: %v", a.AccountID, err)
			}
		}
		for _, a := range []gate.Actor{f.studyAdmin} {
			if _, err := f.svc.Export(ctx, confirmed(a), "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); !denied(err) {
				t.Errorf("%s exports: %v", a.AccountID, err)
			}
		}
		// A hold names a subject of the organization itself.
		if _, err := f.svc.SetHold(ctx, confirmed(f.admin), "clinic", retention.Account, f.otherAdmin.AccountID, "theirs"); !denied(err) {
			t.Errorf("a hold on another organization's member: %v", err)
		}
		refused, _, err := audit.Search(ctx, f.clinical, audit.Filter{OrgID: f.org.ID, Action: "subject.export", Outcome: audit.Denied})
		if err != nil || len(refused) == 0 {
			t.Errorf("the refused exports are not on the trail: %v, %v", refused, err)
		}
	})
}

// unzip reads a bundle's files.
func unzip(t *testing.T, b *retention.Bundle) map[string][]byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		out[zf.Name], err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(buf.Bytes())
	if hex.EncodeToString(sum[:]) != b.SHA256 || int64(buf.Len()) != b.Size() {
		t.Errorf("the bundle's digest %s, its bytes' %x", b.SHA256, sum)
	}
	return out
}

// TestLIFE02_TheBundleHoldsEverythingAboutThePersonAndNothingOfAnother: the
// admin, after a fresh confirmation, exports P: the bundle's JSON holds
// their identity (sensitive fields too), their account with its session,
// their entry with both saves and the sensitive value, their file, their
// consent with the signed PDF (its digest the recorded one), their
// conversation's message and file, and their access log with the
// re-identification; it names nothing of Q. The export is a security event
// with the counts and the bundle's SHA-256.
func TestLIFE02_TheBundleHoldsEverythingAboutThePersonAndNothingOfAnother(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		pdfSum := f.record(t)
		f.touch(t, f.self, time.Now())
		if _, err := f.svc.Export(ctx, f.admin, "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); !errs.Is(err, errs.StepUpRequired) {
			t.Fatalf("an export without a fresh confirmation: %v", err)
		}
		b, err := f.svc.Export(ctx, confirmed(f.admin), "clinic", f.study.ID, f.north.ID, f.p.Pseudonym)
		if err != nil {
			t.Fatal(err)
		}
		files := unzip(t, b)
		var doc struct {
			Format      string `json:"format"`
			Participant struct {
				Pseudonym string `json:"pseudonym"`
			} `json:"participant"`
			Identity struct {
				State  string            `json:"state"`
				Values map[string]string `json:"values"`
			} `json:"identity"`
			Account *struct {
				ID       string            `json:"id"`
				Email    string            `json:"email"`
				Sessions []json.RawMessage `json:"sessions"`
				Roles    []json.RawMessage `json:"roles"`
			} `json:"account"`
			Entries []struct {
				Form    string `json:"form"`
				Values  []struct{ Field, Value string }
				History []struct {
					Reason string `json:"reason"`
				} `json:"history"`
			} `json:"entries"`
			Files    []struct{ Path, SHA256 string } `json:"files"`
			Consents []struct {
				PDF       string          `json:"pdf"`
				PDFSHA256 string          `json:"pdf_sha256"`
				Record    json.RawMessage `json:"record"`
			} `json:"consents"`
			Conversations []struct {
				Messages []struct {
					Body       string `json:"body"`
					Attachment *struct {
						Path string `json:"path"`
					} `json:"attachment"`
				} `json:"messages"`
			} `json:"conversations"`
			AccessLog []struct {
				Action string `json:"action"`
				Who    string `json:"who"`
			} `json:"access_log"`
		}
		if err := json.Unmarshal(files["subject.json"], &doc); err != nil {
			t.Fatalf("subject.json: %v\n%s", err, files["subject.json"])
		}
		if doc.Format != retention.BundleFormat || doc.Participant.Pseudonym != f.p.Pseudonym {
			t.Errorf("the document is about %+v", doc.Participant)
		}
		if doc.Identity.State != "recorded" || doc.Identity.Values["name"] != pName || doc.Identity.Values["national_id"] != pNational {
			t.Errorf("the identity: %+v", doc.Identity)
		}
		if doc.Account == nil || doc.Account.ID != f.self.AccountID || !strings.HasPrefix(doc.Account.Email, "participant-") ||
			len(doc.Account.Sessions) != 1 || len(doc.Account.Roles) != 1 {
			t.Errorf("the account: %+v", doc.Account)
		}
		if len(doc.Entries) != 1 || len(doc.Entries[0].History) != 2 || doc.Entries[0].History[1].Reason != "lab results came in" {
			t.Errorf("the entries: %+v", doc.Entries)
		} else {
			values := map[string]string{}
			for _, v := range doc.Entries[0].Values {
				values[v.Field] = v.Value
			}
			if values["status"] != pSensitive || values["weight"] != "71" {
				t.Errorf("the entry's values: %v", values)
			}
		}
		if len(doc.Files) != 1 || string(files[doc.Files[0].Path]) != "%PDF-1.7 the scan of P" {
			t.Errorf("the files: %+v", doc.Files)
		}
		if len(doc.Consents) != 1 || doc.Consents[0].PDFSHA256 != pdfSum || !bytes.Contains(doc.Consents[0].Record, []byte(pName)) {
			t.Errorf("the consents: %+v", doc.Consents)
		} else {
			sum := sha256.Sum256(files[doc.Consents[0].PDF])
			if hex.EncodeToString(sum[:]) != pdfSum || !bytes.HasPrefix(files[doc.Consents[0].PDF], []byte("%PDF-")) {
				t.Errorf("the signed PDF in the bundle is not the one signed")
			}
		}
		if len(doc.Conversations) != 1 || len(doc.Conversations[0].Messages) != 2 || doc.Conversations[0].Messages[0].Body != message ||
			doc.Conversations[0].Messages[1].Attachment == nil || string(files[doc.Conversations[0].Messages[1].Attachment.Path]) != "A leaflet for Ottoline" {
			t.Errorf("the conversations: %+v", doc.Conversations)
		}
		revealed := false
		for _, a := range doc.AccessLog {
			revealed = revealed || a.Action == "identity.reveal" && a.Who == "a member of the study team"
		}
		if !revealed {
			t.Errorf("the access log does not tell the re-identification: %+v", doc.AccessLog)
		}
		// Nothing of Q, in any file of the bundle.
		for name, content := range files {
			for _, other := range []string{f.q.Pseudonym, qName, qValue} {
				if bytes.Contains(content, []byte(other)) {
					t.Errorf("%s holds %q, of another participant", name, other)
				}
			}
		}
		// On the trail, with what it held.
		evs := f.events(t, "subject.export", f.p.Pseudonym)
		if len(evs) != 1 {
			t.Fatalf("%d export events, want 1", len(evs))
		}
		ev := evs[0]
		want := map[string]string{"sha256": b.SHA256, "entries_count": "1", "files_count": "1", "consents_count": "1",
			"conversations_count": "1", "messages_count": "2", "account_count": "1", "bytes": fmt.Sprint(b.Size())}
		for k, v := range want {
			if ev.Details[k] != v {
				t.Errorf("the export event's %s is %q, want %q", k, ev.Details[k], v)
			}
		}
		if !ev.Security || ev.ParticipantID != f.p.Pseudonym || ev.ActorAccount != f.admin.AccountID {
			t.Errorf("the export event: %+v", ev)
		}
	})
}

// TestLIFE02_ErasureAfterTheExportLeavesTheIdentityUnreadable: after the
// export the admin erases P (LIFE-03): the identity is gone from the
// identity database and answers erased; a second export holds the
// identity's state only, and the signed consent and conversation as
// erased.
func TestLIFE02_ErasureAfterTheExportLeavesTheIdentityUnreadable(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		f.record(t)
		if _, err := f.svc.Export(ctx, confirmed(f.admin), "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); err != nil {
			t.Fatal(err)
		}
		if _, err := f.people.Erase(ctx, confirmed(f.admin), "clinic", f.study.ID, f.north.ID, f.p.Pseudonym); err != nil {
			t.Fatal(err)
		}
		r, err := f.people.Reveal(ctx, confirmed(f.investigator), "clinic", f.study.ID, f.north.ID, f.p.Pseudonym)
		if err != nil || r.State != participants.IdentityErased || len(r.Values) != 0 {
			t.Errorf("P after the erasure: %+v, %v", r, err)
		}
		if n := f.count(t, f.identity, `SELECT count(*) FROM identities WHERE participant_id = $1`, f.p.Pseudonym); n != 0 {
			t.Errorf("P's sealed identity is left: %d rows", n)
		}
		b, err := f.svc.Export(ctx, confirmed(f.admin), "clinic", f.study.ID, f.north.ID, f.p.Pseudonym)
		if err != nil {
			t.Fatal(err)
		}
		files := unzip(t, b)
		for name, content := range files {
			for _, gone := range []string{pName, pNational, message, "A leaflet for Ottoline"} {
				if bytes.Contains(content, []byte(gone)) {
					t.Errorf("%s still holds %q after the erasure", name, gone)
				}
			}
		}
		var doc struct {
			Identity struct {
				State string `json:"state"`
			} `json:"identity"`
			Consents []struct {
				Erased bool `json:"erased"`
			} `json:"consents"`
			Conversations []struct {
				Erased bool `json:"erased"`
			} `json:"conversations"`
		}
		if err := json.Unmarshal(files["subject.json"], &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Identity.State != "erased" || len(doc.Consents) != 1 || !doc.Consents[0].Erased ||
			len(doc.Conversations) != 1 || !doc.Conversations[0].Erased {
			t.Errorf("the bundle after the erasure: %+v", doc)
		}
	})
}

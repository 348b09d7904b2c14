package participants_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// fixture is one organization with a study of two sites and a second
// study, its people, and a second organization, over a clinical and an
// identity database of one dialect.
type fixture struct {
	clinical, identity *sqldb.DB
	kek                keys.KEK
	g                  *gate.Gate
	svc                *participants.Service
	clock              *clock

	org, other              orgs.Organization
	study, registry, trial2 orgs.Study
	north, south, reg, far  orgs.Site

	admin, manager, studyAdmin, dataManager, investigator, southInvestigator, monitor gate.Actor
	otherAdmin                                                                        gate.Actor
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// confirmed is a, confirmed just now (ACL-09; the gate's clock is the
// real one).
func (f *fixture) confirmed(a gate.Actor) gate.Actor {
	a.ConfirmedAt = time.Now()
	return a
}

func newGate(clinical, identity *sqldb.DB, kek keys.KEK) *gate.Gate {
	return gate.New(gate.Config{
		Clinical: clinical, Keys: &keys.Keyring{DB: clinical, KEK: kek},
		Identity: identity, IdentityKeys: &keys.Keyring{DB: identity, KEK: kek},
	})
}

func setup(t testing.TB, d sqldb.Dialect) *fixture {
	t.Helper()
	return setupOn(t, sqldbtest.Open(t, d, sqldb.Clinical), sqldbtest.Open(t, d, sqldb.Identity))
}

func setupOn(t testing.TB, clinical, identity *sqldb.DB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{clinical: clinical, identity: identity, clock: &clock{t: time.Now()}}
	kek, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.kek = kek
	f.g = newGate(f.clinical, f.identity, kek)
	f.svc = &participants.Service{Gate: f.g, Now: f.clock.now}
	n := 0
	enrol := func(tx *sql.Tx, org orgs.Organization, role authz.Role, studyID, siteID string) gate.Actor {
		n++
		email := string(role) + "-" + string(rune('a'+n)) + "@clinic.example"
		acc, _, err := accounts.Enrol(ctx, tx, email, "", authz.Assignment{OrgID: org.ID, Role: role, StudyID: studyID, SiteID: siteID})
		if err != nil {
			t.Fatal(err)
		}
		return gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID, RemoteAddr: "192.0.2.1"}
	}
	err = f.clinical.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		must := func(e error) {
			if e != nil && err == nil {
				err = e
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
		f.other, err = orgs.CreateOrganization(ctx, tx, "Other", "other")
		must(err)
		f.trial2, err = orgs.CreateStudy(ctx, tx, f.other.ID, orgs.KindStudy, "Trial")
		must(err)
		f.far, err = orgs.CreateSite(ctx, tx, f.other.ID, f.trial2.ID, "Far")
		must(err)
		if err != nil {
			return err
		}
		f.admin = enrol(tx, f.org, authz.OrgAdmin, "", "")
		f.manager = enrol(tx, f.org, authz.OrgManager, "", "")
		f.studyAdmin = enrol(tx, f.org, authz.StudyAdmin, f.study.ID, "")
		f.dataManager = enrol(tx, f.org, authz.DataManager, f.study.ID, "")
		f.investigator = enrol(tx, f.org, authz.SiteInvestigator, "", f.north.ID)
		f.southInvestigator = enrol(tx, f.org, authz.SiteInvestigator, "", f.south.ID)
		f.monitor = enrol(tx, f.org, authz.Monitor, f.study.ID, "")
		f.otherAdmin = enrol(tx, f.other, authz.OrgAdmin, "", "")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// ada is a full identity with distinctive values.
func ada() participants.Identity {
	return participants.Identity{
		participants.Name:       "Adelheid Quorvanne",
		participants.BirthDate:  "1957-03-14",
		participants.Email:      "adelheid.quorvanne@example.org",
		participants.Phone:      "+31 6 9876 5432",
		participants.NationalID: "QX-771-903-214",
	}
}

func (f *fixture) enrol(t testing.TB, a gate.Actor, site orgs.Site, id participants.Identity) participants.Participant {
	t.Helper()
	slug := f.org.Slug
	if site.OrgID == f.other.ID {
		slug = f.other.Slug
	}
	p, err := f.svc.Enrol(context.Background(), a, slug, site.StudyID, site.ID, id)
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	return p
}

func (f *fixture) reveal(a gate.Actor, p participants.Participant) (participants.Revealed, error) {
	slug := f.org.Slug
	if p.OrgID == f.other.ID {
		slug = f.other.Slug
	}
	return f.svc.Reveal(context.Background(), a, slug, p.StudyID, p.SiteID, p.Pseudonym)
}

func (f *fixture) events(t testing.TB, orgID string) []audit.Event {
	t.Helper()
	evs, _, err := audit.Search(context.Background(), f.clinical, audit.Filter{OrgID: orgID, Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func count(t testing.TB, db *sqldb.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// values lists every clear-text value of an identity, with the national id
// also in its normalized form.
func values(id participants.Identity) []string {
	var out []string
	for _, v := range id {
		out = append(out, v)
	}
	if nid := id[participants.NationalID]; nid != "" {
		out = append(out, strings.NewReplacer("-", "", " ", "").Replace(nid))
	}
	return out
}

// noValueIn fails if any of the values occurs in s.
func noValueIn(t testing.TB, what, s string, vals []string) {
	t.Helper()
	for _, v := range vals {
		if strings.Contains(s, v) {
			t.Errorf("%s holds the clear-text value %q", what, v)
		}
	}
}

func TestCRY09_EnrolListAndRevealWithStepUpAndGrant(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.enrol(t, f.investigator, f.north, ada())
		bare := f.enrol(t, f.dataManager, f.north, nil)
		if p.Identity != participants.IdentityRecorded || bare.Identity != participants.IdentityNone || len(p.Pseudonym) != 26 {
			t.Fatalf("enrolled %+v and %+v", p, bare)
		}

		// Lists and records are pseudonymous.
		for _, a := range []gate.Actor{f.investigator, f.dataManager, f.monitor, f.admin} {
			list, err := f.svc.List(ctx, a, f.org.Slug, f.study.ID, f.north.ID, "", 0)
			if err != nil || len(list) != 2 {
				t.Fatalf("list: %v, %v", list, err)
			}
			got, err := f.svc.Get(ctx, a, f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym)
			if err != nil || got.Pseudonym != p.Pseudonym || got.Identity != participants.IdentityRecorded {
				t.Errorf("get: %+v, %v", got, err)
			}
		}

		// Re-identification needs a fresh confirmation (ACL-09).
		if _, err := f.reveal(f.investigator, p); !errs.Is(err, errs.StepUpRequired) {
			t.Fatalf("reveal without step-up: %v, want StepUpRequired", err)
		}
		stale := f.investigator
		stale.ConfirmedAt = time.Now().Add(-gate.StepUpWindow - time.Minute)
		if _, err := f.reveal(stale, p); !errs.Is(err, errs.StepUpRequired) {
			t.Fatalf("reveal with an old confirmation: %v, want StepUpRequired", err)
		}

		// Without a decrypt grant the sensitive fields are present, not shown.
		rv, err := f.reveal(f.confirmed(f.investigator), p)
		if err != nil {
			t.Fatal(err)
		}
		want := ada()
		if rv.State != participants.IdentityRecorded || rv.Values[participants.Name] != want[participants.Name] ||
			rv.Values[participants.Email] != want[participants.Email] || rv.Values[participants.Phone] != want[participants.Phone] {
			t.Errorf("revealed %+v", rv)
		}
		if _, shown := rv.Values[participants.NationalID]; shown || len(rv.Withheld) != 2 {
			t.Errorf("without a grant: shown %v, withheld %v; want national id and birth date withheld", rv.Shown, rv.Withheld)
		}

		// A grant for the national id, at the participant's site, opens it.
		g, err := f.svc.Grant(ctx, f.confirmed(f.studyAdmin), f.org.Slug, f.study.ID, participants.GrantRequest{
			AccountID: f.investigator.AccountID, SiteID: f.north.ID, Fields: []string{"national_id"}, Reason: "re-contact for follow-up visit",
		})
		if err != nil {
			t.Fatal(err)
		}
		rv, err = f.reveal(f.confirmed(f.investigator), p)
		if err != nil || rv.Values[participants.NationalID] != want[participants.NationalID] ||
			len(rv.Withheld) != 1 || rv.Withheld[0] != participants.BirthDate {
			t.Errorf("with a national-id grant: %+v, %v", rv, err)
		}

		// Revoked, it opens nothing.
		if err := f.svc.Revoke(ctx, f.studyAdmin, f.org.Slug, f.study.ID, g.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Revoke(ctx, f.studyAdmin, f.org.Slug, f.study.ID, g.ID); err != nil {
			t.Errorf("revoking again: %v", err)
		}
		rv, err = f.reveal(f.confirmed(f.investigator), p)
		if err != nil || len(rv.Withheld) != 2 {
			t.Errorf("after revocation: %+v, %v", rv, err)
		}

		// A time-limited grant opens until it expires.
		_, err = f.svc.Grant(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, participants.GrantRequest{
			AccountID: f.investigator.AccountID, Reason: "audit of birth dates", ExpiresAt: f.clock.now().Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
		if rv, err = f.reveal(f.confirmed(f.investigator), p); err != nil || len(rv.Withheld) != 0 || len(rv.Shown) != 5 {
			t.Errorf("with a grant of every sensitive field: %+v, %v", rv, err)
		}
		f.clock.t = f.clock.t.Add(2 * time.Hour)
		if rv, err = f.reveal(f.confirmed(f.investigator), p); err != nil || len(rv.Withheld) != 2 {
			t.Errorf("after the grant expired: %+v, %v", rv, err)
		}

		// A participant without identity data answers so.
		if rv, err = f.reveal(f.confirmed(f.investigator), bare); err != nil || rv.State != participants.IdentityNone || len(rv.Values) != 0 {
			t.Errorf("reveal of a participant without identity: %+v, %v", rv, err)
		}

		// Every re-identification is on the trail, naming the participant
		// and the fields, never a value; the refusals too.
		var reveals, stepUps int
		for _, ev := range f.events(t, f.org.ID) {
			b, _ := json.Marshal(ev)
			noValueIn(t, "audit event "+ev.Action, string(b), values(ada()))
			if ev.Action != "identity.reveal" {
				continue
			}
			switch ev.Outcome {
			case audit.Success:
				reveals++
				if ev.ParticipantID == "" || !ev.Security || ev.ActorAccount != f.investigator.AccountID {
					t.Errorf("reveal event %+v", ev)
				}
				if ev.ParticipantID == p.Pseudonym && ev.Details["shown"] == "" {
					t.Errorf("reveal event without the fields shown: %+v", ev)
				}
			case audit.Denied:
				stepUps++
			}
		}
		if reveals != 6 || stepUps != 2 {
			t.Errorf("%d reveal events and %d refusals, want 6 and 2", reveals, stepUps)
		}
	})
}

// One account re-identifies at most RevealsPerHour participants an hour
// (ASVS V2.4.1): past it the answer is RateLimited, nothing is shown, and
// the refusal is on the trail; another account is not held back.
func TestCRY09_RevealsArePacedPerAccount(t *testing.T) {
	was := participants.RevealsPerHour
	participants.RevealsPerHour = 2
	t.Cleanup(func() { participants.RevealsPerHour = was })
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.enrol(t, f.investigator, f.north, ada())
		for i := range 2 {
			if _, err := f.reveal(f.confirmed(f.investigator), p); err != nil {
				t.Fatalf("reveal %d: %v", i+1, err)
			}
		}
		rv, err := f.reveal(f.confirmed(f.investigator), p)
		if !errs.Is(err, errs.RateLimited) || len(rv.Values) != 0 {
			t.Fatalf("the third reveal in an hour: %+v, %v; want RateLimited and nothing shown", rv, err)
		}
		var refused int
		f.clinical.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'identity.reveal' AND outcome = 'failure'`).Scan(&refused)
		if refused != 1 {
			t.Errorf("%d refused reveals on the trail, want 1", refused)
		}
		if _, err := f.reveal(f.confirmed(f.admin), p); err != nil {
			t.Errorf("another account's reveal: %v", err)
		}
	})
}

// Enrolment is paced per account and, ten times as much, per organization
// (ASVS V2.4.1): past the limit the answer is RateLimited, no participant
// is made, and the refusal is on the trail; another account goes on.
// TestEnrolmentAtASiteNotOfTheStudyStoresNothing enrols, as a data manager
// of the study, at a site of another study of the organization and at a
// site that does not exist: both are not found, both are on the trail, and
// neither leaves a participant, an identity or a key behind.
func TestEnrolmentAtASiteNotOfTheStudyStoresNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		for name, siteID := range map[string]string{"another study's site": f.reg.ID, "no site": "nosuchsite"} {
			_, err := f.svc.Enrol(ctx, f.dataManager, f.org.Slug, f.study.ID, siteID, ada())
			if !errs.Is(err, errs.NotFound) {
				t.Errorf("enrolment at %s: %v, want NotFound", name, err)
			}
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM participants`); n != 0 {
			t.Errorf("%d participants stored", n)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM identities`); n != 0 {
			t.Errorf("%d identities stored", n)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM data_keys WHERE scope_kind = 'participant'`); n != 0 {
			t.Errorf("%d participant keys stored", n)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'participant.enrol' AND outcome = 'failure'`); n != 2 {
			t.Errorf("%d refused enrolments on the trail, want 2", n)
		}
		f.enrol(t, f.dataManager, f.north, ada()) // the study's own site
	})
}

func TestWEB05_EnrolmentIsPacedPerAccount(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		f.svc.EnrolmentsPerHour = 3
		for range 3 {
			f.enrol(t, f.investigator, f.north, nil)
		}
		before := count(t, f.clinical, `SELECT count(*) FROM participants`)
		_, err := f.svc.Enrol(ctx, f.investigator, f.org.Slug, f.study.ID, f.north.ID, ada())
		if !errs.Is(err, errs.RateLimited) {
			t.Fatalf("the fourth enrolment in an hour: %v, want RateLimited", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM participants`); n != before {
			t.Fatalf("a refused enrolment made %d participants", n-before)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM identities`); n != 0 {
			t.Fatalf("a refused enrolment stored %d identities", n)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'participant.enrol' AND outcome = 'failure'`); n != 1 {
			t.Errorf("%d refused enrolments on the trail, want 1", n)
		}
		f.enrol(t, f.dataManager, f.north, nil) // another account
		// Unpaced, as a service made without a limit is.
		f.svc.EnrolmentsPerHour = 0
		f.enrol(t, f.investigator, f.north, nil)
	})
}

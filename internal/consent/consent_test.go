package consent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// The typed name and a distinctive answer marker that must never be in
// clear in either database.
const typedName = "Adelheid Quorvanne"

type fixture struct {
	clinical, identity *sqldb.DB
	g                  *gate.Gate
	svc                *consent.Service
	people             *participants.Service
	entries            *entries.Service
	design             *formadmin.Service
	org                orgs.Organization
	study              orgs.Study
	north, south       orgs.Site
	admin, manager     gate.Actor
	studyAdmin         gate.Actor
	investigator       gate.Actor
	southInvestigator  gate.Actor
	dataManager        gate.Actor
	monitor            gate.Actor
	carer              gate.Actor
	self, otherSelf    gate.Actor // the participant's own account, another participant's
	p, other           string     // pseudonyms
}

func confirmed(a gate.Actor) gate.Actor {
	a.ConfirmedAt = time.Now()
	return a
}

func setup(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{clinical: sqldbtest.Open(t, d, sqldb.Clinical), identity: sqldbtest.Open(t, d, sqldb.Identity)}
	kek, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.g = gate.New(gate.Config{Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: kek},
		Identity: f.identity, IdentityKeys: &keys.Keyring{DB: f.identity, KEK: kek}})
	f.svc = &consent.Service{Gate: f.g}
	f.people = &participants.Service{Gate: f.g}
	f.entries = &entries.Service{Gate: f.g}
	f.design = &formadmin.Service{Gate: f.g}
	n := 0
	enrol := func(tx *sql.Tx, role authz.Role, studyID, siteID string) gate.Actor {
		n++
		acc, _, err := accounts.Enrol(ctx, tx, fmt.Sprintf("%s-%d@clinic.example", role, n), "",
			authz.Assignment{OrgID: f.org.ID, Role: role, StudyID: studyID, SiteID: siteID})
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
		if f.south, err = orgs.CreateSite(ctx, tx, f.org.ID, f.study.ID, "South"); err != nil {
			return err
		}
		f.admin = enrol(tx, authz.OrgAdmin, "", "")
		f.manager = enrol(tx, authz.OrgManager, "", "")
		f.studyAdmin = enrol(tx, authz.StudyAdmin, f.study.ID, "")
		f.investigator = enrol(tx, authz.SiteInvestigator, "", f.north.ID)
		f.southInvestigator = enrol(tx, authz.SiteInvestigator, "", f.south.ID)
		f.dataManager = enrol(tx, authz.DataManager, f.study.ID, "")
		f.monitor = enrol(tx, authz.Monitor, f.study.ID, "")
		f.carer = enrol(tx, authz.CareProvider, f.study.ID, "")
		f.self = enrol(tx, authz.Participant, "", f.north.ID)
		f.otherSelf = enrol(tx, authz.Participant, "", f.north.ID)
		for _, x := range []struct {
			pseudonym *string
			account   string
			kind      authz.RelationKind
		}{{&f.p, f.self.AccountID, authz.RelationSelf}, {&f.other, f.otherSelf.AccountID, authz.RelationSelf}} {
			p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
			if err != nil {
				return err
			}
			*x.pseudonym = p.Pseudonym
			if _, err := authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: p.Pseudonym, AccountID: x.account, Kind: x.kind, CreatedBy: f.admin.AccountID}); err != nil {
				return err
			}
		}
		_, err = authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: f.p, AccountID: f.carer.AccountID, Kind: authz.RelationCare, CreatedBy: f.admin.AccountID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func answer(i int) *int { return &i }

func document(title string) consent.Content {
	return consent.Content{
		Title: title,
		Sections: []consent.Section{
			{Heading: "Why this study", Text: "We study how well a new treatment works.\nTaking part is voluntary."},
			{Heading: "What happens", Text: "Three visits over six months.", ImageNote: "A timeline of the three visits"},
		},
		Questions: []consent.Question{
			{Text: "Can you stop taking part at any time?", Choices: []string{"No", "Yes, without giving a reason"}, Answer: answer(1)},
			{Text: "How many visits are there?", Choices: []string{"Three", "Ten", "One"}, Answer: answer(0)},
		},
	}
}

// publish creates or drafts the document in English and publishes it.
func (f *fixture) publish(t *testing.T, title string, reconsent bool) consent.Version {
	t.Helper()
	ctx := context.Background()
	var v consent.Version
	var err error
	if docs, _ := f.svc.Documents(ctx, f.studyAdmin, "clinic", f.study.ID); len(docs) == 0 {
		v, err = f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "en", document(title))
	} else {
		v, err = f.svc.SaveDraft(ctx, f.studyAdmin, "clinic", f.study.ID, "en", "", document(title))
	}
	if err != nil {
		t.Fatal(err)
	}
	if v, err = f.svc.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "en", v.Digest, reconsent); err != nil {
		t.Fatal(err)
	}
	return v
}

func (f *fixture) at(p string) consent.Place {
	return consent.Place{StudyID: f.study.ID, SiteID: f.north.ID, Participant: p}
}

func signature(version int) consent.Signature {
	return consent.Signature{Language: "en", Version: version, Answers: []int{1, 0}, Name: typedName}
}

func (f *fixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := f.clinical.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eventDetail reads a detail of the newest successful event of action.
func (f *fixture) eventDetail(t *testing.T, action, key string) string {
	t.Helper()
	evs, _, err := audit.Search(context.Background(), f.clinical, audit.Filter{OrgID: f.org.ID, Action: action, Outcome: audit.Success})
	if err != nil || len(evs) == 0 {
		t.Fatalf("events %s: %v, %v", action, evs, err)
	}
	newest := evs[0]
	for _, ev := range evs {
		if ev.Time.After(newest.Time) {
			newest = ev
		}
	}
	return newest.Details[key]
}

func kind(t *testing.T, what string, err error, want errs.Kind) {
	t.Helper()
	if errs.KindOf(err) != want {
		t.Errorf("%s: %v (%s), want %s", what, err, errs.KindOf(err), want)
	}
}

func denied(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, gate.ErrDenied) {
		t.Errorf("%s: %v, want not found", what, err)
	}
}

// TestAUD01_SignedConsentPDFDigestIsOnTheTrailAndIsTheDownloadedCopy: the
// participant signs in the portal after a fresh confirmation; the digest
// of the sealed PDF is on the audit event and is that of the copy the
// participant downloads, which is a PDF of what was shown.
func TestAUD01_SignedConsentPDFDigestIsOnTheTrailAndIsTheDownloadedCopy(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v := f.publish(t, "Consent to take part in the Trial", false)
		// The signer reads the document without the correct answers.
		doc, err := f.svc.Document(ctx, f.self, "clinic", f.at(f.p), "en")
		if err != nil || doc.Version != v.Version || len(doc.Content.Questions) != 2 || doc.Content.Questions[0].Answer != nil {
			t.Fatalf("the document to sign: %+v, %v", doc, err)
		}
		if _, err := f.svc.Sign(ctx, f.self, "clinic", f.at(f.p), signature(v.Version)); !errs.Is(err, errs.StepUpRequired) {
			t.Fatalf("signing without a fresh confirmation: %v", err)
		}
		c, err := f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(v.Version))
		if err != nil || c.Method != consent.Portal || c.Representative || c.Kind != consent.KindConsent {
			t.Fatalf("sign: %+v, %v", c, err)
		}
		if got := f.eventDetail(t, "consent.sign", "pdf_sha256"); got != c.PDFSHA256 || len(got) != 64 {
			t.Errorf("the event's pdf_sha256 %q, the consent's %q", got, c.PDFSHA256)
		}
		_, pdf, err := f.svc.Download(ctx, f.self, "clinic", f.at(f.p), c.ID)
		if err != nil {
			t.Fatalf("the participant downloads their copy: %v", err)
		}
		sum := sha256.Sum256(pdf)
		if hex.EncodeToString(sum[:]) != c.PDFSHA256 || !bytes.HasPrefix(pdf, []byte("%PDF-")) {
			t.Errorf("the downloaded copy's SHA-256 %x, the recorded one %s", sum, c.PDFSHA256)
		}
		if got := f.eventDetail(t, "consent.download", "pdf_sha256"); got != c.PDFSHA256 {
			t.Errorf("the download's event names %q", got)
		}
		// Staff who may re-identify download it with a fresh confirmation;
		// a monitor, who reads consents by pseudonym only, may not.
		if _, _, err := f.svc.Download(ctx, f.investigator, "clinic", f.at(f.p), c.ID); !errs.Is(err, errs.StepUpRequired) {
			t.Errorf("the investigator without step-up: %v", err)
		}
		if _, again, err := f.svc.Download(ctx, confirmed(f.investigator), "clinic", f.at(f.p), c.ID); err != nil || !bytes.Equal(again, pdf) {
			t.Errorf("the investigator's copy: %v", err)
		}
		_, _, err = f.svc.Download(ctx, confirmed(f.monitor), "clinic", f.at(f.p), c.ID)
		kind(t, "the monitor downloads", err, errs.Forbidden)
		_, _, err = f.svc.Download(ctx, f.otherSelf, "clinic", f.at(f.p), c.ID)
		denied(t, "another participant downloads", err)
		st, err := f.svc.Status(ctx, f.monitor, "clinic", f.at(f.p))
		if err != nil || st.Status != consent.Valid {
			t.Errorf("status: %+v, %v", st, err)
		}
	})
}

// TestWEB05_WrongAnswerOrOutdatedVersionStoresNothing: a wrong
// comprehension answer, a missing one, an outdated or unknown version, a
// bad name or a drawn signature that is not a PNG image: each is refused
// with a clear message, and nothing is stored.
func TestWEB05_WrongAnswerOrOutdatedVersionStoresNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v1 := f.publish(t, "Consent, first version", false)
		v2 := f.publish(t, "Consent, second version", false)
		me := confirmed(f.self)
		wrong := signature(v2.Version)
		wrong.Answers = []int{0, 0}
		_, err := f.svc.Sign(ctx, me, "clinic", f.at(f.p), wrong)
		kind(t, "a wrong answer", err, errs.Invalid)
		if err != nil && !strings.Contains(err.Error(), "question 1 is not correct") {
			t.Errorf("the refusal says: %v", err)
		}
		short := signature(v2.Version)
		short.Answers = []int{1}
		_, err = f.svc.Sign(ctx, me, "clinic", f.at(f.p), short)
		kind(t, "a missing answer", err, errs.Invalid)
		_, err = f.svc.Sign(ctx, me, "clinic", f.at(f.p), signature(v1.Version))
		kind(t, "an outdated version", err, errs.Conflict)
		_, err = f.svc.Sign(ctx, me, "clinic", f.at(f.p), signature(7))
		kind(t, "a version that does not exist", err, errs.Conflict)
		fr := signature(v2.Version)
		fr.Language = "fr"
		_, err = f.svc.Sign(ctx, me, "clinic", f.at(f.p), fr)
		denied(t, "a language without a document", err)
		noName := signature(v2.Version)
		noName.Name = "  "
		_, err = f.svc.Sign(ctx, me, "clinic", f.at(f.p), noName)
		kind(t, "no typed name", err, errs.Invalid)
		gif := signature(v2.Version)
		gif.Drawing = base64.StdEncoding.EncodeToString([]byte("GIF89a\x01\x00\x01\x00 pretending to be a signature.png"))
		_, err = f.svc.Sign(ctx, me, "clinic", f.at(f.p), gif)
		kind(t, "a drawn signature that is not a PNG image", err, errs.Invalid)
		fake := signature(v2.Version)
		fake.Drawing = base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\nnot really"))
		_, err = f.svc.Sign(ctx, me, "clinic", f.at(f.p), fake)
		kind(t, "a PNG header without an image", err, errs.Invalid)
		if n := f.count(t, `SELECT count(*) FROM consents`); n != 0 {
			t.Fatalf("%d consents stored after refusals", n)
		}
		// A real drawing is taken, re-encoded.
		ok := signature(v2.Version)
		ok.Drawing = "data:image/png;base64," + drawnPNG(t)
		if _, err := f.svc.Sign(ctx, me, "clinic", f.at(f.p), ok); err != nil {
			t.Fatalf("a drawn signature: %v", err)
		}
		_, err = f.svc.Sign(ctx, me, "clinic", f.at(f.p), signature(v2.Version))
		kind(t, "signing the same version twice", err, errs.Conflict)
	})
}

func drawnPNG(t *testing.T) string {
	img := image.NewNRGBA(image.Rect(0, 0, 120, 40))
	for x := 10; x < 110; x++ {
		img.Set(x, 20+x%7, color.NRGBA{0, 0, 128, 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// TestACL05_OnlyTheParticipantOrTheirRepresentativeSigns: another
// participant's account, a care provider of the participant, an
// organization manager and an investigator of another site are refused as
// if the participant did not exist; a monitor, who reads consents, is told
// it may not sign. An investigator records a consent in person, here
// signed by a legally authorized representative.
func TestACL05_OnlyTheParticipantOrTheirRepresentativeSigns(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v := f.publish(t, "Consent", false)
		for _, x := range []struct {
			who string
			a   gate.Actor
		}{
			{"another participant's account", f.otherSelf},
			{"a care provider of the participant", f.carer},
			{"an organization manager", f.manager},
			{"an investigator of another site", f.southInvestigator},
			{"a study admin", f.studyAdmin},
		} {
			_, err := f.svc.Sign(ctx, confirmed(x.a), "clinic", f.at(f.p), signature(v.Version))
			denied(t, x.who+" signs", err)
		}
		_, err := f.svc.Sign(ctx, confirmed(f.monitor), "clinic", f.at(f.p), signature(v.Version))
		kind(t, "a monitor signs", err, errs.Forbidden)
		_, err = f.svc.Sign(ctx, confirmed(f.dataManager), "clinic", f.at(f.p), signature(v.Version))
		kind(t, "a data manager signs", err, errs.Forbidden)
		if n := f.count(t, `SELECT count(*) FROM consents`); n != 0 {
			t.Fatalf("%d consents stored after refusals", n)
		}
		lar := signature(v.Version)
		lar.Representative = &consent.Representative{Name: "Bertram Quorvanne", Relation: "son, legal guardian"}
		c, err := f.svc.Sign(ctx, confirmed(f.investigator), "clinic", f.at(f.p), lar)
		if err != nil || c.Method != consent.InPerson || !c.Representative || c.SignedBy != f.investigator.AccountID {
			t.Fatalf("in person by a representative: %+v, %v", c, err)
		}
		if f.eventDetail(t, "consent.sign", "representative") != "true" || f.eventDetail(t, "consent.sign", "method") != "in_person" {
			t.Error("the event does not say a representative signed in person")
		}
		// The participant's own account reaches only their own record.
		_, err = f.svc.Status(ctx, f.self, "clinic", f.at(f.other))
		denied(t, "the participant reads another's consent", err)
		_, err = f.svc.Pending(ctx, f.self, "clinic", f.study.ID)
		denied(t, "the participant lists the pending consents", err)
	})
}

// TestAUD01_OnlyTheInvestigatorCountersigns: where the study asks for it,
// a consent is valid only once an investigator countersigned it, with a
// fresh confirmation; the countersigned PDF is new, and its digest is on
// the countersignature's event.
func TestAUD01_OnlyTheInvestigatorCountersigns(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v := f.publish(t, "Consent", false)
		if _, err := f.svc.SetSettings(ctx, f.studyAdmin, "clinic", f.study.ID, consent.Settings{CountersignRequired: true}); err != nil {
			t.Fatal(err)
		}
		c, err := f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(v.Version))
		if err != nil || !c.CountersignRequired {
			t.Fatalf("sign: %+v, %v", c, err)
		}
		if st, _ := f.svc.Status(ctx, f.investigator, "clinic", f.at(f.p)); st.Status != consent.PendingCountersignature {
			t.Errorf("before the countersignature: %s", st.Status)
		}
		_, err = f.svc.Countersign(ctx, confirmed(f.dataManager), "clinic", f.at(f.p), c.ID, "Dana Manager")
		kind(t, "a data manager countersigns", err, errs.Forbidden)
		_, err = f.svc.Countersign(ctx, confirmed(f.monitor), "clinic", f.at(f.p), c.ID, "Mona Monitor")
		kind(t, "a monitor countersigns", err, errs.Forbidden)
		_, err = f.svc.Countersign(ctx, confirmed(f.self), "clinic", f.at(f.p), c.ID, typedName)
		kind(t, "the participant countersigns", err, errs.Forbidden)
		_, err = f.svc.Countersign(ctx, confirmed(f.southInvestigator), "clinic", f.at(f.p), c.ID, "Sam South")
		denied(t, "an investigator of another site countersigns", err)
		_, err = f.svc.Countersign(ctx, f.investigator, "clinic", f.at(f.p), c.ID, "Ines Investigator")
		kind(t, "the investigator without a fresh confirmation", err, errs.StepUpRequired)
		cs, err := f.svc.Countersign(ctx, confirmed(f.investigator), "clinic", f.at(f.p), c.ID, "Ines Investigator")
		if err != nil || cs.CountersignedBy != f.investigator.AccountID || cs.PDFSHA256 == c.PDFSHA256 {
			t.Fatalf("countersign: %+v, %v", cs, err)
		}
		if f.eventDetail(t, "consent.countersign", "pdf_sha256") != cs.PDFSHA256 || f.eventDetail(t, "consent.countersign", "previous_pdf_sha256") != c.PDFSHA256 {
			t.Error("the countersignature's event does not name both PDFs")
		}
		_, pdf, err := f.svc.Download(ctx, f.self, "clinic", f.at(f.p), c.ID)
		if sum := sha256.Sum256(pdf); err != nil || hex.EncodeToString(sum[:]) != cs.PDFSHA256 {
			t.Errorf("the countersigned copy: %v", err)
		}
		_, err = f.svc.Countersign(ctx, confirmed(f.investigator), "clinic", f.at(f.p), c.ID, "Ines Investigator")
		kind(t, "countersigning twice", err, errs.Conflict)
		if st, _ := f.svc.Status(ctx, f.investigator, "clinic", f.at(f.p)); st.Status != consent.Valid {
			t.Errorf("after the countersignature: %s", st.Status)
		}
		// What was signed never changes, even to SQL that bypasses the
		// application; nor does a published version.
		if _, err := f.clinical.ExecContext(ctx, `UPDATE consents SET signed_at = signed_at + 1 WHERE id = $1`, c.ID); err == nil {
			t.Error("a signed consent's time changed")
		}
		if _, err := f.clinical.ExecContext(ctx, `UPDATE consent_versions SET content = '{}' WHERE version = $1`, v.Version); err == nil {
			t.Error("a published consent version changed")
		}
		if _, err := f.clinical.ExecContext(ctx, `DELETE FROM consent_versions WHERE version = $1`, v.Version); err == nil {
			t.Error("a published consent version was deleted")
		}
	})
}

// TestWEB05_DataEntryWaitsForConsentWhereTheStudySaysSo: no entry before
// consent, then entries, and none after the withdrawal; a new version
// published with re-consent lists the participant as pending and stops
// entry until they sign it (the old version is refused as outdated).
func TestWEB05_DataEntryWaitsForConsentWhereTheStudySaysSo(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		form := &forms.Form{Key: "vitals", Title: "Vitals", Fields: []forms.Field{{Name: "weight", Label: "Weight", Type: forms.Decimal}}}
		fv, err := f.design.Create(ctx, f.studyAdmin, "clinic", f.study.ID, form)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.design.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "vitals", fv.Digest); err != nil {
			t.Fatal(err)
		}
		day0 := 0
		if _, err := f.design.SetSchedule(ctx, f.studyAdmin, "clinic", f.study.ID, []forms.Visit{
			{Key: "baseline", Label: "Baseline", Day: &day0, Forms: []string{"vitals"}, Repeating: true},
		}); err != nil {
			t.Fatal(err)
		}
		n := 0
		save := func() error {
			n++
			_, err := f.entries.Save(ctx, f.investigator, "clinic", entries.Place{StudyID: f.study.ID, SiteID: f.north.ID, Participant: f.p,
				Visit: "baseline", Repeat: n, Form: "vitals"}, entries.Save{Values: map[string]string{"weight": "70.5"}})
			return err
		}
		if err := save(); err != nil {
			t.Fatalf("a study without the requirement: %v", err)
		}
		if _, err := f.svc.SetSettings(ctx, f.studyAdmin, "clinic", f.study.ID, consent.Settings{EntryRequiresConsent: true}); err != nil {
			t.Fatal(err)
		}
		if err := save(); errs.KindOf(err) != errs.Conflict || !strings.Contains(err.Error(), "not consented") {
			t.Errorf("an entry before consent: %v", err)
		}
		v1 := f.publish(t, "Consent", false)
		if _, err := f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(v1.Version)); err != nil {
			t.Fatal(err)
		}
		if err := save(); err != nil {
			t.Errorf("an entry after consent: %v", err)
		}
		// A new version without re-consent changes nothing for those who
		// signed.
		f.publish(t, "Consent, typo fixed", false)
		if err := save(); err != nil {
			t.Errorf("an entry after a version without re-consent: %v", err)
		}
		v3 := f.publish(t, "Consent, new procedure", true)
		pending, err := f.svc.Pending(ctx, f.investigator, "clinic", f.study.ID)
		if err != nil || len(pending) != 2 || pending[0].Status == consent.Valid {
			t.Fatalf("pending: %+v, %v", pending, err)
		}
		for _, ps := range pending {
			want := consent.None
			if ps.Participant == f.p {
				want = consent.ReconsentRequired
			}
			if ps.Status != want {
				t.Errorf("pending %s: %s, want %s", ps.Participant, ps.Status, want)
			}
		}
		if southern, err := f.svc.Pending(ctx, f.southInvestigator, "clinic", f.study.ID); err != nil || len(southern) != 0 {
			t.Errorf("another site's investigator lists %+v, %v", southern, err)
		}
		if err := save(); errs.KindOf(err) != errs.Conflict || !strings.Contains(err.Error(), "new version") {
			t.Errorf("an entry while re-consent is pending: %v", err)
		}
		_, err = f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(v1.Version))
		kind(t, "re-signing the outdated version", err, errs.Conflict)
		if _, err := f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(v3.Version)); err != nil {
			t.Fatal(err)
		}
		if err := save(); err != nil {
			t.Errorf("an entry after re-consent: %v", err)
		}
		w, err := f.svc.Withdraw(ctx, confirmed(f.self), "clinic", f.at(f.p), consent.Signature{Name: typedName})
		if err != nil || w.Kind != consent.KindWithdrawal || w.PDFSHA256 == "" {
			t.Fatalf("withdraw: %+v, %v", w, err)
		}
		if f.eventDetail(t, "consent.withdraw", "pdf_sha256") != w.PDFSHA256 {
			t.Error("the withdrawal's event does not name its PDF")
		}
		if err := save(); errs.KindOf(err) != errs.Conflict || !strings.Contains(err.Error(), "withdrew") {
			t.Errorf("an entry after the withdrawal: %v", err)
		}
		_, err = f.svc.Withdraw(ctx, confirmed(f.self), "clinic", f.at(f.p), consent.Signature{Name: typedName})
		kind(t, "withdrawing twice", err, errs.Conflict)
		list, err := f.svc.List(ctx, f.monitor, "clinic", f.at(f.p))
		if err != nil || len(list) != 3 || list[0].Kind != consent.KindWithdrawal {
			t.Errorf("the participant's consents: %+v, %v", list, err)
		}
	})
}

// dump reads every value of every table of db as text, as a copy of the
// database would show it.
func dump(t *testing.T, db *sqldb.DB) string {
	t.Helper()
	ctx := context.Background()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if db.Dialect == sqldb.Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	var b strings.Builder
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprintf(&b, "%s\x00", v)
			}
		}
		rows.Close()
	}
	return b.String()
}

// TestCRY03_NoConsentAnswerOrSignedNameInClearInEitherDatabase: the typed
// names, the representative's, the answers and the PDF are only ever
// stored sealed.
func TestCRY03_NoConsentAnswerOrSignedNameInClearInEitherDatabase(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v := f.publish(t, "Consent", true)
		if _, err := f.svc.SetSettings(ctx, f.studyAdmin, "clinic", f.study.ID, consent.Settings{CountersignRequired: true}); err != nil {
			t.Fatal(err)
		}
		lar := signature(v.Version)
		lar.Representative = &consent.Representative{Name: "Bertram Quorvanne", Relation: "guardian"}
		c, err := f.svc.Sign(ctx, confirmed(f.investigator), "clinic", f.at(f.p), lar)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Countersign(ctx, confirmed(f.investigator), "clinic", f.at(f.p), c.ID, "Ines Investigatrix"); err != nil {
			t.Fatal(err)
		}
		for name, db := range map[string]*sqldb.DB{"clinical": f.clinical, "identity": f.identity} {
			all := dump(t, db)
			for _, secret := range []string{typedName, "Quorvanne", "Ines Investigatrix", `"answers"`, "%PDF-", "guardian"} {
				if strings.Contains(all, secret) {
					t.Errorf("the %s database holds %q in clear", name, secret)
				}
			}
		}
		if !strings.Contains(dump(t, f.clinical), c.ID) {
			t.Error("the dump misses the consent: the test reads nothing")
		}
	})
}

// TestLIFE03_ErasureMakesTheSignedConsentUnreadable: the PDF and record
// are sealed under the participant's key; once it is destroyed, neither
// opens, on this node or another, and no new signature is taken.
func TestLIFE03_ErasureMakesTheSignedConsentUnreadable(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		v := f.publish(t, "Consent", false)
		c, err := f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(v.Version))
		if err != nil {
			t.Fatal(err)
		}
		keep, err := f.svc.Sign(ctx, confirmed(f.otherSelf), "clinic", f.at(f.other), signature(v.Version))
		if err != nil {
			t.Fatal(err)
		}
		var sealed []byte
		if err := f.clinical.QueryRowContext(ctx, `SELECT pdf FROM consents WHERE id = $1`, c.ID).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		at := keys.Context{OrgID: f.org.ID, StudyID: f.study.ID, RecordID: c.ID, Field: "consent.pdf"}
		if pt, err := keys.Open(ctx, f.g.IdentityKeys(), sealed, at); err != nil || !bytes.HasPrefix(pt, []byte("%PDF-")) {
			t.Fatalf("before erasure the sealed PDF opens: %v", err)
		}
		// Moved to another participant's consent, it does not open (CRY-05).
		moved := at
		moved.RecordID = keep.ID
		if _, err := keys.Open(ctx, f.g.IdentityKeys(), sealed, moved); err == nil {
			t.Error("the sealed PDF opens as another consent's")
		}
		if _, err := f.people.Erase(ctx, confirmed(f.admin), "clinic", f.study.ID, f.north.ID, f.p); err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Open(ctx, f.g.IdentityKeys(), sealed, at); !errors.Is(err, keys.ErrKeyDestroyed) {
			t.Errorf("the sealed PDF after erasure: %v, want ErrKeyDestroyed", err)
		}
		_, _, err = f.svc.Download(ctx, f.self, "clinic", f.at(f.p), c.ID)
		kind(t, "downloading after erasure", err, errs.Conflict)
		_, err = f.svc.Withdraw(ctx, confirmed(f.self), "clinic", f.at(f.p), consent.Signature{Name: typedName})
		kind(t, "signing after erasure", err, errs.Conflict)
		if _, pdf, err := f.svc.Download(ctx, f.otherSelf, "clinic", f.at(f.other), keep.ID); err != nil || len(pdf) == 0 {
			t.Errorf("another participant's copy: %v", err)
		}
	})
}

// TestWEB05_ConsentDocumentsAreValidatedAndVersioned: a document is checked
// whole; a draft is replaced only from the digest its designer saw; only
// designers write documents and see the correct answers.
func TestWEB05_ConsentDocumentsAreValidatedAndVersioned(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		bad := document("Consent")
		bad.Questions[1].Answer = answer(3)
		_, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "en", bad)
		kind(t, "an answer that is no choice", err, errs.Invalid)
		_, err = f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "English", document("Consent"))
		kind(t, "a language that is no tag", err, errs.Invalid)
		empty := document("Consent")
		empty.Sections = nil
		_, err = f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "en", empty)
		kind(t, "no sections", err, errs.Invalid)
		_, err = f.svc.Create(ctx, f.investigator, "clinic", f.study.ID, "en", document("Consent"))
		denied(t, "an investigator writes a document", err)
		v, err := f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "en", document("Consent"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.svc.Create(ctx, f.studyAdmin, "clinic", f.study.ID, "en", document("Consent"))
		kind(t, "a second English document", err, errs.Conflict)
		_, err = f.svc.SaveDraft(ctx, f.studyAdmin, "clinic", f.study.ID, "en", "stale", document("Consent 2"))
		kind(t, "a draft from a stale digest", err, errs.Conflict)
		v, err = f.svc.SaveDraft(ctx, f.studyAdmin, "clinic", f.study.ID, "en", v.Digest, document("Consent 2"))
		if err != nil || v.Version != 1 || v.Title != "Consent 2" {
			t.Fatalf("draft: %+v, %v", v, err)
		}
		if _, err := f.svc.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "en", "stale", false); errs.KindOf(err) != errs.Conflict {
			t.Errorf("publishing a digest never seen: %v", err)
		}
		if _, err := f.svc.Publish(ctx, f.studyAdmin, "clinic", f.study.ID, "en", v.Digest, false); err != nil {
			t.Fatal(err)
		}
		vs, err := f.svc.Versions(ctx, f.investigator, "clinic", f.study.ID, "en")
		if err != nil || len(vs) != 1 || vs[0].Content.Questions[0].Answer != nil {
			t.Errorf("the investigator's view: %+v, %v", vs, err)
		}
		vs, err = f.svc.Versions(ctx, f.studyAdmin, "clinic", f.study.ID, "en")
		if err != nil || len(vs) != 1 || vs[0].Content.Questions[0].Answer == nil || vs[0].State != consent.Published {
			t.Errorf("the designer's view: %+v, %v", vs, err)
		}
		_, err = f.svc.Documents(ctx, f.manager, "clinic", f.study.ID)
		denied(t, "an organization manager lists the documents", err)
	})
}

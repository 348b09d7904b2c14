package web_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/participants"
)

// eConsent in Chromium (ACL-05, AUD-01): the study admin writes and
// publishes a consent document with a comprehension question, and asks
// for consent before data entry and for the investigator's
// countersignature; the participant, on a phone-sized screen, reads it,
// answers and signs in the portal; the investigator countersigns, and the
// PDF they download has the SHA-256 the audit trail names. A new version
// published with re-consent puts the participant back to waiting, and the
// investigator's entry is refused until they sign again.
func TestACL05_BrowserConsentSignedCountersignedAndAskedAgain(t *testing.T) {
	t.Parallel()
	b := browsertest.Start(t, browsertest.Options{Timeout: 3 * time.Minute})
	f := demoOf(t, b.Server)
	ctx := context.Background()
	admin, inv, self := b.Server.Logins[authz.StudyAdmin], b.Server.Logins[authz.SiteInvestigator], b.Server.Logins[authz.Participant]
	var pseudonym string
	err := b.Server.Instance.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		p, err := participants.Create(ctx, tx, f.org.ID, f.study.ID, f.north.ID)
		if err != nil {
			return err
		}
		pseudonym = p.Pseudonym
		acc, err := accounts.ByEmail(ctx, tx, self.Email)
		if err != nil {
			return err
		}
		if _, err := authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: p.Pseudonym, AccountID: acc.ID, Kind: authz.RelationSelf}); err != nil {
			return err
		}
		// A form to enter data with.
		form := &forms.Form{Key: "vitals", Title: "Vitals", Fields: []forms.Field{{Name: "weight", Label: "Weight", Type: forms.Decimal}}}
		v, err := forms.Create(ctx, tx, f.org.ID, f.study.ID, acc.ID, form)
		if err != nil {
			return err
		}
		if _, err := forms.Publish(ctx, tx, f.org.ID, f.study.ID, "vitals", acc.ID, v.Digest); err != nil {
			return err
		}
		return forms.SetSchedule(ctx, tx, f.org.ID, f.study.ID, []forms.Visit{{Key: "baseline", Label: "Baseline", Forms: []string{"vitals"}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	img := image.NewRGBA(image.Rect(0, 0, 6, 3))
	img.Set(1, 1, color.RGBA{B: 200, A: 255})
	var figure bytes.Buffer
	if err := png.Encode(&figure, img); err != nil {
		t.Fatal(err)
	}
	document := func(title string) string {
		return `{"title": "` + title + `", "sections": [{"heading": "Why", "text": "We study how sleep changes with the new dose.",
			"image": "` + base64.StdEncoding.EncodeToString(figure.Bytes()) + `", "image_note": "A night's sleep, in stages"}],
			"questions": [{"text": "May you leave the study at any time?", "choices": ["Yes", "No"], "answer": 0}]}`
	}

	// The study admin.
	actx := b.Ctx
	signIn(t, actx, b.BaseURL, admin.Email, admin.Password)
	consentPage := b.BaseURL + "/orgs/demo/studies/" + f.study.ID + "/consent"
	do(t, actx, chromedp.Navigate(consentPage))
	arrive(t, actx, "#consent-settings")
	do(t, actx, click("#entry-requires-consent"), click("#countersign-required"))
	submit(t, actx, "#save-consent-settings")
	arrive(t, actx, "#notice")
	do(t, actx, setValue("#language", "en"), setValue("#content", document("Sleep study consent")))
	submit(t, actx, "#create-document-button")
	arrive(t, actx, "#publish-en")
	submit(t, actx, "#publish-en")
	arrive(t, actx, "#notice")

	// The participant signs in the portal.
	pctx := b.NewContext(t)
	do(t, pctx, chromedp.EmulateViewport(390, 844))
	signIn(t, pctx, b.BaseURL, self.Email, self.Password)
	submit(t, pctx, "a.records")
	arrive(t, pctx, "#records")
	submit(t, pctx, `a.record[data-participant="`+pseudonym+`"]`)
	arrive(t, pctx, "#consent-status")
	submit(t, pctx, "#read-and-sign")
	arrive(t, pctx, "#sign")
	if ok := eval[bool](t, pctx, `(() => { const i = document.querySelector("img.consent-image"); return !!i && i.complete && i.naturalWidth === 6 && i.alt.includes("sleep"); })()`); !ok {
		t.Error("the document's image is not shown, described, on the page")
	}
	do(t, pctx, click("#q-0-1"), typeInto("#name", "Ada Example"))
	submit(t, pctx, "#sign-button")
	arrive(t, pctx, "#error")
	if got := text(t, pctx, "#error"); !strings.Contains(got, "not correct") {
		t.Errorf("a wrong answer: %q", got)
	}
	do(t, pctx, click("#q-0-0"), setValue("#name", "Ada Example"))
	// A drawn signature, as a finger would draw it.
	eval[bool](t, pctx, `(() => {
		const pad = document.getElementById("signature-pad"), r = pad.getBoundingClientRect();
		const at = (x, y, type) => pad.dispatchEvent(new PointerEvent(type, {clientX: r.left + x, clientY: r.top + y, pointerId: 7, bubbles: true}));
		at(10, 20, "pointerdown"); at(80, 60, "pointermove"); at(150, 30, "pointermove"); at(220, 70, "pointermove"); at(220, 70, "pointerup");
		return true; })()`)
	submit(t, pctx, "#sign-button")
	arrive(t, pctx, "#consent-status")
	if got := text(t, pctx, "#consent-status"); !strings.Contains(got, "countersignature") {
		t.Errorf("after signing: %q", got)
	}

	// The investigator: entry waits for the countersignature, then goes.
	ictx := b.NewContext(t)
	signIn(t, ictx, b.BaseURL, inv.Email, inv.Password)
	participant := b.BaseURL + "/orgs/demo/studies/" + f.study.ID + "/sites/" + f.north.ID + "/participants/" + pseudonym
	entry := participant + "/visits/baseline/1/forms/vitals"
	save := func(weight string) string {
		t.Helper()
		do(t, ictx, chromedp.Navigate(entry))
		arrive(t, ictx, "#entry")
		do(t, ictx, setValue("#f-weight", weight))
		if eval[int](t, ictx, `document.querySelectorAll("#reason").length`) == 1 {
			do(t, ictx, setValue("#reason", "new reading"))
		}
		submit(t, ictx, "#save")
		arrive(t, ictx, "#notice, #error")
		return text(t, ictx, "#notice, #error")
	}
	if got := save("70"); !strings.Contains(got, "consent") {
		t.Errorf("an entry before the countersignature: %q", got)
	}
	do(t, ictx, chromedp.Navigate(participant))
	arrive(t, ictx, "form.countersign")
	do(t, ictx, typeInto("form.countersign input[name=name]", "Dr Ines North"))
	submit(t, ictx, ".countersign-button")
	arrive(t, ictx, "#consent-status")
	if got := text(t, ictx, "#consent-status"); !strings.Contains(got, "valid") {
		t.Fatalf("after the countersignature: %q", got)
	}
	sum, err := chromedp.Run(ictx, chromedp.Evaluate[string](`fetch(document.querySelector("a.consent-pdf").href)
		.then(r => r.arrayBuffer()).then(b => crypto.subtle.digest("SHA-256", b))
		.then(d => [...new Uint8Array(d)].map(x => x.toString(16).padStart(2, "0")).join(""))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	hasImage, err := chromedp.Run(ictx, chromedp.Evaluate[bool](`fetch(document.querySelector("a.consent-pdf").href)
		.then(r => r.text()).then(s => s.includes("/Subtype /Image"))`, chromedp.EvalAwaitPromise))
	if err != nil || !hasImage {
		t.Errorf("the signed PDF holds no drawn signature (%v)", err)
	}
	evs, _, err := audit.Search(ctx, b.Server.Instance.Clinical, audit.Filter{OrgID: f.org.ID, Action: "consent.countersign", Outcome: audit.Success})
	if err != nil || len(evs) != 1 || evs[0].Details["pdf_sha256"] != sum || len(sum) != 64 {
		t.Errorf("the PDF downloaded hashes to %s; the trail: %+v %v", sum, evs, err)
	}
	if got := save("70"); !strings.Contains(got, "entry is saved") {
		t.Fatalf("an entry after the countersignature: %q", got)
	}

	// A new version with re-consent: waiting again, and no entry.
	do(t, actx, chromedp.Navigate(consentPage))
	arrive(t, actx, "#save-draft-en")
	do(t, actx, setValue("#content-en", document("Sleep study consent, second version")))
	submit(t, actx, "#save-draft-en")
	arrive(t, actx, "#publish-en")
	do(t, actx, click("#reconsent-en"))
	submit(t, actx, "#publish-en")
	arrive(t, actx, "#notice")
	if got := save("71"); !strings.Contains(got, "consent") {
		t.Errorf("an entry after a new version to consent to: %q", got)
	}
	do(t, pctx, chromedp.Reload())
	arrive(t, pctx, "#consent-status")
	if got := text(t, pctx, "#consent-status"); !strings.Contains(got, "new version") {
		t.Errorf("the participant's status after the new version: %q", got)
	}
}

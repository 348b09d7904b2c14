package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
)

// setValue sets a field's value outright (clearing what it held).
func setValue(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), value, chromedp.NodeVisible)
}

// submit clicks sel, which leaves the page, and waits until the next page
// has loaded.
func submit(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	eval[bool](t, ctx, `window.__left = true`)
	do(t, ctx, click(sel))
	deadline := time.Now().Add(20 * time.Second)
	for {
		done, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__left !== true && document.readyState === "complete"`))
		if err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clicking %s led to no new page", sel)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// addField adds a field on the designer page and waits for the page again.
func addField(t *testing.T, b *browsertest.Browser, ctx context.Context, values map[string]string, checks ...string) {
	t.Helper()
	var steps []chromedp.Action[chromedp.Void]
	for sel, v := range values {
		steps = append(steps, setValue(sel, v))
	}
	for _, sel := range checks {
		steps = append(steps, click(sel))
	}
	do(t, ctx, steps...)
	submit(t, ctx, "#add-field-button")
	if n := eval[int](t, ctx, `document.querySelectorAll("#error").length`); n != 0 {
		t.Fatalf("adding %v: %s", values, text(t, ctx, "#error"))
	}
}

// The study workspace's whole path in Chromium (WEB-05, ACL-01): a study
// admin designs a form with a branch, a repeating group and a
// calculation, publishes it with a survey form, and schedules both at two
// visits; a site investigator enrols a participant, enters data (the
// branch opens when its condition holds, the calculation shows), corrects
// a value (refused without a reason, then saved with one) and reads the
// value's history; the participant, invited to the portal, fills in the
// survey on a phone-sized screen, and sees no other form.
func TestWEB05_BrowserStudyWorkspaceFromDesignToPortal(t *testing.T) {
	t.Parallel()
	b := browsertest.Start(t, browsertest.Options{Timeout: 3 * time.Minute})
	f := demoOf(t, b.Server)
	ctx := b.Ctx
	admin := b.Server.Logins[authz.StudyAdmin]

	// Design.
	signIn(t, ctx, b.BaseURL, admin.Email, admin.Password)
	submit(t, ctx, "a.studies")
	arrive(t, ctx, "#studies")
	submit(t, ctx, `a.study[data-study="`+f.study.ID+`"]`)
	arrive(t, ctx, "#create-form")
	do(t, ctx, setValue("#form-key", "vitals"), setValue("#form-title", "Vital signs"),
		setValue("#first-field", "weight"), setValue("#first-label", "Weight"), setValue("#first-type", "decimal"))
	submit(t, ctx, "#create-form-button")
	arrive(t, ctx, "#add-field")
	addField(t, b, ctx, map[string]string{"#field-name": "height", "#field-label": "Height", "#field-type": "integer", "#field-min": "30", "#field-max": "250"})
	addField(t, b, ctx, map[string]string{"#field-name": "bmi", "#field-label": "BMI", "#field-type": "calculated",
		"#field-calc": "[weight] / ([height] / 100) ^ 2", "#field-decimals": "1"})
	addField(t, b, ctx, map[string]string{"#field-name": "smoker", "#field-label": "Smokes", "#field-type": "yes_no"})
	addField(t, b, ctx, map[string]string{"#field-name": "packs", "#field-label": "Packs a day", "#field-type": "decimal",
		"#field-show-if": "[smoker] = '1'"}, "#field-required")
	do(t, ctx, setValue("#group-name", "meds"), setValue("#group-label", "Medications"), setValue("#group-max", "5"))
	submit(t, ctx, "#add-group-button")
	arrive(t, ctx, "#groups")
	addField(t, b, ctx, map[string]string{"#field-name": "drug", "#field-label": "Drug", "#field-type": "text", "#field-group": "meds"})
	// A definition the designer cannot keep is refused, naming the field,
	// and the draft stays as it was.
	addField := func() {
		do(t, ctx, setValue("#field-name", "bad"), setValue("#field-label", "Bad"), setValue("#field-type", "calculated"),
			setValue("#field-calc", "[nowhere] + 1"))
		submit(t, ctx, "#add-field-button")
		arrive(t, ctx, "#error")
	}
	addField()
	if got := text(t, ctx, "#problems"); !strings.Contains(got, "bad") {
		t.Errorf("a calculation naming no field: %q", got)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#fields tr[data-field]").length`); n != 6 {
		t.Fatalf("the draft has %d fields, want 6", n)
	}
	submit(t, ctx, "#publish-button")
	arrive(t, ctx, `#versions tr[data-state="published"]`)

	submit(t, ctx, ".crumbs a")
	arrive(t, ctx, "#create-form")
	do(t, ctx, setValue("#form-key", "diary"), setValue("#form-title", "Sleep diary"), click("#form-survey"),
		setValue("#first-field", "sleep"), setValue("#first-label", "Hours slept"), setValue("#first-type", "integer"))
	submit(t, ctx, "#create-form-button")
	arrive(t, ctx, "#publish-button")
	submit(t, ctx, "#publish-button")
	arrive(t, ctx, `#versions tr[data-state="published"]`)

	submit(t, ctx, ".crumbs a")
	arrive(t, ctx, "#schedule-link")
	submit(t, ctx, "#schedule-link")
	arrive(t, ctx, "#schedule")
	do(t, ctx, setValue("#key-0", "baseline"), setValue("#label-0", "Baseline"), setValue("#day-0", "0"),
		click("#forms-0-vitals"), click("#forms-0-diary"))
	submit(t, ctx, "#save-schedule")
	arrive(t, ctx, "#key-1")
	do(t, ctx, setValue("#key-1", "week4"), setValue("#label-1", "Week 4"), setValue("#day-1", "28"),
		click("#forms-1-vitals"), click("#forms-1-diary"))
	submit(t, ctx, "#save-schedule")
	arrive(t, ctx, "#key-2")
	if got := text(t, ctx, "#notice"); !strings.Contains(got, "schedule is saved") {
		t.Errorf("notice %q", got)
	}

	// Data entry, by the investigator of the North Clinic.
	inv := b.Server.Logins[authz.SiteInvestigator]
	ictx := b.NewContext(t)
	signIn(t, ictx, b.BaseURL, inv.Email, inv.Password)
	submit(t, ictx, "a.studies")
	arrive(t, ictx, "#studies")
	submit(t, ictx, `a.study[data-study="`+f.study.ID+`"]`)
	arrive(t, ictx, "#sites")
	submit(t, ictx, `a.site[data-site="`+f.north.ID+`"]`)
	arrive(t, ictx, "#enrol")
	do(t, ictx, setValue("#name", "Ada Example"))
	submit(t, ictx, "#enrol-button")
	arrive(t, ictx, "#grid")
	if n := eval[int](t, ictx, `document.querySelectorAll("#grid a.status-not_started").length`); n != 4 {
		t.Fatalf("a new participant's grid has %d forms not started, want 4", n)
	}
	participantURL := eval[string](t, ictx, `location.pathname`)
	submit(t, ictx, `tr[data-visit="baseline"] a[data-form="vitals"]`)
	arrive(t, ictx, "#entry")
	if n := eval[int](t, ictx, `document.querySelectorAll("#f-packs").length`); n != 0 {
		t.Fatal("the branch shows before its condition holds")
	}
	do(t, ictx, typeInto("#f-weight", "80"), typeInto("#f-height", "180"), click("#f-smoker-1"))
	submit(t, ictx, "#check")
	arrive(t, ictx, "#f-packs")
	if got := text(t, ictx, "#f-bmi"); got != "24.7" {
		t.Errorf("the BMI of 80 kg at 180 cm shows as %q", got)
	}
	do(t, ictx, typeInto("#f-packs", "1.5"), typeInto("#r-meds-1-drug", "Aspirin"))
	submit(t, ictx, "#add-row-meds")
	arrive(t, ictx, "#r-meds-2-drug")
	do(t, ictx, typeInto("#r-meds-2-drug", `<script>alert(1)</script>`))
	submit(t, ictx, "#save")
	arrive(t, ictx, "#notice, #error")
	if got := text(t, ictx, "#notice"); !strings.Contains(got, "entry is saved") {
		t.Fatalf("notice %q", got)
	}
	if got := eval[string](t, ictx, `document.getElementById("r-meds-2-drug").value`); got != `<script>alert(1)</script>` {
		t.Errorf("a script typed as a drug reads back as %q", got)
	}

	// A correction needs a reason.
	do(t, ictx, setValue("#f-weight", "82"))
	submit(t, ictx, "#save")
	arrive(t, ictx, "#error")
	if got := text(t, ictx, "#error"); !strings.Contains(got, "reason") {
		t.Errorf("a change without a reason: %q", got)
	}
	if got := eval[string](t, ictx, `document.getElementById("f-weight").value`); got != "82" {
		t.Errorf("the refused page lost what was typed: %q", got)
	}
	do(t, ictx, typeInto("#reason", "Scale recalibrated"))
	submit(t, ictx, "#save")
	arrive(t, ictx, "#notice")
	submit(t, ictx, "#history-link")
	arrive(t, ictx, ".field-history")
	weight := `.field-history[data-field="weight"] tr`
	if got := eval[[]string](t, ictx, `[...document.querySelectorAll('`+weight+` td.value')].map(e => e.textContent.trim())`); strings.Join(got, " ") != "80 82" {
		t.Errorf("the weight's history: %v", got)
	}
	if got := text(t, ictx, `.field-history[data-field="weight"] tr[data-revision="2"] td.reason`); got != "Scale recalibrated" {
		t.Errorf("the correction's reason: %q", got)
	}
	do(t, ictx, chromedp.Navigate(b.BaseURL+participantURL))
	arrive(t, ictx, "#grid")
	if got := text(t, ictx, `tr[data-visit="baseline"] a[data-form="vitals"]`); got != "incomplete" {
		t.Errorf("the grid shows the saved entry as %q", got)
	}

	// The export, with its progress on the study's page.
	do(t, ictx, chromedp.Navigate(b.BaseURL+"/orgs/demo/studies/"+f.study.ID))
	arrive(t, ictx, "#exports")
	do(t, ictx, click(`a.export[data-format="csv"]`))
	arrive(t, ictx, `#export-progress[data-done="true"]`)
	if got := text(t, ictx, "#export-progress"); !strings.Contains(got, "saved as entries.csv") || strings.Contains(got, " 0 lines") {
		t.Errorf("the export's progress: %q", got)
	}
	do(t, ictx, chromedp.Navigate(b.BaseURL+participantURL))
	arrive(t, ictx, "#grid")

	// The portal: the participant, invited, fills in the survey on a
	// phone-sized screen.
	email := "ada.portal@example.org"
	do(t, ictx, click("#invite summary"), typeInto("#invite-email", email))
	submit(t, ictx, "#invite-button")
	arrive(t, ictx, "#notice")
	pctx := b.NewContext(t)
	do(t, pctx, chromedp.EmulateViewport(390, 844))
	do(t, pctx, chromedp.Navigate(b.Server.LastLink(t, email, "/setup/")))
	const password = "correct horse battery staple 7"
	do(t, pctx, typeInto("#password", password), typeInto("#confirm", password))
	submit(t, pctx, `form[action^="/setup/"] button`)
	arrive(t, pctx, ".ok")
	signIn(t, pctx, b.BaseURL, email, password)
	submit(t, pctx, "a.records")
	arrive(t, pctx, "#records")
	submit(t, pctx, "a.record")
	arrive(t, pctx, "#grid")
	if n := eval[int](t, pctx, `document.querySelectorAll('#grid a[data-form="vitals"]').length`); n != 0 {
		t.Error("the participant's grid offers the study team's form")
	}
	submit(t, pctx, `tr[data-visit="baseline"] a[data-form="diary"]`)
	arrive(t, pctx, "#entry")
	if over := eval[bool](t, pctx, `document.documentElement.scrollWidth > window.innerWidth`); over {
		t.Error("the portal's form is wider than a phone's screen")
	}
	do(t, pctx, typeInto("#f-sleep", "7"), click("#complete"))
	submit(t, pctx, "#save")
	arrive(t, pctx, "#notice")
	if got := text(t, pctx, "#entry-state"); !strings.Contains(got, "complete") {
		t.Errorf("the participant's saved survey: %q", got)
	}
	// The study team's form is not the participant's, by its address.
	vitals := strings.Replace(eval[string](t, pctx, `location.pathname`), "/forms/diary", "/forms/vitals", 1)
	do(t, pctx, chromedp.Navigate(b.BaseURL+vitals))
	arrive(t, pctx, "h1")
	if got := text(t, pctx, "h1"); got != "Page not found" {
		t.Errorf("the participant opening the study team's form: %q", got)
	}
}

package web_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
)

// A care provider and their client talk in Chromium (ACL-05): the care
// provider begins a conversation with the client and writes, the client,
// on a phone-sized screen, is told there is one unread message, reads it
// and answers with a file; the care provider reads the answer and gets
// the file back byte for byte. (Everyone else is refused every route:
// TestACL01_RouteMatrix.)
func TestACL05_BrowserCareProviderAndClientTalk(t *testing.T) {
	t.Parallel()
	b := browsertest.Start(t, browsertest.Options{Timeout: 3 * time.Minute})
	f := demoOf(t, b.Server)
	ctx := context.Background()
	carer, client := b.Server.Logins[authz.CareProvider], b.Server.Logins[authz.Participant]
	var pseudonym string
	// The client is a participant of the care program, whose team the
	// demo care provider is in.
	err := b.Server.Instance.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		var care orgs.Study
		studies, err := orgs.Studies(ctx, tx, f.org.ID)
		if err != nil {
			return err
		}
		for _, st := range studies {
			if st.Kind == orgs.KindCareProgram {
				care = st
			}
		}
		sites, err := orgs.Sites(ctx, tx, f.org.ID, care.ID)
		if err != nil || len(sites) == 0 {
			return fmt.Errorf("the care program's team: %v", err)
		}
		p, err := participants.Create(ctx, tx, f.org.ID, care.ID, sites[0].ID)
		if err != nil {
			return err
		}
		self, err := accounts.ByEmail(ctx, tx, client.Email)
		if err != nil {
			return err
		}
		if _, err := authz.Assign(ctx, tx, authz.Assignment{OrgID: f.org.ID, AccountID: self.ID, Role: authz.Participant, SiteID: sites[0].ID}); err != nil {
			return err
		}
		pseudonym = p.Pseudonym
		for email, kind := range map[string]authz.RelationKind{carer.Email: authz.RelationCare, client.Email: authz.RelationSelf} {
			acc, err := accounts.ByEmail(ctx, tx, email)
			if err != nil {
				return err
			}
			if _, err := authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: p.Pseudonym, AccountID: acc.ID, Kind: kind}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	cctx := b.Ctx
	signIn(t, cctx, b.BaseURL, carer.Email, carer.Password)
	submit(t, cctx, "a.conversations")
	arrive(t, cctx, "#start-conversation")
	if got := eval[string](t, cctx, `document.getElementById("participant").value`); got != pseudonym {
		t.Fatalf("the care provider's client is %q, want %s", got, pseudonym)
	}
	submit(t, cctx, "#start-button")
	arrive(t, cctx, "#write")
	const hello = "How did the first week on the new dose go?"
	do(t, cctx, typeInto("#body", hello))
	submit(t, cctx, "#send")
	arrive(t, cctx, "li.message")
	conversation := eval[string](t, cctx, `location.pathname`)

	pctx := b.NewContext(t)
	do(t, pctx, chromedp.EmulateViewport(390, 844))
	signIn(t, pctx, b.BaseURL, client.Email, client.Password)
	submit(t, pctx, "a.conversations")
	arrive(t, pctx, "#conversations")
	if got := text(t, pctx, ".unread-count"); got != "1 unread" {
		t.Errorf("the client's list shows %q", got)
	}
	submit(t, pctx, "a.conversation")
	arrive(t, pctx, "li.message")
	if got := text(t, pctx, "li.message .body"); got != hello {
		t.Errorf("the client reads %q", got)
	}
	if over := eval[bool](t, pctx, `document.documentElement.scrollWidth > window.innerWidth`); over {
		t.Error("the conversation is wider than a phone's screen")
	}
	pdf := "%PDF-1.4\n% the client's sleep diary\n%%EOF\n"
	path := filepath.Join(t.TempDir(), "diary.pdf")
	if err := os.WriteFile(path, []byte(pdf), 0o600); err != nil {
		t.Fatal(err)
	}
	do(t, pctx, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{path}))
	submit(t, pctx, "#send-file")
	arrive(t, pctx, "#notice")
	if got := text(t, pctx, "#notice"); !strings.Contains(got, "file is sent") {
		t.Fatalf("sending the file: %q", got)
	}

	do(t, cctx, chromedp.Navigate(b.BaseURL+conversation))
	arrive(t, cctx, "li.message .attachment")
	if got := text(t, cctx, "li.message .attachment a"); got != "diary.pdf" {
		t.Errorf("the care provider sees the file as %q", got)
	}
	got, err := chromedp.Run(cctx, chromedp.Evaluate[string](`fetch(document.querySelector("li.message .attachment a").href).then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil || got != pdf {
		t.Errorf("the file downloaded: %q %v", got, err)
	}
}

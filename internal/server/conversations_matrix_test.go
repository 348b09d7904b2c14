package server

import (
	"context"
	"database/sql"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
)

// convTarget is, for one cell of the matrix, a participant at the cell's
// site and a conversation about them with a message and a file.
type convTarget struct{ participant, conversation, attachment string }

// convTargets is keyed by the matrix's cell tag; filled by
// seedConversations.
var convTargets = map[string]convTarget{}

// convCarer is the demo care provider's account id, whom every
// conversation of the demo organization names as a member.
var convCarer string

// The conversation routes (ACL-05, ACL-06). Each cell has its own
// participant at the cell's site and a conversation about them, begun by a
// study-level care provider (matrix-carer), with the demo care provider as
// a member and the demo participant's account as the participant's own.
// Only those two members reach it, and each only where their role reaches
// the participant: the care provider at their own site (Community Team),
// the participant at theirs (North Clinic). Everyone else, the
// organization admin and manager among them, is answered 404 on every
// route, whatever the target. The lists answer the members' roles in
// their organization and 404 to every other role.
func init() {
	member := `
		org-admin           404 404 404 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       %[1]d 404 404 404
		participant         %[1]d 404 404 404`
	list := `
		org-admin           404 404 404 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       200 200 200 404
		participant         200 200 200 404`
	grid := func(status string) string { return strings.ReplaceAll(member, "%[1]d", status) }
	matrix = append(matrix,
		matrixRow{Route: "GET /api/v1/orgs/{org}/clients", Grid: list},
		matrixRow{Route: "GET /api/v1/orgs/{org}/conversations", Grid: list},
		matrixRow{Route: "POST /api/v1/orgs/{org}/conversations", Grid: grid("201")},
		matrixRow{Route: "GET /api/v1/orgs/{org}/conversations/{conversation}", Grid: grid("200")},
		matrixRow{Route: "POST /api/v1/orgs/{org}/conversations/{conversation}/messages", Grid: grid("201")},
		matrixRow{Route: "POST /api/v1/orgs/{org}/conversations/{conversation}/attachments", Grid: grid("201")},
		matrixRow{Route: "GET /api/v1/orgs/{org}/conversations/{conversation}/attachments/{attachment}", Grid: grid("200")},
		matrixRow{Route: "POST /api/v1/orgs/{org}/conversations/{conversation}/read", Grid: grid("200")},
	)
	convOf := func(tag string) convTarget {
		ct, ok := convTargets[tag]
		if !ok { // a request without a session: ids of nothing
			ct = convTarget{participant: ids.New(), conversation: ids.New(), attachment: ids.New()}
		}
		return ct
	}
	conv := func(tg target, tag string) string {
		return "/api/v1/orgs/" + tg.org + "/conversations/" + convOf(tag).conversation
	}
	targetedProbes["GET /api/v1/orgs/{org}/clients"] = func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/clients"}
	}
	targetedProbes["GET /api/v1/orgs/{org}/conversations"] = func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/conversations"}
	}
	targetedProbes["POST /api/v1/orgs/{org}/conversations"] = func(tg target, tag string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/conversations", map[string]any{
			"participant": convOf(tag).participant, "members": []string{convCarer}})
	}
	targetedProbes["GET /api/v1/orgs/{org}/conversations/{conversation}"] = func(tg target, tag string) probe {
		return probe{path: conv(tg, tag)}
	}
	targetedProbes["POST /api/v1/orgs/{org}/conversations/{conversation}/messages"] = func(tg target, tag string) probe {
		return jsonProbe(conv(tg, tag)+"/messages", map[string]string{"body": "matrix " + tag})
	}
	targetedProbes["POST /api/v1/orgs/{org}/conversations/{conversation}/attachments"] = func(tg target, tag string) probe {
		return probe{path: conv(tg, tag) + "/attachments?" + url.Values{"name": {"matrix.pdf"}}.Encode(),
			ctype: "application/octet-stream", body: "%PDF-1.4 matrix " + tag}
	}
	targetedProbes["GET /api/v1/orgs/{org}/conversations/{conversation}/attachments/{attachment}"] = func(tg target, tag string) probe {
		return probe{path: conv(tg, tag) + "/attachments/" + convOf(tag).attachment}
	}
	targetedProbes["POST /api/v1/orgs/{org}/conversations/{conversation}/read"] = func(tg target, tag string) probe {
		return jsonProbe(conv(tg, tag)+"/read", map[string]any{})
	}
}

// seedConversations makes each cell's participant and conversation (see
// the rows above) through the conversations service, as matrix-carer.
func seedConversations(t *testing.T, ts *testServer, f matrixFixture) {
	t.Helper()
	ctx := context.Background()
	clear(convTargets)
	var carer, client string
	for role, id := range map[authz.Role]*string{authz.CareProvider: &carer, authz.Participant: &client} {
		acc, err := accounts.ByEmail(ctx, ts.inst.Clinical, ts.logins[role].Email)
		if err != nil {
			t.Fatal(err)
		}
		*id = acc.ID
	}
	convCarer = carer
	orgOf := map[string]orgs.Organization{}
	for _, slug := range []string{demo.Slug, "other"} {
		o, err := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, slug)
		if err != nil {
			t.Fatal(err)
		}
		orgOf[slug] = o
	}
	starter := adminTargetOf(string(authz.OrgAdmin) + "-own").carer
	seedCells(t, ts, f, false, func(tx *sql.Tx, tag string, tg target) error {
		o := orgOf[tg.org]
		p, err := participants.Create(ctx, tx, o.ID, tg.study, tg.site)
		if err != nil {
			return err
		}
		rels := []authz.Relation{{AccountID: starter, Kind: authz.RelationCare}}
		if tg.org == demo.Slug {
			rels = append(rels, authz.Relation{AccountID: carer, Kind: authz.RelationCare}, authz.Relation{AccountID: client, Kind: authz.RelationSelf})
		}
		for _, r := range rels {
			r.OrgID, r.ParticipantID, r.CreatedBy = o.ID, p.Pseudonym, starter
			if _, err := authz.Relate(ctx, tx, r); err != nil {
				return err
			}
		}
		convTargets[tag] = convTarget{participant: p.Pseudonym}
		return nil
	})
	kek, err := keys.LoadLocalKEK(ts.inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	svc := &conversations.Service{Gate: NewGate(ts.inst, kek)}
	as := gate.Actor{AccountID: starter, RemoteAddr: "192.0.2.9"}
	for tag, ct := range convTargets {
		slug := demo.Slug
		if strings.HasSuffix(tag, "-org") {
			slug = "other"
		}
		var team []string
		if slug == demo.Slug {
			team = []string{carer}
		}
		c, err := svc.Start(ctx, as, slug, ct.participant, team)
		if err != nil {
			t.Fatalf("seed the conversation of %s: %v", tag, err)
		}
		m, err := svc.Attach(ctx, as, slug, c.ID, "seed.pdf", strings.NewReader("%PDF-1.4 seed "+tag))
		if err != nil {
			t.Fatalf("seed the attachment of %s: %v", tag, err)
		}
		ct.conversation, ct.attachment = c.ID, m.Attachment.ID
		convTargets[tag] = ct
	}
}

// TestCRY03_ConversationTextIsInNoDatabaseFileAndNoLog exchanges a message
// and a file through the API between the demo care provider and their
// client, and finds neither in clear in the clinical or identity database
// files nor in the server's log; the client's access log lists the care
// provider's reads (AUD-01), and the organization admin and manager are
// refused (ACL-06).
func TestCRY03_ConversationTextIsInNoDatabaseFileAndNoLog(t *testing.T) {
	ts := newServerWith(t, nil)
	f := setUpMatrix(t, ts)
	own := f.targets[authz.CareProvider][0]
	ct := convTargets["care-provider-own"]
	// The client of the care provider's own cell is the demo participant,
	// who is given a participant role at its site here.
	ctx := context.Background()
	err := ts.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		o, err := orgs.OrganizationBySlug(ctx, tx, own.org)
		if err != nil {
			return err
		}
		acc, err := accounts.ByEmail(ctx, tx, ts.logins[authz.Participant].Email)
		if err != nil {
			return err
		}
		_, err = authz.Assign(ctx, tx, authz.Assignment{OrgID: o.ID, AccountID: acc.ID, Role: authz.Participant, SiteID: own.site})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	carer, client := signInOwn(t, ts, authz.CareProvider), signInOwn(t, ts, authz.Participant)
	const body = "Quintessa marlowbright panic attacks"
	const file = "Vellichor anamnesis notes, private"
	base := "/api/v1/orgs/" + own.org + "/conversations/" + ct.conversation
	if code, b := send(t, carer, ts.URL, "POST", jsonProbe(base+"/messages", map[string]string{"body": body})); code != http.StatusCreated {
		t.Fatalf("send: %d %s", code, b)
	}
	code, b := send(t, client, ts.URL, "POST", probe{path: base + "/attachments?name=diary.txt", ctype: "application/octet-stream", body: file})
	if code != http.StatusCreated {
		t.Fatalf("attach: %d %s", code, b)
	}
	code, b = send(t, carer, ts.URL, "GET", probe{path: base})
	if code != http.StatusOK || !strings.Contains(string(b), body) || !strings.Contains(string(b), "diary.txt") {
		t.Fatalf("read: %d %s", code, b)
	}
	for _, role := range []authz.Role{authz.OrgAdmin, authz.OrgManager} {
		if code, b := send(t, signInOwn(t, ts, role), ts.URL, "GET", probe{path: base}); code != http.StatusNotFound || strings.Contains(string(b), body) {
			t.Errorf("read as %s: %d %s", role, code, b)
		}
	}
	code, b = send(t, client, ts.URL, "GET", probe{path: "/api/v1/me/access-log"})
	if code != http.StatusOK || !strings.Contains(string(b), `"conversation.read"`) || !strings.Contains(string(b), "care provider") {
		t.Errorf("the client's access log: %d %s; want the care provider's read", code, b)
	}
	// Each side is told that a message waits (WEB-07), and nothing more:
	// no text, no file, no name of who wrote, of the conversation, of the
	// participant or of the organization.
	rec := &mailRecorder{}
	notices := *ts.shells.Notices
	notices.Mail = rec
	// (The matrix's seeds wrote messages of their own, noticed too.)
	if n, err := notices.Send(ctx); err != nil || n < 2 {
		t.Fatalf("notices sent: %d %v, want one to each side at least", n, err)
	}
	for _, to := range []string{ts.logins[authz.CareProvider].Email, ts.logins[authz.Participant].Email} {
		m, ok := rec.to(to)
		if !ok || !strings.Contains(m.Text, "new message") {
			t.Errorf("the notice to %s: %+v", to, m)
		}
	}
	for _, m := range rec.all() {
		for _, secret := range []string{body, file, "diary.txt", ct.conversation, own.org, "Demo", "care provider"} {
			if strings.Contains(m.Subject+m.Text, secret) {
				t.Errorf("a notice names %q:\n%s", secret, m.Text)
			}
		}
	}
	if n, err := notices.Send(ctx); err != nil || n != 0 {
		t.Errorf("notices sent again: %d %v", n, err)
	}
	for _, secret := range []string{body, file, "diary.txt"} {
		if strings.Contains(ts.logs.String(), secret) {
			t.Errorf("%q is in the server's log", secret)
		}
		for _, db := range []string{ts.inst.Clinical.Location, ts.inst.Identity.Location} {
			for _, suffix := range []string{"", "-wal"} {
				raw, _ := os.ReadFile(db + suffix)
				if strings.Contains(string(raw), secret) {
					t.Errorf("%q is in clear in %s%s", secret, db, suffix)
				}
			}
		}
	}
}

package web_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/browsertest"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// ownRecord enrols a participant record at the demo study's North Clinic
// and links it to the account as the participant's own.
func ownRecord(t *testing.T, srv *browsertest.Server, accountID string) participants.Participant {
	t.Helper()
	ctx := context.Background()
	p := places(t, srv)
	study := p.studies["Demo Study"]
	sites, err := orgs.Sites(ctx, srv.Instance.Clinical, p.org.ID, study.ID)
	if err != nil {
		t.Fatal(err)
	}
	var north orgs.Site
	for _, s := range sites {
		if s.Name == "North Clinic" {
			north = s
		}
	}
	var rec participants.Participant
	err = srv.Instance.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		if rec, err = participants.Create(ctx, tx, p.org.ID, study.ID, north.ID); err != nil {
			return err
		}
		_, err = authz.Relate(ctx, tx, authz.Relation{OrgID: p.org.ID, ParticipantID: rec.Pseudonym, AccountID: accountID, Kind: authz.RelationSelf})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// secondParticipant adds a participant account at the site, with a
// record of its own, signed in.
func secondParticipant(t *testing.T, srv *browsertest.Server, siteID string) *http.Client {
	t.Helper()
	ctx := context.Background()
	const email, pw = "second-participant@demo.example", "Marble harvest pelican 7310"
	p := places(t, srv)
	var id string
	err := srv.Instance.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		acc, _, err := accounts.Enrol(ctx, tx, email, "Second Participant", authz.Assignment{OrgID: p.org.ID, Role: authz.Participant, SiteID: siteID})
		if err != nil {
			return err
		}
		id = acc.ID
		return accounts.SetPassword(ctx, tx, acc, pw, accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	ownRecord(t, srv, id)
	c := client(t, srv)
	if a := request(t, c, "POST", srv.URL+"/login", url.Values{"email": {email}, "password": {pw}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("sign in the second participant: %d", a.status)
	}
	return c
}

type accessLog struct {
	Accesses []struct {
		Time, Organization, Who, Action, What string
		Roles                                 []string
		Refused                               bool
	}
	Next string
}

func readLog(t *testing.T, c *http.Client, srv *browsertest.Server, query string) (int, accessLog, string) {
	t.Helper()
	a := request(t, c, "GET", srv.URL+"/api/v1/me/access-log"+query, nil, nil)
	var l accessLog
	if a.status == 200 {
		if err := json.Unmarshal([]byte(a.body), &l); err != nil {
			t.Fatalf("access log answer %s: %v", a.body, err)
		}
	}
	return a.status, l, a.body
}

// A participant reads on the page and through the API who accessed their
// record: the site investigator who opened it, by role and time, never by
// name or address; their own visits are not listed, though each listing
// is on the trail (AUD-01).
func TestAUD01_ParticipantReadsOwnAccessLogOnPageAndAPI(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, d sqldb.Dialect) {
		srv := browsertest.StartServer(t, browsertest.Options{Dialect: d})
		ctx := context.Background()
		rec := ownRecord(t, srv, accountOf(t, srv, authz.Participant))
		me := signInHTTP(t, srv, authz.Participant)
		if a := request(t, me, "GET", srv.URL+"/", nil, nil); !strings.Contains(a.body, `href="/me/access-log"`) {
			t.Error("the home page does not lead a participant to their access log")
		}
		if a := request(t, me, "GET", srv.URL+"/me/access-log", nil, nil); a.status != 200 || !strings.Contains(a.body, `id="no-access"`) {
			t.Fatalf("empty access log page: %d\n%s", a.status, a.body)
		}

		investigator := signInHTTP(t, srv, authz.SiteInvestigator)
		recPath := "/api/v1/orgs/demo/studies/" + rec.StudyID + "/sites/" + rec.SiteID + "/participants/" + rec.Pseudonym
		if a := request(t, investigator, "GET", srv.URL+recPath, nil, nil); a.status != 200 {
			t.Fatalf("investigator reads the record: %d %s", a.status, a.body)
		}
		if a := request(t, me, "GET", srv.URL+recPath, nil, nil); a.status != 200 {
			t.Fatalf("participant reads their own record: %d %s", a.status, a.body)
		}

		status, l, body := readLog(t, me, srv, "")
		if status != 200 || len(l.Accesses) != 1 || l.Next != "" {
			t.Fatalf("access log: %d %s", status, body)
		}
		got := l.Accesses[0]
		if got.Who != "a member of the study team" || len(got.Roles) != 1 || got.Roles[0] != "site investigator" ||
			got.Action != "participant.read" || got.What != "looked at your record" || got.Refused || got.Organization != "Demo Organization" {
			t.Errorf("the investigator's read: %+v", got)
		}
		a := request(t, me, "GET", srv.URL+"/me/access-log", nil, nil)
		if a.status != 200 || !strings.Contains(a.body, "a member of the study team") || !strings.Contains(a.body, "site investigator") {
			t.Errorf("access log page: %d\n%s", a.status, a.body)
		}
		investigatorID := accountOf(t, srv, authz.SiteInvestigator)
		for _, secret := range []string{"Demo site-investigator", investigatorID, "127.0.0.1", "::1", "Go-http-client"} {
			if strings.Contains(a.body, secret) || strings.Contains(body, secret) {
				t.Errorf("the access log tells the participant %q", secret)
			}
		}
		var n int
		if err := srv.Instance.Clinical.QueryRowContext(ctx,
			`SELECT count(*) FROM audit_events WHERE action = 'participant.access_log' AND participant_id = $1 AND outcome = 'success'`,
			rec.Pseudonym).Scan(&n); err != nil || n != 3 {
			t.Errorf("audited listings: %d, %v; want 3", n, err)
		}
	})
}

// Another participant can see no one's log but their own: the address
// names no participant, a parameter that tries to is refused, and their
// own log is empty while the first participant's is not (ACL-05).
func TestACL05_ParticipantCannotReadAnothersAccessLog(t *testing.T) {
	t.Parallel()
	srv := browsertest.StartServer(t, browsertest.Options{})
	rec := ownRecord(t, srv, accountOf(t, srv, authz.Participant))
	admin := signInHTTP(t, srv, authz.OrgAdmin)
	recPath := "/api/v1/orgs/demo/studies/" + rec.StudyID + "/sites/" + rec.SiteID + "/participants/" + rec.Pseudonym
	if a := request(t, admin, "GET", srv.URL+recPath, nil, nil); a.status != 200 {
		t.Fatalf("admin reads the record: %d", a.status)
	}
	other := secondParticipant(t, srv, rec.SiteID)
	// The second participant probes the first's record: refused, and on
	// the first one's log as a refused attempt by another participant.
	if a := request(t, other, "GET", srv.URL+recPath, nil, nil); a.status != http.StatusNotFound {
		t.Fatalf("another participant reads the record: %d", a.status)
	}
	for _, q := range []string{"?participant=" + rec.Pseudonym, "?account=" + accountOf(t, srv, authz.Participant), "?cursor=1-" + rec.Pseudonym + "&cursor=2"} {
		if status, _, body := readLog(t, other, srv, q); status != http.StatusBadRequest || strings.Contains(body, "Demo Organization") {
			t.Errorf("API access log%s: %d %s, want 400", q, status, body)
		}
		if a := request(t, other, "GET", srv.URL+"/me/access-log"+q, nil, nil); a.status != http.StatusBadRequest || strings.Contains(a.body, "access-log\"") {
			t.Errorf("access log page%s: %d, want 400", q, a.status)
		}
	}
	// The second participant's own log holds none of the first's
	// accesses.
	if status, l, body := readLog(t, other, srv, ""); status != 200 || len(l.Accesses) != 0 {
		t.Errorf("the other participant's own log: %d %s", status, body)
	}
	for _, role := range []authz.Role{authz.OrgAdmin, authz.SiteInvestigator, authz.Monitor} {
		c := signInHTTP(t, srv, role)
		if status, l, body := readLog(t, c, srv, ""); status != 200 || len(l.Accesses) != 0 {
			t.Errorf("%s's own access log: %d %s, want empty", role, status, body)
		}
	}
	me := signInHTTP(t, srv, authz.Participant)
	status, l, body := readLog(t, me, srv, "")
	if status != 200 || len(l.Accesses) != 2 || l.Accesses[0].Who != "another participant" || !l.Accesses[0].Refused ||
		l.Accesses[1].Roles[0] != "organization administrator" {
		t.Errorf("the first participant's log: %d %s", status, body)
	}
	if a := request(t, client(t, srv), "GET", srv.URL+"/api/v1/me/access-log", nil, nil); a.status != http.StatusUnauthorized {
		t.Errorf("without a session: %d, want 401", a.status)
	}
}

package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// newServerOn is newServerWith on both databases of dialect d.
func newServerOn(t *testing.T, d sqldb.Dialect) *testServer {
	t.Helper()
	ctx := context.Background()
	inst, err := instance.Open(ctx, migratedConfig(t, d))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	logins, err := demo.Seed(ctx, gate.New(gate.Config{Clinical: inst.Clinical}))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{inst: inst, logins: map[authz.Role]demo.Login{}, logs: new(bytes.Buffer)}
	for _, l := range logins {
		ts.logins[l.Role] = l
	}
	var h http.Handler
	h, ts.shells = NewHandler(Deps{Log: slog.New(slog.NewJSONHandler(ts.logs, nil)), Instance: inst, KEK: kek})
	ts.Server = httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	return ts
}

var setupLink = regexp.MustCompile(`/setup/([A-Za-z0-9_-]{43})`)

// inviteLink waits for the one e-mail to address in the server's outbox and
// returns its setup link's token and the whole message.
func inviteLink(t *testing.T, ts *testServer, address string) (string, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(ts.inst.DataDir, "outbox", "*.eml"))
		var found []string
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "\r\nTo: "+address+"\r\n") {
				found = append(found, string(b))
			}
		}
		if len(found) > 1 {
			t.Fatalf("%d e-mails to %s, want 1", len(found), address)
		}
		if len(found) == 1 {
			m := setupLink.FindStringSubmatch(found[0])
			if m == nil {
				t.Fatalf("no setup link in:\n%s", found[0])
			}
			return m[1], found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no e-mail to %s", address)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type accessLogAnswer struct {
	Accesses []struct {
		Who, Action, What string
		Roles             []string
		Refused           bool
	}
}

// TestACL05_ParticipantAccountEndToEnd invites two participants to
// accounts of their own over HTTP, accepts the e-mailed links on the setup
// page and signs them in: each reads in its access log the site
// investigator's read of its own record and nothing of the other's, and
// reaches only its own record. The invitation's refusals are tried too.
func TestACL05_ParticipantAccountEndToEnd(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ts := newServerOn(t, d)
		ctx := context.Background()
		inv := signInOwn(t, ts, authz.SiteInvestigator)
		demoOrg, _ := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug)
		acc, _ := accounts.ByEmail(ctx, ts.inst.Clinical, ts.logins[authz.SiteInvestigator].Email)
		as, _ := authz.AssignmentsOf(ctx, ts.inst.Clinical, demoOrg.ID, acc.ID)
		if len(as) == 0 || as[0].SiteID == "" {
			t.Fatalf("site investigator's roles: %+v", as)
		}
		sites, err := orgs.Sites(ctx, ts.inst.Clinical, demoOrg.ID, as[0].StudyID)
		if err != nil {
			t.Fatal(err)
		}
		otherSite := ""
		for _, s := range sites {
			if s.ID != as[0].SiteID {
				otherSite = s.ID
			}
		}
		base := "/api/v1/orgs/demo/studies/" + as[0].StudyID + "/sites/"
		sitePath := base + as[0].SiteID + "/participants"
		enrol := func() string {
			t.Helper()
			code, body := send(t, inv, ts.URL, "POST", jsonProbe(sitePath, map[string]string{}))
			var p struct{ Pseudonym string }
			if code != http.StatusCreated || json.Unmarshal(body, &p) != nil || p.Pseudonym == "" {
				t.Fatalf("enrol: %d %s", code, body)
			}
			return p.Pseudonym
		}
		invite := func(pseudonym, email string) (int, string) {
			t.Helper()
			code, body := send(t, inv, ts.URL, "POST", jsonProbe(sitePath+"/"+pseudonym+"/account", map[string]string{"email": email}))
			return code, string(body)
		}
		const password = "Lantern orchard ripple 5820"
		accept := func(address string) {
			t.Helper()
			token, msg := inviteLink(t, ts, address)
			for _, leak := range []string{as[0].StudyID, as[0].SiteID} {
				if strings.Contains(msg, leak) {
					t.Errorf("the invitation e-mail names %s", leak)
				}
			}
			c := ownClient(ts)
			if code, body := send(t, c, ts.URL, "GET", probe{path: "/setup/" + token}); code != http.StatusOK {
				t.Fatalf("setup page: %d %s", code, body)
			}
			code, body := send(t, c, ts.URL, "POST", probe{path: "/setup/" + token, ctype: "application/x-www-form-urlencoded",
				body: url.Values{"password": {password}, "confirm": {password}}.Encode()})
			if code != http.StatusOK || !strings.Contains(string(body), "Your password is set") {
				t.Fatalf("accept the invitation: %d %s", code, body)
			}
			if code, _ := send(t, c, ts.URL, "POST", probe{path: "/setup/" + token, ctype: "application/x-www-form-urlencoded",
				body: url.Values{"password": {password}, "confirm": {password}}.Encode()}); code != http.StatusNotFound {
				t.Errorf("invitation link used twice: %d, want 404", code)
			}
		}
		signIn := func(address string) *http.Client {
			t.Helper()
			c := ownClient(ts)
			code, body := send(t, c, ts.URL, "POST", jsonProbe("/api/v1/auth/login", map[string]string{"email": address, "password": password}))
			if code != http.StatusOK || strings.Contains(string(body), "challenge") {
				t.Fatalf("participant sign-in: %d %s", code, body)
			}
			return c
		}
		accessLog := func(c *http.Client) accessLogAnswer {
			t.Helper()
			code, body := send(t, c, ts.URL, "GET", probe{path: "/api/v1/me/access-log"})
			var out accessLogAnswer
			if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
				t.Fatalf("access log: %d %s", code, body)
			}
			return out
		}
		reads := func(l accessLogAnswer) int {
			n := 0
			for _, a := range l.Accesses {
				if a.Action == "participant.read" && !a.Refused && a.Who == "a member of the study team" {
					n++
				}
			}
			return n
		}

		p1, p2, p3 := enrol(), enrol(), enrol()
		if code, body := invite(p1, "Pat.One@Example.org"); code != http.StatusAccepted {
			t.Fatalf("invite: %d %s", code, body)
		}
		// Nothing is granted before the link is accepted.
		if rels, _ := authz.RelationsOfParticipant(ctx, ts.inst.Clinical, demoOrg.ID, p1); len(rels) != 0 {
			t.Fatalf("relations before acceptance: %+v", rels)
		}
		accept("pat.one@example.org")
		if code, body := send(t, inv, ts.URL, "GET", probe{path: sitePath + "/" + p1}); code != http.StatusOK {
			t.Fatalf("investigator reads the record: %d %s", code, body)
		}
		one := signIn("pat.one@example.org")
		if got := reads(accessLog(one)); got != 1 {
			t.Errorf("participant one's log shows %d staff reads of their record, want 1: %+v", got, accessLog(one))
		}
		if code, body := send(t, one, ts.URL, "GET", probe{path: sitePath + "/" + p1}); code != http.StatusOK {
			t.Errorf("participant one reads their own record: %d %s", code, body)
		}

		// The acceptance is one security event, naming the participant.
		evs, _, err := audit.Search(ctx, ts.inst.Clinical, audit.Filter{OrgID: demoOrg.ID, Action: "participant.account_link", Participant: p1})
		if err != nil || len(evs) != 1 || !evs[0].Security || evs[0].Outcome != audit.Success {
			t.Errorf("acceptance events: %+v, %v", evs, err)
		}

		// Attack: another participant's account sees nothing of it.
		if code, body := invite(p2, "pat.two@example.org"); code != http.StatusAccepted {
			t.Fatalf("invite the second: %d %s", code, body)
		}
		accept("pat.two@example.org")
		two := signIn("pat.two@example.org")
		if l := accessLog(two); reads(l) != 0 {
			t.Errorf("participant two's log shows another's reads: %+v", l)
		}
		for _, path := range []string{sitePath + "/" + p1, sitePath + "/" + p1 + "/identity", sitePath} {
			if code, body := send(t, two, ts.URL, "GET", probe{path: path}); code != http.StatusNotFound {
				t.Errorf("participant two GET %s: %d %s, want 404", path, code, body)
			}
		}
		if code, _ := send(t, two, ts.URL, "POST", jsonProbe(sitePath+"/"+p3+"/account", map[string]string{"email": "mallory@example.org"})); code != http.StatusNotFound {
			t.Errorf("a participant invites: %d, want 404", code)
		}

		// Refusals.
		if code, body := invite(p1, "someone.else@example.org"); code != http.StatusConflict {
			t.Errorf("a participant with an account, invited again: %d %s, want 409", code, body)
		}
		if code, body := invite(p3, ts.logins[authz.Monitor].Email); code != http.StatusConflict {
			t.Errorf("a staff member's address: %d %s, want 409", code, body)
		}
		if code, body := invite(p3, "not an address"); code != http.StatusBadRequest {
			t.Errorf("a malformed address: %d %s, want 400", code, body)
		}
		if otherSite != "" {
			code, body := send(t, inv, ts.URL, "POST", jsonProbe(base+otherSite+"/participants/"+p3+"/account", map[string]string{"email": "x@example.org"}))
			if code != http.StatusNotFound {
				t.Errorf("the participant under another site: %d %s, want 404", code, body)
			}
		} else {
			t.Error("the demo study has one site only")
		}
		if code, body := invite("aaaaaaaaaaaaaaaaaaaaaaaaaa", "y@example.org"); code != http.StatusNotFound {
			t.Errorf("an unknown participant: %d %s, want 404", code, body)
		}

		// A participant's address invited for a second record accepts on
		// the page with the account's password, which the link cannot
		// replace.
		if code, body := invite(p3, "pat.one@example.org"); code != http.StatusAccepted {
			t.Fatalf("invite an existing participant's address: %d %s", code, body)
		}
		c := ownClient(ts)
		var token string
		deadline := time.Now().Add(10 * time.Second)
		for token == "" {
			files, _ := filepath.Glob(filepath.Join(ts.inst.DataDir, "outbox", "*.eml"))
			for _, p := range files {
				if b, _ := os.ReadFile(p); strings.Contains(string(b), "existing Custodia account") {
					token = setupLink.FindStringSubmatch(string(b))[1]
				}
			}
			if token == "" && time.Now().After(deadline) {
				t.Fatal("no invitation for the existing account")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if code, body := send(t, c, ts.URL, "GET", probe{path: "/setup/" + token}); code != http.StatusOK || !strings.Contains(string(body), "Your current password") {
			t.Fatalf("setup page for an existing account: %d %s", code, body)
		}
		form := func(pw string) int {
			code, _ := send(t, c, ts.URL, "POST", probe{path: "/setup/" + token, ctype: "application/x-www-form-urlencoded",
				body: url.Values{"password": {pw}}.Encode()})
			return code
		}
		if code := form("Another brand new passphrase 77"); code != http.StatusUnauthorized {
			t.Errorf("a new password on the existing account's link: %d, want 401", code)
		}
		if rels, _ := authz.RelationsOfParticipant(ctx, ts.inst.Clinical, demoOrg.ID, p3); len(rels) != 0 {
			t.Errorf("granted on a wrong password: %+v", rels)
		}
		if code := form(password); code != http.StatusOK {
			t.Fatalf("accept with the account's password: %d", code)
		}
		one = signIn("pat.one@example.org")
		if code, body := send(t, one, ts.URL, "GET", probe{path: sitePath + "/" + p3}); code != http.StatusOK {
			t.Errorf("participant one reads their second record: %d %s", code, body)
		}

		for _, leak := range []string{"pat.one@example.org", "Pat.One", password} {
			if strings.Contains(ts.logs.String(), leak) {
				t.Errorf("the request log holds %q", leak)
			}
		}
	})
}

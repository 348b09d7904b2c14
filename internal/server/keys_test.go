package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys/keyadmin"
	"github.com/custodia/custodia/internal/orgs"
)

// matrixKeyRequests holds, per matrix cell tag, a pending key request of
// the demo organization made by someone other than the cell's role, for
// the approval route; filled by seedKeyRequests. matrixWebKeyRequests are
// others of the same kind for the keys page's approval, since a request is
// approved once.
var (
	matrixKeyRequests    = map[string]string{}
	matrixWebKeyRequests = map[string]string{}
)

func init() {
	base := func(tg target) string { return "/api/v1/orgs/" + tg.org + "/key-requests" }
	targetedProbes["GET /api/v1/orgs/{org}/key-requests"] = func(tg target, _ string) probe {
		return probe{path: base(tg)}
	}
	targetedProbes["POST /api/v1/orgs/{org}/key-requests"] = func(tg target, _ string) probe {
		return jsonProbe(base(tg), map[string]any{"kind": "rotate", "data_keys": true})
	}
	targetedProbes["POST /api/v1/orgs/{org}/key-requests/{request}/approve"] = func(tg target, tag string) probe {
		id, ok := matrixKeyRequests[tag]
		if !ok {
			id = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
		}
		return jsonProbe(base(tg)+"/"+id+"/approve", map[string]any{})
	}
	page := func(tg target) string { return "/orgs/" + tg.org + "/keys" }
	targetedProbes["GET /orgs/{org}/keys"] = func(tg target, _ string) probe {
		return probe{path: page(tg)}
	}
	targetedProbes["POST /orgs/{org}/keys"] = func(tg target, _ string) probe {
		return formProbe(page(tg), url.Values{"operation": {"rotate-data-keys"}})
	}
	targetedProbes["POST /orgs/{org}/keys/{request}/approve"] = func(tg target, tag string) probe {
		id, ok := matrixWebKeyRequests[tag]
		if !ok {
			id = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
		}
		return formProbe(page(tg)+"/"+id+"/approve", url.Values{})
	}
}

// seedKeyRequests files, for every cell whose organization is the demo
// one, two data-key rotations requested by the organization manager (whose
// approval by the organization admin the matrix then tries, over the API
// and on the keys page).
func seedKeyRequests(t *testing.T, ts *testServer, f matrixFixture) {
	t.Helper()
	ctx := context.Background()
	demoOrg, err := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	requester, err := accounts.ByEmail(ctx, ts.inst.Clinical, ts.logins[authz.OrgManager].Email)
	if err != nil {
		t.Fatal(err)
	}
	clear(matrixKeyRequests)
	clear(matrixWebKeyRequests)
	now := time.Now()
	seedCells(t, ts, f, true, func(tx *sql.Tx, tag string, _ target) error {
		for _, seeded := range []map[string]string{matrixKeyRequests, matrixWebKeyRequests} {
			id := ids.New()
			seeded[tag] = id
			if _, err := tx.ExecContext(ctx, `INSERT INTO key_requests
				(id, org_id, kind, params, requested_by, requested_at, expires_at)
				VALUES ($1, $2, 'rotate', '{"data_keys":true}', $3, $4, $5)`,
				id, demoOrg.ID, requester.ID, now.UnixMicro(), now.Add(keyadmin.RequestTTL).UnixMicro()); err != nil {
				return err
			}
		}
		return nil
	})
}

type keyRequestAnswer struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Status      string `json:"status"`
	RequestedBy string `json:"requested_by"`
	ApprovedBy  string `json:"approved_by"`
	KEK         bool   `json:"kek"`
	DataKeys    bool   `json:"data_keys"`
}

func keyAnswer(t *testing.T, body []byte) keyRequestAnswer {
	t.Helper()
	var a keyRequestAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return a
}

// addOrgAdmin gives organization orgID another administrator with
// password, signed in on a client of its own.
func addOrgAdmin(t *testing.T, ts *testServer, orgID, email, password string) (*http.Client, string) {
	t.Helper()
	ctx := context.Background()
	var accID string
	err := ts.inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
		acc, _, err := accounts.Enrol(ctx, tx, email, "", authz.Assignment{OrgID: orgID, Role: authz.OrgAdmin})
		if err != nil {
			return err
		}
		accID = acc.ID
		return accounts.SetPassword(ctx, tx, acc, password, accounts.DefaultPolicy)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := ownClient(ts)
	if code, body := send(t, c, ts.URL, "POST", jsonProbe("/api/v1/auth/login", map[string]string{"email": email, "password": password})); code != http.StatusOK {
		t.Fatalf("sign in as %s: %d %s", email, code, body)
	}
	return c, accID
}

// TestCRY08_KeyRequestsOverTheAPINeedTwoAdministrators files a rotation of
// the key-encryption key over the API and approves it: the requester
// cannot approve, a second administrator can, once; an access token (no
// confirmation of identity) cannot request; another organization's
// administrator sees nothing of the request and may not touch the
// key-encryption key at all; every step and refusal is a security event;
// the approved request is one the command line then carries out.
func TestCRY08_KeyRequestsOverTheAPINeedTwoAdministrators(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	ctx := context.Background()
	db := ts.inst.Clinical
	demoOrg, _ := orgs.OrganizationBySlug(ctx, db, demo.Slug)
	first := signInOwn(t, ts, authz.OrgAdmin)
	firstAcc, _ := accounts.ByEmail(ctx, db, ts.logins[authz.OrgAdmin].Email)
	second, secondID := addOrgAdmin(t, ts, demoOrg.ID, "second-admin@demo.example", "lantern harbour quiet 42")
	path := "/api/v1/orgs/demo/key-requests"

	// Bad input is refused with a clear message and records nothing.
	for body, want := range map[string]string{
		`{"kind":"shred-everything"}`:               "unknown key operation",
		`{"kind":"rotate"}`:                         "rotates the key-encryption key, the data keys, or both",
		`{"kind":"provider-change","provider":"x"}`: "unknown provider",
		`{"kind":"export-recovery","kek":true}`:     "takes no parameters",
	} {
		code, answer := send(t, first, ts.URL, "POST", probe{path: path, ctype: "application/json", body: body})
		if code != http.StatusBadRequest || !strings.Contains(string(answer), want) {
			t.Errorf("%s: %d %s, want 400 %q", body, code, answer, want)
		}
	}

	// An access token carries no confirmation of identity: refused.
	code, body := send(t, first, ts.URL, "POST", jsonProbe("/api/v1/tokens", map[string]any{"name": "script", "scopes": []string{"write"}}))
	if code != http.StatusCreated {
		t.Fatalf("token: %d %s", code, body)
	}
	var tok struct{ Token string }
	json.Unmarshal(body, &tok)
	req, _ := http.NewRequest("POST", ts.URL+path, strings.NewReader(`{"kind":"rotate","kek":true}`))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("request with an access token: %d, want 403 (step-up)", resp.StatusCode)
	}

	// The first administrator requests a rotation of the key-encryption key.
	code, body = send(t, first, ts.URL, "POST", jsonProbe(path, map[string]any{"kind": "rotate", "kek": true, "data_keys": true}))
	if code != http.StatusCreated {
		t.Fatalf("request: %d %s", code, body)
	}
	kr := keyAnswer(t, body)
	if kr.Status != "pending" || !kr.KEK || !kr.DataKeys || kr.RequestedBy != firstAcc.ID {
		t.Fatalf("request answer %s", body)
	}
	approve := jsonProbe(path+"/"+kr.ID+"/approve", map[string]any{})

	// The requester cannot approve it; nor can the command line carry it
	// out yet.
	code, body = send(t, first, ts.URL, "POST", approve)
	if code != http.StatusForbidden || !strings.Contains(string(body), "requester cannot approve") {
		t.Errorf("own approval: %d %s", code, body)
	}
	use := func() error {
		return db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := keyadmin.Use(ctx, tx, kr.ID, keyadmin.Rotate, time.Now())
			return err
		})
	}
	if err := use(); err == nil || !strings.Contains(err.Error(), "not been approved") {
		t.Errorf("use before approval: %v", err)
	}

	// Another organization's administrator: the request does not exist
	// for them, and the key-encryption key is not theirs to rotate; their
	// own data keys are.
	var otherOrg orgs.Organization
	if err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		otherOrg, err = orgs.CreateOrganization(ctx, tx, "Other Hospital", "other")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	other, _ := addOrgAdmin(t, ts, otherOrg.ID, "admin@other.example", "correct horse battery staple")
	if code, body = send(t, other, ts.URL, "POST", jsonProbe("/api/v1/orgs/other/key-requests/"+kr.ID+"/approve", map[string]any{})); code != http.StatusNotFound {
		t.Errorf("approval from another organization: %d %s", code, body)
	}
	if code, body = send(t, other, ts.URL, "POST", approve); code != http.StatusNotFound {
		t.Errorf("approval of the demo request by another organization's admin: %d %s", code, body)
	}
	if code, body = send(t, other, ts.URL, "GET", probe{path: "/api/v1/orgs/other/key-requests"}); code != http.StatusOK || strings.Contains(string(body), kr.ID) {
		t.Errorf("other organization's list: %d %s", code, body)
	}
	for _, op := range []map[string]any{{"kind": "rotate", "kek": true}, {"kind": "export-recovery"}, {"kind": "provider-change", "provider": "vault"}} {
		code, body = send(t, other, ts.URL, "POST", jsonProbe("/api/v1/orgs/other/key-requests", op))
		if code != http.StatusForbidden || !strings.Contains(string(body), "organization that operates it") {
			t.Errorf("%v by another organization: %d %s, want 403", op, code, body)
		}
	}
	if code, body = send(t, other, ts.URL, "POST", jsonProbe("/api/v1/orgs/other/key-requests", map[string]any{"kind": "rotate", "data_keys": true})); code != http.StatusCreated {
		t.Errorf("data-key rotation by another organization: %d %s", code, body)
	}

	// The second administrator approves, once.
	code, body = send(t, second, ts.URL, "POST", approve)
	if code != http.StatusOK {
		t.Fatalf("approval: %d %s", code, body)
	}
	if a := keyAnswer(t, body); a.Status != "approved" || a.ApprovedBy != secondID {
		t.Errorf("approval answer %s", body)
	}
	if code, body = send(t, second, ts.URL, "POST", approve); code != http.StatusConflict {
		t.Errorf("second approval: %d %s", code, body)
	}
	code, body = send(t, second, ts.URL, "GET", probe{path: path})
	if code != http.StatusOK || !strings.Contains(string(body), `"status":"approved"`) {
		t.Errorf("list: %d %s", code, body)
	}

	// The approved request is what the command line carries out, once.
	if err := use(); err != nil {
		t.Fatalf("use after approval: %v", err)
	}
	if err := use(); err == nil || !strings.Contains(err.Error(), "carried out already") {
		t.Errorf("second use: %v", err)
	}

	// The trail: the request and the approval as security successes, the
	// own approval and the other organization's attempts as failures.
	var evs []audit.Event
	for _, org := range []string{demoOrg.ID, otherOrg.ID} {
		page, _, err := audit.Search(ctx, db, audit.Filter{OrgID: org, Action: "key.", Limit: audit.MaxPage})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, page...)
	}
	count := map[string]int{}
	for _, ev := range evs {
		// (A refusal before the work begins, to someone without a role
		// in the organization, is an ordinary denial.)
		if !ev.Security && ev.Action != "key.list" && ev.Outcome != audit.Denied {
			t.Errorf("%s is not a security event", ev.Action)
		}
		count[ev.Action+" "+string(ev.Outcome)]++
		if ev.Action == "key.approve" && ev.Outcome == audit.Success &&
			(ev.Details["request"] != kr.ID || ev.Details["requested_by"] != firstAcc.ID || ev.Details["approved_by"] != secondID || ev.Details["kek"] != "true") {
			t.Errorf("approval event %+v", ev.Details)
		}
	}
	for k, want := range map[string]int{
		"key.request success": 2, "key.approve success": 1,
		"key.approve failure": 2, // own approval, the second approval
		"key.request failure": 3, // the other organization's key-encryption key operations
		"key.request denied":  1, // the access token
	} {
		if count[k] < want {
			t.Errorf("%d events %q, want at least %d (all: %v)", count[k], k, want, count)
		}
	}
}

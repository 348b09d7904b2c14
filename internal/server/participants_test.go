package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/orgs"
)

// matrixGrants holds, per matrix cell tag, a decrypt grant of the cell's
// study, for the revocation route; filled by seedDecryptGrants.
var matrixGrants = map[string]string{}

// The matrix's requests of the participant and decrypt-grant routes. Each
// cell works on the participant of its own (adminTargets), so an erasure in
// one cell changes no other.
func init() {
	base := func(tg target) string { return "/api/v1/orgs/" + tg.org + "/studies/" + tg.study }
	one := func(tg target, tag string) string {
		return base(tg) + "/sites/" + tg.site + "/participants/" + adminTargetOf(tag).participant
	}
	for route, mk := range map[string]func(tg target, tag string) probe{
		"POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants": func(tg target, tag string) probe {
			return jsonProbe(base(tg)+"/sites/"+tg.site+"/participants", map[string]string{"name": "Matrix " + tag})
		},
		"GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants": func(tg target, _ string) probe {
			return probe{path: base(tg) + "/sites/" + tg.site + "/participants"}
		},
		"GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}": func(tg target, tag string) probe {
			return probe{path: one(tg, tag)}
		},
		"GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/identity": func(tg target, tag string) probe {
			return probe{path: one(tg, tag) + "/identity"}
		},
		"DELETE /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/identity": func(tg target, tag string) probe {
			return probe{path: one(tg, tag) + "/identity"}
		},
		"POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/account": func(tg target, tag string) probe {
			return jsonProbe(one(tg, tag)+"/account", map[string]string{"email": tag + "@participants.matrix.example"})
		},
		"DELETE /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/account": func(tg target, tag string) probe {
			return probe{path: one(tg, tag) + "/account"}
		},
		"GET /api/v1/orgs/{org}/studies/{study}/decrypt-grants": func(tg target, _ string) probe {
			return probe{path: base(tg) + "/decrypt-grants"}
		},
		"POST /api/v1/orgs/{org}/studies/{study}/decrypt-grants": func(tg target, tag string) probe {
			return jsonProbe(base(tg)+"/decrypt-grants", map[string]any{
				"account": matrixGrants["grantee"], "fields": []string{"national_id"}, "reason": "matrix " + tag})
		},
		"DELETE /api/v1/orgs/{org}/studies/{study}/decrypt-grants/{grant}": func(tg target, tag string) probe {
			g, ok := matrixGrants[tag]
			if !ok {
				g = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
			}
			return probe{path: base(tg) + "/decrypt-grants/" + g}
		},
	} {
		targetedProbes[route] = mk
	}
}

// seedDecryptGrants gives, for every cell whose study is the demo
// organization's, a grant to the organization admin to revoke.
func seedDecryptGrants(t *testing.T, ts *testServer, f matrixFixture) {
	t.Helper()
	ctx := context.Background()
	demoOrg, err := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := accounts.ByEmail(ctx, ts.inst.Clinical, ts.logins[authz.OrgAdmin].Email)
	if err != nil {
		t.Fatal(err)
	}
	clear(matrixGrants)
	matrixGrants["grantee"] = admin.ID
	seedCells(t, ts, f, true, func(tx *sql.Tx, tag string, tg target) error {
		// One grant for the API's revocation, one for the page's.
		for _, key := range []string{tag, "page-" + tag} {
			id := ids.New()
			matrixGrants[key] = id
			if _, err := tx.ExecContext(ctx, `INSERT INTO decrypt_grants
				(id, org_id, study_id, account_id, fields, reason, granted_by, created_at)
				VALUES ($1, $2, $3, $4, 'national_id', 'matrix', $4, 1)`, id, demoOrg.ID, tg.study, admin.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// seedParticipantInvitations gives every cell's participant (adminTargets)
// a pending invitation to an account of their own, for the withdrawal
// route: its answer then depends on the requester alone.
func seedParticipantInvitations(t *testing.T, ts *testServer, f matrixFixture) {
	t.Helper()
	ctx := context.Background()
	seedCells(t, ts, f, false, func(tx *sql.Tx, tag string, tg target) error {
		o, err := orgs.OrganizationBySlug(ctx, tx, tg.org)
		if err != nil {
			return err
		}
		acc, err := accounts.Create(ctx, tx, "pending-"+tag+"@participants.matrix.example", "")
		if err != nil {
			return err
		}
		token, err := accounts.IssueLink(ctx, tx, acc.ID, accounts.PurposeSetup, time.Hour)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO participant_invitations
			(token_hash, org_id, participant_id, account_id, invited_by, created_at) VALUES ($1, $2, $3, $4, $4, 1)`,
			ids.Digest(token), o.ID, adminTargetOf(tag).participant, acc.ID)
		return err
	})
}

// TestCRY06_ReIdentificationOverTheAPI enrols a participant with every
// identity field as the site investigator, re-identifies them without and
// with a decrypt grant, and erases them: the answers show exactly the
// fields allowed, a withheld field only as present, and no value ever
// reaches the request log.
func TestCRY06_ReIdentificationOverTheAPI(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, nil)
	ctx := context.Background()
	inv := signInOwn(t, ts, authz.SiteInvestigator)
	admin := signInOwn(t, ts, authz.OrgAdmin)
	demoOrg, _ := orgs.OrganizationBySlug(ctx, ts.inst.Clinical, demo.Slug)
	acc, _ := accounts.ByEmail(ctx, ts.inst.Clinical, ts.logins[authz.SiteInvestigator].Email)
	as, _ := authz.AssignmentsOf(ctx, ts.inst.Clinical, demoOrg.ID, acc.ID)
	base := "/api/v1/orgs/demo/studies/" + as[0].StudyID
	sitePath := base + "/sites/" + as[0].SiteID + "/participants"

	identity := map[string]string{"name": "Rosalind Vantongeren", "email": "rosalind.vantongeren@example.org",
		"phone": "+32 470 12 34 56", "national_id": "85.07.30-033.28", "birth_date": "1985-07-30"}
	code, body := send(t, inv, ts.URL, "POST", jsonProbe(sitePath, identity))
	if code != http.StatusCreated {
		t.Fatalf("enrol: %d %s", code, body)
	}
	var p struct{ Pseudonym, Identity string }
	if err := json.Unmarshal(body, &p); err != nil || p.Identity != "recorded" {
		t.Fatalf("enrol answer %s", body)
	}
	for _, v := range identity {
		if strings.Contains(string(body), v) {
			t.Errorf("the enrolment answer repeats %q", v)
		}
	}
	code, body = send(t, inv, ts.URL, "GET", probe{path: sitePath})
	if code != http.StatusOK || !strings.Contains(string(body), p.Pseudonym) || strings.Contains(string(body), "Rosalind") {
		t.Errorf("list: %d %s", code, body)
	}

	reveal := func() (out struct {
		Identity string
		Fields   map[string]map[string]any
		Shown    []string
		Withheld []string
	}) {
		t.Helper()
		code, body := send(t, inv, ts.URL, "GET", probe{path: sitePath + "/" + p.Pseudonym + "/identity"})
		if code != http.StatusOK {
			t.Fatalf("reveal: %d %s", code, body)
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	rv := reveal()
	if rv.Fields["name"]["value"] != identity["name"] || rv.Fields["national_id"]["present"] != true ||
		rv.Fields["national_id"]["value"] != nil || len(rv.Shown) != 3 || strings.Join(rv.Withheld, ",") != "birth_date,national_id" {
		t.Errorf("reveal without a grant: %+v", rv)
	}

	code, body = send(t, admin, ts.URL, "POST", jsonProbe(base+"/decrypt-grants",
		map[string]any{"account": acc.ID, "site": as[0].SiteID, "fields": []string{"national_id"}, "reason": "re-consent call"}))
	if code != http.StatusCreated {
		t.Fatalf("grant: %d %s", code, body)
	}
	var g struct{ ID string }
	json.Unmarshal(body, &g)
	if rv = reveal(); rv.Fields["national_id"]["value"] != identity["national_id"] || strings.Join(rv.Withheld, ",") != "birth_date" {
		t.Errorf("reveal with a national-id grant: %+v", rv)
	}
	if code, body = send(t, admin, ts.URL, "DELETE", probe{path: base + "/decrypt-grants/" + g.ID}); code != http.StatusNoContent {
		t.Errorf("revoke: %d %s", code, body)
	}
	if code, body = send(t, admin, ts.URL, "POST", jsonProbe(base+"/decrypt-grants", map[string]any{"account": acc.ID})); code != http.StatusBadRequest {
		t.Errorf("grant without a reason: %d %s", code, body)
	}

	code, body = send(t, admin, ts.URL, "DELETE", probe{path: sitePath + "/" + p.Pseudonym + "/identity"})
	if code != http.StatusOK || !strings.Contains(string(body), `"identity":"erased"`) {
		t.Fatalf("erase: %d %s", code, body)
	}
	if rv = reveal(); rv.Identity != "erased" || len(rv.Fields) != 0 {
		t.Errorf("reveal after erasure: %+v", rv)
	}
	for _, v := range identity {
		if strings.Contains(ts.logs.String(), v) {
			t.Errorf("the server log holds %q", v)
		}
	}
}

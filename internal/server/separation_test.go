package server

// Role administration over HTTP: the objects the authorization matrix needs
// for the role, care-provider and custom-role routes, the separation of
// duties of the organization manager (ACL-06), and a revoked role ending on
// the very next request of a session (ACL-02).

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
)

// adminTarget holds, for one role and target of the matrix, the objects
// the role-administration routes act on: a member (the bystander) with a
// participant role at the target site (assignment), a participant at the
// target site, a custom role of the target's organization, and a care
// provider who may be assigned to the participant.
//
// The browser pages act on objects of their own: a second role of the
// member (data manager at the target site, assignment2) and a second
// custom role (customRole2).
type adminTarget struct {
	member, assignment, participant, customRole, carer string
	assignment2, customRole2                           string
}

// formTarget holds, for one cell of the matrix, the digests of its forms'
// drafts: d_<cell> has a draft (version 1) to save again, p_<cell> a
// published version 1 to read and retire and a draft (version 2) to
// publish.
type formTarget struct{ draftDigest, publishDigest, file string }

// formTargets is keyed by the matrix's cell tag, as adminTargets.
var formTargets = map[string]formTarget{}

// formTag makes a cell's tag part of a form key.
func formTag(tag string) string { return strings.ReplaceAll(tag, "-", "_") }

// matrixForm is a small valid form.
func matrixForm(key string) *forms.Form {
	return &forms.Form{Key: key, Title: "Matrix " + key, Fields: []forms.Field{
		{Name: "weight", Label: "Weight", Type: forms.Decimal, Unit: "kg", Decimals: 1},
		{Name: "smoker", Label: "Smoker", Type: forms.YesNo, Required: true},
	}}
}

// entryVisit is the visit of every study of the matrix at which the
// cells' participants have entries recorded: it collects the form
// entryform, of one text field.
var entryVisit = forms.Visit{Key: "entryvisit", Label: "Entry visit", Forms: []string{"entryform"}}

// importVisit is where the bulk import of the matrix adds its entries
// (pageImportVisit the study page's import); at deleteVisit each cell's
// participant has an entry to delete, at restoreVisit a deleted one to
// restore.
var (
	importVisit     = forms.Visit{Key: "importvisit", Label: "Import visit", Forms: []string{"entryform"}}
	pageImportVisit = forms.Visit{Key: "pageimportvisit", Label: "Page import visit", Forms: []string{"entryform"}}
	deleteVisit     = forms.Visit{Key: "deletevisit", Label: "Delete visit", Forms: []string{"entryform"}}
	restoreVisit    = forms.Visit{Key: "restorevisit", Label: "Restore visit", Forms: []string{"entryform"}}
	matrixVisits    = []forms.Visit{entryVisit, importVisit, pageImportVisit, deleteVisit, restoreVisit}
)

// seedEntry records an entry of entryform for a participant at a visit of
// the matrix, deleted or not.
func seedEntry(ctx context.Context, tx *sql.Tx, orgID, studyID, siteID, participant, visit, accountID string, deleted bool) error {
	var visitID, formID string
	if err := tx.QueryRowContext(ctx, `SELECT v.id, f.id FROM visits v JOIN forms f ON f.org_id = v.org_id AND f.study_id = v.study_id
		WHERE v.org_id = $1 AND v.study_id = $2 AND v.visit_key = $3 AND f.form_key = 'entryform'`, orgID, studyID, visit).Scan(&visitID, &formID); err != nil {
		return err
	}
	id, now := ids.New(), time.Now().UnixMicro()
	var at, by, why any
	if deleted {
		at, by, why = now, accountID, "seeded deleted"
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO entries (id, org_id, study_id, site_id, participant_id, visit_id, visit_repeat, form_id,
		form_version, status, revision, created_by, created_at, saved_by, saved_at, deleted_at, deleted_by, deleted_reason)
		VALUES ($1, $2, $3, $4, $5, $6, 1, $7, 1, 'complete', 1, $8, $9, $8, $9, $10, $11, $12)`,
		id, orgID, studyID, siteID, participant, visitID, formID, accountID, now, at, by, why); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO entry_revisions (entry_id, revision, form_version, status, saved_by, saved_at) VALUES ($1, 1, 1, 'complete', $2, $3)`,
		id, accountID, now)
	return err
}

// entriesPath is the entries of the cell's participant.
func entriesPath(tg target, tag string) string {
	return "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/sites/" + tg.site + "/participants/" + adminTargetOf(tag).participant + "/entries"
}

// seedEntryForm gives a study the form entryform, published, and the
// visit entryVisit.
func seedEntryForm(ctx context.Context, tx *sql.Tx, orgID, studyID, accountID string) error {
	f := &forms.Form{Key: "entryform", Title: "Entry form", Fields: []forms.Field{{Name: "note", Label: "Note", Type: forms.Text}}}
	v, err := forms.Create(ctx, tx, orgID, studyID, accountID, f)
	if err != nil {
		return err
	}
	if _, err := forms.Publish(ctx, tx, orgID, studyID, f.Key, accountID, v.Digest); err != nil {
		return err
	}
	return forms.SetSchedule(ctx, tx, orgID, studyID, matrixVisits)
}

// seedFile stores a small PDF for a participant, sealed as an upload is,
// and answers its id.
func seedFile(ctx context.Context, tx *sql.Tx, ring *keys.Keyring, orgID, studyID, siteID, participant, accountID string) (string, error) {
	dk, err := ring.Current(ctx, tx, keys.StudyScope(orgID, studyID))
	if err != nil {
		return "", err
	}
	id, data := ids.New(), []byte("%PDF-1.4 matrix")
	sealed, err := keys.Seal(dk, data, keys.Context{OrgID: orgID, StudyID: studyID, RecordID: id, Field: "file"})
	if err != nil {
		return "", err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO files (id, org_id, study_id, site_id, participant_id, name, media_type, size, sha256, sealed, created_by, created_at)
		VALUES ($1, $2, $3, $4, $5, 'matrix.pdf', 'application/pdf', $6, 'x', $7, $8, $9)`,
		id, orgID, studyID, siteID, participant, len(data), sealed, accountID, time.Now().UnixMicro())
	return id, err
}

// adminTargets is keyed by the matrix's cell tag (role-target); it is
// filled by setUpMatrix before any request is made and only read after.
var adminTargets = map[string]adminTarget{}

// adminTargetOf returns the objects of a cell, or well-formed ids of
// nothing for a request made outside the grid.
func adminTargetOf(tag string) adminTarget {
	if at, ok := adminTargets[tag]; ok {
		return at
	}
	none := "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	return adminTarget{member: none, assignment: none, participant: none, customRole: none, carer: none,
		assignment2: none, customRole2: none}
}

// seedAdminTargets creates the objects of every cell.
func seedAdminTargets(t *testing.T, ts *testServer, f matrixFixture) {
	t.Helper()
	ctx := context.Background()
	db := ts.inst.Clinical
	orgOf := map[string]orgs.Organization{}
	for _, slug := range []string{demo.Slug, "other"} {
		o, err := orgs.OrganizationBySlug(ctx, db, slug)
		if err != nil {
			t.Fatal(err)
		}
		orgOf[slug] = o
	}
	clear(adminTargets)
	clear(formTargets)
	kek, err := keys.LoadLocalKEK(ts.inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	ring := &keys.Keyring{DB: db, KEK: kek}
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		// One care provider at study level in every study of both
		// organizations.
		carer := ""
		for _, o := range orgOf {
			studies, err := orgs.Studies(ctx, tx, o.ID)
			if err != nil {
				return err
			}
			for _, st := range studies {
				acc, _, err := accounts.Enrol(ctx, tx, "matrix-carer@matrix.example", "",
					authz.Assignment{OrgID: o.ID, Role: authz.CareProvider, StudyID: st.ID})
				if err != nil {
					return err
				}
				carer = acc.ID
			}
		}
		n := 0
		seeded := map[string]bool{}
		for _, role := range authz.BuiltinRoles() {
			email := "bystander-" + string(role) + "@matrix.example"
			for i, tg := range f.targets[role] {
				n++
				o := orgOf[tg.org]
				acc, _, err := accounts.Enrol(ctx, tx, email, "",
					authz.Assignment{OrgID: o.ID, Role: authz.Participant, SiteID: tg.site})
				if err != nil {
					return err
				}
				as, err := authz.AssignmentsOf(ctx, tx, o.ID, acc.ID)
				if err != nil {
					return err
				}
				// The participant role just given, whatever else they hold.
				as = slices.DeleteFunc(as, func(x authz.Assignment) bool { return x.Role != authz.Participant || x.SiteID != tg.site })
				p, err := participants.Create(ctx, tx, o.ID, tg.study, tg.site)
				if err != nil {
					return err
				}
				cr, err := authz.CreateCustomRole(ctx, tx, authz.CustomRole{OrgID: o.ID, Name: fmt.Sprintf("matrix-%d", n),
					Levels: []authz.Level{authz.LevelSite}, Permissions: []authz.Action{authz.SiteRead}, CreatedBy: acc.ID})
				if err != nil {
					return err
				}
				second, err := authz.Assign(ctx, tx, authz.Assignment{OrgID: o.ID, AccountID: acc.ID, Role: authz.DataManager, SiteID: tg.site})
				if err != nil {
					return err
				}
				cr2, err := authz.CreateCustomRole(ctx, tx, authz.CustomRole{OrgID: o.ID, Name: fmt.Sprintf("matrix-web-%d", n),
					Levels: []authz.Level{authz.LevelSite}, Permissions: []authz.Action{authz.SiteRead}, CreatedBy: acc.ID})
				if err != nil {
					return err
				}
				tag := string(role) + "-" + targetNames[i]
				if !seeded[tg.study] {
					if err := seedEntryForm(ctx, tx, o.ID, tg.study, acc.ID); err != nil {
						return err
					}
					seeded[tg.study] = true
				}
				d, err := forms.Create(ctx, tx, o.ID, tg.study, acc.ID, matrixForm("d_"+formTag(tag)))
				if err != nil {
					return err
				}
				pf := matrixForm("p_" + formTag(tag))
				v1, err := forms.Create(ctx, tx, o.ID, tg.study, acc.ID, pf)
				if err != nil {
					return err
				}
				if _, err := forms.Publish(ctx, tx, o.ID, tg.study, pf.Key, acc.ID, v1.Digest); err != nil {
					return err
				}
				pf.Title = "Matrix, second version"
				v2, err := forms.SaveDraft(ctx, tx, o.ID, tg.study, pf.Key, acc.ID, "", pf)
				if err != nil {
					return err
				}
				file, err := seedFile(ctx, tx, ring, o.ID, tg.study, tg.site, p.Pseudonym, acc.ID)
				if err != nil {
					return err
				}
				formTargets[tag] = formTarget{draftDigest: d.Digest, publishDigest: v2.Digest, file: file}
				if err := seedEntry(ctx, tx, o.ID, tg.study, tg.site, p.Pseudonym, "deletevisit", acc.ID, false); err != nil {
					return err
				}
				if err := seedEntry(ctx, tx, o.ID, tg.study, tg.site, p.Pseudonym, "restorevisit", acc.ID, true); err != nil {
					return err
				}
				adminTargets[tag] = adminTarget{
					member: acc.ID, assignment: as[len(as)-1].ID, participant: p.Pseudonym, customRole: cr.ID, carer: carer,
					assignment2: second.ID, customRole2: cr2.ID,
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Separation of duties (ACL-06): the organization manager, walked through
// every registered route, gets no participant, identity, conversation or
// audit data from any of them, and cannot grant itself a way in.
func TestACL06_OrganizationManagerReachesNoClinicalIdentityOrAuditData(t *testing.T) {
	ts := newServerWith(t, nil)
	f := setUpMatrix(t, ts)
	ctx := context.Background()
	own := f.targets[authz.OrgManager][0]

	// What must never reach the manager: a participant with identifying
	// data, and the audit trail (which names that participant and holds
	// the seeding event).
	admin := signInOwn(t, ts, authz.OrgAdmin)
	identity := map[string]string{"name": "Quillon Farthingale", "email": "quillon.farthingale@example.org",
		"phone": "+31 6 1357 2468", "national_id": "ZQ-4471-9023", "birth_date": "1961-07-04"}
	code, body := send(t, admin, ts.URL, "POST", jsonProbe(
		"/api/v1/orgs/demo/studies/"+own.study+"/sites/"+own.site+"/participants", identity))
	if code != http.StatusCreated {
		t.Fatalf("enrol: %d %s", code, body)
	}
	var enrolled struct{ Pseudonym string }
	if err := json.Unmarshal(body, &enrolled); err != nil || !ids.Valid(enrolled.Pseudonym) {
		t.Fatalf("enrol answer %s: %v", body, err)
	}
	secrets := []string{enrolled.Pseudonym, "demo.seed"}
	for _, v := range identity {
		secrets = append(secrets, v)
	}

	manager := signInOwn(t, ts, authz.OrgManager)
	managerAcc, err := accounts.ByEmail(ctx, ts.inst.Clinical, ts.logins[authz.OrgManager].Email)
	if err != nil {
		t.Fatal(err)
	}
	generic := strings.NewReplacer("{org}", demo.Slug, "{study}", own.study, "{site}", own.site,
		"{participant}", enrolled.Pseudonym, "{account}", managerAcc.ID)
	var succeeded []string
	walked := 0
	for _, rt := range append(ts.shells.API.Routes(), ts.shells.Web.Routes()...) {
		pattern := rt.Pattern()
		if _, ownAccount := accountSteps[pattern]; rt.Access == "open" || ownAccount {
			// Open to anyone, or about the requester's own account (its
			// factors, password, session): the matrix walks those.
			continue
		}
		p := probe{path: generic.Replace(rt.Path), ctype: "application/json", body: "{}"}
		if mk := targetedProbes[pattern]; mk != nil {
			p = mk(own, "org-manager-own")
		}
		for strings.Contains(p.path, "{") { // any other identifier: one of nothing
			i, j := strings.Index(p.path, "{"), strings.Index(p.path, "}")
			if j < i {
				break
			}
			p.path = p.path[:i] + ids.New() + p.path[j+1:]
		}
		p.path = strings.TrimSuffix(p.path, "{$}")
		walked++
		code, body := send(t, manager, ts.URL, rt.Method, p)
		for _, s := range secrets {
			if strings.Contains(string(body), s) {
				t.Errorf("%s answered the manager with %q (status %d)", pattern, s, code)
			}
		}
		if code >= 200 && code < 300 {
			succeeded = append(succeeded, pattern)
			for _, clinical := range []string{"/participants", "/identity", "/audit", "/decrypt-grants", "/conversations",
				"/messages", "/entries", "/records", "/exports", "/field-visibility", "/care-providers"} {
				if strings.Contains(rt.Path, clinical) {
					t.Errorf("%s succeeded for the organization manager (%d)", pattern, code)
				}
			}
		}
	}
	if walked < 30 {
		t.Errorf("walked only %d routes", walked)
	}
	for _, want := range []string{"GET /api/v1/orgs/{org}/members", "GET /api/v1/orgs/{org}/roles"} {
		if !contains(succeeded, want) {
			t.Errorf("%s did not succeed for the manager: people management is theirs", want)
		}
	}
	t.Logf("routes that answered the manager with success: %v", succeeded)

	// No way in by granting: a clinical role, a custom role holding
	// participant.read, a care assignment.
	code, body = send(t, admin, ts.URL, "POST", jsonProbe("/api/v1/orgs/demo/roles",
		map[string]any{"name": "chart-reader", "levels": []string{"study"}, "permissions": []string{"participant.read"}}))
	if code != http.StatusCreated {
		t.Fatalf("custom role: %d %s", code, body)
	}
	self := "/api/v1/orgs/demo/members/" + managerAcc.ID + "/roles"
	for _, role := range []string{"data-manager", "monitor", "site-investigator", "care-provider", "chart-reader", "org-admin"} {
		req := map[string]string{"role": role, "study": own.study}
		switch role {
		case "org-admin":
			req = map[string]string{"role": role}
		case "site-investigator":
			req["site"] = own.site
		}
		if code, body := send(t, manager, ts.URL, "POST", jsonProbe(self, req)); code != http.StatusForbidden {
			t.Errorf("manager grants itself %s: %d %s, want 403", role, code, body)
		}
	}
	listing := probe{path: "/api/v1/orgs/demo/studies/" + own.study + "/sites/" + own.site + "/participants"}
	if code, _ := send(t, manager, ts.URL, "GET", listing); code != http.StatusNotFound {
		t.Errorf("participants after the attempts: %d, want 404", code)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// A role taken away stops working on the very next request of a session
// that was signed in all along, and a role given works on the next one
// (ACL-02); a role change needs a recent confirmation (ACL-09).
func TestACL02_RevokedRoleStopsWorkingOnTheNextRequestOfASession(t *testing.T) {
	ts := newServerWith(t, nil)
	ctx := context.Background()
	admin := signInOwn(t, ts, authz.OrgAdmin)
	dm := signInOwn(t, ts, authz.DataManager)
	acc, err := accounts.ByEmail(ctx, ts.inst.Clinical, ts.logins[authz.DataManager].Email)
	if err != nil {
		t.Fatal(err)
	}
	as, err := authz.AssignmentsOf(ctx, ts.inst.Clinical, orgID(t, ts), acc.ID)
	if err != nil || len(as) != 1 {
		t.Fatalf("data manager holds %v, %v", as, err)
	}
	sites, err := orgs.Sites(ctx, ts.inst.Clinical, orgID(t, ts), as[0].StudyID)
	if err != nil {
		t.Fatal(err)
	}
	listing := probe{path: "/api/v1/orgs/demo/studies/" + as[0].StudyID + "/sites/" + sites[0].ID + "/participants"}
	if code, body := send(t, dm, ts.URL, "GET", listing); code != http.StatusOK {
		t.Fatalf("before: %d %s", code, body)
	}

	other := probe{path: "/api/v1/orgs/demo/studies/" + as[0].StudyID + "/sites/" + sites[1].ID + "/participants"}

	// The admin narrows the role from the study to its second site: a
	// site role first, then the study role taken away.
	roles := "/api/v1/orgs/demo/members/" + acc.ID + "/roles"
	code, body := send(t, admin, ts.URL, "POST", jsonProbe(roles, map[string]string{"role": "data-manager", "site": sites[1].ID}))
	if code != http.StatusCreated {
		t.Fatalf("site role: %d %s", code, body)
	}
	code, body = send(t, admin, ts.URL, "GET", probe{path: "/api/v1/orgs/demo/members"})
	if code != http.StatusOK || !strings.Contains(string(body), as[0].ID) || !strings.Contains(string(body), acc.Email) {
		t.Fatalf("members: %d %s", code, body)
	}
	if code, body := send(t, admin, ts.URL, "DELETE", probe{path: roles + "/" + as[0].ID}); code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _ := send(t, dm, ts.URL, "GET", listing); code != http.StatusNotFound {
		t.Errorf("the next request after the revocation: %d, want 404", code)
	}
	if code, _ := send(t, dm, ts.URL, "GET", other); code != http.StatusOK {
		t.Errorf("the site the remaining role reaches: %d, want 200", code)
	}

	// Without a recent confirmation the admin cannot give it back.
	stale := time.Now().Add(-6 * time.Minute).UnixMicro()
	if _, err := ts.inst.Clinical.ExecContext(ctx, `UPDATE sessions SET confirmed_at = $1`, stale); err != nil {
		t.Fatal(err)
	}
	grant := jsonProbe(roles, map[string]string{"role": "data-manager", "study": as[0].StudyID})
	code, body = send(t, admin, ts.URL, "POST", grant)
	if code != http.StatusForbidden || !strings.Contains(string(body), "step_up_required") {
		t.Fatalf("grant with a stale confirmation: %d %s, want 403 step_up_required", code, body)
	}
	if code, _ := send(t, dm, ts.URL, "GET", listing); code != http.StatusNotFound {
		t.Errorf("after the refused grant: %d, want 404", code)
	}
	pw := ts.logins[authz.OrgAdmin].Password
	if code, body := send(t, admin, ts.URL, "POST", jsonProbe("/api/v1/auth/confirm", map[string]string{"password": pw})); code != http.StatusOK {
		t.Fatalf("confirm: %d %s", code, body)
	}
	code, body = send(t, admin, ts.URL, "POST", grant)
	if code != http.StatusCreated {
		t.Fatalf("grant: %d %s", code, body)
	}
	if code, _ := send(t, dm, ts.URL, "GET", listing); code != http.StatusOK {
		t.Errorf("the next request after the grant: %d, want 200", code)
	}
}

package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/policy"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/instance/instancetest"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/mfa/passkeytest"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sms"
)

// The authorization matrix (ACL-01): every registered route, tried as every
// built-in role of the demo organization against four targets:
//
//	own    the role's own site (for a role held at organization level, the
//	       demo study's North Clinic; for a study-level role, its study's
//	       first site)
//	site   another site of the same study
//	study  a site of another study of the same organization
//	org    a site of a study of another organization
//
// A grid row reads: role, then the expected status for own, site, study and
// org. Open routes name one status for anyone, signed in or not, and a
// signed-in route without a target one status for every role. Every
// signed-in route is also tried without a session and must answer 401.
//
// 404 is the answer to both "no such object" and "not yours" (ACL-08); 403
// appears only where the object is visible to the requester but the action
// is not theirs to take.
type matrixRow struct {
	Route string
	Open  int    // open route: the status for anyone
	Any   int    // signed-in route without a target: the status for every role
	Grid  string // signed-in route with a target: see above
	// Last: the route ends the sessions of other roles, so the roles
	// for whom it succeeds try it only once every other role is through
	// all its rows.
	Last bool
}

var matrix = []matrixRow{
	// Browser shell: open pages (the signed-in ones follow their API
	// counterparts below).
	{Route: "GET /{$}", Open: 200},
	// The API's OpenAPI document: anyone.
	{Route: "GET /api/v1/openapi.json", Open: 200},
	{Route: "GET /static/", Open: 200},
	{Route: "GET /setup/{token}", Open: 200},
	{Route: "POST /setup/{token}", Open: 200},
	// Declining needs an organization's invitation link; the matrix's link
	// sets up an account, so there is nothing to decline.
	{Route: "POST /setup/{token}/decline", Open: 404},
	{Route: "GET /reset", Open: 200},
	{Route: "POST /reset", Open: 200},
	{Route: "GET /reset/{token}", Open: 200},
	{Route: "POST /reset/{token}", Open: 200},
	// A factor recovery's link: the matrix has none live.
	{Route: "GET /recover/{token}", Open: 404},
	{Route: "POST /recover/{token}", Open: 404},
	// Signing in through the pages; the second steps without a challenge
	// answer with the sign-in page. A redirect is followed: a status is
	// that of the page it leads to.
	{Route: "GET /login", Open: 200},
	{Route: "POST /login", Open: 200},
	{Route: "GET /login/second-factor", Open: 401},
	{Route: "POST /login/second-factor", Open: 401},
	{Route: "POST /login/second-factor/webauthn/options", Open: 401},
	{Route: "POST /login/second-factor/webauthn", Open: 401},
	{Route: "GET /login/enrol", Open: 401},
	{Route: "POST /login/enrol", Open: 401},
	{Route: "POST /login/enrol/webauthn/options", Open: 401},
	{Route: "POST /login/enrol/webauthn", Open: 401},
	{Route: "POST /logout", Open: 200},

	// API: sign-in, its second step and reset are open, the rest needs a
	// session. The second steps are tried with a challenge that was never
	// issued.
	{Route: "POST /api/v1/auth/login", Open: 200},
	{Route: "POST /api/v1/auth/second-factor", Open: 401},
	{Route: "POST /api/v1/auth/second-factor/sms", Open: 401},
	{Route: "POST /api/v1/auth/second-factor/webauthn/options", Open: 401},
	{Route: "POST /api/v1/auth/second-factor/webauthn", Open: 401},
	{Route: "POST /api/v1/auth/enrolment/totp", Open: 401},
	{Route: "POST /api/v1/auth/enrolment/totp/confirm", Open: 401},
	{Route: "POST /api/v1/auth/enrolment/webauthn", Open: 401},
	{Route: "POST /api/v1/auth/enrolment/webauthn/confirm", Open: 401},
	{Route: "POST /api/v1/auth/reset", Open: 202},
	{Route: "POST /api/v1/auth/reset/confirm", Open: 204},

	// Each person's own second factor, in this order: begin, confirm with
	// a code, new recovery codes, remove with the password; then sign out.
	{Route: "POST /api/v1/account/factors/totp", Any: 200},
	{Route: "POST /api/v1/account/factors/totp/confirm", Any: 200},
	{Route: "POST /api/v1/account/recovery-codes", Any: 200},
	{Route: "DELETE /api/v1/account/factors/totp", Any: 204},
	{Route: "POST /api/v1/account/factors/sms", Any: 200},
	{Route: "POST /api/v1/account/factors/sms/confirm", Any: 200},
	{Route: "DELETE /api/v1/account/factors/sms", Any: 204},
	{Route: "POST /api/v1/account/factors/webauthn", Any: 200},
	{Route: "POST /api/v1/account/factors/webauthn/confirm", Any: 201},
	{Route: "GET /api/v1/account/factors/webauthn", Any: 200},
	{Route: "POST /api/v1/auth/confirm/webauthn/options", Any: 200},
	{Route: "POST /api/v1/auth/confirm/webauthn", Any: 200},
	{Route: "DELETE /api/v1/account/factors/webauthn/{id}", Any: 204},
	{Route: "POST /api/v1/tokens", Any: 201},
	{Route: "GET /api/v1/tokens", Any: 200},
	{Route: "DELETE /api/v1/tokens/{id}", Any: 204},
	{Route: "POST /api/v1/auth/confirm", Any: 200},
	{Route: "POST /api/v1/account/password", Any: 200},
	// The same through the browser pages of the account, then its sessions:
	// end this one, sign in again and sign out everywhere, sign in again.
	{Route: "POST /account/name", Any: 200},
	{Route: "POST /account/factors/totp", Any: 200},
	{Route: "POST /account/factors/totp/confirm", Any: 200},
	{Route: "POST /account/recovery-codes", Any: 200},
	{Route: "POST /account/factors/totp/remove", Any: 200},
	{Route: "POST /account/password", Any: 200},
	{Route: "GET /confirm", Any: 200},
	{Route: "POST /confirm", Any: 200},
	{Route: "POST /session/keep-alive", Any: 200},
	// Who accessed one's own participant record: every role may ask and
	// learns of its own records only (none, for most).
	{Route: "GET /api/v1/me/access-log", Any: 200},
	// One's own participant records, for the portal: likewise.
	{Route: "GET /api/v1/me/records", Any: 200},
	{Route: "GET /api/v1/account/organizations", Any: 200},
	// Leaving is tried on the other organization, which no role of the
	// demo belongs to; leaving one's own is TestACL02_PersonLeavesAnOrganization.
	{Route: "POST /api/v1/account/organizations/{org}/leave", Any: 404},
	{Route: "POST /account/organizations/{org}/leave", Any: 404},
	{Route: "GET /me/access-log", Any: 200},
	{Route: "GET /account", Any: 200},
	{Route: "POST /account/sessions/{session}/end", Any: 200},
	{Route: "POST /account/sessions/end-all", Any: 200},
	{Route: "POST /api/v1/auth/logout", Any: 204},

	// Invite someone as monitor at the target site. An organization
	// manager may invite, but not grant audit reading it does not hold
	// itself: the organization is visible to them, the grant forbidden.
	{Route: "POST /api/v1/orgs/{org}/invitations", Grid: `
		org-admin           202 202 202 404
		org-manager         403 403 403 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Listing the studies of the target organization: every member may
	// list and sees only what they may read (a participant, nothing).
	{Route: "GET /api/v1/orgs/{org}/studies", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         200 200 200 404
		data-manager        200 200 200 404
		site-investigator   200 200 200 404
		monitor             200 200 200 404
		care-provider       200 200 200 404
		participant         200 200 200 404`},
	{Route: "POST /api/v1/orgs/{org}/studies", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       200 200 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       200 200 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/sites", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         201 201 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites/{site}", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       200 404 404 404
		participant         404 404 404 404`},
	// Participants of the target site (CRY-09), each cell on a participant
	// of its own: enrolled by site investigators at their site and data
	// managers in their study, listed and read by pseudonym also by
	// monitors; re-identified (step-up: the session is fresh) by site
	// investigators at their site, erased by organization admins (LIFE-03),
	// who hold every permission they may grant. Those who see the
	// participant but may not reveal or erase are told so (403); the
	// organization manager never reaches a participant (ACL-06).
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        201 201 404 404
		site-investigator   201 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/identity", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "DELETE /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/identity", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   403 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// A participant's own account (ACL-05), invited by those who may enrol
	// at the participant's site; those who only read the participant are
	// told they may not (403).
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/account", Grid: `
		org-admin           202 202 202 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        202 202 404 404
		site-investigator   202 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Withdrawing a participant's pending invitation takes the invitation's
	// permission at the participant's site, so the same cells as the
	// invitation's. Every cell's participant has a pending invitation
	// (seedParticipantInvitations), so a refusal is never for want of one.
	{Route: "DELETE /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/account", Grid: `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        204 204 404 404
		site-investigator   204 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Decrypt grants (CRY-06) of the target study: organization admins and
	// the study's admins.
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/decrypt-grants", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/decrypt-grants", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         201 201 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "DELETE /api/v1/orgs/{org}/studies/{study}/decrypt-grants/{grant}", Grid: `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         204 204 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Key operations under dual control (CRY-08): requested, listed and
	// approved by organization admins only (key.manage), organization-wide.
	{Route: "GET /api/v1/orgs/{org}/key-requests", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/key-requests", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/key-requests/{request}/approve", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The same through the keys page; a request or an approval leads back
	// to the page.
	{Route: "GET /orgs/{org}/keys", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/keys", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/keys/{request}/approve", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The audit trail of the target study (?study=).
	{Route: "GET /api/v1/orgs/{org}/audit/events", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The search by e-mail address, with the filter in the body.
	{Route: "POST /api/v1/orgs/{org}/audit/search", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/audit/export", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Alerts (AUTH-12, AUD-05): read by those who read the whole trail
	// (organization admins; a study's monitor reads its study's trail
	// only), rules set by organization admins.
	{Route: "GET /api/v1/orgs/{org}/alerts", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/alerts/{alert}/read", Grid: `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/alert-rules", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "PUT /api/v1/orgs/{org}/alert-rules", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The security policy (AUTH-02, AUTH-09, AUTH-10) of the target
	// organization: its administrators only.
	{Route: "GET /api/v1/orgs/{org}/security-policy", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "PUT /api/v1/orgs/{org}/security-policy", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The security pages of the target organization (AUTH-04, AUTH-09):
	// its administrators only. The unlock names a member who is not
	// locked.
	{Route: "GET /orgs/{org}/security", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/security", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /orgs/{org}/locked", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The audit trail pages (AUD-04) of the target study, as the API's
	// search and export; the alerts pages (AUTH-12, AUD-05) as the API's.
	// Marking read and saving the rules lead back to the alerts page.
	{Route: "GET /orgs/{org}/audit", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/audit", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /orgs/{org}/audit/export", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /orgs/{org}/alerts", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/alerts/{alert}/read", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/alert-rules", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/locked/{account}/unlock", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Members' access through the page, as through the API; each change
	// leads back to the page.
	{Route: "GET /orgs/{org}/access", Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/access/{account}/disable", Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/access/{account}/enable", Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/access/{account}/sign-out", Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// A factor recovery (ASVS V6.4.4) of the cell's bystander, who has
	// no factor to recover (409 once authorized); an approval of a
	// recovery the organization does not have.
	{Route: "POST /orgs/{org}/access/{account}/factor-recovery", Grid: `		org-admin           409 409 409 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/factor-recoveries/{recovery}/approve", Grid: `		org-admin           404 404 404 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/access/sign-out", Last: true, Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Network ranges (ACL-07) of the target organization and study.
	{Route: "PUT /api/v1/orgs/{org}/network", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "PUT /api/v1/orgs/{org}/studies/{study}/network", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// People and roles (ACL-02, ACL-03): the members and roles of the
	// target organization; the bystander of the cell (a member with a
	// participant role at the target site) is given monitor there, and
	// loses the participant role. An organization manager sees the people
	// but may neither give nor take a role holding audit or participant
	// permissions (ACL-06).
	{Route: "GET /api/v1/orgs/{org}/members", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/members/{account}/roles", Grid: `
		org-admin           201 201 201 404
		org-manager         403 403 403 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "DELETE /api/v1/orgs/{org}/members/{account}/roles/{assignment}", Grid: `
		org-admin           204 204 204 404
		org-manager         403 403 403 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Members' access (ASVS V7.4.2, V7.4.5), the organization's
	// administrators only (security.manage, with step-up: the session is
	// fresh): the cell's bystander is disabled (again, in the later cells
	// of the organization: nothing changes), enabled and signed out.
	// Signing out every member reaches the sessions of the other roles,
	// so it runs last (Last), after every role's other rows.
	{Route: "POST /api/v1/orgs/{org}/members/{account}/disable", Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/members/{account}/enable", Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/members/{account}/sign-out", Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/members/{account}/factor-recovery", Grid: `		org-admin           409 409 409 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/factor-recoveries", Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/factor-recoveries/{recovery}/approve", Grid: `		org-admin           404 404 404 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/members/sign-out", Last: true, Grid: `		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Custom roles of the target organization: each cell creates one and
	// deletes another that no one holds.
	{Route: "GET /api/v1/orgs/{org}/roles", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/roles", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "DELETE /api/v1/orgs/{org}/roles/{role}", Grid: `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Care providers (ACL-05) of the cell's participant at the target
	// site, in this order: assign, then end the assignment.
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/participants/{participant}/care-providers", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         201 201 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "DELETE /api/v1/orgs/{org}/studies/{study}/participants/{participant}/care-providers", Grid: `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         204 204 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Field visibility (ACL-04) of the target study.
	{Route: "PUT /api/v1/orgs/{org}/studies/{study}/field-visibility", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Forms (WEB-05) of the target study: read by every role that works
	// with its data, a site's roles included (their study's forms);
	// designed by organization admins and the study's admins. Each cell
	// has forms of its own (seedAdminTargets).
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/forms", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/forms", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         201 201 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/forms/{form}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "PUT /api/v1/orgs/{org}/studies/{study}/forms/{form}/draft", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/forms/{form}/publish", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}/retire", Grid: `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         204 204 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The schedule of visits of the target study, read and set as its
	// forms are.
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/schedule", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "PUT /api/v1/orgs/{org}/studies/{study}/schedule", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Entries (WEB-05) of the cell's participant at the target site:
	// entered by investigators at their site and data managers, read by
	// monitors too (who are refused a save of what they see); study admins
	// design the forms but see no participant.
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "PUT /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}/history", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// A study's forms as a REDCap data dictionary, in and out.
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/forms/redcap-dictionary", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/forms/redcap-dictionary", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The export of a study's entries (LIFE-04): by those who read entries
	// somewhere in it, each getting only what they may read.
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/export", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 200 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/forms/odm", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// A bulk import of new entries: by those who enter data somewhere in
	// the study, each only at their sites (an investigator naming another
	// site's participant is told the line is bad).
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/import", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 400 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// Deleting an entry (LIFE-01): as saving it; restoring a deleted one:
	// organization admins only (those who see the participant are told so).
	{Route: "DELETE /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}", Grid: `
		org-admin           204 204 204 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        204 204 404 404
		site-investigator   204 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}/restore", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        403 403 404 404
		site-investigator   403 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// A participant's files: uploaded as entries are saved, read as they
	// are read.
	{Route: "POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files", Grid: `
		org-admin           201 201 201 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        201 201 404 404
		site-investigator   201 404 404 404
		monitor             403 403 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files/{file}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        200 200 404 404
		site-investigator   200 404 404 404
		monitor             200 200 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	// The pages of people and roles (ACL-02, ACL-03) and network ranges
	// (ACL-07), as their API counterparts; a change leads back to its page.
	// The cell's bystander is given site investigator at the target site
	// and loses a data-manager role there; each cell defines a custom role
	// and deletes another. A study admin's network page holds only their
	// studies, whose ranges they set.
	{Route: "GET /orgs/{org}/members", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/members/assign", Grid: `
		org-admin           200 200 200 404
		org-manager         403 403 403 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/members/{account}/roles/{assignment}/revoke", Grid: `
		org-admin           200 200 200 404
		org-manager         403 403 403 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /orgs/{org}/roles", Grid: `
		org-admin           200 200 200 404
		org-manager         200 200 200 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/roles", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/roles/{role}/delete", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "GET /orgs/{org}/network", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 200 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/network", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
	{Route: "POST /orgs/{org}/network/studies/{study}", Grid: `
		org-admin           200 200 200 404
		org-manager         404 404 404 404
		study-admin         200 200 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       404 404 404 404
		participant         404 404 404 404`},
}

// target is where a request points: an organization slug, a study and a
// site of it.
type target struct{ org, study, site string }

var targetNames = [4]string{"own", "site", "study", "org"}

// probe is one request: a path (with query), and a body of a content type.
type probe struct {
	path, ctype, body string
}

func jsonProbe(path string, v any) probe {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return probe{path: path, ctype: "application/json", body: string(b)}
}

// targetedProbes builds the request of each signed-in route for a target;
// tag makes names and addresses unique per cell.
var targetedProbes = map[string]func(tg target, tag string) probe{
	"GET /api/v1/orgs/{org}/members": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/members"}
	},
	"POST /api/v1/orgs/{org}/members/{account}/roles": func(tg target, tag string) probe {
		at := adminTargetOf(tag)
		return jsonProbe("/api/v1/orgs/"+tg.org+"/members/"+at.member+"/roles", map[string]string{"role": "monitor", "site": tg.site})
	},
	"DELETE /api/v1/orgs/{org}/members/{account}/roles/{assignment}": func(tg target, tag string) probe {
		at := adminTargetOf(tag)
		return probe{path: "/api/v1/orgs/" + tg.org + "/members/" + at.member + "/roles/" + at.assignment}
	},
	"GET /api/v1/orgs/{org}/roles": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/roles"}
	},
	"POST /api/v1/orgs/{org}/roles": func(tg target, tag string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/roles",
			map[string]any{"name": "m-" + tag, "levels": []string{"site"}, "permissions": []string{"site.read"}})
	},
	"DELETE /api/v1/orgs/{org}/roles/{role}": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/roles/" + adminTargetOf(tag).customRole}
	},
	"POST /api/v1/orgs/{org}/studies/{study}/participants/{participant}/care-providers": func(tg target, tag string) probe {
		at := adminTargetOf(tag)
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/participants/"+at.participant+"/care-providers",
			map[string]string{"account": at.carer})
	},
	"DELETE /api/v1/orgs/{org}/studies/{study}/participants/{participant}/care-providers": func(tg target, tag string) probe {
		at := adminTargetOf(tag)
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/participants/"+at.participant+"/care-providers",
			map[string]string{"account": at.carer})
	},
	"PUT /api/v1/orgs/{org}/studies/{study}/field-visibility": func(tg target, _ string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/field-visibility",
			map[string]any{"hidden": map[string][]string{"identity.national_id": {"monitor", "care-provider"}}})
	},
	"GET /api/v1/orgs/{org}/studies/{study}/forms": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/forms"}
	},
	"POST /api/v1/orgs/{org}/studies/{study}/forms": func(tg target, tag string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/forms", matrixForm("n_"+formTag(tag)))
	},
	"GET /api/v1/orgs/{org}/studies/{study}/forms/{form}": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/forms/p_" + formTag(tag)}
	},
	"PUT /api/v1/orgs/{org}/studies/{study}/forms/{form}/draft": func(tg target, tag string) probe {
		key := "d_" + formTag(tag)
		f := matrixForm(key)
		f.Title = "Changed " + tag
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/forms/"+key+"/draft",
			map[string]any{"base_digest": formTargets[tag].draftDigest, "form": f})
	},
	"POST /api/v1/orgs/{org}/studies/{study}/forms/{form}/publish": func(tg target, tag string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/forms/p_"+formTag(tag)+"/publish",
			map[string]string{"digest": formTargets[tag].publishDigest})
	},
	"GET /api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/forms/p_" + formTag(tag) + "/versions/1"}
	},
	"POST /api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}/retire": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/forms/p_" + formTag(tag) + "/versions/1/retire"}
	},
	"GET /api/v1/orgs/{org}/studies/{study}/schedule": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/schedule"}
	},
	"PUT /api/v1/orgs/{org}/studies/{study}/schedule": func(tg target, tag string) probe {
		day := 0
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/schedule", map[string]any{"visits": []forms.Visit{
			{Key: "baseline", Label: "Baseline", Day: &day, Forms: []string{"p_" + formTag(tag)}},
			{Key: "unscheduled", Label: "Unscheduled", Repeating: true, Forms: []string{}},
			entryVisit, importVisit, pageImportVisit, deleteVisit, restoreVisit,
		}})
	},
	"GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries": func(tg target, tag string) probe {
		return probe{path: entriesPath(tg, tag)}
	},
	"GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}": func(tg target, tag string) probe {
		return probe{path: entriesPath(tg, tag) + "/entryvisit/1/entryform"}
	},
	"PUT /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}": func(tg target, tag string) probe {
		return jsonProbe(entriesPath(tg, tag)+"/entryvisit/1/entryform", map[string]any{"revision": 0, "values": map[string]string{"note": "seen " + tag}})
	},
	"GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}/history": func(tg target, tag string) probe {
		return probe{path: entriesPath(tg, tag) + "/entryvisit/1/entryform/history"}
	},
	"POST /api/v1/orgs/{org}/studies/{study}/forms/redcap-dictionary": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/forms/redcap-dictionary", ctype: "text/csv",
			body: "Variable / Field Name,Form Name,Field Type,Field Label\nrecord_id,r_" + formTag(tag) + ",text,Record ID\nweight,r_" + formTag(tag) + ",text,Weight\n"}
	},
	"GET /api/v1/orgs/{org}/studies/{study}/forms/redcap-dictionary": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/forms/redcap-dictionary"}
	},
	"GET /api/v1/orgs/{org}/studies/{study}/export": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/export?format=csv"}
	},
	"POST /api/v1/orgs/{org}/studies/{study}/forms/odm": func(tg target, tag string) probe {
		key := "o_" + formTag(tag)
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/forms/odm", ctype: "application/xml",
			body: `<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileType="Snapshot" FileOID="F.1" CreationDateTime="2026-12-06T18:00:00Z"><Study OID="S.1">` +
				`<GlobalVariables><StudyName>M</StudyName><StudyDescription>M</StudyDescription><ProtocolName>M</ProtocolName></GlobalVariables>` +
				`<MetaDataVersion OID="MDV.1" Name="M"><FormDef OID="F.` + key + `" Name="Imported" Repeating="No"><ItemGroupRef ItemGroupOID="IG.` + key + `" Mandatory="Yes"/></FormDef>` +
				`<ItemGroupDef OID="IG.` + key + `" Name="g" Repeating="No"><ItemRef ItemOID="I.` + key + `.w" Mandatory="No"/></ItemGroupDef>` +
				`<ItemDef OID="I.` + key + `.w" Name="w" DataType="float"><Question><TranslatedText>Weight</TranslatedText></Question></ItemDef>` +
				`</MetaDataVersion></Study></ODM>`}
	},
	"POST /api/v1/orgs/{org}/studies/{study}/import": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/import", ctype: "text/csv",
			body: "participant,site,visit,repeat,form,form_version,field,row,value\n" +
				adminTargetOf(tag).participant + "," + tg.site + ",importvisit,1,entryform,1,note,0,imported " + tag + "\n"}
	},
	"DELETE /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}": func(tg target, tag string) probe {
		return jsonProbe(entriesPath(tg, tag)+"/deletevisit/1/entryform", map[string]string{"reason": "matrix " + tag})
	},
	"POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}/restore": func(tg target, tag string) probe {
		return probe{path: entriesPath(tg, tag) + "/restorevisit/1/entryform/restore"}
	},
	"POST /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files": func(tg target, tag string) probe {
		return probe{path: strings.TrimSuffix(entriesPath(tg, tag), "/entries") + "/files?name=scan.pdf", ctype: "application/octet-stream", body: "%PDF-1.4 " + tag}
	},
	"GET /api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files/{file}": func(tg target, tag string) probe {
		file := formTargets[tag].file
		if file == "" {
			file = "aaaaaaaaaaaaaaaaaaaaaaaaaa" // a request made outside the grid
		}
		return probe{path: strings.TrimSuffix(entriesPath(tg, tag), "/entries") + "/files/" + file}
	},
	"POST /api/v1/orgs/{org}/invitations": func(tg target, tag string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/invitations",
			map[string]string{"email": tag + "@matrix.example", "role": "monitor", "site": tg.site})
	},
	"GET /api/v1/orgs/{org}/studies": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies"}
	},
	"POST /api/v1/orgs/{org}/studies": func(tg target, tag string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies", map[string]string{"kind": "study", "name": "Matrix " + tag})
	},
	"GET /api/v1/orgs/{org}/studies/{study}": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study}
	},
	"GET /api/v1/orgs/{org}/studies/{study}/sites": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/sites"}
	},
	"POST /api/v1/orgs/{org}/studies/{study}/sites": func(tg target, tag string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/sites", map[string]string{"name": "Matrix " + tag})
	},
	"GET /api/v1/orgs/{org}/studies/{study}/sites/{site}": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/studies/" + tg.study + "/sites/" + tg.site}
	},
	"GET /api/v1/orgs/{org}/audit/events": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/audit/events?limit=5&study=" + tg.study}
	},
	"POST /api/v1/orgs/{org}/audit/search": func(tg target, _ string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/audit/search", map[string]any{"actor": "nobody@clinic.example", "study": tg.study, "limit": 5})
	},
	"GET /api/v1/orgs/{org}/audit/export": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/audit/export?action=study.create&study=" + tg.study}
	},
	"GET /api/v1/orgs/{org}/alerts": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/alerts"}
	},
	"POST /api/v1/orgs/{org}/alerts/{alert}/read": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/alerts/" + matrixAlert[tg.org] + "/read"}
	},
	"GET /api/v1/orgs/{org}/alert-rules": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/alert-rules"}
	},
	"PUT /api/v1/orgs/{org}/alert-rules": func(tg target, _ string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/alert-rules", map[string][]string{"rules": {"mfa.", "role."}})
	},
	"GET /api/v1/orgs/{org}/security-policy": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/security-policy"}
	},
	"PUT /api/v1/orgs/{org}/security-policy": func(tg target, _ string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/security-policy", policy.Default())
	},
	"GET /orgs/{org}/security": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/security"}
	},
	"POST /orgs/{org}/security": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/security", url.Values{
			"password_min_length": {"12"}, "password_rotation_days": {"0"},
			"session_idle_minutes": {"20"}, "session_absolute_hours": {"12"},
		})
	},
	"POST /api/v1/orgs/{org}/members/{account}/disable": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/members/" + adminTargetOf(tag).member + "/disable"}
	},
	"POST /api/v1/orgs/{org}/members/{account}/enable": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/members/" + adminTargetOf(tag).member + "/enable"}
	},
	"POST /api/v1/orgs/{org}/members/{account}/sign-out": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/members/" + adminTargetOf(tag).member + "/sign-out"}
	},
	"POST /api/v1/orgs/{org}/members/{account}/factor-recovery": func(tg target, tag string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/members/" + adminTargetOf(tag).member + "/factor-recovery"}
	},
	"GET /api/v1/orgs/{org}/factor-recoveries": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/factor-recoveries"}
	},
	"POST /api/v1/orgs/{org}/factor-recoveries/{recovery}/approve": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/factor-recoveries/aaaaaaaaaaaaaaaaaaaaaaaaaa/approve"}
	},
	"POST /orgs/{org}/access/{account}/factor-recovery": func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/access/"+adminTargetOf(tag).member+"/factor-recovery", url.Values{})
	},
	"POST /orgs/{org}/factor-recoveries/{recovery}/approve": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/factor-recoveries/aaaaaaaaaaaaaaaaaaaaaaaaaa/approve", url.Values{})
	},
	"POST /api/v1/orgs/{org}/members/sign-out": func(tg target, _ string) probe {
		return probe{path: "/api/v1/orgs/" + tg.org + "/members/sign-out"}
	},
	"GET /orgs/{org}/access": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/access"}
	},
	"POST /orgs/{org}/access/{account}/disable": func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/access/"+adminTargetOf(tag).member+"/disable", url.Values{})
	},
	"POST /orgs/{org}/access/{account}/enable": func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/access/"+adminTargetOf(tag).member+"/enable", url.Values{})
	},
	"POST /orgs/{org}/access/{account}/sign-out": func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/access/"+adminTargetOf(tag).member+"/sign-out", url.Values{})
	},
	"POST /orgs/{org}/access/sign-out": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/access/sign-out", url.Values{})
	},
	"GET /orgs/{org}/locked": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/locked"}
	},
	"POST /orgs/{org}/locked/{account}/unlock": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/locked/"+matrixMember+"/unlock", url.Values{})
	},
	"GET /orgs/{org}/audit": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/audit?limit=5&study=" + tg.study}
	},
	"POST /orgs/{org}/audit": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/audit", url.Values{"actor": {"nobody@clinic.example"}, "study": {tg.study}, "limit": {"5"}})
	},
	"GET /orgs/{org}/audit/export": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/audit/export?action=study.create&study=" + tg.study}
	},
	"GET /orgs/{org}/alerts": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/alerts"}
	},
	"POST /orgs/{org}/alerts/{alert}/read": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/alerts/"+matrixAlert[tg.org]+"/read", url.Values{})
	},
	"POST /orgs/{org}/alert-rules": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/alert-rules", url.Values{"rules": {"mfa.\nrole."}})
	},
	"PUT /api/v1/orgs/{org}/network": func(tg target, _ string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/network", map[string][]string{"allowed": {"127.0.0.0/8", "::1/128"}})
	},
	"PUT /api/v1/orgs/{org}/studies/{study}/network": func(tg target, _ string) probe {
		return jsonProbe("/api/v1/orgs/"+tg.org+"/studies/"+tg.study+"/network", map[string][]string{"allowed": {"127.0.0.0/8", "::1/128"}})
	},
	"GET /orgs/{org}/members": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/members"}
	},
	"POST /orgs/{org}/members/assign": func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/members/assign", url.Values{
			"account": {adminTargetOf(tag).member}, "role": {"site-investigator"}, "scope": {"site:" + tg.site}})
	},
	"POST /orgs/{org}/members/{account}/roles/{assignment}/revoke": func(tg target, tag string) probe {
		at := adminTargetOf(tag)
		return formProbe("/orgs/"+tg.org+"/members/"+at.member+"/roles/"+at.assignment2+"/revoke", url.Values{})
	},
	"GET /orgs/{org}/roles": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/roles"}
	},
	"POST /orgs/{org}/roles": func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/roles", url.Values{"name": {"w-" + tag}, "level": {"site"}, "permission": {"site.read"}})
	},
	"POST /orgs/{org}/roles/{role}/delete": func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/roles/"+adminTargetOf(tag).customRole2+"/delete", url.Values{})
	},
	"GET /orgs/{org}/network": func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/network"}
	},
	"POST /orgs/{org}/network": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/network", url.Values{"ranges": {"127.0.0.0/8\n::1/128"}})
	},
	"POST /orgs/{org}/network/studies/{study}": func(tg target, _ string) probe {
		return formProbe("/orgs/"+tg.org+"/network/studies/"+tg.study, url.Values{"ranges": {"127.0.0.0/8\n::1/128"}})
	},
}

// accountState carries one role's own-account requests from one step to
// the next.
type accountState struct {
	password string
	secret   []byte
	recovery []string
	phone    string // where matrixTexts receives the role's codes
	tokenID  string

	// The role's passkey, its registration's options and its id.
	passkey   *passkeytest.Authenticator
	options   []byte
	passkeyID string

	// The role's session in the browser pages.
	webSession string
}

// formProbe is a posted browser form.
func formProbe(path string, v url.Values) probe {
	return probe{path: path, ctype: "application/x-www-form-urlencoded", body: v.Encode()}
}

// matrixMember is the account of the open sign-in, a member of the demo
// organization whom the unlock page names.
var matrixMember string

// matrixAlert is an alert of each organization, by slug.
var matrixAlert = map[string]string{}

// matrixWebPassword is what every role changes its password to through the
// account page.
const matrixWebPassword = "Saffron glacier kettle 6062"

// pageValue finds the first submatch of pattern in a page.
func pageValue(body []byte, pattern string) (string, error) {
	m := regexp.MustCompile(pattern).FindSubmatch(body)
	if m == nil {
		return "", fmt.Errorf("no %s in the page", pattern)
	}
	return string(m[1]), nil
}

// matrixPublicURL is the matrix server's public URL: passkeys need a host
// name.
const matrixPublicURL = "https://localhost:8443"

// matrixTexts receives the text messages of the matrix's server.
var matrixTexts = &sms.Recorder{}

// matrixNewPassword is what every role changes its password to.
const matrixNewPassword = "Lilac quarry beacon 5150"

// accountSteps builds the request of each signed-in route without a
// target, and reads what later steps need from its answer.
var accountSteps = map[string]struct {
	req  func(s *accountState) probe
	read func(s *accountState, body []byte) error
	// fresh: an earlier step ended the session; sign in again first.
	fresh bool
}{
	"POST /api/v1/account/factors/totp": {
		req: func(*accountState) probe { return probe{path: "/api/v1/account/factors/totp"} },
		read: func(s *accountState, body []byte) error {
			var e struct{ Secret string }
			if err := json.Unmarshal(body, &e); err != nil {
				return err
			}
			var err error
			s.secret, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.Secret)
			return err
		},
	},
	"POST /api/v1/account/factors/totp/confirm": {
		req: func(s *accountState) probe {
			return jsonProbe("/api/v1/account/factors/totp/confirm", map[string]string{"code": mfa.Code(s.secret, mfa.Step(time.Now()))})
		},
		read: func(s *accountState, body []byte) error {
			var c struct {
				RecoveryCodes []string `json:"recovery_codes"`
			}
			if err := json.Unmarshal(body, &c); err != nil || len(c.RecoveryCodes) == 0 {
				return fmt.Errorf("no recovery codes in %q", body)
			}
			s.recovery = c.RecoveryCodes
			return nil
		},
	},
	"POST /api/v1/account/recovery-codes": {
		req: func(s *accountState) probe {
			code := "none"
			if len(s.recovery) > 0 {
				code = s.recovery[0]
			}
			return jsonProbe("/api/v1/account/recovery-codes", map[string]string{"code": code})
		},
	},
	"DELETE /api/v1/account/factors/totp": {
		req: func(s *accountState) probe {
			return jsonProbe("/api/v1/account/factors/totp", map[string]string{"password": s.password})
		},
	},
	"POST /api/v1/account/factors/sms": {
		req: func(s *accountState) probe {
			return jsonProbe("/api/v1/account/factors/sms", map[string]string{"phone": s.phone})
		},
	},
	"POST /api/v1/account/factors/sms/confirm": {
		req: func(s *accountState) probe {
			m, _ := matrixTexts.Last(s.phone)
			code := ""
			for _, f := range strings.Fields(strings.Trim(m.Text, ".")) {
				if f = strings.TrimSuffix(f, "."); len(f) == 6 && strings.Trim(f, "0123456789") == "" {
					code = f
				}
			}
			return jsonProbe("/api/v1/account/factors/sms/confirm", map[string]string{"code": code})
		},
	},
	"DELETE /api/v1/account/factors/sms": {
		req: func(s *accountState) probe {
			return jsonProbe("/api/v1/account/factors/sms", map[string]string{"password": s.password})
		},
	},
	"POST /api/v1/account/factors/webauthn": {
		req: func(*accountState) probe { return probe{path: "/api/v1/account/factors/webauthn"} },
		read: func(s *accountState, body []byte) error {
			s.options = body
			return nil
		},
	},
	"POST /api/v1/account/factors/webauthn/confirm": {
		req: func(s *accountState) probe {
			s.passkey = passkeytest.New(matrixPublicURL)
			cred, err := s.passkey.Create(s.options)
			if err != nil {
				cred = []byte(`{}`)
			}
			return jsonProbe("/api/v1/account/factors/webauthn/confirm", map[string]any{"name": "matrix", "credential": json.RawMessage(cred)})
		},
	},
	"GET /api/v1/account/factors/webauthn": {
		req: func(*accountState) probe { return probe{path: "/api/v1/account/factors/webauthn"} },
		read: func(s *accountState, body []byte) error {
			var l struct{ Passkeys []struct{ ID string } }
			if err := json.Unmarshal(body, &l); err != nil || len(l.Passkeys) != 1 {
				return fmt.Errorf("want one passkey in %q", body)
			}
			s.passkeyID = l.Passkeys[0].ID
			return nil
		},
	},
	// A step-up answered with the passkey just registered.
	"POST /api/v1/auth/confirm/webauthn/options": {
		req: func(*accountState) probe { return probe{path: "/api/v1/auth/confirm/webauthn/options"} },
		read: func(s *accountState, body []byte) error {
			s.options = body
			return nil
		},
	},
	"POST /api/v1/auth/confirm/webauthn": {
		req: func(s *accountState) probe {
			cred, err := s.passkey.Get(s.options)
			if err != nil {
				cred = []byte(`{}`)
			}
			return jsonProbe("/api/v1/auth/confirm/webauthn", map[string]any{"credential": json.RawMessage(cred)})
		},
	},
	"DELETE /api/v1/account/factors/webauthn/{id}": {
		req: func(s *accountState) probe {
			return jsonProbe("/api/v1/account/factors/webauthn/"+s.passkeyID, map[string]string{"password": s.password})
		},
	},
	"POST /api/v1/tokens": {
		req: func(*accountState) probe {
			return jsonProbe("/api/v1/tokens", map[string]any{"name": "matrix", "scopes": []string{"read"}, "expires_in_days": 7})
		},
		read: func(s *accountState, body []byte) error {
			var t struct{ ID string }
			if err := json.Unmarshal(body, &t); err != nil || t.ID == "" {
				return fmt.Errorf("no token id in %q", body)
			}
			s.tokenID = t.ID
			return nil
		},
	},
	"GET /api/v1/tokens": {
		req: func(*accountState) probe { return probe{path: "/api/v1/tokens"} },
	},
	"DELETE /api/v1/tokens/{id}": {
		req: func(s *accountState) probe { return probe{path: "/api/v1/tokens/" + s.tokenID} },
	},
	"POST /api/v1/account/password": {
		req: func(s *accountState) probe {
			return jsonProbe("/api/v1/account/password", map[string]string{"current": s.password, "new": matrixNewPassword})
		},
		read: func(s *accountState, _ []byte) error {
			s.password = matrixNewPassword
			return nil
		},
	},
	"POST /api/v1/auth/confirm": {
		req: func(s *accountState) probe {
			return jsonProbe("/api/v1/auth/confirm", map[string]string{"password": s.password})
		},
	},
	"POST /account/name": {
		req: func(*accountState) probe { return formProbe("/account/name", url.Values{"name": {"Matrix Person"}}) },
	},
	"POST /account/factors/totp": {
		req: func(*accountState) probe { return formProbe("/account/factors/totp", url.Values{}) },
		read: func(s *accountState, body []byte) error {
			secret, err := pageValue(body, `id="totp-secret">([A-Z2-7]+)<`)
			if err == nil {
				s.secret, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
			}
			return err
		},
	},
	"POST /account/factors/totp/confirm": {
		req: func(s *accountState) probe {
			return formProbe("/account/factors/totp/confirm", url.Values{"code": {mfa.Code(s.secret, mfa.Step(time.Now()))}})
		},
		read: func(s *accountState, body []byte) error {
			code, err := pageValue(body, `<li><code>([^<]+)</code></li>`)
			s.recovery = []string{code}
			return err
		},
	},
	"POST /account/recovery-codes": {
		req: func(s *accountState) probe {
			return formProbe("/account/recovery-codes", url.Values{"code": {s.recovery[0]}})
		},
	},
	"POST /account/factors/totp/remove": {
		req: func(s *accountState) probe {
			return formProbe("/account/factors/totp/remove", url.Values{"password": {s.password}})
		},
	},
	"POST /account/password": {
		req: func(s *accountState) probe {
			return formProbe("/account/password", url.Values{"current": {s.password}, "password": {matrixWebPassword}, "confirm": {matrixWebPassword}})
		},
		read: func(s *accountState, _ []byte) error {
			s.password = matrixWebPassword
			return nil
		},
	},
	"GET /confirm": {
		req: func(*accountState) probe { return probe{path: "/confirm"} },
	},
	"POST /confirm": {
		req: func(s *accountState) probe { return formProbe("/confirm", url.Values{"password": {s.password}}) },
	},
	"POST /session/keep-alive": {
		req: func(*accountState) probe { return formProbe("/session/keep-alive", url.Values{}) },
	},
	"GET /api/v1/me/access-log": {
		req: func(*accountState) probe { return probe{path: "/api/v1/me/access-log"} },
	},
	"GET /api/v1/me/records": {
		req: func(*accountState) probe { return probe{path: "/api/v1/me/records"} },
	},
	"GET /me/access-log": {
		req: func(*accountState) probe { return probe{path: "/me/access-log"} },
	},
	"POST /account/organizations/{org}/leave": {
		req: func(*accountState) probe { return formProbe("/account/organizations/other/leave", url.Values{}) },
	},
	"GET /api/v1/account/organizations": {
		req: func(*accountState) probe { return probe{path: "/api/v1/account/organizations"} },
	},
	"POST /api/v1/account/organizations/{org}/leave": {
		req: func(*accountState) probe {
			return jsonProbe("/api/v1/account/organizations/other/leave", map[string]string{})
		},
	},
	"GET /account": {
		req: func(*accountState) probe { return probe{path: "/account"} },
		read: func(s *accountState, body []byte) error {
			var err error
			s.webSession, err = pageValue(body, `<tr class="current">(?s:.*?)action="/account/sessions/([^/"]+)/end"`)
			return err
		},
	},
	"POST /account/sessions/{session}/end": {
		req: func(s *accountState) probe { return formProbe("/account/sessions/"+s.webSession+"/end", url.Values{}) },
	},
	"POST /account/sessions/end-all": {
		fresh: true,
		req:   func(*accountState) probe { return formProbe("/account/sessions/end-all", url.Values{}) },
	},
	"POST /api/v1/auth/logout": {
		fresh: true,
		req:   func(*accountState) probe { return probe{path: "/api/v1/auth/logout"} },
	},
}

// matrixFixture is what the open routes and the targets need beyond the
// demo organization.
type matrixFixture struct {
	targets     map[authz.Role][4]target
	login       demo.Login // an account for the open sign-in route
	resetEmail  string
	setupToken  string
	resetTokens [2]string // one for the page, one for the API
}

func setUpMatrix(t *testing.T, ts *testServer) matrixFixture {
	t.Helper()
	ctx := context.Background()
	db := ts.inst.Clinical
	f := matrixFixture{targets: map[authz.Role][4]target{}}
	demoOrg, err := orgs.OrganizationBySlug(ctx, db, demo.Slug)
	if err != nil {
		t.Fatal(err)
	}
	studies, err := orgs.Studies(ctx, db, demoOrg.ID)
	if err != nil {
		t.Fatal(err)
	}
	studyNamed := map[string]orgs.Study{}
	for _, st := range studies {
		studyNamed[st.Name] = st
	}
	var other target
	var otherOrg orgs.Organization
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		// A second site for the care program, so the care provider has a
		// neighbouring site too.
		if _, err := orgs.CreateSite(ctx, tx, demoOrg.ID, studyNamed["Demo Care Program"].ID, "Outreach Team"); err != nil {
			return err
		}
		o, err := orgs.CreateOrganization(ctx, tx, "Other Hospital", "other")
		if err != nil {
			return err
		}
		st, err := orgs.CreateStudy(ctx, tx, o.ID, orgs.KindStudy, "Other Trial")
		if err != nil {
			return err
		}
		site, err := orgs.CreateSite(ctx, tx, o.ID, st.ID, "Other Site")
		if err != nil {
			return err
		}
		other = target{org: o.Slug, study: st.ID, site: site.ID}
		otherOrg = o

		// Accounts for the open routes, outside the role accounts.
		f.login = demo.Login{Email: "open-login@matrix.example", Password: "Tangerine quartz harbour 4711"}
		f.resetEmail = "open-reset@matrix.example"
		sites, err := orgs.Sites(ctx, tx, demoOrg.ID, studyNamed["Demo Study"].ID)
		if err != nil {
			return err
		}
		part := authz.Assignment{OrgID: demoOrg.ID, Role: authz.Participant, SiteID: sites[0].ID}
		acc, _, err := accounts.Enrol(ctx, tx, f.login.Email, "", part)
		if err != nil {
			return err
		}
		matrixMember = acc.ID
		if err := accounts.SetPassword(ctx, tx, acc, f.login.Password, accounts.DefaultPolicy); err != nil {
			return err
		}
		acc, _, err = accounts.Enrol(ctx, tx, f.resetEmail, "", part)
		if err != nil {
			return err
		}
		if err := accounts.SetPassword(ctx, tx, acc, "Violet anchor lantern 0815", accounts.DefaultPolicy); err != nil {
			return err
		}
		for i := range f.resetTokens {
			if f.resetTokens[i], err = accounts.IssueLink(ctx, tx, acc.ID, accounts.PurposeReset, time.Hour); err != nil {
				return err
			}
		}
		acc, _, err = accounts.Enrol(ctx, tx, "open-setup@matrix.example", "", part)
		if err != nil {
			return err
		}
		f.setupToken, err = accounts.IssueLink(ctx, tx, acc.ID, accounts.PurposeSetup, time.Hour)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// An alert in each organization, for the alert routes.
	err = gate.New(gate.Config{Clinical: db}).Operate(ctx, "alert.test", func(tx *gate.OpTx) error {
		for _, org := range []orgs.Organization{demoOrg, otherOrg} {
			al, err := alerts.Raise(ctx, tx, alerts.Alert{OrgID: org.ID, Kind: alerts.AccountLocked, Subject: matrixMember + "x"})
			if err != nil {
				return err
			}
			matrixAlert[org.Slug] = al.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sitesOf := func(studyID string) []orgs.Site {
		sites, err := orgs.Sites(ctx, db, demoOrg.ID, studyID)
		if err != nil || len(sites) < 2 {
			t.Fatalf("sites of %s: %v, %v (want two or more)", studyID, sites, err)
		}
		slices.SortFunc(sites, func(a, b orgs.Site) int { return strings.Compare(a.Name, b.Name) })
		return sites
	}
	for _, role := range authz.BuiltinRoles() {
		acc, err := accounts.ByEmail(ctx, db, ts.logins[role].Email)
		if err != nil {
			t.Fatal(err)
		}
		as, err := authz.AssignmentsOf(ctx, db, demoOrg.ID, acc.ID)
		if err != nil || len(as) != 1 {
			t.Fatalf("%s holds %v, %v; want one assignment", role, as, err)
		}
		studyID := as[0].StudyID
		if studyID == "" {
			studyID = studyNamed["Demo Study"].ID
		}
		sites := sitesOf(studyID)
		own, neighbour := sites[0], sites[1]
		if as[0].SiteID != "" {
			i := slices.IndexFunc(sites, func(s orgs.Site) bool { return s.ID == as[0].SiteID })
			own, neighbour = sites[i], sites[(i+1)%len(sites)]
		}
		otherStudy := studyNamed["Demo Registry"]
		if otherStudy.ID == studyID {
			otherStudy = studyNamed["Demo Study"]
		}
		otherSites, err := orgs.Sites(ctx, db, demoOrg.ID, otherStudy.ID)
		if err != nil || len(otherSites) == 0 {
			t.Fatalf("sites of %s: %v", otherStudy.Name, err)
		}
		f.targets[role] = [4]target{
			{demo.Slug, studyID, own.ID},
			{demo.Slug, studyID, neighbour.ID},
			{demo.Slug, otherStudy.ID, otherSites[0].ID},
			other,
		}
	}
	seedAdminTargets(t, ts, f)
	seedDecryptGrants(t, ts, f)
	seedParticipantInvitations(t, ts, f)
	seedKeyRequests(t, ts, f)
	seedWorkspace(t, ts, f)
	seedConversations(t, ts, f)
	seedConsent(t, ts, f)
	return f
}

// seedCells runs seed for every cell of the matrix (role × target), with
// the cell's tag ("role-target"), in one transaction; cells of the demo
// organization only when demoOnly.
func seedCells(t *testing.T, ts *testServer, f matrixFixture, demoOnly bool, seed func(tx *sql.Tx, tag string, tg target) error) {
	t.Helper()
	err := ts.inst.Clinical.InTx(context.Background(), func(tx *sql.Tx) error {
		for _, role := range authz.BuiltinRoles() {
			for i, tg := range f.targets[role] {
				if demoOnly && tg.org != demo.Slug {
					continue
				}
				if err := seed(tx, string(role)+"-"+targetNames[i], tg); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// openProbes builds the request of each open route.
func openProbes(f matrixFixture) map[string]probe {
	form := func(path string, v url.Values) probe {
		return probe{path: path, ctype: "application/x-www-form-urlencoded", body: v.Encode()}
	}
	newPassword := url.Values{"password": {"Copper meadow sailing 2718"}, "confirm": {"Copper meadow sailing 2718"}}
	return map[string]probe{
		"GET /{$}":                                   {path: "/"},
		"GET /api/v1/openapi.json":                   {path: "/api/v1/openapi.json"},
		"GET /static/":                               {path: "/static/custodia.css"},
		"GET /setup/{token}":                         {path: "/setup/" + f.setupToken},
		"POST /setup/{token}":                        form("/setup/"+f.setupToken, newPassword),
		"POST /setup/{token}/decline":                form("/setup/"+f.setupToken+"/decline", url.Values{}),
		"GET /reset":                                 {path: "/reset"},
		"POST /reset":                                form("/reset", url.Values{"email": {f.resetEmail}}),
		"GET /reset/{token}":                         {path: "/reset/" + f.resetTokens[0]},
		"POST /reset/{token}":                        form("/reset/"+f.resetTokens[0], newPassword),
		"GET /recover/{token}":                       {path: "/recover/never-issued"},
		"POST /recover/{token}":                      form("/recover/never-issued", url.Values{"password": {f.login.Password}}),
		"GET /login":                                 {path: "/login"},
		"POST /login":                                form("/login", url.Values{"email": {f.login.Email}, "password": {f.login.Password}}),
		"GET /login/second-factor":                   {path: "/login/second-factor"},
		"POST /login/second-factor":                  form("/login/second-factor", url.Values{"code": {"123456"}}),
		"POST /login/second-factor/webauthn/options": {path: "/login/second-factor/webauthn/options"},
		"POST /login/second-factor/webauthn":         jsonProbe("/login/second-factor/webauthn", map[string]any{"credential": map[string]string{"id": "x"}}),
		"GET /login/enrol":                           {path: "/login/enrol"},
		"POST /login/enrol":                          form("/login/enrol", url.Values{"code": {"123456"}}),
		"POST /login/enrol/webauthn/options":         {path: "/login/enrol/webauthn/options"},
		"POST /login/enrol/webauthn":                 jsonProbe("/login/enrol/webauthn", map[string]any{"name": "x", "credential": map[string]string{"id": "x"}}),
		"POST /logout":                               form("/logout", url.Values{}),
		"GET /login/sso":                             {path: "/login/sso?org=demo"},
		"GET /login/sso/callback":                    {path: "/login/sso/callback?state=never-issued&code=x"},
		"POST /api/v1/auth/login":                    jsonProbe("/api/v1/auth/login", map[string]string{"email": f.login.Email, "password": f.login.Password}),
		"POST /api/v1/auth/second-factor":            jsonProbe("/api/v1/auth/second-factor", map[string]string{"challenge": "never-issued", "code": "123456"}),
		"POST /api/v1/auth/second-factor/sms":        jsonProbe("/api/v1/auth/second-factor/sms", map[string]string{"challenge": "never-issued"}),
		"POST /api/v1/auth/enrolment/totp":           jsonProbe("/api/v1/auth/enrolment/totp", map[string]string{"challenge": "never-issued"}),
		"POST /api/v1/auth/enrolment/totp/confirm":   jsonProbe("/api/v1/auth/enrolment/totp/confirm", map[string]string{"challenge": "never-issued", "code": "123456"}),
		"POST /api/v1/auth/reset":                    jsonProbe("/api/v1/auth/reset", map[string]string{"email": f.resetEmail}),
		"POST /api/v1/auth/reset/confirm":            jsonProbe("/api/v1/auth/reset/confirm", map[string]string{"token": f.resetTokens[1], "password": "Juniper tidal compass 3141"}),

		// The passkey answer to a challenge that was never issued, and the
		// passkey set up with an enrolment challenge that was never issued.
		"POST /api/v1/auth/second-factor/webauthn/options": jsonProbe("/api/v1/auth/second-factor/webauthn/options", map[string]string{"challenge": "never-issued"}),
		"POST /api/v1/auth/second-factor/webauthn":         jsonProbe("/api/v1/auth/second-factor/webauthn", map[string]any{"challenge": "never-issued", "credential": map[string]string{"id": "x"}}),
		"POST /api/v1/auth/enrolment/webauthn":             jsonProbe("/api/v1/auth/enrolment/webauthn", map[string]string{"challenge": "never-issued"}),
		"POST /api/v1/auth/enrolment/webauthn/confirm":     jsonProbe("/api/v1/auth/enrolment/webauthn/confirm", map[string]any{"challenge": "never-issued", "name": "x", "credential": map[string]string{"id": "x"}}),
	}
}

// send makes one request and returns its status and answer.
func send(t *testing.T, c *http.Client, base, method string, p probe) (int, []byte) {
	t.Helper()
	var body io.Reader
	if p.body != "" {
		body = strings.NewReader(p.body)
	}
	req, err := http.NewRequest(method, base+p.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if p.ctype != "" {
		req.Header.Set("Content-Type", p.ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, p.path, err)
	}
	return resp.StatusCode, b
}

// parseGrid reads a row's grid into role → four statuses.
func parseGrid(t *testing.T, route, grid string) map[authz.Role][4]int {
	t.Helper()
	out := map[authz.Role][4]int{}
	for line := range strings.Lines(grid) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 5 {
			t.Fatalf("%s: grid line %q: want a role and four statuses", route, line)
		}
		role, err := authz.ParseRole(fields[0])
		if err != nil {
			t.Fatalf("%s: %v", route, err)
		}
		if _, dup := out[role]; dup {
			t.Fatalf("%s: role %s listed twice", route, role)
		}
		var cells [4]int
		for i, s := range fields[1:] {
			if cells[i], err = strconv.Atoi(s); err != nil {
				t.Fatalf("%s: grid line %q: %v", route, line, err)
			}
		}
		out[role] = cells
	}
	for _, role := range authz.BuiltinRoles() {
		if _, ok := out[role]; !ok {
			t.Fatalf("%s: grid lacks role %s", route, role)
		}
	}
	return out
}

// newServerWith is newTestServer with a local key-encryption key (so second
// factors work) and the deps adjusted by configure.
func newServerWith(t *testing.T, configure func(*Deps)) *testServer {
	t.Helper()
	ctx := context.Background()
	dir, logins := instancetest.SeededCopy(t)
	inst, err := instance.Open(ctx, instance.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	kek, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{inst: inst, logins: map[authz.Role]demo.Login{}, logs: new(bytes.Buffer)}
	for _, l := range logins {
		ts.logins[l.Role] = l
	}
	d := Deps{Log: slog.New(slog.NewJSONHandler(ts.logs, nil)), Instance: inst, KEK: kek}
	if configure != nil {
		configure(&d)
	}
	var h http.Handler
	h, ts.shells = NewHandler(d)
	ts.Server = httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// ownClient returns an HTTPS client for ts with a cookie jar of its own.
// (ts.client() sets the jar on the one client httptest keeps, so two of
// them share whichever jar was set last.)
func ownClient(ts *testServer) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: ts.Client().Transport, Jar: jar}
}

// signInOwn signs role in on a client of its own.
func signInOwn(t *testing.T, ts *testServer, role authz.Role) *http.Client {
	t.Helper()
	return signInWith(t, ts, role, ts.logins[role].Password)
}

// signInWith signs role in with password on a client of its own.
func signInWith(t *testing.T, ts *testServer, role authz.Role, password string) *http.Client {
	t.Helper()
	c := ownClient(ts)
	l := ts.logins[role]
	code, body := send(t, c, ts.URL, "POST", jsonProbe("/api/v1/auth/login", map[string]string{"email": l.Email, "password": password}))
	if code != http.StatusOK {
		t.Fatalf("sign in as %s: %d %s", role, code, body)
	}
	return c
}

func TestACL01_RouteMatrix(t *testing.T) {
	t.Parallel()
	ts := newServerWith(t, func(d *Deps) {
		d.SMS, d.BaseURL = matrixTexts, matrixPublicURL
		// Every role exports at once here: the node's bound on
		// concurrent exports (two) is not what the matrix tries.
		d.Entries = &entries.Service{MaxExports: 4 * len(authz.BuiltinRoles())}
	})

	// The matrix names exactly the registered routes.
	registered := map[string]string{} // pattern → access
	for _, rt := range append(ts.shells.Web.Routes(), ts.shells.API.Routes()...) {
		registered[rt.Pattern()] = string(rt.Access)
	}
	listed := map[string]matrixRow{}
	for _, row := range matrix {
		if _, dup := listed[row.Route]; dup {
			t.Errorf("matrix lists %s twice", row.Route)
		}
		listed[row.Route] = row
		access, ok := registered[row.Route]
		switch {
		case !ok:
			t.Errorf("matrix lists %s, which is not a registered route", row.Route)
		case (row.Open != 0) != (access == "open"):
			t.Errorf("matrix says %s is open=%v; it is registered as %s", row.Route, row.Open != 0, access)
		case row.Open == 0 && (row.Any != 0) == (row.Grid != ""):
			t.Errorf("matrix row %s needs exactly one of Any or Grid", row.Route)
		case row.Grid != "" && targetedProbes[row.Route] == nil:
			t.Errorf("matrix row %s has no request builder in targetedProbes", row.Route)
		case row.Any != 0 && accountSteps[row.Route].req == nil:
			t.Errorf("matrix row %s has no request builder in accountSteps", row.Route)
		}
	}
	for pattern := range registered {
		if _, ok := listed[pattern]; !ok {
			t.Errorf("route %s is not in the authorization matrix: add a row with the expected status for every role and target", pattern)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	f := setUpMatrix(t, ts)
	anon := ownClient(ts)

	// Open routes answer anyone.
	open := openProbes(f)
	for _, row := range matrix {
		if row.Open == 0 {
			continue
		}
		method, _, _ := strings.Cut(row.Route, " ")
		p, ok := open[row.Route]
		if !ok {
			t.Errorf("open route %s has no request in openProbes", row.Route)
			continue
		}
		if got, body := send(t, anon, ts.URL, method, p); got != row.Open {
			t.Errorf("%s (open): %d %s, want %d", row.Route, got, body, row.Open)
		}
	}

	// Signed-in routes refuse a request without a session (on a client of
	// its own: the open sign-in above gave anon a session).
	noSession := ownClient(ts)
	for _, row := range matrix {
		if row.Open != 0 {
			continue
		}
		method, _, _ := strings.Cut(row.Route, " ")
		p := probe{path: strings.NewReplacer("{org}", demo.Slug, "{study}", f.targets[authz.OrgAdmin][0].study).Replace(strings.TrimPrefix(row.Route, method+" "))}
		if mk := targetedProbes[row.Route]; mk != nil {
			p = mk(f.targets[authz.OrgAdmin][0], "anonymous")
		}
		if got, _ := send(t, noSession, ts.URL, method, p); got != http.StatusUnauthorized {
			t.Errorf("%s without a session: %d, want 401", row.Route, got)
		}
	}

	// Every role against every target, the roles side by side whatever
	// -parallel says (the invitation answers take a fixed time, AUTH-06).
	var mu sync.Mutex
	var wg sync.WaitGroup
	actual := map[string]map[authz.Role][4]int{}
	// The rows that end other roles' sessions (Last) succeed for the
	// organization admin only, who tries them once every other role is
	// through all its rows.
	var others sync.WaitGroup
	others.Add(len(authz.BuiltinRoles()) - 1)
	// tryGrid tries a grid row as role against its four targets.
	tryGrid := func(t *testing.T, c *http.Client, role authz.Role, row matrixRow) {
		t.Helper()
		method, _, _ := strings.Cut(row.Route, " ")
		want := parseGrid(t, row.Route, row.Grid)[role]
		var got [4]int
		for i, tg := range f.targets[role] {
			tag := string(role) + "-" + targetNames[i]
			got[i], _ = send(t, c, ts.URL, method, targetedProbes[row.Route](tg, tag))
			if got[i] != want[i] {
				t.Errorf("%s as %s, %s target: %d, want %d", row.Route, role, targetNames[i], got[i], want[i])
			}
		}
		mu.Lock()
		if actual[row.Route] == nil {
			actual[row.Route] = map[authz.Role][4]int{}
		}
		actual[row.Route][role] = got
		mu.Unlock()
	}
	for _, role := range authz.BuiltinRoles() {
		wg.Go(func() {
			t.Run(string(role), func(t *testing.T) {
				c := signInOwn(t, ts, role)
				for _, row := range matrix {
					if row.Grid != "" && !row.Last {
						tryGrid(t, c, role, row)
					}
				}
				if role == authz.OrgAdmin {
					others.Wait()
				}
				for _, row := range matrix {
					if row.Grid != "" && row.Last {
						tryGrid(t, c, role, row)
					}
				}
				st := &accountState{password: ts.logins[role].Password,
					phone: fmt.Sprintf("+3161000%04d", slices.Index(authz.BuiltinRoles(), role))}
				for _, row := range matrix {
					if row.Any == 0 {
						continue
					}
					method, _, _ := strings.Cut(row.Route, " ")
					step := accountSteps[row.Route]
					if step.fresh {
						c = signInWith(t, ts, role, st.password)
					}
					got, body := send(t, c, ts.URL, method, step.req(st))
					// Proofs of a second factor are limited per account
					// (ten at once, then one every six seconds, AUTH-05),
					// which is not what the matrix tests: a step the limit
					// refuses waits its turn and tries again.
					for try := 0; got == http.StatusTooManyRequests && try < 3; try++ {
						time.Sleep(7 * time.Second)
						got, body = send(t, c, ts.URL, method, step.req(st))
					}
					if got != row.Any {
						t.Errorf("%s as %s: %d %s, want %d", row.Route, role, got, body, row.Any)
						continue
					}
					if step.read != nil {
						if err := step.read(st, body); err != nil {
							t.Errorf("%s as %s: %v", row.Route, role, err)
						}
					}
				}
			})
			if role != authz.OrgAdmin {
				others.Done()
			}
		})
	}
	wg.Wait()

	// The matrix as it stands, for the reader of a failure.
	var b strings.Builder
	for _, row := range matrix {
		if row.Grid == "" {
			continue
		}
		fmt.Fprintf(&b, "%s\n", row.Route)
		for _, role := range authz.BuiltinRoles() {
			got := actual[row.Route][role]
			fmt.Fprintf(&b, "\t%-18s  %d %d %d %d\n", role, got[0], got[1], got[2], got[3])
		}
	}
	if t.Failed() {
		t.Logf("matrix as answered (own, site, study, org):\n%s", b.String())
	} else if testing.Verbose() {
		t.Logf("matrix (own, site, study, org):\n%s", b.String())
	}
}

// Package web is the browser shell: server-rendered pages from embedded
// html/template files and embedded static assets, with no inline script so
// the Content-Security-Policy can forbid it (WEB-02). Handlers decode a
// form, call one domain function and render a page. The shell holds no
// database handle: what a page shows comes from the services in Deps, as
// the API's answers do.
package web

import (
	"bytes"
	"embed"
	"github.com/custodia/custodia/internal/audit"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/accounts/accountadmin"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/authz/authzadmin"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys/keyadmin"
	"github.com/custodia/custodia/internal/links"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/netpolicy/netadmin"
	"github.com/custodia/custodia/internal/notify"
	"github.com/custodia/custodia/internal/orgs/orgadmin"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/policy/policyadmin"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sso/ssoadmin"
)

//go:embed templates static
var files embed.FS

// pages holds one template set per page, each with the shared layout.
var pages = func() map[string]*template.Template {
	out := make(map[string]*template.Template)
	for _, name := range []string{"home", "setup", "error", "reset", "newpassword",
		"login", "secondfactor", "enrol", "codes", "account", "policy", "locked", "confirm",
		"audit", "alerts", "accesslog", "members", "roles", "network", "keys", "access", "recover",
		"studies", "study", "site", "participant", "entry", "history", "designer", "schedule", "records",
		"conversations", "conversation", "consentadmin", "sign", "studyaccess", "statement", "sso", "ssoadmin", "retention"} {
		out[name] = template.Must(template.ParseFS(files, "templates/layout.html", "templates/fields.html", "templates/"+name+".html"))
	}
	return out
}()

// micro shows a time in microseconds since the epoch, as stored.
func micro(us int64) string { return time.UnixMicro(us).UTC().Format("2006-01-02 15:04:05 UTC") }

// Deps are what the pages need.
type Deps struct {
	Log *slog.Logger
	// Accounts gives the signed-in person their own account: its name
	// on every page, the account page, a new name.
	Accounts *accounts.Service
	// Orgs lists the organizations the signed-in person belongs to.
	Orgs     *orgadmin.Service
	Links    *links.Service
	Sessions *sessions.Store
	// Factors is the second-factor service; without a key-encryption key
	// it refuses to set up factors, as the API does.
	Factors  *mfa.Service
	Security *policyadmin.Service
	// Witnesses, if set, tells the security statement how far the audit
	// trail's witnesses have seen it.
	Witnesses func() []audit.WitnessStatus
	// Access disables and enables members' accounts and ends their
	// sessions (ASVS V7.4.2, V7.4.5).
	Access *accountadmin.Service
	// Oversight searches and exports the audit trail, keeps the alerts
	// and tells participants who accessed their record (AUD-04, AUD-05).
	Oversight *auditadmin.Service
	// Roles administers members and their roles, and custom roles
	// (ACL-02, ACL-03); Networks the network ranges (ACL-07).
	Roles    *authzadmin.Service
	Networks *netadmin.Service
	// Keys files and approves key operations under dual control
	// (CRY-08); the operator carries them out on the server.
	Keys *keyadmin.Service
	// Participants, Forms and Entries are the study workspace's: sites'
	// participants and enrolment, the form designer and the schedule,
	// entries, exports and the participant portal.
	Participants *participants.Service
	Forms        *formadmin.Service
	Entries      *entries.Service
	// Consent keeps studies' consent documents and participants' consents.
	Consent *consent.Service
	// Conversations are those of care providers and their clients.
	Conversations *conversations.Service
	// Notices keeps how each person is told that something waits (WEB-07).
	Notices *notify.Service
	// Retention lists the accounts and participants noticed for the purge
	// of inactive data and keeps legal holds; it exports everything about
	// one participant on their request (LIFE-02).
	Retention *retention.Service
	// SSO signs people in through their organization's OpenID Connect
	// provider, and SSOAdmin keeps the organizations' providers
	// (AUTH-13); without SSO, single sign-on is not offered.
	SSO      *sessions.SingleSignOn
	SSOAdmin *ssoadmin.Service
	// ClientAddr gives the requester's address (set by the server).
	ClientAddr func(*http.Request) string
	// IdleWarning is how long before a session's idle limit the page
	// warns and offers to stay signed in; DefaultIdleWarning when zero.
	IdleWarning time.Duration
}

// DefaultIdleWarning is the idle warning's lead.
const DefaultIdleWarning = time.Minute

// Routes returns the browser shell's route table.
func Routes(d Deps) *router.Router {
	if d.IdleWarning <= 0 {
		d.IdleWarning = DefaultIdleWarning
	}
	rt := router.New(guard(d), failure(d))
	static, _ := fs.Sub(files, "static")
	rt.Handle("GET", "/{$}", router.Open, handleHome(d))
	rt.Handle("GET", "/static/", router.Open, http.StripPrefix("/static/", staticFiles(static)))
	rt.Handle("GET", "/setup/{token}", router.Open, handleSetupForm(d))
	rt.Handle("POST", "/setup/{token}", router.Open, handleSetup(d))
	rt.Handle("POST", "/setup/{token}/decline", router.Open, handleDeclineInvitation(d))
	rt.Handle("GET", "/reset", router.Open, handleResetForm(d))
	rt.Handle("POST", "/reset", router.Open, handleReset(d))
	rt.Handle("GET", "/reset/{token}", router.Open, handleNewPasswordForm(d))
	rt.Handle("POST", "/reset/{token}", router.Open, handleNewPassword(d))
	rt.Handle("GET", "/recover/{token}", router.Open, handleRecoverForm(d))
	rt.Handle("POST", "/recover/{token}", router.Open, handleRecover(d))

	// Signing in and out (AUTH-08, AUTH-10). Sign-out is open: without a
	// session it only clears the cookie.
	rt.Handle("GET", "/login", router.Open, handleLoginForm(d))
	rt.Handle("POST", "/login", router.Open, handleLogin(d))
	rt.Handle("GET", "/login/second-factor", router.Open, handleSecondFactorForm(d))
	rt.Handle("POST", "/login/second-factor", router.Open, handleSecondFactor(d))
	rt.Handle("POST", "/login/second-factor/webauthn/options", router.Open, handlePasskeyOptions(d))
	rt.Handle("POST", "/login/second-factor/webauthn", router.Open, handlePasskeySignIn(d))
	rt.Handle("GET", "/login/enrol", router.Open, handleEnrolForm(d))
	rt.Handle("POST", "/login/enrol", router.Open, handleEnrol(d))
	rt.Handle("POST", "/login/enrol/webauthn/options", router.Open, handleEnrolPasskeyOptions(d))
	rt.Handle("POST", "/login/enrol/webauthn", router.Open, handleEnrolPasskey(d))
	// Single sign-on through the organization's provider (AUTH-13).
	rt.Handle("GET", "/login/sso", router.Open, handleSSOStart(d))
	rt.Handle("GET", "/login/sso/callback", router.Open, handleSSOCallback(d))
	rt.Handle("POST", "/logout", router.Open, handleLogout(d))

	// The signed-in person's own account.
	rt.Handle("GET", "/account", router.SignedIn, handleAccount(d))
	rt.Handle("POST", "/account/name", router.SignedIn, handleRename(d))
	rt.Handle("POST", "/account/notifications", router.SignedIn, handleSetNotices(d))
	rt.Handle("POST", "/account/password", router.SignedIn, handleChangePassword(d))
	rt.Handle("POST", "/account/factors/totp", router.SignedIn, handleFactorBegin(d))
	rt.Handle("POST", "/account/factors/totp/confirm", router.SignedIn, handleFactorConfirm(d))
	rt.Handle("POST", "/account/factors/totp/remove", router.SignedIn, handleFactorRemove(d))
	rt.Handle("POST", "/account/recovery-codes", router.SignedIn, handleRecoveryCodes(d))
	rt.Handle("POST", "/account/sessions/{session}/end", router.SignedIn, handleEndSession(d))
	rt.Handle("POST", "/account/sessions/end-all", router.SignedIn, handleSignOutEverywhere(d))
	rt.Handle("POST", "/session/keep-alive", router.SignedIn, handleKeepAlive(d))
	rt.Handle("GET", "/confirm", router.SignedIn, handleConfirmForm(d))
	rt.Handle("POST", "/confirm", router.SignedIn, handleConfirm(d))
	rt.Handle("POST", "/account/organizations/{org}/leave", router.SignedIn, handleLeave(d))

	// An organization's security settings, for its administrators.
	rt.Handle("GET", "/orgs/{org}/security", router.SignedIn, handlePolicy(d))
	rt.Handle("GET", "/orgs/{org}/security-statement", router.SignedIn, handleStatement(d))
	rt.Handle("POST", "/orgs/{org}/security", router.SignedIn, handleSetPolicy(d))
	rt.Handle("GET", "/orgs/{org}/sso", router.SignedIn, handleSSOSettings(d))
	rt.Handle("POST", "/orgs/{org}/sso", router.SignedIn, handleSetSSO(d))
	rt.Handle("POST", "/orgs/{org}/sso/remove", router.SignedIn, handleRemoveSSO(d))
	rt.Handle("GET", "/orgs/{org}/locked", router.SignedIn, handleLocked(d))
	rt.Handle("POST", "/orgs/{org}/locked/{account}/unlock", router.SignedIn, handleUnlock(d))
	rt.Handle("GET", "/orgs/{org}/access", router.SignedIn, handleAccess(d))
	rt.Handle("POST", "/orgs/{org}/access/{account}/disable", router.SignedIn, handleDisableMember(d))
	rt.Handle("POST", "/orgs/{org}/access/{account}/enable", router.SignedIn, handleEnableMember(d))
	rt.Handle("POST", "/orgs/{org}/access/{account}/sign-out", router.SignedIn, handleSignOutMember(d))
	rt.Handle("POST", "/orgs/{org}/access/sign-out", router.SignedIn, handleSignOutMembers(d))
	rt.Handle("POST", "/orgs/{org}/access/{account}/factor-recovery", router.SignedIn, handleStartFactorRecovery(d))
	rt.Handle("POST", "/orgs/{org}/factor-recoveries/{recovery}/approve", router.SignedIn, handleApproveFactorRecovery(d))

	// The audit trail (AUD-04) for administrators and monitors, the
	// alerts (AUTH-12, AUD-05) for administrators, and a participant's
	// own access log.
	rt.Handle("GET", "/orgs/{org}/audit", router.SignedIn, handleTrail(d))
	rt.Handle("POST", "/orgs/{org}/audit", router.SignedIn, handleTrailSearch(d))
	rt.Handle("GET", "/orgs/{org}/audit/export", router.SignedIn, handleTrailExport(d))
	rt.Handle("GET", "/orgs/{org}/alerts", router.SignedIn, handleAlerts(d))
	rt.Handle("POST", "/orgs/{org}/alerts/{alert}/read", router.SignedIn, handleMarkAlertRead(d))
	rt.Handle("POST", "/orgs/{org}/alert-rules", router.SignedIn, handleSetAlertRules(d))
	rt.Handle("GET", "/me/access-log", router.SignedIn, handleAccessLog(d))

	// Inactive data and legal holds (LIFE-02), for administrators.
	rt.Handle("GET", "/orgs/{org}/retention", router.SignedIn, handleRetention(d))
	rt.Handle("POST", "/orgs/{org}/retention/holds", router.SignedIn, handleSetHold(d))
	rt.Handle("POST", "/orgs/{org}/retention/holds/{kind}/{subject}/lift", router.SignedIn, handleLiftHold(d))

	// People and their roles (ACL-02), custom roles (ACL-03) and network
	// ranges (ACL-07), for those the services allow: the subset rule,
	// the last administrator and the step-up are theirs.
	rt.Handle("GET", "/orgs/{org}/members", router.SignedIn, handleMembers(d))
	rt.Handle("POST", "/orgs/{org}/members/assign", router.SignedIn, handleAssignRole(d))
	rt.Handle("POST", "/orgs/{org}/members/{account}/roles/{assignment}/revoke", router.SignedIn, handleRevokeRole(d))
	rt.Handle("GET", "/orgs/{org}/roles", router.SignedIn, handleRoles(d))
	rt.Handle("POST", "/orgs/{org}/roles", router.SignedIn, handleCreateRole(d))
	rt.Handle("POST", "/orgs/{org}/roles/{role}/delete", router.SignedIn, handleDeleteRole(d))
	rt.Handle("GET", "/orgs/{org}/network", router.SignedIn, handleNetwork(d))
	rt.Handle("POST", "/orgs/{org}/network", router.SignedIn, handleSetNetwork(d))
	rt.Handle("POST", "/orgs/{org}/network/studies/{study}", router.SignedIn, handleSetNetwork(d))

	// Key operations under dual control (CRY-08), for the organization's
	// key administrators: one requests, a second approves.
	rt.Handle("GET", "/orgs/{org}/keys", router.SignedIn, handleKeys(d))
	rt.Handle("POST", "/orgs/{org}/keys", router.SignedIn, handleRequestKeyOperation(d))
	rt.Handle("POST", "/orgs/{org}/keys/{request}/approve", router.SignedIn, handleApproveKeyOperation(d))

	// The study workspace: studies and sites, participants and their
	// entries, the form designer and the schedule, exports; and the
	// participant portal, whose forms are the same entry pages.
	const (
		study       = "/orgs/{org}/studies/{study}"
		participant = study + "/sites/{site}/participants/{participant}"
		entry       = participant + "/visits/{visit}/{repeat}/forms/{form}"
		form        = study + "/forms/{form}"
	)
	rt.Handle("GET", "/orgs/{org}/studies", router.SignedIn, handleStudies(d))
	rt.Handle("POST", "/orgs/{org}/studies", router.SignedIn, handleCreateStudy(d))
	rt.Handle("GET", study, router.SignedIn, handleStudy(d))
	rt.Handle("POST", study+"/sites", router.SignedIn, handleCreateSite(d))
	rt.Handle("GET", study+"/export", router.SignedIn, handleExport(d))
	rt.Handle("GET", study+"/access", router.SignedIn, handleStudyAccess(d))
	rt.Handle("POST", study+"/decrypt-grants", router.SignedIn, handleGrantPage(d))
	rt.Handle("POST", study+"/decrypt-grants/{grant}/revoke", router.SignedIn, handleRevokePage(d))
	rt.Handle("POST", study+"/field-visibility", router.SignedIn, handleFieldRulesPage(d))
	rt.Handle("POST", study+"/care-providers", router.SignedIn, handleAssignCarePage(d))
	rt.Handle("POST", study+"/care-providers/remove", router.SignedIn, handleUnassignCarePage(d))
	rt.Handle("GET", study+"/sites/{site}", router.SignedIn, handleSite(d))
	rt.Handle("POST", study+"/sites/{site}/participants", router.SignedIn, handleEnrolParticipant(d))
	rt.Handle("GET", participant, router.SignedIn, handleParticipant(d))
	rt.Handle("POST", participant+"/identity", router.SignedIn, handleRevealIdentity(d))
	rt.Handle("POST", participant+"/account", router.SignedIn, handleInviteParticipant(d))
	rt.Handle("POST", participant+"/account/withdraw", router.SignedIn, handleWithdrawInvitation(d))
	rt.Handle("POST", participant+"/identity/erase", router.SignedIn, handleEraseIdentity(d))
	rt.Handle("POST", participant+"/arm", router.SignedIn, handleAssignArm(d))
	rt.Handle("GET", participant+"/files/{file}", router.SignedIn, handleEntryFile(d))
	rt.Handle("POST", participant+"/delete", router.SignedIn, handleDeleteParticipant(d))
	rt.Handle("POST", participant+"/restore", router.SignedIn, handleRestoreParticipant(d))
	rt.Handle("GET", participant+"/subject-export", router.SignedIn, handleSubjectExport(d))
	rt.Handle("POST", entry+"/delete", router.SignedIn, handleDeleteEntry(d))
	rt.Handle("POST", entry+"/restore", router.SignedIn, handleRestoreEntry(d))
	rt.Handle("GET", entry, router.SignedIn, handleEntry(d))
	rt.Handle("POST", entry, router.SignedIn, handleSaveEntry(d))
	rt.Handle("GET", entry+"/history", router.SignedIn, handleEntryHistory(d))
	rt.Handle("POST", study+"/forms", router.SignedIn, handleCreateForm(d))
	rt.Handle("POST", study+"/forms/redcap-dictionary", router.SignedIn, handleImportREDCapPage(d))
	rt.Handle("GET", study+"/forms/redcap-dictionary", router.SignedIn, handleExportREDCapPage(d))
	rt.Handle("POST", study+"/forms/odm", router.SignedIn, handleImportODMPage(d))
	rt.Handle("POST", study+"/import", router.SignedIn, handleImportEntriesPage(d))
	rt.Handle("POST", form+"/versions/{version}/delete", router.SignedIn, handleDeleteVersion(d))
	rt.Handle("POST", form+"/versions/{version}/restore", router.SignedIn, handleRestoreVersion(d))
	rt.Handle("GET", form, router.SignedIn, handleDesigner(d))
	rt.Handle("POST", form+"/fields", router.SignedIn, handleAddField(d))
	rt.Handle("POST", form+"/fields/{field}/remove", router.SignedIn, handleRemoveField(d))
	rt.Handle("POST", form+"/groups", router.SignedIn, handleAddGroup(d))
	rt.Handle("POST", form+"/definition", router.SignedIn, handleSaveDefinition(d))
	rt.Handle("POST", form+"/publish", router.SignedIn, handlePublishDraft(d))
	rt.Handle("POST", form+"/versions/{version}/retire", router.SignedIn, handleRetireVersion(d))
	rt.Handle("GET", study+"/schedule", router.SignedIn, handleSchedule(d))
	rt.Handle("POST", study+"/schedule", router.SignedIn, handleSetSchedule(d))
	rt.Handle("GET", "/me/records", router.SignedIn, handleMyRecords(d))

	// Consent: a study's documents and settings; a participant's signing,
	// countersignature, withdrawal and signed copies.
	rt.Handle("GET", study+"/consent", router.SignedIn, handleConsentAdmin(d))
	rt.Handle("POST", study+"/consent/documents", router.SignedIn, handleCreateConsentDocument(d))
	rt.Handle("POST", study+"/consent/documents/{language}/draft", router.SignedIn, handleSaveConsentDraft(d))
	rt.Handle("POST", study+"/consent/documents/{language}/publish", router.SignedIn, handlePublishConsent(d))
	rt.Handle("POST", study+"/consent/settings", router.SignedIn, handleConsentSettings(d))
	rt.Handle("GET", participant+"/consent", router.SignedIn, handleSignForm(d))
	rt.Handle("POST", participant+"/consent", router.SignedIn, handleSign(d))
	rt.Handle("POST", participant+"/consent/withdraw", router.SignedIn, handleWithdraw(d))
	rt.Handle("POST", participant+"/consents/{consent}/countersign", router.SignedIn, handleCountersign(d))
	rt.Handle("GET", participant+"/consents/{consent}/pdf", router.SignedIn, handleConsentPDF(d))

	// Conversations of care providers and their clients (ACL-05, ACL-06).
	const conversation = "/orgs/{org}/conversations/{conversation}"
	rt.Handle("GET", "/orgs/{org}/conversations", router.SignedIn, handleConversations(d))
	rt.Handle("POST", "/orgs/{org}/conversations", router.SignedIn, handleStartConversation(d))
	rt.Handle("GET", conversation, router.SignedIn, handleConversation(d))
	rt.Handle("POST", conversation+"/messages", router.SignedIn, handleSendMessage(d))
	rt.Handle("POST", conversation+"/attachments", router.SignedIn, handleAttach(d))
	rt.Handle("GET", conversation+"/attachments/{attachment}", router.SignedIn, handleConversationFile(d))
	return rt
}

// staticFiles serves embedded assets, cacheable for a day. A folder is
// not found: its listing would tell what the server holds (ASVS V13.4.3).
func staticFiles(fsys fs.FS) http.Handler {
	h := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fi, err := fs.Stat(fsys, strings.Trim(path.Clean("/"+r.URL.Path), "/")); err != nil || fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		h.ServeHTTP(w, r)
	})
}

// render executes a page into a buffer first, so a template failure never
// sends half a page. The layout learns from the request whether someone is
// signed in (their name, the idle warning).
func render(w http.ResponseWriter, r *http.Request, log *slog.Logger, status int, page string, data map[string]any) {
	if v, ok := r.Context().Value(viewerKey{}).(*viewer); ok && data["Viewer"] == nil {
		data["Viewer"] = v
	}
	var buf bytes.Buffer
	if err := pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		log.ErrorContext(r.Context(), "render page", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func failure(d Deps) router.Failure {
	return func(w http.ResponseWriter, r *http.Request, status int) {
		title, msg := "Page not found", "There is no page at this address."
		if status == http.StatusMethodNotAllowed {
			title, msg = "Method not allowed", "This page does not accept that kind of request."
		}
		render(w, r, d.Log, status, "error", map[string]any{"Title": title, "Message": msg})
	}
}

func handleSetupForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		data := map[string]any{"Title": "Choose your password", "Token": token}
		link, err := d.Links.PeekSetup(r.Context(), token)
		if err != nil {
			data["Invalid"] = true
			render(w, r, d.Log, http.StatusNotFound, "setup", data)
			return
		}
		data["Existing"] = link.KeepPassword
		if link.Invitation {
			data["Title"] = "Your invitation"
			data["Invitation"] = link
		}
		render(w, r, d.Log, http.StatusOK, "setup", data)
	})
}

func handleSetup(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		data := map[string]any{"Title": "Choose your password", "Token": token}
		if err := r.ParseForm(); err != nil {
			data["Error"] = "The form could not be read."
			render(w, r, d.Log, http.StatusBadRequest, "setup", data)
			return
		}
		if link, err := d.Links.PeekSetup(r.Context(), token); err == nil && link.Invitation {
			data["Title"], data["Invitation"] = "Your invitation", link
		}
		pw := r.PostForm.Get("password")
		// An invitation accepted with an existing password has no second
		// field to repeat it in.
		if r.PostForm.Has("confirm") && pw != r.PostForm.Get("confirm") {
			data["Error"] = "The two passwords differ."
			render(w, r, d.Log, http.StatusBadRequest, "setup", data)
			return
		}
		err := d.Links.CompleteSetup(r.Context(), token, pw, requester(d, r))
		switch {
		case errs.Is(err, errs.RateLimited), errs.Is(err, errs.NotFound):
			setupRefused(w, r, d, data, err)
		case errs.Is(err, errs.Invalid):
			data["Error"] = errs.SafeMessage(err)
			render(w, r, d.Log, http.StatusBadRequest, "setup", data)
		case errs.Is(err, errs.Unauthenticated):
			data["Error"], data["Existing"] = "That is not the password of your account.", true
			render(w, r, d.Log, http.StatusUnauthorized, "setup", data)
		case errs.Is(err, errs.Conflict):
			data["Error"] = errs.SafeMessage(err)
			render(w, r, d.Log, http.StatusConflict, "setup", data)
		case err != nil:
			d.Log.ErrorContext(r.Context(), "complete setup", "err", err)
			data["Error"] = "The password could not be saved; please try again."
			render(w, r, d.Log, http.StatusInternalServerError, "setup", data)
		default:
			data["Done"] = true
			render(w, r, d.Log, http.StatusOK, "setup", data)
		}
	})
}

// setupRefused answers a setup or invitation link that cannot be used now:
// too many attempts from the address (429), or a link invalid, used or
// expired (404).
func setupRefused(w http.ResponseWriter, r *http.Request, d Deps, data map[string]any, err error) {
	if errs.Is(err, errs.RateLimited) {
		tooMany(w, err)
		data["Error"] = errs.SafeMessage(err)
		render(w, r, d.Log, http.StatusTooManyRequests, "setup", data)
		return
	}
	data["Invalid"] = true
	render(w, r, d.Log, http.StatusNotFound, "setup", data)
}

// handleDeclineInvitation spends an organization's invitation link
// without granting its role.
func handleDeclineInvitation(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Your invitation", "Token": r.PathValue("token")}
		err := d.Links.DeclineInvitation(r.Context(), r.PathValue("token"), requester(d, r))
		switch {
		case errs.Is(err, errs.RateLimited), errs.Is(err, errs.NotFound):
			setupRefused(w, r, d, data, err)
		case err != nil:
			d.Log.ErrorContext(r.Context(), "decline invitation", "err", err)
			data["Error"] = "The invitation could not be declined; please try again."
			render(w, r, d.Log, http.StatusInternalServerError, "setup", data)
		default:
			data["Declined"] = true
			render(w, r, d.Log, http.StatusOK, "setup", data)
		}
	})
}

func requester(d Deps, r *http.Request) gate.Actor {
	return gate.Actor{RemoteAddr: d.ClientAddr(r), UserAgent: r.UserAgent()}
}

func handleResetForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		render(w, r, d.Log, http.StatusOK, "reset", map[string]any{"Title": "Reset your password"})
	})
}

func handleReset(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Reset your password"}
		if err := r.ParseForm(); err != nil {
			data["Error"] = "The form could not be read."
			render(w, r, d.Log, http.StatusBadRequest, "reset", data)
			return
		}
		err := d.Links.RequestReset(r.Context(), r.PostForm.Get("email"), requester(d, r))
		switch {
		case errs.Is(err, errs.RateLimited):
			tooMany(w, err)
			data["Error"] = errs.SafeMessage(err)
			render(w, r, d.Log, http.StatusTooManyRequests, "reset", data)
		case errs.Is(err, errs.Invalid):
			data["Error"] = errs.SafeMessage(err)
			render(w, r, d.Log, http.StatusBadRequest, "reset", data)
		case err != nil:
			d.Log.ErrorContext(r.Context(), "request reset", "err", err)
			data["Error"] = "The request could not be handled; please try again later."
			render(w, r, d.Log, http.StatusServiceUnavailable, "reset", data)
		default:
			data["Sent"] = true
			render(w, r, d.Log, http.StatusOK, "reset", data)
		}
	})
}

func handleNewPasswordForm(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{"Title": "Choose a new password", "Token": r.PathValue("token")}
		if err := d.Links.PeekReset(r.Context(), r.PathValue("token")); err != nil {
			data["Invalid"] = true
			render(w, r, d.Log, http.StatusNotFound, "newpassword", data)
			return
		}
		render(w, r, d.Log, http.StatusOK, "newpassword", data)
	})
}

func handleNewPassword(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		data := map[string]any{"Title": "Choose a new password", "Token": token}
		if err := r.ParseForm(); err != nil {
			data["Error"] = "The form could not be read."
			render(w, r, d.Log, http.StatusBadRequest, "newpassword", data)
			return
		}
		if link, err := d.Links.PeekSetup(r.Context(), token); err == nil && link.Invitation {
			data["Title"], data["Invitation"] = "Your invitation", link
		}
		pw := r.PostForm.Get("password")
		// An invitation accepted with an existing password has no second
		// field to repeat it in.
		if r.PostForm.Has("confirm") && pw != r.PostForm.Get("confirm") {
			data["Error"] = "The two passwords differ."
			render(w, r, d.Log, http.StatusBadRequest, "newpassword", data)
			return
		}
		err := d.Links.ConfirmReset(r.Context(), token, pw, requester(d, r))
		switch {
		case errs.Is(err, errs.RateLimited):
			tooMany(w, err)
			data["Error"] = errs.SafeMessage(err)
			render(w, r, d.Log, http.StatusTooManyRequests, "newpassword", data)
		case errs.Is(err, errs.NotFound):
			data["Invalid"] = true
			render(w, r, d.Log, http.StatusNotFound, "newpassword", data)
		case errs.Is(err, errs.Invalid):
			data["Error"] = errs.SafeMessage(err)
			render(w, r, d.Log, http.StatusBadRequest, "newpassword", data)
		case err != nil:
			d.Log.ErrorContext(r.Context(), "confirm reset", "err", err)
			data["Error"] = "The password could not be saved; please try again."
			render(w, r, d.Log, http.StatusInternalServerError, "newpassword", data)
		default:
			data["Done"] = true
			render(w, r, d.Log, http.StatusOK, "newpassword", data)
		}
	})
}

// tooMany sets Retry-After for a rate-limited answer.
func tooMany(w http.ResponseWriter, err error) {
	secs := int(math.Ceil(ratelimit.RetryAfter(err).Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
}

package api

import (
	"log/slog"
	"net/http"

	"github.com/custodia/custodia/internal/accounts/accountadmin"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/authz/authzadmin"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/keys/keyadmin"
	"github.com/custodia/custodia/internal/links"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/netpolicy/netadmin"
	"github.com/custodia/custodia/internal/notify"
	"github.com/custodia/custodia/internal/orgs/orgadmin"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/policy/policyadmin"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sso/ssoadmin"
)

// Deps are what the API's handlers need.
type Deps struct {
	Log       *slog.Logger
	Sessions  *sessions.Store
	Orgs      *orgadmin.Service
	Oversight *auditadmin.Service
	Links     *links.Service
	Factors   *mfa.Service
	Networks  *netadmin.Service
	// Security reads and sets organizations' security policies.
	Security *policyadmin.Service
	// SSOAdmin keeps organizations' single sign-on providers (AUTH-13).
	SSOAdmin *ssoadmin.Service
	// Access disables and enables members' accounts and ends their
	// sessions (ASVS V7.4.2, V7.4.5).
	Access *accountadmin.Service
	// Participants enrols, lists, re-identifies and erases participants
	// and keeps decrypt grants (CRY-06, CRY-09, LIFE-03).
	Participants *participants.Service
	// Roles administers members, their roles, custom roles, care
	// providers and field visibility (ACL-02 to ACL-05).
	Roles *authzadmin.Service
	// Forms designs, publishes and reads the forms of studies (WEB-05).
	Forms *formadmin.Service
	// Entries records and reads the values of forms about participants.
	Entries *entries.Service
	// Consent keeps studies' consent documents and participants'
	// consents (issue 16).
	Consent *consent.Service
	// Keys takes requests and approvals of key operations under dual
	// control (CRY-08).
	Keys *keyadmin.Service
	// Conversations keeps the conversations between care providers and
	// their clients, which only their members reach (ACL-05, ACL-06).
	Conversations *conversations.Service
	// Notices keeps how each person is told that something waits for
	// them (WEB-07).
	Notices *notify.Service
	// Retention keeps the notices and legal holds of the purge of
	// inactive data and exports a data subject's bundle (LIFE-02).
	Retention *retention.Service
	// ClientAddr gives the requester's address (set by the server, which
	// knows about trusted proxies).
	ClientAddr func(*http.Request) string
}

// Routes returns the API's route table; every route states its access.
// SignedIn routes take a session cookie or a personal access token
// ("Authorization: Bearer", read-scoped tokens only GET and HEAD);
// Session routes take a session cookie only.
func Routes(d Deps) *router.Router {
	rt := router.New(guard(d), Failure)
	rt.Handle("POST", "/api/v1/auth/login", router.Open, handleLogin(d))
	rt.Handle("POST", "/api/v1/auth/second-factor", router.Open, handleSecondFactor(d))
	rt.Handle("POST", "/api/v1/auth/enrolment/totp", router.Open, handleEnrolBegin(d))
	rt.Handle("POST", "/api/v1/auth/enrolment/totp/confirm", router.Open, handleEnrolConfirm(d))
	rt.Handle("POST", "/api/v1/auth/enrolment/webauthn", router.Open, handleEnrolPasskeyBegin(d))
	rt.Handle("POST", "/api/v1/auth/enrolment/webauthn/confirm", router.Open, handleEnrolPasskeyConfirm(d))
	rt.Handle("POST", "/api/v1/auth/second-factor/sms", router.Open, handleSecondFactorSMS(d))
	rt.Handle("POST", "/api/v1/auth/second-factor/webauthn/options", router.Open, handleSecondFactorPasskeyOptions(d))
	rt.Handle("POST", "/api/v1/auth/second-factor/webauthn", router.Open, handleSecondFactorPasskey(d))
	rt.Handle("POST", "/api/v1/auth/logout", router.Session, handleLogout(d))
	rt.Handle("POST", "/api/v1/auth/confirm", router.SignedIn, handleConfirm(d))
	rt.Handle("POST", "/api/v1/auth/confirm/webauthn/options", router.Session, handleConfirmPasskeyOptions(d))
	rt.Handle("POST", "/api/v1/auth/confirm/webauthn", router.Session, handleConfirmPasskey(d))
	rt.Handle("GET", "/api/v1/account/notifications", router.Session, handleGetNotices(d))
	rt.Handle("PUT", "/api/v1/account/notifications", router.Session, handleSetNotices(d))
	rt.Handle("POST", "/api/v1/account/factors/totp", router.Session, handleFactorBegin(d))
	rt.Handle("POST", "/api/v1/account/factors/totp/confirm", router.Session, handleFactorConfirm(d, d.Sessions.ConfirmFactor))
	rt.Handle("DELETE", "/api/v1/account/factors/totp", router.Session, handleFactorRemove(d, removeTOTP))
	rt.Handle("POST", "/api/v1/account/factors/sms", router.Session, handleSMSBegin(d))
	rt.Handle("POST", "/api/v1/account/factors/sms/confirm", router.Session, handleFactorConfirm(d, d.Sessions.ConfirmSMSFactor))
	rt.Handle("DELETE", "/api/v1/account/factors/sms", router.Session, handleFactorRemove(d, removeSMS))
	rt.Handle("POST", "/api/v1/account/factors/webauthn", router.Session, handlePasskeyBegin(d))
	rt.Handle("POST", "/api/v1/account/factors/webauthn/confirm", router.Session, handlePasskeyConfirm(d))
	rt.Handle("GET", "/api/v1/account/factors/webauthn", router.Session, handlePasskeyList(d))
	rt.Handle("DELETE", "/api/v1/account/factors/webauthn/{id}", router.Session, handlePasskeyRemove(d))
	rt.Handle("POST", "/api/v1/account/recovery-codes", router.Session, handleRecoveryCodes(d))
	rt.Handle("POST", "/api/v1/account/password", router.Session, handleChangePassword(d))
	rt.Handle("POST", "/api/v1/tokens", router.Session, handleCreateToken(d))
	rt.Handle("GET", "/api/v1/tokens", router.SignedIn, handleListTokens(d))
	rt.Handle("DELETE", "/api/v1/tokens/{id}", router.SignedIn, handleRevokeToken(d))
	// Who accessed the requester's own participant record (issue 8).
	rt.Handle("GET", "/api/v1/me/access-log", router.SignedIn, handleAccessLog(d))
	rt.Handle("GET", "/api/v1/me/records", router.SignedIn, handleMyRecords(d))
	// The organizations the requester belongs to, and leaving one (ACL-02).
	rt.Handle("GET", "/api/v1/account/organizations", router.SignedIn, handleMyOrganizations(d))
	rt.Handle("POST", "/api/v1/account/organizations/{org}/leave", router.Session, handleLeaveOrganization(d))
	rt.Handle("POST", "/api/v1/auth/reset", router.Open, handleResetRequest(d))
	rt.Handle("POST", "/api/v1/auth/reset/confirm", router.Open, handleResetConfirm(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/invitations", router.SignedIn, handleInvite(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies", router.SignedIn, handleListStudies(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies", router.SignedIn, handleCreateStudy(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}", router.SignedIn, handleGetStudy(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites", router.SignedIn, handleListSites(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites", router.SignedIn, handleCreateSite(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}", router.SignedIn, handleGetSite(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/audit/events", router.SignedIn, handleAuditSearch(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/audit/search", router.SignedIn, handleAuditSearchPost(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/audit/export", router.SignedIn, handleAuditExport(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/alerts", router.SignedIn, handleListAlerts(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/alerts/{alert}/read", router.SignedIn, handleMarkAlertRead(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/alert-rules", router.SignedIn, handleGetAlertRules(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/alert-rules", router.SignedIn, handleSetAlertRules(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/security-policy", router.SignedIn, handleGetPolicy(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/security-policy", router.SignedIn, handleSetPolicy(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/sso-provider", router.SignedIn, handleGetSSO(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/sso-provider", router.SignedIn, handleSetSSO(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/sso-provider", router.SignedIn, handleRemoveSSO(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/network", router.SignedIn, handleSetOrgNetwork(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/network", router.SignedIn, handleSetStudyNetwork(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants", router.SignedIn, handleEnrolParticipant(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants", router.SignedIn, handleListParticipants(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}", router.SignedIn, handleGetParticipant(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/identity", router.SignedIn, handleRevealIdentity(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/identity", router.SignedIn, handleEraseIdentity(d))
	// Deleting a participant (LIFE-01): hidden and locked at once, restored
	// by an organization admin within the retention period, purged after.
	rt.Handle("DELETE", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}", router.SignedIn, handleDeleteParticipant(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/restore", router.SignedIn, handleRestoreParticipant(d))
	// Retention and data subjects' requests (LIFE-02): the notices of
	// inactive data and legal holds, and everything about one participant.
	rt.Handle("GET", "/api/v1/orgs/{org}/retention", router.SignedIn, handleRetention(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/retention/holds/{kind}/{subject}", router.SignedIn, handleSetHold(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/retention/holds/{kind}/{subject}", router.SignedIn, handleLiftHold(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/subject-export", router.SignedIn, handleSubjectExport(d))
	// A participant's own account (ACL-05), invited by those who may enrol
	// at the site.
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/account", router.SignedIn, handleInviteParticipantAccount(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/account", router.SignedIn, handleWithdrawParticipantAccount(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/decrypt-grants", router.SignedIn, handleListDecryptGrants(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/decrypt-grants", router.SignedIn, handleGrantDecrypt(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/studies/{study}/decrypt-grants/{grant}", router.SignedIn, handleRevokeDecrypt(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/members", router.SignedIn, handleListMembers(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/members/{account}/roles", router.SignedIn, handleAssignRole(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/members/{account}/roles/{assignment}", router.SignedIn, handleUnassignRole(d))
	// Members' access (ASVS V7.4.2, V7.4.5): disabling an account ends its
	// sessions and tokens and refuses its sign-in until it is enabled.
	rt.Handle("POST", "/api/v1/orgs/{org}/members/{account}/disable", router.SignedIn, handleDisableMember(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/members/{account}/enable", router.SignedIn, handleEnableMember(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/members/{account}/sign-out", router.SignedIn, handleSignOutMember(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/members/sign-out", router.SignedIn, handleSignOutMembers(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/members/{account}/factor-recovery", router.SignedIn, handleStartFactorRecovery(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/factor-recoveries", router.SignedIn, handleListFactorRecoveries(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/factor-recoveries/{recovery}/approve", router.SignedIn, handleApproveFactorRecovery(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/roles", router.SignedIn, handleListRoles(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/roles", router.SignedIn, handleCreateRole(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/roles/{role}", router.SignedIn, handleDeleteRole(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/participants/{participant}/care-providers", router.SignedIn, handleAssignCare(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/studies/{study}/participants/{participant}/care-providers", router.SignedIn, handleUnassignCare(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/field-visibility", router.SignedIn, handleSetFieldVisibility(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/forms", router.SignedIn, handleListForms(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/forms", router.SignedIn, handleCreateForm(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/forms/{form}", router.SignedIn, handleGetForm(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/forms/redcap-dictionary", router.SignedIn, handleImportREDCap(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/forms/redcap-dictionary", router.SignedIn, handleExportREDCap(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/forms/odm", router.SignedIn, handleImportODM(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/forms/{form}/draft", router.SignedIn, handleSaveFormDraft(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/forms/{form}/publish", router.SignedIn, handlePublishForm(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}", router.SignedIn, handleGetFormVersion(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}/retire", router.SignedIn, handleRetireFormVersion(d))
	// Deleting a form version with data (LIFE-01): its entries hidden and
	// locked with it, restored by an organization admin within the
	// retention period, purged after.
	rt.Handle("DELETE", "/api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}", router.SignedIn, handleDeleteFormVersion(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/forms/{form}/versions/{version}/restore", router.SignedIn, handleRestoreFormVersion(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/schedule", router.SignedIn, handleGetSchedule(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/export", router.SignedIn, handleExportEntries(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/import", router.SignedIn, handleImportEntries(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries", router.SignedIn, handleEntryGrid(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/arm", router.SignedIn, handleAssignArm(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files", router.SignedIn, handleUploadFile(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/files/{file}", router.SignedIn, handleDownloadFile(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}", router.SignedIn, handleGetEntry(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}", router.SignedIn, handleSaveEntry(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}/history", router.SignedIn, handleEntryHistory(d))
	rt.Handle("DELETE", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}", router.SignedIn, handleDeleteEntry(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/entries/{visit}/{repeat}/{form}/restore", router.SignedIn, handleRestoreEntry(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/schedule", router.SignedIn, handleSetSchedule(d))
	// Conversations between a care provider and their client (ACL-05,
	// ACL-06): the same routes for both; 404 for everyone else.
	rt.Handle("GET", "/api/v1/orgs/{org}/clients", router.SignedIn, handleListClients(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/conversations", router.SignedIn, handleListConversations(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/conversations", router.SignedIn, handleStartConversation(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/conversations/{conversation}", router.SignedIn, handleGetConversation(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/conversations/{conversation}/messages", router.SignedIn, handleSendMessage(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/conversations/{conversation}/attachments", router.SignedIn, handleSendAttachment(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/conversations/{conversation}/attachments/{attachment}", router.SignedIn, handleDownloadAttachment(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/conversations/{conversation}/read", router.SignedIn, handleMarkConversationRead(d))
	// Electronic consent (issue 16): a study's documents and settings, and
	// a participant's consents, signed by the participant with their own
	// account or in person at their site.
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/consent/documents", router.SignedIn, handleListConsentDocuments(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/consent/documents", router.SignedIn, handleCreateConsentDocument(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/consent/documents/{language}", router.SignedIn, handleGetConsentDocument(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/consent/documents/{language}/draft", router.SignedIn, handleSaveConsentDraft(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/consent/documents/{language}/publish", router.SignedIn, handlePublishConsentDocument(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/consent/settings", router.SignedIn, handleGetConsentSettings(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/consent/settings", router.SignedIn, handleSetConsentSettings(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/consent/pending", router.SignedIn, handleListPendingConsents(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/consent", router.SignedIn, handleGetConsentStatus(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/consent/document", router.SignedIn, handleGetConsentToSign(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/consent/sign", router.SignedIn, handleSignConsent(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/consent/withdraw", router.SignedIn, handleWithdrawConsent(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/consents", router.SignedIn, handleListConsents(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/consents/{consent}/countersign", router.SignedIn, handleCountersignConsent(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/studies/{study}/sites/{site}/participants/{participant}/consents/{consent}/pdf", router.SignedIn, handleDownloadConsent(d))
	rt.Handle("GET", "/api/v1/orgs/{org}/key-requests", router.SignedIn, handleListKeyRequests(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/key-requests", router.SignedIn, handleKeyRequest(d))
	rt.Handle("POST", "/api/v1/orgs/{org}/key-requests/{request}/approve", router.SignedIn, handleApproveKeyRequest(d))
	// The OpenAPI document, of every route above and its own.
	var doc []byte
	rt.Handle("GET", openAPIPath, router.Open, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handleOpenAPI(doc).ServeHTTP(w, r)
	}))
	var err error
	if doc, err = openAPI(rt.Routes()); err != nil {
		panic("the OpenAPI document: " + err.Error())
	}
	return rt
}

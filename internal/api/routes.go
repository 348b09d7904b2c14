package api

import (
	"log/slog"
	"net/http"

	"github.com/custodia/custodia/internal/links"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/netpolicy/netadmin"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/oversight"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
)

// Deps are what the API's handlers need.
type Deps struct {
	Log       *slog.Logger
	Sessions  *sessions.Store
	Orgs      *orgs.Service
	Oversight *oversight.Service
	Links     *links.Service
	Factors   *mfa.Service
	Networks  *netadmin.Service
	// ClientAddr gives the requester's address (set by the server, which
	// knows about trusted proxies).
	ClientAddr func(*http.Request) string
}

// Routes returns the API's route table; every route states its access.
func Routes(d Deps) *router.Router {
	rt := router.New(guard(d), Failure)
	rt.Handle("POST", "/api/v1/auth/login", router.Open, handleLogin(d))
	rt.Handle("POST", "/api/v1/auth/second-factor", router.Open, handleSecondFactor(d))
	rt.Handle("POST", "/api/v1/auth/enrolment/totp", router.Open, handleEnrolBegin(d))
	rt.Handle("POST", "/api/v1/auth/enrolment/totp/confirm", router.Open, handleEnrolConfirm(d))
	rt.Handle("POST", "/api/v1/auth/logout", router.SignedIn, handleLogout(d))
	rt.Handle("POST", "/api/v1/auth/confirm", router.SignedIn, handleConfirm(d))
	rt.Handle("POST", "/api/v1/account/factors/totp", router.SignedIn, handleFactorBegin(d))
	rt.Handle("POST", "/api/v1/account/factors/totp/confirm", router.SignedIn, handleFactorConfirm(d))
	rt.Handle("DELETE", "/api/v1/account/factors/totp", router.SignedIn, handleFactorRemove(d))
	rt.Handle("POST", "/api/v1/account/recovery-codes", router.SignedIn, handleRecoveryCodes(d))
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
	rt.Handle("GET", "/api/v1/orgs/{org}/audit/export", router.SignedIn, handleAuditExport(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/network", router.SignedIn, handleSetOrgNetwork(d))
	rt.Handle("PUT", "/api/v1/orgs/{org}/studies/{study}/network", router.SignedIn, handleSetStudyNetwork(d))
	return rt
}

package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sso"
)

// Single sign-on through an organization's OpenID Connect provider
// (AUTH-13): the sign-in page names the organization and offers a link to
// /login/sso, which sends the browser to the provider (a link, not a form:
// the pages' Content-Security-Policy lets a form go to this site only, a
// redirect after it included); the provider sends it back to
// /login/sso/callback.

// ssoCookie carries the binding secret of a single sign-on in progress
// from its start to the provider's answer (sessions.Started). It is
// SameSite=Lax: the answer arrives as a navigation from the provider's
// site, which a Strict cookie would not come with.
const ssoCookie = "__Host-custodia_sso"

// maxSSONext bounds the page a single sign-on returns to, which its flow
// keeps until the provider answers.
const maxSSONext = 2000

// ssoOffered reports whether the server has single sign-on at all.
func ssoOffered(d Deps) bool { return d.SSO != nil && len(d.SSO.Issuers) > 0 }

// ssoOrg is the organization a sign-in page offers single sign-on for, from
// its address (?org=), if it is a slug.
func ssoOrg(r *http.Request) string {
	if slug := r.URL.Query().Get("org"); orgs.CheckSlug(slug) == nil {
		return slug
	}
	return ""
}

// handleSSOStart begins a single sign-on at the provider of the
// organization ?org= names (sessions.SingleSignOn.Begin) and sends the
// browser there; the binding secret stays in its cookie.
func handleSSOStart(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := localPath(r.URL.Query().Get("next"))
		if len(next) > maxSSONext {
			next = "/"
		}
		st, err := d.SSO.Begin(r.Context(), r.URL.Query().Get("org"), next, d.ClientAddr(r))
		if err != nil {
			ssoFailed(w, r, d, err)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: ssoCookie, Value: st.Binding, Path: "/",
			MaxAge: max(1, int(time.Until(st.ExpiresAt)/time.Second)),
			Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		})
		http.Redirect(w, r, st.URL, http.StatusSeeOther)
	})
}

// handleSSOCallback takes the provider's answer (sessions.SingleSignOn.
// Finish): a session, and the page the sign-in began for; or, where the
// organization requires its own second factor, the second step. Every
// refusal is one line on the sign-in page, answered 401; what failed is on
// the audit trail, never in the page.
func handleSSOCallback(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		a := sessions.Answer{State: q.Get("state"), Code: q.Get("code"), Error: q.Get("error"), Issuer: q.Get("iss")}
		if c, err := r.Cookie(ssoCookie); err == nil {
			a.Binding = c.Value
		}
		clearCookie(w, ssoCookie)
		st, next, err := d.SSO.Finish(r.Context(), a, d.ClientAddr(r), r.UserAgent())
		if err != nil {
			ssoFailed(w, r, d, err)
			return
		}
		if challengeOf(r) != "" {
			clearCookie(w, challengeCookie)
		}
		if st.Challenge.Token != "" {
			// The challenge cookie is SameSite=Strict, so the browser
			// would not send it on a redirect from here, which follows
			// the provider's: the page continues with a link of this site.
			setChallengeCookie(w, st.Challenge)
			step := "/login/second-factor"
			if st.Challenge.Purpose == mfa.PurposeEnrolment {
				step = "/login/enrol"
			}
			render(w, r, d.Log, http.StatusOK, "sso", map[string]any{"Title": "Second factor", "Next": step})
			return
		}
		setSessionCookie(w, st.Token)
		http.Redirect(w, r, localPath(next), http.StatusSeeOther)
	})
}

// ssoFailed answers a single sign-on that did not begin or was refused
// with the sign-in page and its one line; the reason of a refusal goes to
// the log too, without anything of the provider's answer.
func ssoFailed(w http.ResponseWriter, r *http.Request, d Deps, err error) {
	if reason := sso.ReasonOf(err); reason != "" {
		d.Log.InfoContext(r.Context(), "single sign-on refused", "reason", reason)
	}
	router.RecordRefusal(r, errs.KindOf(err).String())
	if errs.Is(err, errs.RateLimited) {
		tooMany(w, err)
	}
	render(w, r, d.Log, statusOf(err), "login", map[string]any{
		"Title": "Sign in", "Error": message(d, r, err), "Next": "/", "SSO": ssoOffered(d),
	})
}

// ssoForm is the settings page's form: a provider as the page shows and
// reads it.
type ssoForm struct {
	sso.Provider
	Roles                           string // one "group = role[@study[/site]]" a line
	Scopes, Domains, MFAAMR, MFAACR string // space-separated
}

func ssoFormOf(p sso.Provider) ssoForm {
	f := ssoForm{Provider: p, Scopes: strings.Join(p.Scopes, " "), Domains: strings.Join(p.AllowedDomains, " "),
		MFAAMR: strings.Join(p.MFAAMR, " "), MFAACR: strings.Join(p.MFAACR, " ")}
	var lines []string
	for _, r := range p.Roles {
		spec := string(r.Role)
		if r.StudyID != "" || r.SiteID != "" {
			spec += "@" + r.StudyID
			if r.SiteID != "" {
				spec += "/" + r.SiteID
			}
		}
		lines = append(lines, r.Group+" = "+spec)
	}
	f.Roles = strings.Join(lines, "\n")
	return f
}

// providerFromForm reads a provider from the posted form. A role line is
// "group = role", "group = role@study" or "group = role@study/site"; the
// group is what comes before the last "=" (a directory's group may hold
// "=" itself).
func providerFromForm(v url.Values) (sso.Provider, error) {
	split := func(s string) []string { return strings.Fields(strings.ReplaceAll(s, ",", " ")) }
	p := sso.Provider{
		Issuer: v.Get("issuer"), ClientID: v.Get("client_id"),
		EmailClaim: strings.TrimSpace(v.Get("email_claim")), GroupsClaim: strings.TrimSpace(v.Get("groups_claim")),
		Scopes: split(v.Get("scopes")), AllowedDomains: split(v.Get("allowed_domains")),
		MFAAMR: split(v.Get("mfa_amr")), MFAACR: split(v.Get("mfa_acr")),
		CreateAccounts: v.Get("create_accounts") == "on", AcceptProviderMFA: v.Get("accept_provider_mfa") == "on",
	}
	for n, line := range strings.Split(v.Get("roles"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		i := strings.LastIndexByte(line, '=')
		if i < 0 {
			return p, errs.E(errs.Invalid, "line %d of the group roles must read \"group = role\"", n+1)
		}
		spec := strings.TrimSpace(line[i+1:])
		role, scope, _ := strings.Cut(spec, "@")
		study, site, _ := strings.Cut(scope, "/")
		p.Roles = append(p.Roles, sso.GroupRole{Group: strings.TrimSpace(line[:i]), Role: authz.Role(role), StudyID: study, SiteID: site})
	}
	return p, nil
}

func ssoPage(d Deps, org orgs.Organization, p sso.Provider, configured bool) map[string]any {
	return map[string]any{
		"Title": "Single sign-on", "Org": org, "Form": ssoFormOf(p), "Configured": configured,
		"Callback": d.SSOAdmin.RedirectURL, "Offered": len(d.SSOAdmin.Issuers) > 0, "Issuers": d.SSOAdmin.Issuers,
	}
}

func handleSSOSettings(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		org, p, configured, err := d.SSOAdmin.Provider(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		data := ssoPage(d, org, p, configured)
		data["Notice"] = notice(r)
		render(w, r, d.Log, http.StatusOK, "ssoadmin", data)
	})
}

// handleSetSSO saves the organization's provider (ssoadmin.Service.
// SetProvider, the API's call). A refused setting shows the form again as
// posted, with the domain's message; nothing is saved.
func handleSetSSO(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		org, current, configured, err := d.SSOAdmin.Provider(r.Context(), actor(d, r), slug)
		if err != nil {
			fail(w, r, d, err)
			return
		}
		data := ssoPage(d, org, current, configured)
		if !form(w, r, d, "ssoadmin", data) {
			return
		}
		p, err := providerFromForm(r.PostForm)
		if err == nil {
			err = d.SSOAdmin.SetProvider(r.Context(), actor(d, r), slug, p, r.PostForm.Get("client_secret"))
		}
		switch {
		case errs.Is(err, errs.Invalid), errs.Is(err, errs.Forbidden):
			data["Form"] = ssoFormOf(p)
			formFailed(w, r, d, "ssoadmin", data, err)
		case err != nil:
			fail(w, r, d, err)
		default:
			http.Redirect(w, r, "/orgs/"+url.PathEscape(org.Slug)+"/sso?done=sso", http.StatusSeeOther)
		}
	})
}

// handleRemoveSSO removes the organization's provider.
func handleRemoveSSO(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("org")
		if err := d.SSOAdmin.RemoveProvider(r.Context(), actor(d, r), slug); err != nil {
			fail(w, r, d, err)
			return
		}
		http.Redirect(w, r, "/orgs/"+url.PathEscape(slug)+"/sso?done=sso-removed", http.StatusSeeOther)
	})
}

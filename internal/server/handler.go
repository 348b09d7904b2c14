package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/accounts/accountadmin"
	"github.com/custodia/custodia/internal/api"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/authz/authzadmin"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms/formadmin"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/keys/keyadmin"
	"github.com/custodia/custodia/internal/links"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/metrics"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/mfa/relyingparty"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/netpolicy/netadmin"
	"github.com/custodia/custodia/internal/notify"
	"github.com/custodia/custodia/internal/orgs/orgadmin"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/policy/policyadmin"
	"github.com/custodia/custodia/internal/retention"
	"github.com/custodia/custodia/internal/router"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sso"
	"github.com/custodia/custodia/internal/sso/oidcrp"
	"github.com/custodia/custodia/internal/sso/ssoadmin"
	"github.com/custodia/custodia/internal/web"
)

// MaxRequestBody bounds every request body but a bulk import's; shells
// may set lower limits.
const MaxRequestBody = 1 << 20

// MaxImportBody bounds the body of a bulk import of entries
// (POST /api/v1/orgs/{org}/studies/{study}/import).
const MaxImportBody = 256 << 20

// MaxUploadBody bounds the body of a file uploaded for a participant
// (POST …/participants/{participant}/files): forms.MaxFileBytes, read by the
// handler, which says so when a file passes it.
const MaxUploadBody = 20<<20 + 1

// MaxAttachmentBody bounds the body of a file sent in a conversation
// (POST /api/v1/orgs/{org}/conversations/{conversation}/attachments):
// conversations.MaxAttachmentBytes, read by the handler, which says so when
// a file passes it.
const MaxAttachmentBody = conversations.MaxAttachmentBytes + 1

// bodyLimit is how large r's body may be: MaxImportBody for a bulk import
// of entries, MaxUploadBody for a file, and with the text of a page for an
// entry page (whose files come with it), MaxRequestBody for the rest.
func bodyLimit(r *http.Request) int64 {
	p := r.URL.Path
	if r.Method == http.MethodPost && strings.HasPrefix(p, "/api/v1/orgs/") && strings.HasSuffix(p, "/attachments") &&
		strings.Count(p, "/") == 7 && strings.Contains(p, "/conversations/") {
		return MaxAttachmentBody
	}
	if r.Method == http.MethodPost && strings.HasPrefix(p, "/orgs/") && strings.Contains(p, "/studies/") {
		switch {
		case strings.HasSuffix(p, "/import") && strings.Count(p, "/") == 5:
			return MaxImportBody // a study's page sends its import with a form
		case (strings.HasSuffix(p, "/forms/redcap-dictionary") || strings.HasSuffix(p, "/forms/odm")) && strings.Count(p, "/") == 6:
			return 2 * MaxRequestBody // a dictionary or ODM file of 1 MiB, with its form
		}
	}
	if r.Method == http.MethodPost && strings.HasPrefix(p, "/orgs/") && strings.HasSuffix(p, "/attachments") &&
		strings.Count(p, "/") == 5 && strings.Contains(p, "/conversations/") {
		return MaxAttachmentBody + MaxRequestBody // a conversation's page sends its file with a form
	}
	if r.Method == http.MethodPost && strings.HasPrefix(p, "/orgs/") && strings.Count(p, "/") == 12 &&
		strings.Contains(p, "/participants/") && strings.Contains(p, "/visits/") {
		return MaxUploadBody + MaxRequestBody
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(p, "/api/v1/orgs/") || !strings.Contains(p, "/studies/") {
		return MaxRequestBody
	}
	switch {
	case strings.HasSuffix(p, "/import") && strings.Count(p, "/") == 7:
		return MaxImportBody
	case strings.HasSuffix(p, "/files") && strings.Count(p, "/") == 11 && strings.Contains(p, "/participants/"):
		return MaxUploadBody
	}
	return MaxRequestBody
}

// SecurityHeaders are set on every response, errors included (WEB-04).
var SecurityHeaders = map[string]string{
	"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"Permissions-Policy":           "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// allowedMethods are the only methods any route may declare; others (TRACE,
// CONNECT, DEBUG, …) are refused before routing.
var allowedMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// Deps are what the HTTP handler needs.
type Deps struct {
	Log *slog.Logger
	// Metrics, if set, counts every request answered (AVL-05).
	Metrics  *metrics.Metrics
	Instance *instance.Instance
	Sessions *sessions.Store
	// Mail sends reset links and invitations; nil means a file outbox in
	// <data>/outbox. BaseURL is the address links point at.
	Mail    mail.Sender
	BaseURL string
	// KEK wraps the data keys and, through the gate, second-factor
	// secrets (AUTH-08); without it second factors are unavailable and
	// accounts that have one cannot sign in. Factors, if set, is used
	// instead of a service of its own, with the handler's gate unless it
	// has one.
	KEK     keys.KEK
	Factors *mfa.Service
	// Entries, if set, is the data-capture service of both shells (its
	// bound on exports is the node's), with the handler's gate unless it
	// has one.
	Entries *entries.Service
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed (--trusted-proxy); none means the connection's address is
	// the client's.
	TrustedProxies []netip.Prefix
	// SMS sends second-factor codes by text message (AUTH-08); nil means
	// a file outbox in <data>/outbox. It is used by Factors unless that
	// has a sender of its own.
	SMS sms.Sender
	// IdleWarning is how long before a session's idle limit the browser
	// pages warn and offer to stay signed in; web.DefaultIdleWarning when
	// zero.
	IdleWarning time.Duration
	// Gate is the instance's one gate (NewGate), which the server's own
	// work (sweeps, the alert watcher, the demo seed) shares: its
	// requests commit together. Nil means one made from Instance and KEK.
	Gate *gate.Gate
	// Trail is the instance's audit log, whose witnesses /readyz reports
	// (AUD-02); nil when the server signs no checkpoints.
	Trail *audit.Log
	// EnrolmentsPerHour paces enrolment per account in this process
	// (participants.Service); 0 does not pace it.
	EnrolmentsPerHour int
	// SSOIssuers are the issuer address prefixes of the OpenID Connect
	// providers organizations may sign their members in with (serve
	// --sso-issuer, AUTH-13); none means no single sign-on. SSORelyingParty
	// speaks to them; nil means sso/oidcrp's.
	SSOIssuers      []string
	SSORelyingParty sso.RelyingParty
}

// NewGate returns the gate of inst: the data keys of its clinical
// database (organization and study keys) and of its identity database
// (participant keys), wrapped by kek (CRY-04, CRY-09). One process keeps
// one, so that all of its work commits together.
func NewGate(inst *instance.Instance, kek keys.KEK) *gate.Gate {
	return gate.New(gate.Config{
		Clinical: inst.Clinical, Keys: &keys.Keyring{DB: inst.Clinical, KEK: kek},
		Identity: inst.Identity, IdentityKeys: &keys.Keyring{DB: inst.Identity, KEK: kek, EpochDir: filepath.Join(inst.DataDir, keys.LocalEpochsDir)},
		AuditKey: inst.AuditKey, Issued: inst.AuditIssued,
	})
}

// Shells are the route tables of the two shells, for tests that walk them.
type Shells struct {
	Web   *router.Router
	API   *router.Router
	Links *links.Service
	// Notices sends the notices that something waits (WEB-07); serve
	// runs its sender.
	Notices *notify.Service
}

// NewHandler builds the whole HTTP surface: health checks, the API under
// /api/, the browser pages under /, and the protections every request
// passes through.
func NewHandler(d Deps) (http.Handler, Shells) {
	if d.Sessions == nil {
		d.Sessions = &sessions.Store{Limits: sessions.DefaultLimits}
	}
	g := d.Gate
	if g == nil {
		g = NewGate(d.Instance, d.KEK)
	}
	if d.Sessions.Gate == nil {
		d.Sessions.Gate = g
	}
	if d.Metrics != nil {
		d.Metrics.Watch(g)
		if d.Trail != nil {
			d.Metrics.WatchTrail(d.Trail)
		}
		if d.KEK != nil {
			d.Metrics.WatchKeys(g)
		}
	}
	if d.Mail == nil {
		d.Mail = &mail.Outbox{Dir: filepath.Join(d.Instance.DataDir, "outbox"), From: "custodia@localhost"}
	}
	if d.BaseURL == "" {
		d.BaseURL = "https://127.0.0.1:8443"
	}
	if d.SMS == nil {
		d.SMS = &sms.Outbox{Dir: filepath.Join(d.Instance.DataDir, "outbox")}
	}
	if d.Factors == nil {
		d.Factors = &mfa.Service{}
	}
	if d.Factors.Gate == nil {
		d.Factors.Gate = g
	}
	if d.Factors.SMS == nil {
		d.Factors.SMS = d.SMS
	}
	if d.Factors.Passkeys == nil {
		// Passkeys answer to the host of the public URL; WebAuthn refuses
		// an IP address there, and then passkeys are unavailable.
		if rp, err := relyingparty.New(d.BaseURL); err == nil {
			d.Factors.Passkeys = rp
		} else if d.Log != nil {
			d.Log.Info("passkeys are unavailable", "reason", err.Error())
		}
	}
	security := &policyadmin.Service{Gate: g}
	oversight := &auditadmin.Service{Gate: g}
	access := &accountadmin.Service{Gate: g, Now: d.Sessions.Now, Mail: d.Mail, BaseURL: d.BaseURL}
	lk := &links.Service{Gate: g, Mail: d.Mail, BaseURL: d.BaseURL, Log: d.Log}
	notices := &notify.Service{Gate: g, Mail: d.Mail, SMS: d.SMS, BaseURL: d.BaseURL, Log: d.Log}
	retained := &retention.Service{Gate: g}
	addrOf := func(r *http.Request) string { return clientAddr(r, d.TrustedProxies) }
	// Single sign-on (AUTH-13): the providers send the browser back to
	// the public URL's callback.
	callback := strings.TrimSuffix(d.BaseURL, "/") + "/login/sso/callback"
	ssoAdmin := &ssoadmin.Service{Gate: g, Issuers: d.SSOIssuers, RedirectURL: callback}
	var signOn *sessions.SingleSignOn
	if len(d.SSOIssuers) > 0 {
		if d.SSORelyingParty == nil {
			d.SSORelyingParty = oidcrp.New()
		}
		signOn = &sessions.SingleSignOn{Store: d.Sessions, RP: d.SSORelyingParty, RedirectURL: callback, Issuers: d.SSOIssuers}
	}
	// One service each for the pages and the API, so that what they bound
	// per node (exports, the pace of enrolments) is bounded once.
	if d.Entries == nil {
		d.Entries = &entries.Service{}
	}
	if d.Entries.Gate == nil {
		d.Entries.Gate = g
	}
	enrolling := &participants.Service{Gate: g, EnrolmentsPerHour: d.EnrolmentsPerHour}
	sh := Shells{
		Web: web.Routes(web.Deps{
			Log: d.Log, Links: lk, Sessions: d.Sessions, Factors: d.Factors,
			Security: security, Access: access, ClientAddr: addrOf, IdleWarning: d.IdleWarning,
			SSO: signOn, SSOAdmin: ssoAdmin,
			Witnesses:     witnessesOf(d.Trail),
			Accounts:      &accounts.Service{Gate: g},
			Orgs:          &orgadmin.Service{Gate: g},
			Oversight:     oversight,
			Roles:         &authzadmin.Service{Gate: g},
			Networks:      &netadmin.Service{Gate: g},
			Keys:          &keyadmin.Service{Gate: g},
			Participants:  enrolling,
			Forms:         &formadmin.Service{Gate: g},
			Entries:       d.Entries,
			Notices:       notices,
			Conversations: &conversations.Service{Gate: g},
			Consent:       &consent.Service{Gate: g},
			Retention:     retained,
		}),
		API: api.Routes(api.Deps{
			Log: d.Log, Sessions: d.Sessions,
			Orgs:          &orgadmin.Service{Gate: g},
			Oversight:     oversight,
			Links:         lk,
			Factors:       d.Factors,
			Networks:      &netadmin.Service{Gate: g},
			Participants:  enrolling,
			Roles:         &authzadmin.Service{Gate: g},
			Keys:          &keyadmin.Service{Gate: g},
			Forms:         &formadmin.Service{Gate: g},
			Entries:       d.Entries,
			Conversations: &conversations.Service{Gate: g},
			Notices:       notices,
			Consent:       &consent.Service{Gate: g},
			Retention:     retained,
			Security:      security,
			SSOAdmin:      ssoAdmin,
			Access:        access,
			ClientAddr:    addrOf,
		}),
	}
	sh.Links, sh.Notices = lk, notices
	mux := http.NewServeMux()
	mux.Handle("/healthz", onlyGet(handleHealth()))
	mux.Handle("/readyz", onlyGet(handleReady(d, g)))
	mux.Handle("/api/", sh.API)
	mux.Handle("/", sh.Web)

	csrf := http.NewCrossOriginProtection()
	var h http.Handler = mux
	h = isolateResources(h)
	h = csrf.Handler(h)
	h = limitBody(h)
	h = refuseMethods(h)
	h = securityHeaders(h)
	h = logRequests(d.Log, d.Metrics, addrOf, h)
	h = cleanUserAgent(h)
	h = recoverPanics(d.Log, h)
	return h, sh
}

// clientAddr is the address of the client behind r: the connection's peer,
// unless the peer is one of the trusted proxies, in which case the right-most
// address of X-Forwarded-For that is not a trusted proxy (see
// netpolicy.ClientAddr). Network restriction (ACL-07), rate limits and the
// audit trail all see this address.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	return netpolicy.ClientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range SecurityHeaders {
			h.Set(k, v)
		}
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// isolateResources refuses what another site makes a browser ask for
// (Fetch Metadata, ASVS V3.5.3): every API call, whatever its method, and
// the pages that export or reveal on a GET. A link from elsewhere to any
// other page still opens it. A client that sends no Sec-Fetch-Site (a
// script, an older browser) passes, as does the browser on Custodia's own
// pages; SameSite cookies and the cross-origin protection of changes stand
// besides.
func isolateResources(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Sec-Fetch-Site") {
		case "cross-site", "same-site":
			if strings.HasPrefix(r.URL.Path, "/api/") || exportsOnGet(r.URL.Path) {
				http.Error(w, "a request made from another site is refused here", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// exportsOnGet reports whether a page's GET hands out data in bulk: the
// download of an organization's audit trail.
func exportsOnGet(path string) bool {
	return strings.HasPrefix(path, "/orgs/") && strings.HasSuffix(path, "/audit/export")
}

func refuseMethods(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowedMethods[r.Method] {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := bodyLimit(r)
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type requestIDKey struct{}

// RequestID returns the id given to the request by the server.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// refusalOf names the refusal of a status that a shell answered without
// recording its code.
var refusalOf = map[int]string{
	http.StatusBadRequest: "invalid", http.StatusUnauthorized: "unauthenticated", http.StatusForbidden: "forbidden",
	http.StatusNotFound: "not_found", http.StatusMethodNotAllowed: "method_not_allowed", http.StatusConflict: "conflict",
	http.StatusRequestEntityTooLarge: "too_large", http.StatusTooManyRequests: "rate_limited",
}

// logRequests writes one structured line per request. It logs the route
// pattern rather than the path, so tokens in links never reach the log.
func logRequests(log *slog.Logger, m *metrics.Metrics, addrOf func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var b [8]byte
		rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		r, pattern := router.WithPatternSlot(r)
		r, refusal := router.WithRefusalSlot(r)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := *pattern
		if route == "" {
			route = "(unrouted)"
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		attrs := []slog.Attr{
			slog.String("request_id", id),
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", sw.status),
			slog.Int("bytes", sw.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", addrOf(r)),
		}
		if *refusal == "" && sw.status >= 400 && sw.status < 500 {
			*refusal = refusalOf[sw.status] // a page that answered without a code
		}
		if *refusal != "" {
			attrs = append(attrs, slog.String("refused", *refusal))
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
		if m != nil {
			m.Observe(route, r.Method, sw.status, time.Since(start), *refusal)
		}
	})
}

func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.ErrorContext(r.Context(), "handler panic", "panic", fmt.Sprint(p), "request_id", RequestID(r.Context()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func onlyGet(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// handleHealth answers while the process is alive.
func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReady answers 200 only when both databases answer, their schemas
// are current, the gate's latest write did not fail for want of the
// database (a full disk, a lost connection: gate.WriteFailure), and the
// key-encryption key's provider answers, so a load balancer sends no
// traffic before.
func handleReady(d Deps, g *gate.Gate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := d.Instance.Ready(ctx); err != nil {
			d.Log.WarnContext(ctx, "not ready", "err", err)
			writeStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		// A database that answers reads may still fail every write.
		if err := g.WriteFailure(); err != nil {
			d.Log.WarnContext(ctx, "not ready: writes fail", "err", err)
			writeStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		// A key-encryption key that cannot be reached (a KMS down) makes
		// every write that needs a key fail: no traffic until it answers.
		if c, ok := d.KEK.(interface{ Check(context.Context) error }); ok {
			if err := c.Check(ctx); err != nil {
				d.Log.WarnContext(ctx, "not ready: key-encryption key", "err", err)
				writeStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
				return
			}
		}
		// A witness saw a larger or different trail: the database was
		// rolled back or rewritten, and the trail is no longer signed.
		if d.Trail != nil {
			if err := d.Trail.Refused(); err != nil {
				d.Log.WarnContext(ctx, "not ready: audit trail refused", "err", err)
				writeStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "audit": errs.SafeMessage(err)})
				return
			}
		}
		// fips: whether new values and password hashes use FIPS 140
		// approved algorithms only (CRY-11). witnesses: each audit
		// witness, the size it accepted last and how far it is behind;
		// one behind is reported, and logged, but does not stop traffic.
		status := map[string]any{"status": "ready", "fips": keys.FIPS().On}
		if d.Trail != nil && len(d.Trail.Witnesses) > 0 {
			ws := d.Trail.WitnessStatus()
			status["witnesses"] = ws
			for _, s := range ws {
				if s.Behind > 0 {
					status["status"] = "ready, audit witness behind"
					d.Log.WarnContext(ctx, "audit witness behind", "witness", s.Name, "behind", s.Behind, "err", s.Error)
				}
			}
		}
		writeStatus(w, http.StatusOK, status)
	})
}

// cleanUserAgent makes the request's User-Agent fit for the trail, the
// sessions and the log before anything reads it (audit.CleanUserAgent).
func cleanUserAgent(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ua := r.UserAgent(); ua != "" {
			if clean := audit.CleanUserAgent(ua); clean != ua {
				r.Header.Set("User-Agent", clean)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// witnessesOf reports the trail's witnesses to the security statement, or
// nil for a server without a trail.
func witnessesOf(l *audit.Log) func() []audit.WitnessStatus {
	if l == nil {
		return nil
	}
	return l.WitnessStatus
}

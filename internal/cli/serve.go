package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"filippo.io/age"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/policy"

	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/audit/witness"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/demo"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/metrics"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sso"
)

type serveOptions struct {
	// backup is the schedule of backups (AVL-01): --backup-to and its
	// companions, with the recipients parsed.
	backupTo, backupRecipient, backupRecipientFile string
	backupEvery                                    time.Duration
	backupKeep                                     int
	backupRecipients                               []age.Recipient
	backupTarget                                   backup.Target
	backupNames                                    []string
	metricsAddr                                    string
	metricsTokenFile                               string
	metricsToken                                   string
	cfg                                            *instance.Config
	addr                                           string
	tlsCert                                        string
	tlsKey                                         string
	env                                            string
	demo                                           bool
	logLevel                                       string
	baseURL                                        string
	smtpURL                                        string
	smtpPasswordFile                               string
	mailFrom                                       string
	// trustedProxy is the --trusted-proxy setting, proxies its parsed form.
	trustedProxy string
	proxies      []netip.Prefix
	// fips requires FIPS mode (CRY-11): Go's FIPS 140-3 module on.
	fips bool
	// allowLocalKEK accepts, in production, the key-encryption key in the
	// data folder (OPS-01).
	allowLocalKEK bool
	// witnesses are the --audit-witness settings (URL@KEY), witnessFile
	// the --audit-witness-file path (AUD-02).
	witnesses    []string
	witnessFile  string
	witnessEvery time.Duration
	// forward and forwardCA are --audit-forward and --audit-forward-ca
	// (ASVS V16.4.3).
	forward, forwardCA string
	// enrolmentsPerHour paces enrolment per account (ASVS V2.4.1).
	enrolmentsPerHour int
	// ssoIssuers are the --sso-issuer settings: the OpenID Connect
	// providers organizations may use for single sign-on (AUTH-13).
	ssoIssuers []string
}

var environments = []string{"development", "test", "acceptance", "production"}

func runServe(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "serve", "serve [--addr HOST:PORT] [--data DIR] [--database URL] [--identity-database URL] [--tls-cert FILE --tls-key FILE] [--env ENV] [--demo] [--trusted-proxy RANGES] [--kek local|pkcs11|vault …] [--fips]")
	o := serveOptions{cfg: instanceFlags(fs)}
	kc := kekFlags(fs)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8443", "`address` to listen on for HTTPS")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "certificate `file` (PEM); without it a self-signed certificate is made in the data folder")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key `file` (PEM) of --tls-cert")
	fs.StringVar(&o.env, "env", "development", "`environment`: development, test, acceptance or production (production refuses insecure settings)")
	fs.BoolVar(&o.demo, "demo", false, "seed a demo organization (slug demo) on first start and print its logins")
	fs.BoolVar(&o.cfg.Migrate, "migrate", false, "bring an existing instance's database schemas up to date before serving (needs a database role that may change them; without it, custodia migrate does so)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&o.baseURL, "public-url", "", "the `URL` people reach the server at, used in e-mailed links (default https://<addr>)")
	fs.StringVar(&o.smtpURL, "smtp-url", "", "mail server, smtp://user:password@host:587 (STARTTLS required; ?insecure=1 for a local relay); without it e-mails go to <data>/outbox")
	fs.StringVar(&o.smtpPasswordFile, "smtp-password-file", "", "`file` holding the mail server's password (first line), instead of a password in --smtp-url")
	fs.StringVar(&o.mailFrom, "mail-from", "custodia@localhost", "sender `address` of e-mails")
	fs.BoolVar(&o.allowLocalKEK, "allow-local-kek", false, "with --env production, accept the key-encryption key in the data folder (--kek local) instead of an HSM or KMS")
	fs.BoolVar(&o.fips, "fips", false, "FIPS mode: refuse to start unless Go's FIPS 140-3 module is on (GODEBUG=fips140=on or only); new values then use AES-256-GCM and passwords PBKDF2")
	fs.Func("audit-witness", "a C2SP tlog-witness as `URL@KEY` (its URL and verifier key) that cosigns each audit checkpoint; repeat for several, or separate them by spaces", func(v string) error {
		o.witnesses = append(o.witnesses, strings.Fields(v)...)
		return nil
	})
	fs.StringVar(&o.forward, "audit-forward", "", "push the audit trail, as it grows, to a log collector (SIEM): syslog+tls://HOST:PORT (RFC 5425), or syslog+tcp://127.0.0.1:PORT on this machine")
	fs.StringVar(&o.forwardCA, "audit-forward-ca", "", "PEM `file` of the certificate authority of the collector's certificate (default: the system's roots)")
	fs.DurationVar(&o.witnessEvery, "audit-witness-every", time.Minute, "`interval` at which the newest audit checkpoint goes to the witnesses (1s to 1h): events cut from the end within it are seen only by the checkpoints the database holds")
	fs.StringVar(&o.witnessFile, "audit-witness-file", "", "append each audit checkpoint to this `file`, outside the data folder (better on other storage), for audit verify --witness-file")
	fs.IntVar(&o.enrolmentsPerHour, "enrolments-per-hour", 1000, "enrolments one account may make in an hour on this node, ten times as many per organization (0: no limit)")
	fs.Func("sso-issuer", "an OpenID Connect issuer `URL` (or a prefix of such addresses, ending in /) that organizations may use for single sign-on; repeat for several, or separate them by spaces", func(v string) error {
		for _, u := range strings.Fields(v) {
			if err := sso.CheckIssuer(u, []string{u}); err != nil {
				return fmt.Errorf("%s", errs.SafeMessage(err))
			}
			o.ssoIssuers = append(o.ssoIssuers, u)
		}
		return nil
	})
	fs.StringVar(&o.backupTo, "backup-to", "", "write an encrypted backup every --backup-every into this `folder` (a mounted volume off this machine's disk) or S3-compatible bucket (s3+https://HOST/BUCKET[/PREFIX], AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment); off when empty")
	fs.StringVar(&o.backupRecipient, "backup-recipient", "", "the public backup `key` (age1…, from custodia backup keygen) backups are encrypted to")
	fs.StringVar(&o.backupRecipientFile, "backup-recipient-file", "", "a `file` of public backup keys, one per line")
	fs.DurationVar(&o.backupEvery, "backup-every", 12*time.Hour, "`interval` between backups (10m to 7 days); one node of several writes each")
	fs.IntVar(&o.backupKeep, "backup-keep", 14, "how many backups to keep in --backup-to; older ones are removed")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "`address` of a listener of its own serving Prometheus metrics at /metrics (e.g. 127.0.0.1:9464; off when empty); one that is not loopback needs --metrics-token-file")
	fs.StringVar(&o.metricsTokenFile, "metrics-token-file", "", "`file` whose first line is the bearer token a metrics scrape must present")
	fs.StringVar(&o.trustedProxy, "trusted-proxy", "", "comma-separated `ranges` (CIDR or single addresses) of reverse proxies whose X-Forwarded-For is believed; without it the client address is the connection's")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level: unknown level %q", o.logLevel)}
	}
	log := slog.New(slog.NewJSONHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log) // operator alerts from domain packages join the same log

	// Everything that can be checked without writing is checked first, so a
	// bad setting leaves no trace.
	if err := passwordsOffTheCommandLine(&o, env, log); err != nil {
		return err
	}
	if err := checkServeOptions(&o, kc); err != nil {
		return err
	}
	if err := checkBackupOptions(&o, env.Getenv); err != nil {
		return err
	}
	fips := keys.FIPS()
	if o.fips && !fips.On {
		return errs.E(errs.Invalid, "--fips needs Go's FIPS 140-3 module: start custodia with GODEBUG=fips140=on, or fips140=only to have the module refuse every other algorithm")
	}
	if err := kc.check(); err != nil {
		return err
	}
	var cert tls.Certificate
	var err error
	var sender mail.Sender
	if o.smtpURL != "" {
		s, err := mail.ParseSMTPURL(o.smtpURL, o.mailFrom)
		if err != nil {
			return err
		}
		if o.smtpPasswordFile != "" {
			if s.Password != "" {
				return usageError{"--smtp-url holds a password and --smtp-password-file gives one: give it in one place"}
			}
			if s.Password, err = secretFrom(env, o.smtpPasswordFile); err != nil {
				return err
			}
			if s.Password == "" {
				return errs.E(errs.Invalid, "--smtp-password-file %s holds no password", o.smtpPasswordFile)
			}
		}
		sender = s
	} else if o.smtpPasswordFile != "" {
		return usageError{"--smtp-password-file goes with --smtp-url"}
	}
	if o.tlsCert != "" {
		if cert, err = server.LoadCertificate(o.tlsCert, o.tlsKey); err != nil {
			return err
		}
		if o.env == "production" && server.IsSelfSigned(cert) {
			return errs.E(errs.Invalid, "--env production refuses the self-signed certificate %s; use one issued by a certificate authority", o.tlsCert)
		}
	}
	ln, err := server.Listen(o.addr)
	if err != nil {
		return err
	}
	defer ln.Close()

	inst, err := instance.Open(ctx, *o.cfg)
	if err != nil {
		return err
	}
	defer inst.Close()
	_, statErr := os.Stat(filepath.Join(inst.DataDir, keys.LocalKEKFile))
	kekBefore := statErr == nil
	// The key-encryption key's provider (CRY-04). A remote KMS that does
	// not answer yet does not stop the start: /readyz fails and writes
	// answer 503 until it does.
	// A key file is made only on the first start; one lost later is
	// refused, never replaced (openFor).
	kek, err := kc.openFor(ctx, env, inst, false, true)
	if err != nil {
		return err
	}
	if l, ok := kek.(*keys.LocalKEK); ok && !kekBefore {
		log.Info("made a new key-encryption key", "file", l.Path(), "version", l.ID())
	}
	defer keys.CloseProvider(kek)
	if err := kek.Check(ctx); err != nil {
		log.Warn("key-encryption key not reachable", "provider", kek.Name(), "err", err)
	}
	// The audit key is kept the way the provider asks (KeepAuditKey), but
	// during a change of provider it moves only when the change ends. A
	// sealed one that does not open stops the start, since no event could
	// be written; one not yet sealed is sealed at a later start.
	keep := inst.KeepAuditKey
	if kc.previous != "" {
		keep = inst.OpenAuditKey
	}
	if err := keep(ctx, kek); err != nil {
		if inst.AuditKeySealed() || !errs.Is(err, errs.Unavailable) {
			return err
		}
		log.Warn("audit key not sealed yet", "provider", kek.Name(), "err", err)
	}
	// The one gate of this process: requests, the demo seed, the sweeps
	// and the alert watcher commit together through it.
	// In production every organization requires a second factor unless it
	// lifts the requirement with a reason (ASVS V6.3.3).
	policy.RequireSecondFactorByDefault(o.env == "production")
	operator := server.NewGate(inst, kek)

	selfSigned := false
	if o.tlsCert == "" {
		host, _, _ := net.SplitHostPort(o.addr)
		if cert, _, err = server.SelfSignedCertificate(inst.DataDir, []string{host}); err != nil {
			return err
		}
		selfSigned = true
	}
	url := "https://" + publicHost(ln.Addr(), o.addr)
	if o.demo {
		logins, err := demo.Seed(ctx, operator)
		if err != nil {
			return err
		}
		printDemo(env, logins)
	}
	trail, err := instanceLog(inst)
	if err != nil {
		return err
	}
	if trail.Witnesses, err = auditWitnesses(o.witnesses, o.witnessFile, inst); err != nil {
		return err
	}
	trail.Logf = func(format string, args ...any) { log.Info("audit sequencer", "detail", fmt.Sprintf(format, args...)) }
	trail.Failf = func(format string, args ...any) { log.Error("audit sequencer", "detail", fmt.Sprintf(format, args...)) }
	var fwd *audit.Forwarder
	if o.forward != "" {
		if fwd, err = auditForwarder(o, trail); err != nil {
			return err
		}
	}
	seqDone := make(chan struct{})
	go func() {
		defer close(seqDone)
		trail.Run(ctx, time.Second, o.witnessEvery)
	}()
	fwdDone := make(chan struct{})
	if fwd == nil {
		close(fwdDone)
	} else {
		go func() {
			defer close(fwdDone)
			fwd.Run(ctx, time.Second)
		}()
	}
	go sweepIdentities(ctx, log, operator, sweepEvery(env, o.env, log))
	go (&server.ClockWatch{Log: log}).Run(ctx)
	if o.backupTo != "" {
		go backupSchedule(&o, inst, operator, log).Run(ctx)
	}
	if sender == nil {
		sender = &mail.Outbox{Dir: filepath.Join(inst.DataDir, "outbox"), From: o.mailFrom}
		if o.env == "production" {
			log.Warn("no --smtp-url: e-mails (reset links, invitations) go to the outbox folder only", "outbox", filepath.Join(inst.DataDir, "outbox"))
		}
	}
	if o.baseURL == "" {
		o.baseURL = url
	}
	// Metrics (AVL-05) on a listener of their own.
	var meter *metrics.Metrics
	if o.metricsAddr != "" {
		meter = metrics.New() // the handler watches the databases (server.NewHandler)
		mln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "listen for metrics on "+o.metricsAddr)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", meter.Handler(o.metricsToken))
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go msrv.Serve(mln)
		defer msrv.Close()
		log.Info("metrics", "addr", mln.Addr().String(), "token", o.metricsToken != "")
	}
	h, shells := server.NewHandler(server.Deps{Log: log, Instance: inst, Mail: sender, BaseURL: o.baseURL, TrustedProxies: o.proxies, KEK: kek, Gate: operator, Trail: trail, EnrolmentsPerHour: o.enrolmentsPerHour, Metrics: meter, SSOIssuers: o.ssoIssuers})
	defer shells.Links.Wait()
	// Alert rules and notifications (AUD-05, AUTH-12): security events on
	// the log raise alerts, and alerts are e-mailed to the organization's
	// administrators.
	watcher := &alerts.Watcher{Gate: operator, Log: log,
		Notifier: &alerts.MailNotifier{Gate: operator, Mail: sender, BaseURL: o.baseURL}}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		watcher.Run(ctx, 2*time.Second)
	}()
	// Notices that something waits (WEB-07), sent as they come or in a
	// daily digest, by whichever server claims them.
	go sendNotices(ctx, log, shells.Notices)
	fmt.Fprintf(env.Stdout, "Custodia %s serving at %s (environment %s, instance %s)\n", version(), url+"/", o.env, inst.ID)
	fmt.Fprintf(env.Stdout, "FIPS mode %s: %s\n", fips, fips.Algorithms())
	if selfSigned {
		fmt.Fprintf(env.Stdout, "Self-signed certificate, SHA-256 fingerprint:\n  %s\n", server.Fingerprint(cert))
	}
	log.Info("serving", "addr", ln.Addr().String(), "env", o.env, "clinical", inst.Clinical.Location, "identity", inst.Identity.Location)
	err = server.Serve(ctx, ln, h, server.TLSConfig(cert), log)
	<-seqDone
	<-watchDone
	<-fwdDone
	// Integrate what the last requests appended and sign a final checkpoint.
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if _, cerr := trail.Checkpoint(fctx); cerr != nil {
		log.Warn("final audit checkpoint", "err", cerr)
	} else if werr := trail.WitnessLatest(fctx); werr != nil {
		log.Warn("final audit checkpoint", "err", werr)
	}
	// The collector gets the trail up to the final checkpoint.
	for fwd != nil {
		n, ferr := fwd.Round(fctx)
		if ferr != nil {
			log.Warn("final audit forwarding", "err", ferr)
		}
		if ferr != nil || n == 0 {
			break
		}
	}
	cancel()
	log.Info("stopped")
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// checkServeOptions refuses settings that are malformed, or insecure in
// production (OPS-01), naming the setting, and keeps the parsed forms. In
// production the key-encryption key belongs in an HSM or a KMS: the local
// key file, which whoever holds the data folder holds too, needs the
// operator's explicit consent (--allow-local-kek).
func checkServeOptions(o *serveOptions, kc *kekConfig) error {
	okEnv := false
	for _, e := range environments {
		okEnv = okEnv || o.env == e
	}
	if !okEnv {
		return usageError{fmt.Sprintf("--env: unknown environment %q (want %s)", o.env, strings.Join(environments, ", "))}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageError{"--tls-cert and --tls-key go together"}
	}
	if _, _, err := net.SplitHostPort(o.addr); err != nil {
		return usageError{fmt.Sprintf("--addr %q: want HOST:PORT", o.addr)}
	}
	if o.metricsTokenFile != "" {
		b, err := os.ReadFile(o.metricsTokenFile)
		if err != nil {
			return usageError{"--metrics-token-file: " + err.Error()}
		}
		o.metricsToken, _, _ = strings.Cut(string(b), "\n")
		if o.metricsToken = strings.TrimSpace(o.metricsToken); len(o.metricsToken) < 16 {
			return usageError{"--metrics-token-file: the token is at least 16 characters"}
		}
	}
	if o.metricsAddr != "" {
		host, _, err := net.SplitHostPort(o.metricsAddr)
		if err != nil {
			return usageError{fmt.Sprintf("--metrics-addr %q: want HOST:PORT", o.metricsAddr)}
		}
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && o.metricsToken == "" {
			return usageError{fmt.Sprintf("--metrics-addr %q is not loopback: give --metrics-token-file", o.metricsAddr)}
		}
	}
	for _, w := range o.witnesses {
		if _, err := witness.Parse(w); err != nil {
			return usageError{"--audit-witness: " + errs.SafeMessage(err)}
		}
	}
	if o.enrolmentsPerHour < 0 {
		return usageError{"--enrolments-per-hour: want 0 (no limit) or more"}
	}
	if o.forward != "" {
		if _, err := audit.DialSyslog(o.forward, nil); err != nil {
			return usageError{errs.SafeMessage(err)}
		}
	} else if o.forwardCA != "" {
		return usageError{"--audit-forward-ca goes with --audit-forward"}
	}
	if o.witnessEvery < time.Second || o.witnessEvery > time.Hour {
		return usageError{fmt.Sprintf("--audit-witness-every %s: want 1s to 1h", o.witnessEvery)}
	}
	if o.witnessFile != "" {
		if err := audit.CheckWitnessPath(o.witnessFile, o.cfg.WithDefaults().DataDir); err != nil {
			return usageError{"--audit-witness-file: " + errs.SafeMessage(err)}
		}
	}
	proxies, err := netpolicy.ParseTrustedProxies(o.trustedProxy)
	if err != nil {
		return usageError{errs.SafeMessage(err)}
	}
	o.proxies = proxies
	if o.baseURL != "" {
		u, err := url.Parse(o.baseURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return usageError{fmt.Sprintf("--public-url %q: want https://HOST[:PORT][/PATH]", o.baseURL)}
		}
	}
	clinical, identity, err := o.cfg.Targets()
	if err != nil {
		return err
	}
	if o.env != "production" {
		return nil
	}
	if o.demo {
		return errs.E(errs.Invalid, "--env production refuses --demo: demo data do not belong in production")
	}
	if o.tlsCert == "" {
		return errs.E(errs.Invalid, "--env production refuses a self-signed certificate: give --tls-cert and --tls-key")
	}
	for _, t := range []struct {
		flag string
		t    sqldb.Target
	}{{"--database", clinical}, {"--identity-database", identity}} {
		if t.t.Dialect == sqldb.Postgres && !t.t.IsLocalHost() && t.t.SSLMode != "verify-full" {
			return errs.E(errs.Invalid, "--env production refuses %s on remote host %s without sslmode=verify-full", t.flag, t.t.Host)
		}
	}
	if kc.provider == "local" && !o.allowLocalKEK {
		return errs.E(errs.Invalid, "--env production refuses the key-encryption key in the data folder (--kek local): "+
			"use --kek pkcs11 or --kek vault, or accept the key file with --allow-local-kek")
	}
	if o.baseURL == "" {
		return errs.E(errs.Invalid, "--env production needs --public-url, the https:// address people reach the server at (e-mailed links and passkeys are bound to it)")
	}
	for _, u := range o.ssoIssuers {
		if !strings.HasPrefix(u, "https://") {
			return errs.E(errs.Invalid, "--env production refuses --sso-issuer %s: a provider is reached over https only", u)
		}
	}
	if strings.HasPrefix(o.backupTo, "s3+http://") {
		return errs.E(errs.Invalid, "--env production refuses --backup-to over plain http: use s3+https://")
	}
	return nil
}

// auditWitnesses builds the witnesses that the flags name (AUD-02).
func auditWitnesses(specs []string, file string, inst *instance.Instance) ([]audit.Witness, error) {
	var out []audit.Witness
	if file != "" {
		out = append(out, &audit.FileWitness{Path: file, Verifier: inst.AuditVerifier})
	}
	for _, s := range specs {
		w, err := witness.Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// publicHost is the host and port the server names itself by when no
// --public-url is given: the listening port, and "localhost" for a
// loopback or unspecified address, a host name that browsers treat as
// secure, so passkeys work on a developer's machine (their relying party
// must be a host name, never an IP address).
func publicHost(a net.Addr, configured string) string {
	host, _, _ := net.SplitHostPort(configured)
	_, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); host == "" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func printDemo(env Env, logins []demo.Login) {
	if logins == nil {
		fmt.Fprintln(env.Stdout, "Demo organization (slug demo) exists already; its passwords were printed when it was made.")
		return
	}
	fmt.Fprintln(env.Stdout, "Demo organization created (slug demo). Sign in with any of these accounts;")
	fmt.Fprintln(env.Stdout, "the passwords are random and shown only now:")
	for _, l := range logins {
		fmt.Fprintf(env.Stdout, "  %-18s %-32s %s\n", l.Role, l.Email, l.Password)
	}
}

// passwordsOffTheCommandLine keeps the passwords of the databases and the
// mail server out of the process list, which every user of the machine
// reads (ASVS V13.3.1): a URL given on the command line that holds a
// password is refused in production and logged as a warning elsewhere. The
// same URL in the environment (CUSTODIA_DATABASE, …), a PostgreSQL password
// file (PGPASSFILE, or passfile= in the URL) or --smtp-password-file keep
// it out. The message names the flag, never the value.
func passwordsOffTheCommandLine(o *serveOptions, env Env, log *slog.Logger) error {
	for _, f := range []struct{ flag, value, envName, instead string }{
		{"--database", o.cfg.Database, "CUSTODIA_DATABASE", "a PostgreSQL password file (PGPASSFILE)"},
		{"--identity-database", o.cfg.IdentityDatabase, "CUSTODIA_IDENTITY_DATABASE", "a PostgreSQL password file (PGPASSFILE)"},
		{"--smtp-url", o.smtpURL, "CUSTODIA_SMTP_URL", "--smtp-password-file"},
	} {
		if f.value == "" || f.value == env.Getenv(f.envName) || !holdsPassword(f.value) {
			continue
		}
		msg := fmt.Sprintf("%s on the command line holds a password, which every user of this machine can read in the process list: give the URL in %s instead, or the password in %s", f.flag, f.envName, f.instead)
		if o.env == "production" {
			return usageError{msg}
		}
		log.Warn(msg)
	}
	return nil
}

// holdsPassword reports whether a database or mail URL carries a password.
func holdsPassword(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable (its own check refuses it later): a colon in what
		// would be its user information may be a password.
		i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@")
		return i >= 0 && j > i && strings.Contains(raw[i+3:j], ":")
	}
	_, set := u.User.Password()
	return set || u.Query().Get("password") != ""
}

// auditForwarder pushes the trail to the collector of --audit-forward, as
// RFC 5424 lines (ASVS V16.4.3).
func auditForwarder(o serveOptions, trail *audit.Log) (*audit.Forwarder, error) {
	var roots *tls.Config
	if o.forwardCA != "" {
		b, err := os.ReadFile(o.forwardCA)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "read --audit-forward-ca "+o.forwardCA)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, errs.E(errs.Invalid, "--audit-forward-ca %s holds no PEM certificate", o.forwardCA)
		}
		roots = &tls.Config{RootCAs: pool}
	}
	dial, err := audit.DialSyslog(o.forward, roots)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return &audit.Forwarder{Log: trail, Target: o.forward, Dial: dial, Format: func(ev audit.Event) ([]byte, error) {
		line, err := auditadmin.ExportLine(ev, "syslog", host)
		return bytes.TrimSuffix(line, []byte("\n")), err
	}}, nil
}

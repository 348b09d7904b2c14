// Package vault is the key-encryption-key provider backed by HashiCorp
// Vault or OpenBao Transit (CRY-04): data keys are wrapped and unwrapped by
// the Transit engine with a named key that never leaves it, each wrap bound
// to its row by associated data. It is an adapter over HTTPS, kept apart
// from package keys so that the domain packages stay free of net/http
// (internal/deps_test.go names the exception).
//
// It fails closed: an unreachable, sealed or refusing Vault makes every
// wrap, unwrap and readiness check fail with errs.Unavailable, and nothing
// is ever wrapped any other way. TLS is verified, against the system roots
// or a CA file; plain http:// is refused except to a loopback address.
package vault

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
)

// Config names the Transit key and how to reach and authenticate to Vault.
type Config struct {
	Addr      string // https://vault.example:8200
	Mount     string // the Transit engine's mount [transit]
	Key       string // the Transit key's name [custodia]
	Namespace string // Vault Enterprise / OpenBao namespace, if any
	CAFile    string // PEM file of the CA that issued Vault's certificate; system roots otherwise
	// Token authenticates directly; otherwise RoleID and SecretID log in
	// with AppRole, again whenever the token expires.
	Token    string
	RoleID   string
	SecretID string
	Timeout  time.Duration // per request [10s]
}

// KEK is a Transit key as a keys.Provider.
type KEK struct {
	cfg    Config
	base   *url.URL
	client *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time // zero: does not expire (a given token)
	latest  int       // the key's newest version, as last seen
}

var _ keys.Provider = (*KEK)(nil)
var _ keys.Rotator = (*KEK)(nil)

// Open checks the configuration, authenticates and reads the key's newest
// version. An unreachable Vault is an error: the server does not start on
// a key it cannot use.
func Open(ctx context.Context, cfg Config) (*KEK, error) {
	k, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := k.Check(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// New checks the configuration without contacting Vault.
func New(cfg Config) (*KEK, error) {
	if cfg.Mount == "" {
		cfg.Mount = "transit"
	}
	if cfg.Key == "" {
		cfg.Key = "custodia"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	u, err := url.Parse(cfg.Addr)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		return nil, errs.E(errs.Invalid, "--vault-addr: want https://HOST:PORT")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, errs.E(errs.Invalid, "--vault-addr: plain http is refused except to a loopback address; use https")
	}
	for _, s := range []string{cfg.Mount, cfg.Key} {
		if !validName(s) {
			return nil, errs.E(errs.Invalid, "--vault-mount and --vault-key take letters, digits, '-', '_', '.' and '/'")
		}
	}
	if cfg.Token == "" && (cfg.RoleID == "" || cfg.SecretID == "") {
		return nil, errs.E(errs.Invalid, "Vault needs a token (--vault-token-file or VAULT_TOKEN) or an AppRole (--vault-role-id and --vault-secret-id-file)")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "read --vault-ca-file "+cfg.CAFile)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errs.E(errs.Invalid, "--vault-ca-file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tlsCfg,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   8,
		ForceAttemptHTTP2:     true,
	}
	return &KEK{cfg: cfg, base: u, token: cfg.Token,
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validName(s string) bool {
	if s == "" || len(s) > 128 || strings.Contains(s, "..") || strings.HasPrefix(s, "/") {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./", c)) {
			return false
		}
	}
	return true
}

// unavailable is the one kind of failure to reach or use Vault. Its
// message names the address and what failed, never a token.
func (k *KEK) unavailable(err error, what string) error {
	return errs.Wrap(errs.Unavailable, err, fmt.Sprintf("Vault at %s: %s", k.base.Host, what))
}

// vaultError is Vault's answer to a refused request.
type vaultError struct {
	status int
	msgs   []string
}

func (e *vaultError) Error() string {
	return fmt.Sprintf("status %d: %s", e.status, strings.Join(e.msgs, "; "))
}

// call sends one request and decodes the "data" or "auth" of the answer
// into out.
func (k *KEK) call(ctx context.Context, method, path string, body, out any, auth bool) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "encode Vault request")
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, k.base.JoinPath("v1", path).String(), rd)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "Vault request")
	}
	req.Header.Set("Content-Type", "application/json")
	if k.cfg.Namespace != "" {
		req.Header.Set("X-Vault-Namespace", k.cfg.Namespace)
	}
	if auth {
		tok, err := k.currentToken(ctx)
		if err != nil {
			return err
		}
		req.Header.Set("X-Vault-Token", tok)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return k.unavailable(err, "not reachable")
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return k.unavailable(err, "answer cut short")
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Errors []string `json:"errors"`
		}
		json.Unmarshal(raw, &e)
		return &vaultError{status: resp.StatusCode, msgs: e.Errors}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return k.unavailable(err, "answer is not Transit's")
	}
	return nil
}

// currentToken returns the token, logging in with AppRole first when there
// is none or it is about to expire.
func (k *KEK) currentToken(ctx context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.token != "" && (k.expires.IsZero() || time.Until(k.expires) > 30*time.Second) {
		return k.token, nil
	}
	if k.cfg.RoleID == "" {
		return "", errs.E(errs.Unavailable, "the Vault token has expired")
	}
	var out struct {
		Auth struct {
			ClientToken   string `json:"client_token"`
			LeaseDuration int64  `json:"lease_duration"`
		} `json:"auth"`
	}
	err := k.call(ctx, http.MethodPost, "auth/approle/login",
		map[string]string{"role_id": k.cfg.RoleID, "secret_id": k.cfg.SecretID}, &out, false)
	if err != nil {
		return "", k.classify(err, "AppRole login refused")
	}
	if out.Auth.ClientToken == "" {
		return "", errs.E(errs.Unavailable, "Vault at %s: AppRole login gave no token", k.base.Host)
	}
	k.token = out.Auth.ClientToken
	k.expires = time.Time{}
	if out.Auth.LeaseDuration > 0 {
		k.expires = time.Now().Add(time.Duration(out.Auth.LeaseDuration) * time.Second)
	}
	return k.token, nil
}

// classify turns Vault's refusal into an error of kind Unavailable,
// dropping a token that Vault no longer accepts so the next call logs in
// again.
func (k *KEK) classify(err error, what string) error {
	if ve, ok := err.(*vaultError); ok {
		if ve.status == http.StatusForbidden && k.cfg.RoleID != "" {
			k.mu.Lock()
			k.token = ""
			k.mu.Unlock()
		}
		return k.unavailable(ve, what)
	}
	return err
}

func (k *KEK) transitPath(op string) string { return k.cfg.Mount + "/" + op + "/" + k.cfg.Key }

// ID names the current version: "vault:<mount>/<key>:v<N>".
func (k *KEK) ID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.idOf(k.latest)
}

func (k *KEK) idOf(version int) string {
	return "vault:" + k.cfg.Mount + "/" + k.cfg.Key + ":v" + strconv.Itoa(version)
}

// Name is "vault".
func (k *KEK) Name() string { return "vault" }

func (k *KEK) seen(version int) {
	k.mu.Lock()
	if version > k.latest {
		k.latest = version
	}
	k.mu.Unlock()
}

// Wrap encrypts with the newest version of the Transit key. The wrapped
// key is Transit's ciphertext, "vault:v<N>:<base64>".
func (k *KEK) Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error) {
	var out struct {
		Data struct {
			Ciphertext string `json:"ciphertext"`
			KeyVersion int    `json:"key_version"`
		} `json:"data"`
	}
	err := k.call(ctx, http.MethodPost, k.transitPath("encrypt"), map[string]string{
		"plaintext":       base64.StdEncoding.EncodeToString(plaintext),
		"associated_data": base64.StdEncoding.EncodeToString(ad),
	}, &out, true)
	if err != nil {
		return nil, k.classify(err, "encrypt refused")
	}
	v, ok := versionOf(out.Data.Ciphertext)
	if !ok {
		return nil, errs.E(errs.Unavailable, "Vault at %s: encrypt answered no Transit ciphertext", k.base.Host)
	}
	k.seen(v)
	return []byte(out.Data.Ciphertext), nil
}

// Unwrap decrypts what Wrap made with the same ad. Vault's refusal of a
// ciphertext (altered, moved, other associated data) is keys.ErrUnwrap;
// Vault out of reach is Unavailable.
func (k *KEK) Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error) {
	if !k.Owns(wrapped) {
		return nil, keys.ErrUnwrap
	}
	var out struct {
		Data struct {
			Plaintext string `json:"plaintext"`
		} `json:"data"`
	}
	err := k.call(ctx, http.MethodPost, k.transitPath("decrypt"), map[string]string{
		"ciphertext":      string(wrapped),
		"associated_data": base64.StdEncoding.EncodeToString(ad),
	}, &out, true)
	if ve, ok := err.(*vaultError); ok && ve.status == http.StatusBadRequest {
		return nil, keys.ErrUnwrap
	}
	if err != nil {
		return nil, k.classify(err, "decrypt refused")
	}
	pt, err := base64.StdEncoding.DecodeString(out.Data.Plaintext)
	if err != nil {
		return nil, keys.ErrUnwrap
	}
	return pt, nil
}

func versionOf(ciphertext string) (int, bool) {
	rest, ok := strings.CutPrefix(ciphertext, "vault:v")
	if !ok {
		return 0, false
	}
	n, _, ok := strings.Cut(rest, ":")
	v, err := strconv.Atoi(n)
	return v, ok && err == nil && v > 0
}

// Owns reports whether wrapped is a Transit ciphertext.
func (k *KEK) Owns(wrapped []byte) bool {
	_, ok := versionOf(string(wrapped))
	return ok
}

// VersionOf reads the version from the ciphertext.
func (k *KEK) VersionOf(_ context.Context, wrapped, _ []byte) (string, error) {
	v, ok := versionOf(string(wrapped))
	if !ok {
		return "", keys.ErrUnwrap
	}
	return k.idOf(v), nil
}

// Knows reports whether id names a version of this Transit key.
func (k *KEK) Knows(id string) bool {
	return strings.HasPrefix(id, "vault:"+k.cfg.Mount+"/"+k.cfg.Key+":v")
}

type keyInfo struct {
	Data struct {
		LatestVersion int    `json:"latest_version"`
		Type          string `json:"type"`
	} `json:"data"`
}

// Check reads the key: Vault answers, the token is accepted, the key
// exists. It learns the newest version on the way.
func (k *KEK) Check(ctx context.Context) error {
	var info keyInfo
	if err := k.call(ctx, http.MethodGet, k.cfg.Mount+"/keys/"+k.cfg.Key, nil, &info, true); err != nil {
		return k.classify(err, "the Transit key "+k.cfg.Key+" cannot be read")
	}
	if info.Data.LatestVersion < 1 {
		return errs.E(errs.Unavailable, "Vault at %s: the Transit key %s has no version", k.base.Host, k.cfg.Key)
	}
	k.mu.Lock()
	k.latest = info.Data.LatestVersion
	k.mu.Unlock()
	return nil
}

// RotateKEK adds a version of the Transit key; Vault keeps the older ones
// for decryption until an operator raises min_decryption_version.
func (k *KEK) RotateKEK(ctx context.Context) (string, error) {
	if err := k.call(ctx, http.MethodPost, k.cfg.Mount+"/keys/"+k.cfg.Key+"/rotate", struct{}{}, nil, true); err != nil {
		return "", k.classify(err, "rotate refused")
	}
	if err := k.Check(ctx); err != nil {
		return "", err
	}
	return k.ID(), nil
}

func (k *KEK) String() string { return "Vault Transit key " + k.cfg.Key + " at " + k.base.Host }

package vault

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
)

// TestCRY04_VaultClientFollowsNoRedirect proves ASVS V15.3.2 (no redirects
// followed on outbound calls): a Vault address that answers every call
// with a redirect (307 and 308 keep the method and body, 302 and 303 do
// not) to another server, which would answer as Transit does, sends the
// client nowhere: the other server is never asked, so neither the Vault
// token nor the AppRole secret id nor a key to wrap reaches it, and every
// call fails as Vault being unavailable.
func TestCRY04_VaultClientFollowsNoRedirect(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var elsewhere []string
	// elsewhere answers as a Transit engine would, so that a client that
	// followed a redirect would succeed.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		elsewhere = append(elsewhere, r.Method+" "+r.URL.Path+" token="+r.Header.Get("X-Vault-Token")+" body="+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/auth/approle/login"):
			io.WriteString(w, `{"auth":{"client_token":"hvs.stolen","lease_duration":3600}}`)
		case strings.Contains(r.URL.Path, "/encrypt/"):
			io.WriteString(w, `{"data":{"ciphertext":"vault:v1:AAAA","key_version":1}}`)
		case strings.Contains(r.URL.Path, "/decrypt/"):
			io.WriteString(w, `{"data":{"plaintext":"AAAA"}}`)
		default:
			io.WriteString(w, `{"data":{"latest_version":1,"type":"aes256-gcm96"}}`)
		}
	}))
	defer other.Close()
	const token, secretID = "hvs.the-real-token", "the-approle-secret-id"
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound, http.StatusSeeOther, http.StatusMovedPermanently} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+r.URL.RequestURI(), code)
		}))
		for _, cfg := range []Config{
			{Addr: redirector.URL, Token: token, Timeout: 2 * time.Second},
			{Addr: redirector.URL, RoleID: "role", SecretID: secretID, Timeout: 2 * time.Second},
		} {
			k, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.Check(ctx); errs.KindOf(err) != errs.Unavailable {
				t.Errorf("%d: Check through a redirect: %v, want Unavailable", code, err)
			}
			if w, err := k.Wrap(ctx, bytes.Repeat([]byte{7}, 32), []byte("ad")); w != nil || errs.KindOf(err) != errs.Unavailable {
				t.Errorf("%d: Wrap through a redirect: %q, %v; want nothing and Unavailable", code, w, err)
			}
			if p, err := k.Unwrap(ctx, []byte("vault:v1:AAAA"), []byte("ad")); p != nil || errs.KindOf(err) != errs.Unavailable {
				t.Errorf("%d: Unwrap through a redirect: %q, %v; want nothing and Unavailable", code, p, err)
			}
			if _, err := k.RotateKEK(ctx); errs.KindOf(err) != errs.Unavailable {
				t.Errorf("%d: RotateKEK through a redirect: %v, want Unavailable", code, err)
			}
		}
		redirector.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(elsewhere) > 0 {
		t.Errorf("the client followed redirects to another server, which got: %q", elsewhere)
	}
}

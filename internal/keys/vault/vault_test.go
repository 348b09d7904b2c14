package vault

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCRY04_UnreachableVaultFailsClosed(t *testing.T) {
	ctx := context.Background()
	const token = "hvs.not-a-real-token-but-secret"
	for _, scheme := range []string{"https", "http"} {
		cfg := Config{Addr: scheme + "://" + closedPort(t), Token: token, Timeout: 2 * time.Second}
		if _, err := Open(ctx, cfg); errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("%s: Open of an unreachable Vault: %v", scheme, err)
		}
		k, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		w, err := k.Wrap(ctx, bytes.Repeat([]byte{7}, 32), []byte("ad"))
		if w != nil || errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("%s: Wrap = %x, %v; want nothing and Unavailable", scheme, w, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: Wrap took %s, past its timeout", scheme, time.Since(start))
		}
		pt, err := k.Unwrap(ctx, []byte("vault:v1:AAAA"), []byte("ad"))
		if pt != nil || errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("%s: Unwrap = %x, %v", scheme, pt, err)
		}
		if err := k.Check(ctx); errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("%s: Check: %v", scheme, err)
		}
		if _, err := k.RotateKEK(ctx); errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("%s: RotateKEK: %v", scheme, err)
		}
		// The message names the address, never the token.
		if msg := err.Error(); strings.Contains(msg, token) || strings.Contains(errs.SafeMessage(err), token) {
			t.Fatalf("error reveals the token: %s", msg)
		}
		// What is not a Transit ciphertext is refused without asking Vault.
		if _, err := k.Unwrap(ctx, []byte("not vault"), nil); !errors.Is(err, keys.ErrUnwrap) {
			t.Fatalf("foreign format: %v", err)
		}
	}
}

func TestCRY04_VaultConfigurationIsChecked(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"plain http to a remote host", Config{Addr: "http://vault.example:8200", Token: "t"}, "plain http"},
		{"no scheme", Config{Addr: "vault.example:8200", Token: "t"}, "want https"},
		{"credentials in the URL", Config{Addr: "https://user:pw@vault.example", Token: "t"}, "want https"},
		{"no credentials", Config{Addr: "https://vault.example"}, "needs a token"},
		{"half an AppRole", Config{Addr: "https://vault.example", RoleID: "r"}, "needs a token"},
		{"path in the key name", Config{Addr: "https://vault.example", Token: "t", Key: "../sys"}, "--vault-key"},
		{"missing CA file", Config{Addr: "https://vault.example", Token: "t", CAFile: "/nonexistent/ca.pem"}, "--vault-ca-file"},
	} {
		_, err := New(c.cfg)
		if err == nil || errs.KindOf(err) != errs.Invalid || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want Invalid mentioning %q", c.name, err, c.want)
		}
	}
	if _, err := New(Config{Addr: "https://vault.example:8200", RoleID: "r", SecretID: "s"}); err != nil {
		t.Errorf("AppRole configuration refused: %v", err)
	}
}

// TestCRY04_VaultTransitRoundTrip runs against a real Vault or OpenBao
// with a Transit engine, when CUSTODIA_TEST_VAULT_ADDR and
// CUSTODIA_TEST_VAULT_TOKEN name one (and CUSTODIA_TEST_VAULT_CA_FILE its CA
// if needed). The key custodia-test is created by the test if missing.
// Nothing here can pretend to be Vault: without a server it is skipped.
func TestCRY04_VaultTransitRoundTrip(t *testing.T) {
	addr, token := os.Getenv("CUSTODIA_TEST_VAULT_ADDR"), os.Getenv("CUSTODIA_TEST_VAULT_TOKEN")
	if addr == "" || token == "" {
		t.Skip("CUSTODIA_TEST_VAULT_ADDR and CUSTODIA_TEST_VAULT_TOKEN not set; no Vault server to test against")
	}
	ctx := context.Background()
	k, err := New(Config{Addr: addr, Token: token, Key: "custodia-test", CAFile: os.Getenv("CUSTODIA_TEST_VAULT_CA_FILE")})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.call(ctx, "POST", "transit/keys/custodia-test", map[string]string{"type": "aes256-gcm96"}, nil, true); err != nil {
		t.Fatalf("create the Transit key: %v", err)
	}
	if err := k.Check(ctx); err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{9}, 32)
	w, err := k.Wrap(ctx, secret, []byte("row a"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Unwrap(ctx, w, []byte("row a")); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	if _, err := k.Unwrap(ctx, w, []byte("row b")); !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("unwrap with other associated data: %v", err)
	}
	before := k.ID()
	after, err := k.RotateKEK(ctx)
	if err != nil || after == before {
		t.Fatalf("RotateKEK = %s (was %s), %v", after, before, err)
	}
	if v, err := k.VersionOf(ctx, w, nil); err != nil || v != before {
		t.Fatalf("VersionOf = %s, %v", v, err)
	}
	if got, err := k.Unwrap(ctx, w, []byte("row a")); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("old version after rotation: %x, %v", got, err)
	}
}

package server

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/keys/vault"
)

// TestCRY04_UnreachableKMSFailsReadinessAndWrites runs the server on a
// Vault Transit key-encryption key at an address nothing listens on (a KMS
// that is down): /readyz answers 503, so a load balancer sends no traffic,
// and a write that needs the key answers 503 and stores nothing (fail
// closed), while the process stays alive.
//
// Not parallel: the port it frees for a KMS that is down could be taken
// meanwhile by a server of a test running beside it.
func TestCRY04_UnreachableKMSFailsReadinessAndWrites(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	kek, err := vault.New(vault.Config{Addr: "https://" + addr, Token: "hvs.test-token-never-logged", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts := newServerWith(t, func(d *Deps) { d.KEK = kek })
	c := ts.signIn(t, authz.OrgAdmin)
	if resp, _ := do(t, c, "GET", ts.URL+"/readyz", ""); resp.StatusCode != 503 {
		t.Fatalf("readyz with the KMS down: %d, want 503", resp.StatusCode)
	}
	if resp, _ := do(t, c, "GET", ts.URL+"/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	resp, body := do(t, c, "POST", ts.URL+"/api/v1/account/factors/totp", "{}")
	if resp.StatusCode != 503 {
		t.Fatalf("a write that needs the KMS: %d %s, want 503", resp.StatusCode, body)
	}
	var n int
	if err := ts.inst.Clinical.QueryRow(`SELECT COUNT(*) FROM account_factors`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("factors stored without a key: %d, %v", n, err)
	}
	if strings.Contains(ts.logs.String(), "hvs.test-token-never-logged") {
		t.Fatal("the Vault token reached the log")
	}
}

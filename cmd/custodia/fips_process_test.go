//go:build unix

package main

import (
	"context"
	"crypto/fips140"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
)

// readyFIPS waits for /readyz to answer 200 and returns its "fips" field.
func readyFIPS(t *testing.T, s *server) bool {
	t.Helper()
	c := newClient(s.url, s.fingerprint)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, body, err := c.do(context.Background(), "GET", "/readyz", nil)
		if err != nil || resp.StatusCode != 200 {
			continue
		}
		var r struct {
			Status string `json:"status"`
			FIPS   *bool  `json:"fips"`
		}
		if err := json.Unmarshal(body, &r); err != nil || r.FIPS == nil {
			t.Fatalf("/readyz answered %s: want a fips field", body)
		}
		return *r.FIPS
	}
	t.Fatalf("/readyz did not answer 200\n%s", s.describe())
	return false
}

// TestCRY11_ServeFIPSRequiresTheModuleAndRunsUnderIt: `serve --fips`
// refuses to start without Go's FIPS 140-3 module, and under
// GODEBUG=fips140=only it serves, says so at start and in /readyz, and the
// demo accounts it made sign in with PBKDF2 password hashes.
func TestCRY11_ServeFIPSRequiresTheModuleAndRunsUnderIt(t *testing.T) {
	if fips140.Enabled() {
		t.Skip("the refusal needs a process without the FIPS module")
	}
	data := filepath.Join(t.TempDir(), "data")
	r := refuse(t, data, 20*time.Second, "serve", "--fips", "--addr", "127.0.0.1:0", "--data", data)
	if !strings.Contains(r.stderr, "--fips needs Go's FIPS 140-3 module") || !strings.Contains(r.stderr, "GODEBUG=fips140=on") {
		t.Errorf("refusal does not say how to switch the module on: %s", r.stderr)
	}

	plain := serve(t, "", nil, "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "plain"))
	if readyFIPS(t, plain) {
		t.Error("/readyz says fips: true without the module")
	}
	if !strings.Contains(plain.stdout.String(), "FIPS mode off") {
		t.Errorf("serve does not print the mode\n%s", plain.describe())
	}

	godebug := "fips140=only"
	if g := os.Getenv("GODEBUG"); g != "" {
		godebug = g + "," + godebug
	}
	data = filepath.Join(t.TempDir(), "fips")
	s := serve(t, "", childEnv("GODEBUG="+godebug), "--fips", "--demo", "--addr", "127.0.0.1:0", "--data", data)
	if !readyFIPS(t, s) {
		t.Errorf("/readyz says fips: false under fips140=only\n%s", s.describe())
	}
	if !strings.Contains(s.stdout.String(), "FIPS mode on, enforced (fips140=only") {
		t.Errorf("serve does not print the enforced mode\n%s", s.describe())
	}
	logins := s.demoLogins()
	admin, ok := logins["org-admin"]
	if !ok {
		t.Fatalf("no demo logins printed\n%s", s.describe())
	}
	newClient(s.url, s.fingerprint).login(t, admin[0], admin[1])

	db, err := sqldb.Open(context.Background(), "sqlite:"+filepath.Join(data, "clinical.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var hash string
	if err := db.QueryRowContext(context.Background(), `SELECT password_hash FROM accounts WHERE email = $1`, admin[0]).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$pbkdf2-sha256$i=600000$") {
		t.Errorf("password hashed under fips140=only as %.20s…, want PBKDF2", hash)
	}
}

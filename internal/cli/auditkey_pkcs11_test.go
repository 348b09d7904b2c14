//go:build pkcs11

package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// tokenInstance makes an instance whose key-encryption key is in a fresh
// SoftHSM2 token from its first start, and returns the instance flags, the
// token flags and the environment holding the PIN.
func tokenInstance(t *testing.T, d sqldb.Dialect) (flags, token []string, pinEnv map[string]string) {
	t.Helper()
	flags = []string{"--data", t.TempDir()}
	if d == sqldb.Postgres {
		flags = append(flags, "--database", sqldbtest.URL(t, d), "--identity-database", sqldbtest.URL(t, d))
	} else {
		migratedSQLite(t, flags[1])
	}
	pinEnv = map[string]string{"CUSTODIA_PKCS11_PIN": softHSMToken(t)}
	token = []string{"--kek", "pkcs11", "--pkcs11-module", softHSMModule, "--pkcs11-token", "custodia"}
	init := append([]string{"init", "--org", "Lab", "--slug", "lab", "--admin-email", "first@lab.example", "--password-stdin"}, token...)
	if r := run(t, pinEnv, goodPassword+"\n", append(init, flags...)...); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	return flags, token, pinEnv
}

func sealedAuditKeyFile(t *testing.T, dataDir string) (kekID string, wrapped []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "audit", "signing.key.sealed"))
	if err != nil {
		t.Fatalf("the sealed audit key: %v", err)
	}
	var s struct {
		KEKID   string `json:"kek_id"`
		Wrapped []byte `json:"wrapped"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s.KEKID, s.Wrapped
}

func countEvents(t *testing.T, cfg instance.Config) int {
	t.Helper()
	inst, err := instance.OpenExisting(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	var n int
	if err := inst.Clinical.QueryRowContext(context.Background(), `SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The audit key of an instance whose key-encryption key is in a PKCS#11
// token is kept sealed by the token (AUD-02, CRY-04): the data folder and
// the databases, copied whole, cannot write one event of the trail; a
// command that writes the trail needs the token, one without it writes
// nothing; another token does not open the key, and a sealed key that was
// altered is refused.
func TestAUD02_AuditKeyIsSealedInTheToken(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		flags, token, pinEnv := tokenInstance(t, d)
		cfg := instance.Config{DataDir: flags[1]}
		if d == sqldb.Postgres {
			cfg.Database, cfg.IdentityDatabase = flags[3], flags[5]
		}
		dir := cfg.DataDir

		// At rest: no audit key in the clear, the sealed one names the
		// token's key, and the public verifier stays for everyone.
		if _, err := os.Stat(audit.KeyPath(dir)); !os.IsNotExist(err) {
			t.Fatalf("the audit key is in the clear at %s (%v)", audit.KeyPath(dir), err)
		}
		kekID, wrapped := sealedAuditKeyFile(t, dir)
		if kekID != "pkcs11:custodia-kek:v1" || len(wrapped) < 48 {
			t.Fatalf("sealed audit key: kek %q, %d bytes", kekID, len(wrapped))
		}
		if fi, err := os.Stat(filepath.Join(dir, "audit", "signing.key.sealed")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("sealed audit key file: %v %v", fi, err)
		}
		if _, err := audit.ReadVerifier(audit.VerifierPath(dir)); err != nil {
			t.Fatal(err)
		}

		// A command that writes the trail, without the token: refused,
		// naming the provider, and nothing written.
		before := countEvents(t, cfg)
		add := append([]string{"user", "add", "--org", "lab", "--email", "second@lab.example", "--role", "org-admin", "--password-stdin"}, flags...)
		r := run(t, nil, goodPassword+"\n", add...)
		checkOneLineError(t, r, "--kek pkcs11")
		if n := countEvents(t, cfg); n != before {
			t.Fatalf("a refused command wrote %d events", n-before)
		}
		// With the token it writes, and the trail verifies.
		if r := run(t, pinEnv, goodPassword+"\n", append(add, token...)...); r.code != 0 {
			t.Fatalf("user add with the token: %s", r.stderr)
		}
		if r := run(t, pinEnv, "", append(append([]string{"audit", "checkpoint"}, token...), flags...)...); r.code != 0 {
			t.Fatalf("audit checkpoint: %s", r.stderr)
		}
		if r := run(t, nil, "", append([]string{"audit", "verify"}, flags...)...); r.code != 0 || !strings.Contains(r.stdout, "verified") {
			t.Fatalf("audit verify: %d %s%s", r.code, r.stdout, r.stderr)
		}
		if r := run(t, pinEnv, "", append(append([]string{"keys", "status"}, token...), flags...)...); r.code != 0 ||
			!strings.Contains(r.stdout, "Audit key: sealed") || !strings.Contains(r.stdout, "pkcs11:custodia-kek:v1") {
			t.Fatalf("keys status: %d %s%s", r.code, r.stdout, r.stderr)
		}

		// A sealed key altered in the folder is refused, and nothing written.
		sealedPath := filepath.Join(dir, "audit", "signing.key.sealed")
		good, err := os.ReadFile(sealedPath)
		if err != nil {
			t.Fatal(err)
		}
		tampered := append([]byte(nil), wrapped...)
		tampered[len(tampered)-1] ^= 1
		b, _ := json.Marshal(map[string]any{"name": instance.AuditKeyName(instanceID(t, cfg)), "kek_id": kekID, "wrapped": tampered})
		if err := os.WriteFile(sealedPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
		before = countEvents(t, cfg)
		unlock := append(append([]string{"user", "unlock", "--org", "lab", "--email", "second@lab.example"}, token...), flags...)
		checkOneLineError(t, run(t, pinEnv, "", unlock...), "cannot open")
		if n := countEvents(t, cfg); n != before {
			t.Fatalf("a command with an altered audit key wrote %d events", n-before)
		}
		if err := os.WriteFile(sealedPath, good, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := run(t, pinEnv, "", unlock...); r.code != 0 {
			t.Fatalf("user unlock with the sealed key restored: %s", r.stderr)
		}

		// Whoever holds the data folder and the databases, not the token:
		// the key does not sign, so no event is written.
		inst, err := instance.OpenExisting(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		if !inst.AuditKeySealed() {
			t.Fatal("the audit key opened without the token")
		}
		ev := audit.Event{Action: "forged", Outcome: audit.Success, Security: true}
		err = inst.Clinical.InTx(ctx, func(tx *sql.Tx) error {
			_, err := audit.Append(ctx, inst.Clinical.In(tx), inst.AuditKey, ev)
			return err
		})
		if !errs.Is(err, errs.Unavailable) {
			t.Fatalf("an event appended with the sealed key: %v, want unavailable", err)
		}
		// Another token, with a key of the same label, does not open it.
		other, err := keys.OpenPKCS11(ctx, keys.PKCS11Config{Module: softHSMModule, Token: "custodia", Key: "custodia-kek", PIN: softHSMToken(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer keys.CloseProvider(other)
		if err := inst.OpenAuditKey(ctx, other); err == nil || !inst.AuditKeySealed() {
			t.Fatalf("another token opened the audit key (%v)", err)
		}
	})
}

func instanceID(t *testing.T, cfg instance.Config) string {
	t.Helper()
	inst, err := instance.OpenExisting(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	return inst.ID
}

// The sealed audit key is one more secret of the key-encryption key
// (CRY-07, CRY-08): a rotation re-wraps it under the new version before the
// old one is destroyed in the token, and a change back to the local key
// file, once every key has moved, keeps it in the clear again.
func TestCRY07_SealedAuditKeyFollowsTheKeyEncryptionKey(t *testing.T) {
	ctx := context.Background()
	flags, token, pinEnv := tokenInstance(t, sqldb.SQLite)
	cfg := instance.Config{DataDir: flags[1]}
	withToken := func(args ...string) []string { return append(append(args, token...), flags...) }
	if r := run(t, pinEnv, goodPassword+"\n", withToken("user", "add", "--org", "lab", "--email", "second@lab.example", "--role", "org-admin", "--password-stdin")...); r.code != 0 {
		t.Fatalf("user add: %s", r.stderr)
	}
	r := run(t, pinEnv, goodPassword+"\n", withToken("keys", "rotate", "--org", "lab", "--as", "first@lab.example", "--kek-version")...)
	m := requestID.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("rotate request: %s%s", r.stdout, r.stderr)
	}
	if r := run(t, pinEnv, goodPassword+"\n", withToken("keys", "approve", m[1], "--as", "second@lab.example")...); r.code != 0 {
		t.Fatalf("approve: %s", r.stderr)
	}
	if r := run(t, pinEnv, "", withToken("keys", "rotate", "--request", m[1])...); r.code != 0 ||
		!strings.Contains(r.stdout, "audit signing key") || !strings.Contains(r.stdout, "every key is wrapped by pkcs11:custodia-kek:v2") {
		t.Fatalf("rotate: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if kekID, _ := sealedAuditKeyFile(t, cfg.DataDir); kekID != "pkcs11:custodia-kek:v2" {
		t.Fatalf("after the rotation the audit key is sealed by %s", kekID)
	}
	r = run(t, pinEnv, "", withToken("keys", "status")...)
	if r.code != 0 || !strings.Contains(r.stdout, "versions that unwrap: pkcs11:custodia-kek:v2\n") {
		t.Fatalf("status after the rotation (v1 destroyed): %d %s%s", r.code, r.stdout, r.stderr)
	}
	// v1 is gone from the token, and the key still opens: events are written.
	if r := run(t, pinEnv, "", withToken("user", "unlock", "--org", "lab", "--email", "second@lab.example")...); r.code != 0 {
		t.Fatalf("user unlock after the rotation: %s", r.stderr)
	}

	// Back to a local key file, the token as the previous provider.
	inst, err := instance.OpenExisting(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	tok, err := keys.OpenPKCS11(ctx, keys.PKCS11Config{Module: softHSMModule, Token: "custodia", Key: "custodia-kek", PIN: pinEnv["CUSTODIA_PKCS11_PIN"]})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.CloseProvider(tok)
	local, err := keys.OpenLocalKEK(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.KeepAuditKey(ctx, &keys.Chain{Primary: local, Previous: []keys.Provider{tok}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "audit", "signing.key.sealed")); !os.IsNotExist(err) {
		t.Fatalf("the sealed audit key stays beside the local key file (%v)", err)
	}
	if _, err := audit.ReadKeyText(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	again, err := instance.OpenExisting(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.AuditKeySealed() || again.AuditKey.KeyHash() != again.AuditVerifier.KeyHash() {
		t.Fatal("the audit key in the clear does not open as the same key")
	}
}

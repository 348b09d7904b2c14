//go:build pkcs11

package cli

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/keys/keyadmin"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// softHSMToken initializes a fresh SoftHSM2 token "custodia" in a temporary
// folder and returns its PIN. Without SoftHSM2 the test fails under CI
// (scripts/test installs it) and is skipped elsewhere.
func softHSMToken(t *testing.T) string {
	t.Helper()
	util, err := exec.LookPath("softhsm2-util")
	if _, statErr := os.Stat(softHSMModule); err != nil || statErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("SoftHSM2 is not installed; under CI the PKCS#11 tests must run")
		}
		t.Skip("SoftHSM2 is not installed")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	const pin = "4321"
	if out, err := exec.Command(util, "--init-token", "--free", "--label", "custodia", "--pin", pin, "--so-pin", "8765").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v: %s", err, out)
	}
	return pin
}

// sealed is a value sealed before the change, with what opens it.
type sealed struct {
	identity bool // sealed under a participant key of the identity database
	ad       keys.Context
	plain    string
	blob     []byte
}

// A change of the key-encryption key's provider from the local key file to
// a PKCS#11 token, through the command line and under dual control
// (CRY-08, CRY-04): it needs a second administrator's approval, is carried
// out once and only to the provider approved, and leaves every wrapped key
// in the token, which alone then opens every value sealed before.
func TestCRY08_ProviderChangeToPKCS11FromTheCommandLine(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		flags := keysInstance(t, d)
		cfg := instance.Config{DataDir: flags[1]}
		if d == sqldb.Postgres {
			cfg.Database, cfg.IdentityDatabase = flags[3], flags[5]
		}
		pin := softHSMToken(t)
		pinFile := filepath.Join(t.TempDir(), "pin")
		if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		token := []string{"--kek", "pkcs11", "--pkcs11-module", softHSMModule, "--pkcs11-token", "custodia"}
		pinEnv := map[string]string{"CUSTODIA_PKCS11_PIN": pin}
		keysCmd := func(args ...string) []string { return append(append([]string{"keys"}, args...), flags...) }

		// Keys wrapped and values sealed with the local provider, in both
		// databases, as the server makes them.
		values := sealWithLocal(t, cfg)

		id := keyRequest(t, flags, "provider-change", "--org", "lab", "--as", "first@lab.example", "--to", "pkcs11")
		carryOut := keysCmd(append(append([]string{"provider-change", "--request", id}, token...), "--kek-previous", "local")...)
		r := run(t, pinEnv, "", carryOut...)
		checkOneLineError(t, r, "not been approved")
		r = run(t, nil, goodPassword+"\n", keysCmd("approve", id, "--as", "first@lab.example")...)
		checkOneLineError(t, r, "requester cannot approve")
		if r := run(t, nil, goodPassword+"\n", keysCmd("approve", id, "--as", "second@lab.example")...); r.code != 0 {
			t.Fatalf("approve: %s", r.stderr)
		}

		// Attacks: an approval for another provider, or for a rotation,
		// does not move the keys into the token.
		other := keyRequest(t, flags, "provider-change", "--org", "lab", "--as", "second@lab.example", "--to", "vault")
		rotation := keyRequest(t, flags, "rotate", "--org", "lab", "--as", "second@lab.example", "--data-keys")
		for _, o := range []string{other, rotation} {
			if r := run(t, nil, goodPassword+"\n", keysCmd("approve", o, "--as", "first@lab.example")...); r.code != 0 {
				t.Fatalf("approve: %s", r.stderr)
			}
		}
		r = run(t, pinEnv, "", keysCmd(append(append([]string{"provider-change", "--request", other}, token...), "--kek-previous", "local")...)...)
		checkOneLineError(t, r, "changes the provider to vault")
		r = run(t, pinEnv, "", keysCmd(append(append([]string{"provider-change", "--request", rotation}, token...), "--kek-previous", "local")...)...)
		checkOneLineError(t, r, "is for rotate, not provider-change")
		r = run(t, pinEnv, "", keysCmd(append(append([]string{"rotate", "--request", rotation}, token...), "--kek-previous", "local")...)...)
		checkOneLineError(t, r, "is for rotate, not provider-change")
		if use := kekUse(t, cfg); len(use) != 1 || !strings.HasPrefix(firstKey(use), "local:") {
			t.Fatalf("after the refused attempts the keys are wrapped by %v, want the local key only", use)
		}

		// The approved change, carried out with the PIN from the environment.
		r = run(t, pinEnv, "", carryOut...)
		if r.code != 0 || !strings.Contains(r.stdout, "rewrap clinical data keys:") ||
			!strings.Contains(r.stdout, "every key is wrapped by pkcs11:custodia-kek:v1") {
			t.Fatalf("provider-change: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = run(t, pinEnv, "", carryOut...)
		checkOneLineError(t, r, "finished already")

		// Every wrapped key is the token's now, and the token alone, with
		// no local fallback, opens every value sealed before the change.
		checkInToken(t, cfg, pin, values)

		r = run(t, nil, "", keysCmd(append(append([]string{"status"}, token...), "--pkcs11-pin-file", pinFile)...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "Key-encryption key: pkcs11, current version pkcs11:custodia-kek:v1") ||
			strings.Contains(r.stdout, "  local:") || !strings.Contains(r.stdout, "request "+id+", phase done") {
			t.Fatalf("status: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if strings.Contains(r.stdout, pin) || strings.Contains(r.stdout, goodPassword) {
			t.Fatal("status prints a secret")
		}
	})
}

// sealWithLocal makes study keys and the organization's key in the
// clinical database and participant keys in the identity database, wrapped
// by the local key file, and seals a value under each.
func sealWithLocal(t *testing.T, cfg instance.Config) []sealed {
	t.Helper()
	ctx := context.Background()
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	org, err := orgs.OrganizationBySlug(ctx, inst.Clinical, "lab")
	if err != nil {
		t.Fatal(err)
	}
	local, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	clinical, identity := keyrings(inst, local)
	var out []sealed
	seal := func(ring *keys.Keyring, s keys.Scope, v sealed) {
		err := ring.DB.InTx(ctx, func(tx *sql.Tx) error {
			dk, err := ring.Current(ctx, tx, s)
			if err != nil {
				return err
			}
			v.blob, err = keys.Seal(dk, []byte(v.plain), v.ad)
			return err
		})
		if err != nil {
			t.Fatalf("seal under %v: %v", s, err)
		}
		out = append(out, v)
	}
	seal(clinical, keys.OrgScope(org.ID), sealed{ad: keys.Context{OrgID: org.ID, RecordID: "r0", Field: "note"}, plain: "org value"})
	for i := range 3 {
		study := fmt.Sprintf("study-%d", i)
		seal(clinical, keys.StudyScope(org.ID, study), sealed{ad: keys.Context{OrgID: org.ID, StudyID: study, RecordID: "r1", Field: "weight"}, plain: fmt.Sprintf("%d kg", 60+i)})
		pseudonym := fmt.Sprintf("P-%04d", i)
		seal(identity, keys.ParticipantScope(org.ID, pseudonym), sealed{identity: true, ad: keys.Context{OrgID: org.ID, RecordID: pseudonym, Field: "name"}, plain: fmt.Sprintf("Participant %d", i)})
	}
	if use := kekUse(t, cfg); len(use) != 1 || use[local.ID()] < len(out) {
		t.Fatalf("before the change the keys are wrapped by %v, want %d or more by %s", use, len(out), local.ID())
	}
	return out
}

func keyrings(inst *instance.Instance, kek keys.KEK) (clinical, identity *keys.Keyring) {
	return &keys.Keyring{DB: inst.Clinical, KEK: kek},
		&keys.Keyring{DB: inst.Identity, KEK: kek, EpochDir: filepath.Join(inst.DataDir, keys.LocalEpochsDir)}
}

// kekUse counts the wrapped secrets of every store per key-encryption key
// version, as keys status does.
func kekUse(t *testing.T, cfg instance.Config) map[string]int {
	t.Helper()
	inst, err := instance.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	use, err := keyadmin.KEKUse(context.Background(), keyStores(inst))
	if err != nil {
		t.Fatal(err)
	}
	return use
}

func firstKey(m map[string]int) string {
	for k := range m {
		return k
	}
	return ""
}

// checkInToken checks that the token wrapped every stored data key, that
// it alone opens every value in values, and that the local key file opens
// none of them any more.
func checkInToken(t *testing.T, cfg instance.Config, pin string, values []sealed) {
	t.Helper()
	ctx := context.Background()
	inst, err := instance.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	p, err := keys.OpenPKCS11(ctx, keys.PKCS11Config{Module: softHSMModule, Token: "custodia", Key: "custodia-kek", PIN: pin})
	if err != nil {
		t.Fatal(err)
	}
	token := p.(*keys.PKCS11KEK)
	defer token.Close()
	for _, db := range []*sqldb.DB{inst.Clinical, inst.Identity} {
		rows, err := db.QueryContext(ctx, `SELECT kek_id, wrapped FROM data_keys WHERE wrapped IS NOT NULL`)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var kekID string
			var wrapped []byte
			if err := rows.Scan(&kekID, &wrapped); err != nil {
				t.Fatal(err)
			}
			n++
			v, err := token.VersionOf(ctx, wrapped, nil)
			if !token.Owns(wrapped) || err != nil || v != token.ID() || kekID != token.ID() {
				t.Errorf("a data key labelled %s is not wrapped by %s (version %q, %v)", kekID, token.ID(), v, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if n == 0 {
			t.Error("no wrapped data keys in a database")
		}
	}
	if use, err := keyadmin.KEKUse(ctx, keyStores(inst)); err != nil || len(use) != 1 || use[token.ID()] == 0 {
		t.Errorf("wrapped secrets per key-encryption key: %v, %v; want all by %s", use, err, token.ID())
	}
	local, err := keys.OpenLocalKEK(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, kek := range []keys.KEK{token, local} {
		clinical, identity := keyrings(inst, kek)
		for _, v := range values {
			ring := clinical
			if v.identity {
				ring = identity
			}
			got, err := keys.Open(ctx, ring, v.blob, v.ad)
			switch {
			case kek == keys.KEK(token) && (err != nil || string(got) != v.plain):
				t.Errorf("the token alone opens %q as %q, %v", v.plain, got, err)
			case kek == keys.KEK(local) && err == nil:
				t.Errorf("the local key file still opens %q after the change", v.plain)
			}
		}
	}
}

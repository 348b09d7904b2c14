//go:build pkcs11

package keys

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// softHSM initializes a fresh SoftHSM2 token in a temporary folder and
// returns its configuration. Without SoftHSM2 the test fails under CI
// (scripts/test installs it) and is skipped elsewhere.
func softHSM(t *testing.T) PKCS11Config {
	t.Helper()
	util, err := exec.LookPath("softhsm2-util")
	if err != nil || func() bool { _, err := os.Stat(softHSMModule); return err != nil }() {
		if os.Getenv("CI") == "true" {
			t.Fatal("SoftHSM2 is not installed; under CI the PKCS#11 tests must run")
		}
		t.Skip("SoftHSM2 is not installed")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", "custodia-test", "--pin", "1234", "--so-pin", "5678").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util: %v: %s", err, out)
	}
	return PKCS11Config{Module: softHSMModule, Token: "custodia-test", Key: "custodia-kek", PIN: "1234"}
}

func openToken(t *testing.T, cfg PKCS11Config) *PKCS11KEK {
	t.Helper()
	p, err := OpenPKCS11(context.Background(), cfg)
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	k := p.(*PKCS11KEK)
	t.Cleanup(func() { k.Close() })
	return k
}

func TestCRY04_PKCS11WrapsInTheTokenBoundToItsAssociatedData(t *testing.T) {
	ctx := context.Background()
	cfg := softHSM(t)
	k := openToken(t, cfg)
	if k.ID() != "pkcs11:custodia-kek:v1" {
		t.Fatalf("ID = %s", k.ID())
	}
	secret := bytes.Repeat([]byte{0x42}, 32)
	w, err := k.Wrap(ctx, secret, []byte("row a"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, secret[:8]) || !k.Owns(w) {
		t.Fatalf("wrapped key %x", w)
	}
	got, err := k.Unwrap(ctx, w, []byte("row a"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	// Tampering: other associated data, any byte changed, truncation.
	if _, err := k.Unwrap(ctx, w, []byte("row b")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap with other associated data: %v", err)
	}
	for i := 5; i < len(w); i++ {
		c := bytes.Clone(w)
		c[i] ^= 0x01
		if _, err := k.Unwrap(ctx, c, []byte("row a")); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("unwrap with byte %d altered: %v", i, err)
		}
	}
	if _, err := k.Unwrap(ctx, w[:len(w)-1], []byte("row a")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap of a truncated key: %v", err)
	}
	// The key is in the token and cannot be read out of it.
	k.mu.Lock()
	attrs, err := k.ctx.GetAttributeValue(k.session, k.versions[1], []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil)})
	_, valueErr := k.ctx.GetAttributeValue(k.session, k.versions[1], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	k.mu.Unlock()
	if err != nil || len(attrs) != 2 || !bytes.Equal(attrs[0].Value, []byte{1}) || !bytes.Equal(attrs[1].Value, []byte{0}) {
		t.Fatalf("key attributes %v, %v: want sensitive and not extractable", attrs, err)
	}
	if valueErr == nil {
		t.Fatal("the key's value can be read out of the token")
	}
	// A wrong PIN is refused with a clear error.
	bad := cfg
	bad.PIN = "0000"
	k.Close()
	if _, err := OpenPKCS11(ctx, bad); err == nil || errs.KindOf(err) != errs.Invalid {
		t.Fatalf("wrong PIN: %v", err)
	}
}

func TestCRY07_PKCS11RotationKeepsOldVersionsUntilRetired(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		cfg := softHSM(t)
		k := openToken(t, cfg)
		ring := newKeyring(t, d)
		ring.KEK = k
		scope := StudyScope("org1", "s1")
		ad := Context{OrgID: "org1", StudyID: "s1", RecordID: "r1", Field: "f"}
		var sealed []byte
		if err := ring.DB.InTx(ctx, func(tx *sql.Tx) error {
			dk, err := ring.Current(ctx, tx, scope)
			if err != nil {
				return err
			}
			sealed, err = Seal(dk, []byte("value"), ad)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		v2, err := k.RotateKEK(ctx)
		if err != nil || v2 != "pkcs11:custodia-kek:v2" {
			t.Fatalf("RotateKEK = %s, %v", v2, err)
		}
		// A second process sees the new version through the token.
		other := openToken(t, cfg)
		if other.ID() != v2 {
			t.Fatalf("other process: %s", other.ID())
		}
		store := &DataKeyStore{Label: "data keys", DB: ring.DB}
		b, err := store.Rewrap(ctx, k, "", 10)
		if err != nil || b.Rewrapped != 1 || !b.Done {
			t.Fatalf("Rewrap = %+v, %v", b, err)
		}
		if err := k.RetireKEK(ctx, "pkcs11:custodia-kek:v1"); err != nil {
			t.Fatal(err)
		}
		if vs := other.Versions(); len(other.Versions()) != 2 {
			t.Fatalf("versions before refresh: %v", vs)
		}
		if err := other.Check(ctx); err != nil || len(other.Versions()) != 1 {
			t.Fatalf("versions after retiring: %v, %v", other.Versions(), err)
		}
		if err := k.RetireKEK(ctx, v2); err == nil {
			t.Fatal("the current version was retired")
		}
		fresh := &Keyring{DB: ring.DB, KEK: other}
		if got, err := Open(ctx, fresh, sealed, ad); err != nil || string(got) != "value" {
			t.Fatalf("after rotation: %q, %v", got, err)
		}
	})
}

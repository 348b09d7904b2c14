package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// flagsConfig is the instance configuration that keysInstance's flags name.
func flagsConfig(d sqldb.Dialect, flags []string) instance.Config {
	cfg := instance.Config{DataDir: flags[1]}
	if d == sqldb.Postgres {
		cfg.Database, cfg.IdentityDatabase = flags[3], flags[5]
	}
	return cfg
}

// TestCRY04_LostKeyFileIsRefusedNotReplaced: where the databases hold keys
// wrapped by the local key-encryption key, a missing key file, or one that
// does not hold their version, stops serve, init and the key commands,
// naming the version and the file, and no new key is made.
func TestCRY04_LostKeyFileIsRefusedNotReplaced(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		flags := keysInstance(t, d)
		keyFile := filepath.Join(flags[1], keys.LocalKEKFile)
		kek, err := keys.LoadLocalKEK(flags[1])
		if err != nil {
			t.Fatalf("init made no key-encryption key: %v", err)
		}
		version := kek.ID()
		inst, err := instance.OpenExisting(ctx, flagsConfig(d, flags))
		if err != nil {
			t.Fatal(err)
		}
		org, err := orgs.OrganizationBySlug(ctx, inst.Clinical, "lab")
		if err != nil {
			t.Fatal(err)
		}
		ring := &keys.Keyring{DB: inst.Clinical, KEK: kek}
		if _, err := ring.Current(ctx, inst.Clinical, keys.OrgScope(org.ID)); err != nil {
			t.Fatal(err)
		}
		inst.Close()
		saved, err := os.ReadFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}

		serveArgs := append([]string{"serve", "--addr", "127.0.0.1:0"}, flags...)
		initArgs := append([]string{"init", "--org", "Other", "--admin-email", "x@other.example"}, flags...)
		refused := func(what string) {
			t.Helper()
			for _, args := range [][]string{serveArgs, initArgs} {
				r := run(t, nil, "", args...)
				checkOneLineError(t, r, version)
				checkOneLineError(t, r, keyFile)
				checkOneLineError(t, r, what)
			}
			r := run(t, nil, "", append([]string{"keys", "status"}, flags...)...)
			if r.code == 0 || !strings.Contains(r.stdout, version) || !strings.Contains(r.stdout, "MISSING") {
				t.Errorf("keys status with the key file %s: exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
			}
		}

		if err := os.Remove(keyFile); err != nil {
			t.Fatal(err)
		}
		refused("is missing")
		if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a new key file was made in place of the lost one (%v)", err)
		}

		// Another instance's key file does not hold the version either.
		other, err := keys.OpenLocalKEK(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		otherText, err := os.ReadFile(other.Path())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, otherText, 0o600); err != nil {
			t.Fatal(err)
		}
		refused("does not")

		// Restored, the key commands work again.
		if err := os.WriteFile(keyFile, saved, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := run(t, nil, "", append([]string{"keys", "status"}, flags...)...); r.code != 0 || strings.Contains(r.stdout, "MISSING") {
			t.Errorf("keys status after the key file was restored: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}

// TestCRY04_KeyOfAnotherProviderIsRefused: a server started with --kek
// local on an instance whose keys another provider wrapped makes no key
// file of its own and names the provider to give.
func TestCRY04_KeyOfAnotherProviderIsRefused(t *testing.T) {
	ctx := context.Background()
	flags := keysInstance(t, sqldb.SQLite)
	keyFile := filepath.Join(flags[1], keys.LocalKEKFile)
	inst, err := instance.OpenExisting(ctx, flagsConfig(sqldb.SQLite, flags))
	if err != nil {
		t.Fatal(err)
	}
	org, err := orgs.OrganizationBySlug(ctx, inst.Clinical, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Clinical.ExecContext(ctx, `INSERT INTO data_keys (id, version, org_id, scope_kind, scope_id, kek_id, wrapped, created_at)
		VALUES ('00112233445566778899aabbccddeeff', 1, $1, 'org', '', 'vault:custodia:3', X'01', 1)`, org.ID); err != nil {
		t.Fatal(err)
	}
	inst.Close()
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "", append([]string{"serve", "--addr", "127.0.0.1:0"}, flags...)...)
	checkOneLineError(t, r, "vault:custodia:3")
	checkOneLineError(t, r, "--kek vault")
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key file was made for an instance of another provider (%v)", err)
	}
}

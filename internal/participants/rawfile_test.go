package participants_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// seeded are distinctive identities: none of their values occurs by
// chance in a database file.
func seeded(i int) participants.Identity {
	return participants.Identity{
		participants.Name:       fmt.Sprintf("Ottilie Zwanenburg-Quast %d", i),
		participants.BirthDate:  fmt.Sprintf("1943-0%d-2%d", 1+i%9, i%10),
		participants.Email:      fmt.Sprintf("ottilie.zwanenburg%d@quast.example", i),
		participants.Phone:      fmt.Sprintf("+44 7700 90%04d", 3817+i),
		participants.NationalID: fmt.Sprintf("ZQ-%d-58-301-779", 40+i),
	}
}

// TestCRY03_NoClearTextInAnyDatabaseFile enrols participants with
// distinctive values through the gate, re-identifies them (with every
// field granted), erases one, and then searches the raw database files
// (SQLite: both databases with their WAL and shared memory; PostgreSQL: a
// pg_dump of both) for every clear-text value: none may be found.
func TestCRY03_NoClearTextInAnyDatabaseFile(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		cfg := instance.Config{DataDir: t.TempDir()}
		if d == sqldb.Postgres {
			cfg.Database, cfg.IdentityDatabase = sqldbtest.URL(t, d), sqldbtest.URL(t, d)
		}
		inst, err := instance.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		f := setupOn(t, inst.Clinical, inst.Identity)
		if _, err := f.svc.Grant(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, participants.GrantRequest{AccountID: f.investigator.AccountID, Reason: "raw file test"}); err != nil {
			t.Fatal(err)
		}
		var all []string
		var first participants.Participant
		for i := range 5 {
			id := seeded(i)
			all = append(all, values(id)...)
			p := f.enrol(t, f.investigator, f.north, id)
			rv, err := f.reveal(f.confirmed(f.investigator), p)
			if err != nil || len(rv.Shown) != 5 {
				t.Fatalf("reveal: %+v, %v", rv, err)
			}
			if i == 0 {
				first = p
			}
		}
		if _, err := f.svc.Erase(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, f.north.ID, first.Pseudonym); err != nil {
			t.Fatal(err)
		}

		var dumps map[string][]byte
		switch d {
		case sqldb.SQLite:
			dumps = map[string][]byte{}
			for _, name := range []string{"clinical.db", "identity.db"} {
				for _, suffix := range []string{"", "-wal", "-shm"} {
					b, err := os.ReadFile(filepath.Join(cfg.DataDir, name+suffix))
					if err != nil && !os.IsNotExist(err) {
						t.Fatal(err)
					}
					dumps[name+suffix] = b
				}
			}
			if len(dumps["identity.db"])+len(dumps["identity.db-wal"]) == 0 {
				t.Fatal("the identity database files are empty")
			}
		case sqldb.Postgres:
			dumps = map[string][]byte{"clinical": pgDump(t, cfg.Database), "identity": pgDump(t, cfg.IdentityDatabase)}
		}
		// The check can fail: the dumps hold the data, sealed.
		if !bytes.Contains(dumps["identity.db"], []byte(first.Pseudonym)) && !bytes.Contains(dumps["identity.db-wal"], []byte(first.Pseudonym)) &&
			!bytes.Contains(dumps["identity"], []byte(first.Pseudonym)) {
			t.Fatal("the identity database dump does not even hold the pseudonyms; the search would prove nothing")
		}
		for name, b := range dumps {
			for _, v := range all {
				// PostgreSQL dumps bytea in hex: a value stored unsealed
				// would show as its hex form.
				for _, form := range []string{v, strings.ToLower(v), strings.ToUpper(v), hex.EncodeToString([]byte(v))} {
					if bytes.Contains(b, []byte(form)) {
						t.Errorf("%s holds the clear-text value %q", name, form)
					}
				}
			}
		}
	})
}

// pgDump dumps a PostgreSQL database with pg_dump from
// CUSTODIA_TEST_PG_BINDIR or PATH.
func pgDump(t *testing.T, dbURL string) []byte {
	t.Helper()
	bin := "pg_dump"
	if dir := os.Getenv("CUSTODIA_TEST_PG_BINDIR"); dir != "" {
		bin = filepath.Join(dir, "pg_dump")
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pg_dump not found: %v", err)
		}
		t.Skipf("pg_dump not found: %v", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "--no-owner", "--data-only", "--dbname", u.String()).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return out
}

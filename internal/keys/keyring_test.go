package keys

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// newKeyring returns a keyring on a fresh clinical database of dialect d
// that holds organizations org1 and org2.
func newKeyring(t testing.TB, d sqldb.Dialect) *Keyring {
	t.Helper()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	for _, org := range []string{"org1", "org2"} {
		if _, err := db.ExecContext(context.Background(),
			`INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $1, $1, $2)`, org, sqldb.Now()); err != nil {
			t.Fatal(err)
		}
	}
	kek, err := OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Keyring{DB: db, KEK: kek}
}

// otherNode is a second keyring on the same database and key-encryption
// key, with a cache of its own.
func otherNode(k *Keyring) *Keyring { return &Keyring{DB: k.DB, KEK: k.KEK} }

func current(t testing.TB, k *Keyring, s Scope) DataKey {
	t.Helper()
	var dk DataKey
	err := k.DB.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		dk, err = k.Current(context.Background(), tx, s)
		return err
	})
	if err != nil {
		t.Fatalf("Current(%v): %v", s, err)
	}
	return dk
}

func rotate(t testing.TB, k *Keyring, s Scope) DataKey {
	t.Helper()
	var dk DataKey
	err := k.DB.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		dk, err = k.Rotate(context.Background(), tx, s)
		return err
	})
	if err != nil {
		t.Fatalf("Rotate(%v): %v", s, err)
	}
	return dk
}

func destroy(t testing.TB, k *Keyring, s Scope) {
	t.Helper()
	if err := k.DB.InTx(context.Background(), func(tx *sql.Tx) error {
		return k.Destroy(context.Background(), tx, s)
	}); err != nil {
		t.Fatalf("Destroy(%v): %v", s, err)
	}
}

func mustOpen(t testing.TB, ring Ring, sealed []byte, ad Context, want string) {
	t.Helper()
	got, err := Open(context.Background(), ring, sealed, ad)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if string(got) != want {
		t.Fatalf("Open = %q, want %q", got, want)
	}
}

func count(t testing.TB, db *sqldb.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestCRY04_KeyringKeepsOneKeyPerScope(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		scopes := []Scope{
			OrgScope("org1"), StudyScope("org1", "s1"), StudyScope("org1", "s2"),
			ParticipantScope("org1", "p1"), OrgScope("org2"), StudyScope("org2", "s1"),
		}
		seen := map[KeyID]Scope{}
		for _, s := range scopes {
			dk := current(t, k, s)
			if dk.Version != 1 || dk.Scope != s {
				t.Fatalf("Current(%v) = version %d of %v", s, dk.Version, dk.Scope)
			}
			if prev, dup := seen[dk.ID]; dup {
				t.Fatalf("%v and %v share key id %v", prev, s, dk.ID)
			}
			seen[dk.ID] = s
			if again := current(t, k, s); again.ID != dk.ID || again.Version != 1 {
				t.Fatalf("second Current(%v) = %v/%d, want %v/1", s, again.ID, again.Version, dk.ID)
			}
		}
		if n := count(t, k.DB, `SELECT count(*) FROM data_keys`); n != len(scopes) {
			t.Fatalf("%d key rows for %d scopes", n, len(scopes))
		}

		// A key created and used within one transaction opens there.
		ad := Context{OrgID: "org1", StudyID: "s3", RecordID: "r1", Field: "weight"}
		err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
			dk, err := k.Current(ctx, tx, StudyScope("org1", "s3"))
			if err != nil {
				return err
			}
			s, err := Seal(dk, []byte("71 kg"), ad)
			if err != nil {
				return err
			}
			k.keys().evict(dk.ID)
			got, err := Open(ctx, k.In(tx), s, ad)
			if err != nil || string(got) != "71 kg" {
				return fmt.Errorf("open in the creating transaction: %q, %v", got, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		// A key created in a transaction that rolled back does not exist.
		var lost DataKey
		sentinel := errors.New("roll back")
		err = k.DB.InTx(ctx, func(tx *sql.Tx) error {
			lost, err = k.Current(ctx, tx, StudyScope("org1", "s4"))
			if err != nil {
				return err
			}
			return sentinel
		})
		if !errors.Is(err, sentinel) {
			t.Fatal(err)
		}
		if _, err := k.ByID(ctx, lost.ID, 1); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("ByID of a rolled-back key: %v", err)
		}
		if again := current(t, k, StudyScope("org1", "s4")); again.ID == lost.ID {
			t.Fatal("a rolled-back key came back")
		}

		// Scopes are validated.
		for _, bad := range []Scope{{}, {OrgID: "org1"}, {OrgID: "org1", Kind: KindStudy}, {OrgID: "org1", Kind: KindOrg, ID: "x"}, {Kind: KindOrg}} {
			if _, err := k.Current(ctx, k.DB, bad); err == nil {
				t.Errorf("Current(%+v) accepted", bad)
			}
		}
		// A key of an unknown organization is refused by the foreign key.
		if _, err := k.Current(ctx, k.DB, OrgScope("nobody")); err == nil {
			t.Error("key created for an unknown organization")
		}
	})
}

// keyBytes unwraps every live row with the keyring's key-encryption key and
// returns the raw keys by "id/version".
func keyBytes(t *testing.T, k *Keyring) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	rows, err := k.DB.QueryContext(ctx, selectRow+`WHERE wrapped IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			t.Fatal(err)
		}
		id, version := r.id.String(), r.version
		// A participant key needs its erasure epoch as well as the
		// key-encryption key.
		raw, err := k.unwrapRaw(ctx, r)
		if err != nil {
			t.Fatalf("unwrap %s/%d: %v", id, version, err)
		}
		out[fmt.Sprintf("%s/%d", id, version)] = raw
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dumpTable returns every column of every data_keys row as bytes.
func dumpTable(t *testing.T, db *sqldb.DB) []byte {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT * FROM data_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var dump []byte
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				dump = append(dump, v...)
			case string:
				dump = append(dump, v...)
			default:
				dump = fmt.Append(dump, v)
			}
			dump = append(dump, 0)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return dump
}

func TestCRY04_DataKeysAreStoredWrappedOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		ad := Context{OrgID: "org1", StudyID: "s1", RecordID: "r1", Field: "weight"}
		sealed := map[Scope][]byte{}
		for _, s := range []Scope{OrgScope("org1"), StudyScope("org1", "s1"), ParticipantScope("org1", "p1")} {
			sealed[s] = mustSeal(t, current(t, k, s), []byte("71 kg"), ad)
		}
		rotate(t, k, StudyScope("org1", "s1"))
		if _, err := k.BlindIndex(ctx, k.DB, StudyScope("org1", "s1"), "national_id", []byte("123")); err != nil {
			t.Fatal(err)
		}

		raw := keyBytes(t, k)
		if len(raw) != 5 { // org, study v1 and v2, participant, index
			t.Fatalf("%d live keys, want 5", len(raw))
		}
		// The unwrapped bytes are the real keys: each opens its values.
		for s, v := range sealed {
			id, version, _ := KeyIDOf(v)
			key := raw[fmt.Sprintf("%s/%d", id, version)]
			a, err := newXChaCha(bytes.Clone(key))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := openAEAD(a, v[offNonce:HeaderSize], v[HeaderSize:], associatedData(v[:HeaderSize], ad)); err != nil {
				t.Fatalf("unwrapped key of %v does not open its value", s)
			}
		}

		var files [][]byte
		files = append(files, dumpTable(t, k.DB))
		if d == sqldb.SQLite {
			for _, suffix := range []string{"", "-wal"} {
				b, err := os.ReadFile(k.DB.Location + suffix)
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				files = append(files, b)
			}
		}
		for name, key := range raw {
			forms := [][]byte{key, []byte(hex.EncodeToString(key)), []byte(base64.StdEncoding.EncodeToString(key)), []byte(base64.RawURLEncoding.EncodeToString(key))}
			for _, f := range files {
				for _, form := range forms {
					if bytes.Contains(f, form) || bytes.Contains(f, form[:16]) {
						t.Fatalf("key %s is stored unwrapped", name)
					}
				}
			}
		}

		// Another key-encryption key cannot unwrap the data keys, whether
		// it says who it is or pretends to be the right one.
		otherKEK, err := OpenLocalKEK(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, kek := range []KEK{otherKEK, impostorKEK{otherKEK, k.KEK.ID()}} {
			stranger := &Keyring{DB: k.DB, KEK: kek}
			for s, v := range sealed {
				pt, err := Open(ctx, stranger, v, ad)
				if err == nil || errs.KindOf(err) != errs.Internal {
					t.Fatalf("%v opened with another key-encryption key (%T): %q, %v", s, kek, pt, err)
				}
			}
			if _, err := stranger.Current(ctx, k.DB, OrgScope("org1")); err == nil {
				t.Fatalf("Current unwrapped with another key-encryption key (%T)", kek)
			}
		}

		// A wrapped key copied onto another row does not unwrap there.
		org := current(t, k, OrgScope("org1"))
		part := current(t, k, ParticipantScope("org1", "p1"))
		if _, err := k.DB.ExecContext(ctx, `UPDATE data_keys SET wrapped = (SELECT wrapped FROM data_keys WHERE id = $1) WHERE id = $2`,
			part.ID.String(), org.ID.String()); err != nil {
			t.Fatal(err)
		}
		if _, err := otherNode(k).ByID(ctx, org.ID, 1); err == nil {
			t.Fatal("a wrapped key moved to another row unwrapped")
		}
		if _, err := k.ByID(ctx, org.ID, 1); err == nil {
			t.Fatal("a cached key was served for a row whose wrapped key changed")
		}
	})
}

// impostorKEK is another key that claims the identity of the right one.
type impostorKEK struct {
	*LocalKEK
	id string
}

func (k impostorKEK) ID() string { return k.id }

func TestCRY07_RotationKeepsOldValuesReadable(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		scope := StudyScope("org1", "s1")
		ad := Context{OrgID: "org1", StudyID: "s1", RecordID: "r1", Field: "weight"}

		v1 := current(t, k, scope)
		old := mustSeal(t, v1, []byte("70 kg"), ad)
		var wrappedV1 []byte
		if err := k.DB.QueryRowContext(ctx, `SELECT wrapped FROM data_keys WHERE id = $1 AND version = 1`, v1.ID.String()).Scan(&wrappedV1); err != nil {
			t.Fatal(err)
		}

		v2 := rotate(t, k, scope)
		if v2.ID != v1.ID || v2.Version != 2 {
			t.Fatalf("Rotate = %v/%d, want %v/2", v2.ID, v2.Version, v1.ID)
		}
		if cur := current(t, k, scope); cur.Version != 2 {
			t.Fatalf("Current after rotation is version %d", cur.Version)
		}
		if cur := current(t, otherNode(k), scope); cur.Version != 2 {
			t.Fatalf("another node's Current after rotation is version %d", cur.Version)
		}
		fresh := mustSeal(t, current(t, k, scope), []byte("71 kg"), ad)
		if _, v, _ := KeyIDOf(fresh); v != 2 {
			t.Fatalf("new value sealed under version %d", v)
		}
		v3 := rotate(t, otherNode(k), scope)
		newest := mustSeal(t, v3, []byte("72 kg"), ad)

		for _, ring := range []Ring{k, otherNode(k), &Keyring{DB: k.DB, KEK: k.KEK, CacheSize: 1}} {
			mustOpen(t, ring, old, ad, "70 kg")
			mustOpen(t, ring, fresh, ad, "71 kg")
			mustOpen(t, ring, newest, ad, "72 kg")
		}

		// Versions are immutable: rotation left version 1 as it was.
		var after []byte
		if err := k.DB.QueryRowContext(ctx, `SELECT wrapped FROM data_keys WHERE id = $1 AND version = 1`, v1.ID.String()).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(after, wrappedV1) {
			t.Fatal("rotation changed version 1")
		}
		if n := count(t, k.DB, `SELECT count(*) FROM data_keys WHERE id = $1`, v1.ID.String()); n != 3 {
			t.Fatalf("%d versions, want 3", n)
		}
		// Rotating an unused scope creates its first version.
		if dk := rotate(t, k, StudyScope("org1", "s2")); dk.Version != 1 {
			t.Fatalf("Rotate of a new scope = version %d", dk.Version)
		}
		if _, err := k.Rotate(ctx, k.DB, indexScope("org1")); errs.KindOf(err) != errs.Invalid {
			t.Fatalf("Rotate of the blind-index key: %v", err)
		}
	})
}

func TestLIFE03_DestroyedKeyMakesValuesUnreadable(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		node2 := otherNode(k)
		gone, kept := ParticipantScope("org1", "p1"), ParticipantScope("org1", "p2")
		adGone := Context{OrgID: "org1", StudyID: "s1", RecordID: "p1", Field: "name"}
		adKept := Context{OrgID: "org1", StudyID: "s1", RecordID: "p2", Field: "name"}

		v1 := mustSeal(t, current(t, k, gone), []byte("Ada Lovelace"), adGone)
		v2 := mustSeal(t, rotate(t, k, gone), []byte("Augusta Ada King"), adGone)
		other := mustSeal(t, current(t, k, kept), []byte("Mary Somerville"), adKept)
		for _, r := range []Ring{k, node2} { // both nodes cache the keys
			mustOpen(t, r, v1, adGone, "Ada Lovelace")
			mustOpen(t, r, v2, adGone, "Augusta Ada King")
		}

		// A destruction that rolls back destroys nothing.
		sentinel := errors.New("roll back")
		err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
			if err := k.Destroy(ctx, tx, gone); err != nil {
				return err
			}
			return sentinel
		})
		if !errors.Is(err, sentinel) {
			t.Fatal(err)
		}
		mustOpen(t, k, v1, adGone, "Ada Lovelace")

		destroy(t, k, gone)
		id, _, _ := KeyIDOf(v1)
		for key := range k.keys().entries {
			if key.id == id {
				t.Fatalf("destroyed key %v/%d still cached", key.id, key.version)
			}
		}
		for name, r := range map[string]Ring{"this node": k, "other node": node2, "fresh node": otherNode(k)} {
			for _, v := range [][]byte{v1, v2} {
				pt, err := Open(ctx, r, v, adGone)
				if !errors.Is(err, ErrKeyDestroyed) || errs.KindOf(err) != errs.NotFound || pt != nil {
					t.Fatalf("%s: Open of a value under a destroyed key = %q, %v", name, pt, err)
				}
			}
			mustOpen(t, r, other, adKept, "Mary Somerville")
		}
		if n := count(t, k.DB, `SELECT count(*) FROM data_keys WHERE scope_id = 'p1' AND (wrapped IS NOT NULL OR destroyed_at IS NULL)`); n != 0 {
			t.Fatalf("%d versions of the destroyed key keep key material", n)
		}
		if n := count(t, k.DB, `SELECT count(*) FROM data_keys WHERE scope_id = 'p1'`); n != 2 {
			t.Fatalf("%d rows for the destroyed scope, want its 2 versions kept as tombstones", n)
		}

		// The scope never gets a key again, and destroying twice is fine.
		if _, err := k.Current(ctx, k.DB, gone); !errors.Is(err, ErrKeyDestroyed) {
			t.Fatalf("Current of a destroyed scope: %v", err)
		}
		if _, err := k.Rotate(ctx, k.DB, gone); !errors.Is(err, ErrKeyDestroyed) {
			t.Fatalf("Rotate of a destroyed scope: %v", err)
		}
		destroy(t, k, gone)

		// A scope destroyed before it ever had a key stays keyless.
		never := ParticipantScope("org1", "p3")
		destroy(t, k, never)
		if _, err := k.Current(ctx, k.DB, never); !errors.Is(err, ErrKeyDestroyed) {
			t.Fatalf("Current of a scope destroyed before first use: %v", err)
		}
	})
}

func TestCRY04_ConcurrentFirstUseCreatesOneKeyVersion(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		nodes := []*Keyring{k, otherNode(k)}
		scope := StudyScope("org1", "s1")
		const n = 12
		got := make([]DataKey, n)
		sealed := make([][]byte, n)
		ad := Context{OrgID: "org1", StudyID: "s1", RecordID: "r1", Field: "weight"}
		// On PostgreSQL every transaction is open before any looks for the
		// key, so all of them miss it and race to insert version 1. SQLite
		// takes its write lock at BEGIN and lets one writer in at a time.
		var ready, wg sync.WaitGroup
		if d == sqldb.Postgres {
			ready.Add(n)
		}
		for i := range n {
			wg.Go(func() {
				node := nodes[i%len(nodes)]
				err := func() error {
					tx, err := node.DB.BeginTx(ctx, nil)
					if d == sqldb.Postgres {
						if err == nil {
							_, err = tx.ExecContext(ctx, `SELECT 1`)
						}
						ready.Done()
						ready.Wait()
					}
					if err != nil {
						return err
					}
					defer tx.Rollback()
					dk, err := node.Current(ctx, tx, scope)
					if err != nil {
						return err
					}
					got[i] = dk
					if sealed[i], err = Seal(dk, fmt.Appendf(nil, "value %d", i), ad); err != nil {
						return err
					}
					// Hold the transaction open a moment, so that the others
					// meet an uncommitted first version.
					time.Sleep(5 * time.Millisecond)
					return tx.Commit()
				}()
				if err != nil {
					t.Errorf("node %d: %v", i%len(nodes), err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for i, dk := range got {
			if dk.ID != got[0].ID || dk.Version != 1 {
				t.Fatalf("caller %d got %v/%d, caller 0 got %v/1", i, dk.ID, dk.Version, got[0].ID)
			}
		}
		if c := count(t, k.DB, `SELECT count(*) FROM data_keys`); c != 1 {
			t.Fatalf("%d key rows after concurrent first use, want 1", c)
		}
		for i, s := range sealed {
			mustOpen(t, otherNode(k), s, ad, fmt.Sprintf("value %d", i))
		}
	})
}

func TestCRY03_BlindIndexMatchesEqualValuesOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		idx := func(k *Keyring, s Scope, field, value string) string {
			t.Helper()
			var out string
			err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
				var err error
				out, err = k.BlindIndex(ctx, tx, s, field, []byte(value))
				return err
			})
			if err != nil {
				t.Fatalf("BlindIndex: %v", err)
			}
			return out
		}
		study := StudyScope("org1", "s1")
		a := idx(k, study, "national_id", "123456789")
		if len(a) != 43 {
			t.Fatalf("token %q has %d characters, want 43", a, len(a))
		}
		if b := idx(otherNode(k), study, "national_id", "123456789"); b != a {
			t.Fatal("equal values gave different tokens")
		}
		rotate(t, k, study)
		rotate(t, k, OrgScope("org1"))
		if b := idx(k, study, "national_id", "123456789"); b != a {
			t.Fatal("rotating data keys changed the blind index")
		}
		differs := map[string]string{
			"other value":        idx(k, study, "national_id", "123456788"),
			"other field":        idx(k, study, "passport", "123456789"),
			"other study":        idx(k, StudyScope("org1", "s2"), "national_id", "123456789"),
			"organization scope": idx(k, OrgScope("org1"), "national_id", "123456789"),
			"other organization": idx(k, StudyScope("org2", "s1"), "national_id", "123456789"),
		}
		for name, b := range differs {
			if b == a {
				t.Errorf("%s gives the same token", name)
			}
		}
		if n := count(t, k.DB, `SELECT count(*) FROM data_keys WHERE scope_kind = 'index'`); n != 2 {
			t.Fatalf("%d blind-index keys for 2 organizations", n)
		}
		if _, err := k.BlindIndex(ctx, k.DB, indexScope("org1"), "x", nil); err == nil {
			t.Fatal("blind index over the index scope itself")
		}
		// Destroying the organization's index key retires every token.
		destroy(t, k, indexScope("org1"))
		if _, err := k.BlindIndex(ctx, k.DB, study, "national_id", []byte("123456789")); !errors.Is(err, ErrKeyDestroyed) {
			t.Fatalf("BlindIndex after its key was destroyed: %v", err)
		}
	})
}

// countingQuerier counts the statements sent through it.
type countingQuerier struct {
	sqldb.Querier
	n int
}

func (q *countingQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	q.n++
	return q.Querier.ExecContext(ctx, query, args...)
}

func (q *countingQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	q.n++
	return q.Querier.QueryContext(ctx, query, args...)
}

func (q *countingQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	q.n++
	return q.Querier.QueryRowContext(ctx, query, args...)
}

// TestCRY03_ABlindIndexKeyIsKeptOnlyOnceCommitted makes an organization's
// blind-index key in a transaction that rolls back, then in one that
// commits: the first key's token is never given again, and once the
// second is committed the keyring computes tokens without a statement in
// the caller's transaction, until its cache's lifetime ends.
func TestCRY03_ABlindIndexKeyIsKeptOnlyOnceCommitted(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		k.CacheTTL = time.Minute
		now := time.Unix(1e9, 0)
		k.keys().now = func() time.Time { return now }
		study := StudyScope("org1", "s1")
		idx := func(commit bool) (token string, statements int) {
			t.Helper()
			tx, err := k.DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			q := &countingQuerier{Querier: tx}
			if token, err = k.BlindIndex(ctx, q, study, "national_id", []byte("123456789")); err != nil {
				t.Fatalf("BlindIndex: %v", err)
			}
			if commit {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			return token, q.n
		}
		rolledBack, _ := idx(false)
		committed, n := idx(true)
		if committed == rolledBack {
			t.Fatal("the key of a transaction rolled back gave the token again")
		}
		if n == 0 {
			t.Fatal("a new blind-index key made without a statement in the transaction")
		}
		for range 2 {
			if tok, n := idx(false); tok != committed || n != 0 {
				t.Errorf("after the commit: token %q with %d statements in the transaction, want %q with 0", tok, n, committed)
			}
		}
		now = now.Add(time.Minute)
		if tok, _ := idx(false); tok != committed {
			t.Errorf("after the cache's lifetime: token %q, want %q", tok, committed)
		}
		if n := count(t, k.DB, `SELECT count(*) FROM data_keys WHERE scope_kind = 'index'`); n != 1 {
			t.Errorf("%d blind-index keys, want 1", n)
		}
	})
}

func TestKeyCacheIsBoundedAndExpires(t *testing.T) {
	c := newKeyCache(3, time.Minute)
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { return now }
	var dks []DataKey
	for i := range 5 {
		dk := testKey(t, OrgScope("org1"), uint32(i+1))
		dks = append(dks, dk)
		c.put(dk, []byte{byte(i)})
	}
	if c.len() != 3 {
		t.Fatalf("cache holds %d keys, bound is 3", c.len())
	}
	if _, ok := c.get(dks[0].ID, 1, []byte{0}); ok {
		t.Fatal("least recently used key not evicted")
	}
	if _, ok := c.get(dks[4].ID, 5, []byte{4}); !ok {
		t.Fatal("newest key not cached")
	}
	if _, ok := c.get(dks[4].ID, 5, []byte{9}); ok {
		t.Fatal("cached key served for other wrapped bytes")
	}
	c.put(dks[3], []byte{3})
	now = now.Add(time.Minute)
	if _, ok := c.get(dks[3].ID, 4, []byte{3}); ok {
		t.Fatal("expired key served")
	}
	c.put(dks[2], []byte{2})
	c.evict(dks[2].ID)
	if _, ok := c.get(dks[2].ID, 3, []byte{2}); ok {
		t.Fatal("evicted key served")
	}
}

// New key ids begin with the time they were made, so that they sort as
// the keys were made, and differ in their random part when made at once.
func TestKeyIDsBeginWithTheirTime(t *testing.T) {
	at := time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC)
	a, err := newKeyID(at)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newKeyID(at.Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	c, err := newKeyID(at.Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if !(a.String() < b.String() && a.String() < c.String()) {
		t.Errorf("ids %s, %s made later do not sort after %s", b, c, a)
	}
	if b == c {
		t.Errorf("two ids made in the same millisecond are equal: %s", b)
	}
	if want := fmt.Sprintf("%012x", at.UnixMilli()); a.String()[:12] != want {
		t.Errorf("id %s does not begin with its time %s", a, want)
	}
	if early, err := newKeyID(time.Unix(-5, 0)); err != nil || early.String()[:12] != "000000000000" {
		t.Errorf("id of a time before 1970: %s, %v, want it to begin with 1970", early, err)
	}
	// A key the keyring makes takes such an id.
	k := newKeyring(t, sqldb.SQLite)
	before := time.Now()
	if _, err := k.Create(context.Background(), k.DB, ParticipantScope("org1", "p1")); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := k.DB.QueryRowContext(context.Background(), `SELECT id FROM data_keys WHERE scope_id = 'p1'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if lo := fmt.Sprintf("%012x", before.UnixMilli()); id[:12] < lo || id[:12] > fmt.Sprintf("%012x", time.Now().UnixMilli()) {
		t.Errorf("the keyring's new key %s does not begin with the time it was made (%s or later)", id, lo)
	}
}

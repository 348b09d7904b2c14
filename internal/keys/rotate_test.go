package keys

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestCRY07_LocalKEKRotationAddsAVersionEveryProcessSees(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	a, err := OpenLocalKEK(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenLocalKEK(data) // another process on the same key file
	if err != nil {
		t.Fatal(err)
	}
	v1 := a.ID()
	old, err := a.Wrap(ctx, bytes.Repeat([]byte{1}, 32), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := a.RotateKEK(ctx)
	if err != nil || v2 == v1 || a.ID() != v2 {
		t.Fatalf("RotateKEK = %s (was %s), ID %s, %v", v2, v1, a.ID(), err)
	}
	if fi, err := os.Stat(filepath.Join(data, LocalKEKFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file after rotation: %v, %v", fi, err)
	}
	// The other process wraps under the new version from its next Wrap,
	// and unwraps what the new version wrapped.
	fresh, err := b.Wrap(ctx, bytes.Repeat([]byte{2}, 32), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := a.VersionOf(ctx, fresh, []byte("ad")); err != nil || v != v2 || b.ID() != v2 {
		t.Fatalf("other process wrapped under %s (%v), ID %s; want %s", v, err, b.ID(), v2)
	}
	for _, k := range []*LocalKEK{a, b} {
		for _, w := range [][]byte{old, fresh} {
			if _, err := k.Unwrap(ctx, w, []byte("ad")); err != nil {
				t.Fatalf("unwrap during rotation: %v", err)
			}
		}
	}
	if v, err := b.VersionOf(ctx, old, []byte("ad")); err != nil || v != v1 {
		t.Fatalf("VersionOf(old) = %s, %v", v, err)
	}
	if !b.Knows(v1) || !b.Knows(v2) || b.Knows("local:0000000000000000") {
		t.Fatal("Knows is wrong")
	}

	// Retiring: never the current version; the old one, once asked, is
	// gone for every process.
	if err := a.RetireKEK(ctx, v2); err == nil {
		t.Fatal("the current version was retired")
	}
	if err := a.RetireKEK(ctx, v1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unwrap(ctx, old, []byte("ad")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap with a retired version: %v", err)
	}
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Unwrap(ctx, old, []byte("ad")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("other process unwraps with a retired version: %v", err)
	}
	if vs := b.Versions(); len(vs) != 1 || vs[0] != v2 {
		t.Fatalf("versions: %v", vs)
	}
}

func TestCRY07_LocalKEKRotationsDoNotLoseEachOthersVersions(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	ks := make([]*LocalKEK, 4)
	for i := range ks {
		k, err := OpenLocalKEK(data)
		if err != nil {
			t.Fatal(err)
		}
		ks[i] = k
	}
	ids := make(chan string, len(ks))
	errc := make(chan error, len(ks))
	for _, k := range ks {
		go func() {
			id, err := k.RotateKEK(ctx)
			ids <- id
			errc <- err
		}()
	}
	want := map[string]bool{}
	for range ks {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		want[<-ids] = true
	}
	final, err := OpenLocalKEK(data)
	if err != nil {
		t.Fatal(err)
	}
	got := final.Versions()
	if len(got) != 1+len(ks) {
		t.Fatalf("versions after %d concurrent rotations: %v", len(ks), got)
	}
	for id := range want {
		if !final.Knows(id) {
			t.Fatalf("version %s lost", id)
		}
	}
}

func TestCRY08_RecoveryMaterialOpensOnlyWithItsPassphrase(t *testing.T) {
	saved := recoveryParams
	recoveryParams.memory = 16 << 10 // the format is the same; the test is quicker
	t.Cleanup(func() { recoveryParams = saved })
	data := t.TempDir()
	k, err := OpenLocalKEK(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.RotateKEK(context.Background()); err != nil {
		t.Fatal(err)
	}
	pass := []byte("a passphrase long enough")
	if _, err := RecoveryMaterial(k, []byte("short")); err == nil {
		t.Fatal("a short passphrase was accepted")
	}
	m, err := RecoveryMaterial(k, pass)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err := os.ReadFile(filepath.Join(data, LocalKEKFile))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(keyFile)), "\n") {
		if bytes.Contains(m, []byte(line)) {
			t.Fatal("the material holds a key in clear")
		}
	}
	text, err := OpenRecovery(m, pass)
	if err != nil || !bytes.Equal(text, keyFile) {
		t.Fatalf("OpenRecovery: %v", err)
	}
	if _, err := OpenRecovery(m, []byte("a passphrase long enougH")); !errors.Is(err, ErrRecovery) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	// Every field is bound: weaker KDF parameters, another salt, a flipped
	// bit of the ciphertext, all refused.
	var f map[string]any
	if err := json.Unmarshal(m, &f); err != nil {
		t.Fatal(err)
	}
	for field, v := range map[string]any{"argon2_time": 1, "argon2_memory_kib": 64, "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "format": "other"} {
		c := map[string]any{}
		for k, x := range f {
			c[k] = x
		}
		c[field] = v
		b, _ := json.Marshal(c)
		if _, err := OpenRecovery(b, pass); !errors.Is(err, ErrRecovery) {
			t.Fatalf("%s changed: %v", field, err)
		}
	}
	restored := t.TempDir()
	if err := RestoreLocalKEK(restored, text); err != nil {
		t.Fatal(err)
	}
	if err := RestoreLocalKEK(restored, text); err == nil {
		t.Fatal("a key file was overwritten")
	}
	r, err := OpenLocalKEK(restored)
	if err != nil || r.ID() != k.ID() || len(r.Versions()) != 2 {
		t.Fatalf("restored key %v, %v", r, err)
	}
}

func TestCRY07_DataKeyRewrapIsResumableAndSkipsDestroyedKeys(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		local := k.KEK.(*LocalKEK)
		var scopes []Scope
		for i := range 9 {
			s := StudyScope("org1", fmt.Sprintf("s%d", i))
			current(t, k, s)
			scopes = append(scopes, s)
		}
		destroy(t, k, scopes[0])
		kek2 := mustRotate(t, local)
		store := &DataKeyStore{Label: "data keys", DB: k.DB}
		if n, err := store.Count(ctx); err != nil || n != 8 {
			t.Fatalf("Count = %d, %v", n, err)
		}
		var cursor string
		total := 0
		for range 10 {
			b, err := store.Rewrap(ctx, local, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			total += b.Rewrapped
			cursor = b.Cursor
			if b.Done {
				break
			}
		}
		if total != 8 {
			t.Fatalf("re-wrapped %d keys, want 8", total)
		}
		// Running again changes nothing: resuming is safe.
		b, err := store.Rewrap(ctx, local, "", 100)
		if err != nil || b.Rewrapped != 0 || b.Visited != 8 {
			t.Fatalf("second pass: %+v, %v", b, err)
		}
		use, err := store.KEKUse(ctx)
		if err != nil || len(use) != 1 || use[kek2] != 8 {
			t.Fatalf("KEKUse = %v, %v", use, err)
		}
		var destroyed int
		if err := k.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys WHERE destroyed_at IS NOT NULL AND wrapped IS NULL`).Scan(&destroyed); err != nil || destroyed != 1 {
			t.Fatalf("destroyed key: %d, %v", destroyed, err)
		}
	})
}

func mustRotate(t testing.TB, k *LocalKEK) string {
	t.Helper()
	id, err := k.RotateKEK(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// BenchmarkRewrap measures the re-wrapping of data keys after a rotation
// of the local key-encryption key, in batches of 100 (one transaction each,
// on SQLite), against unwrapping the same keys alone, and reports the
// ratio. Re-wrapping a key costs an unwrap, a wrap and its share of a
// transaction.
func BenchmarkRewrap(b *testing.B) {
	ctx := context.Background()
	k := newKeyring(b, sqldb.SQLite)
	local := k.KEK.(*LocalKEK)
	const n = 1000
	err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
		for i := range n {
			if _, err := k.Current(ctx, tx, StudyScope("org1", fmt.Sprintf("s%04d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	store := &DataKeyStore{Label: "data keys", DB: k.DB}
	var unwrapRate, rewrapRate float64
	b.Run("unwrap", func(b *testing.B) {
		rows := readRows(b, k.DB)
		start := time.Now()
		count := 0
		for b.Loop() {
			for _, r := range rows {
				pt, err := local.Unwrap(ctx, r.wrapped, wrapAD(r.id, r.version, r.scope))
				if err != nil {
					b.Fatal(err)
				}
				clear(pt)
				count++
			}
		}
		unwrapRate = float64(count) / time.Since(start).Seconds()
		b.ReportMetric(unwrapRate, "keys/s")
	})
	b.Run("rewrap", func(b *testing.B) {
		start := time.Now()
		count := 0
		for b.Loop() {
			mustRotate(b, local)
			cursor := ""
			for {
				batch, err := store.Rewrap(ctx, local, cursor, 100)
				if err != nil {
					b.Fatal(err)
				}
				count += batch.Rewrapped
				cursor = batch.Cursor
				if batch.Done {
					break
				}
			}
			b.StopTimer()
			for _, v := range local.Versions()[1:] {
				if err := local.RetireKEK(ctx, v); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
		rewrapRate = float64(count) / time.Since(start).Seconds()
		b.ReportMetric(rewrapRate, "keys/s")
		if unwrapRate > 0 {
			b.ReportMetric(unwrapRate/rewrapRate, "x-unwrap-time")
		}
	})
}

func readRows(b *testing.B, db *sqldb.DB) []row {
	b.Helper()
	rows, err := db.QueryContext(context.Background(), selectRow+`WHERE wrapped IS NOT NULL`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var (
			r         row
			id        string
			version   int64
			destroyed sql.NullInt64
		)
		if err := rows.Scan(&id, &version, &r.scope.OrgID, &r.scope.Kind, &r.scope.ID, &r.kekID, &r.wrapped, &destroyed); err != nil {
			b.Fatal(err)
		}
		if r.id, err = parseKeyID(id); err != nil {
			b.Fatal(err)
		}
		r.version = uint32(version)
		out = append(out, r)
	}
	return out
}

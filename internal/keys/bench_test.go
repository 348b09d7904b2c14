package keys

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

var benchSizes = []int{64, 4 << 10}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// BenchmarkXChaCha20Poly1305 is the baseline: the bare AEAD with a fixed
// nonce and no header, to compare Seal and Open against.
func BenchmarkXChaCha20Poly1305(b *testing.B) {
	dk := testKey(b, OrgScope("org1"), 1)
	a, err := dk.aead.xchacha()
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, NonceSize)
	ad := associatedData(make([]byte, HeaderSize), testContext)
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			pt := make([]byte, n)
			out := make([]byte, 0, n+TagSize)
			b.SetBytes(int64(n))
			for b.Loop() {
				out = a.Seal(out[:0], nonce, pt, ad)
			}
		})
	}
}

// BenchmarkFIPSSealOpen seals and opens a value with AES-256-GCM, FIPS
// mode's algorithm (CRY-11), then as many with XChaCha20-Poly1305, and
// reports the first time as a multiple of the second ("x-xchacha").
func BenchmarkFIPSSealOpen(b *testing.B) {
	dk := testKey(b, OrgScope("org1"), 1)
	ring := staticRing{}.add(dk)
	ctx := context.Background()
	sealOpen := func(b *testing.B, alg byte, pt []byte) {
		s, err := sealAs(alg, dk, pt, testContext)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(ctx, ring, s, testContext); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			pt := make([]byte, n)
			rand.Read(pt)
			b.SetBytes(int64(n))
			start := time.Now()
			for b.Loop() {
				sealOpen(b, AlgAES256GCM, pt)
			}
			gcm := time.Since(start)
			start = time.Now()
			for range b.N {
				sealOpen(b, AlgXChaCha20Poly1305, pt)
			}
			b.ReportMetric(float64(gcm)/float64(time.Since(start)), "x-xchacha")
		})
	}
}

func BenchmarkSeal(b *testing.B) {
	dk := testKey(b, OrgScope("org1"), 1)
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			pt := make([]byte, n)
			rand.Read(pt)
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := Seal(dk, pt, testContext); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	dk := testKey(b, OrgScope("org1"), 1)
	ring := staticRing{}.add(dk)
	ctx := context.Background()
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			pt := make([]byte, n)
			rand.Read(pt)
			s := mustSeal(b, dk, pt, testContext)
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := Open(ctx, ring, s, testContext); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenThroughKeyring adds what every Open through a Keyring pays:
// one read of the key's row (SQLite), with the unwrapped key cached.
func BenchmarkOpenThroughKeyring(b *testing.B) {
	ctx := context.Background()
	k := newKeyring(b, sqldb.SQLite)
	var dk DataKey
	if err := k.DB.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		dk, err = k.Current(ctx, tx, OrgScope("org1"))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	ad := testContext
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			pt := make([]byte, n)
			s := mustSeal(b, dk, pt, ad)
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := Open(ctx, k, s, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCreateKeysInALargeKeyring creates participant keys in batches
// of 18, as the gate commits a batch of enrolments, each of a new
// pseudonym, in a keyring of 20,000 keys, and reports the pages each batch writes to the write-ahead log
// ("wal-frames/batch"): each is a write at the commit and a page for the
// next checkpoint. The "random-ids" run gives every key a random id, the
// baseline of the same run for the ids keys take (newKeyID).
func BenchmarkCreateKeysInALargeKeyring(b *testing.B) {
	for _, random := range []bool{false, true} {
		name := "timed-ids"
		if random {
			name = "random-ids"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			k := newKeyring(b, sqldb.SQLite)
			conn, err := k.DB.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			// The log grows without checkpoints, so its size counts the
			// pages written.
			if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
				b.Fatal(err)
			}
			createBatch := func(size int) {
				tx, err := conn.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				q := k.DB.In(tx)
				for range size {
					scope := ParticipantScope("org1", ids.New())
					if !random {
						_, err = k.Create(ctx, q, scope)
					} else {
						var id KeyID
						rand.Read(id[:])
						_, _, err = k.insert(ctx, q, id, 1, scope)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			for range 40 {
				createBatch(500)
			}
			if _, err := conn.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				createBatch(18)
			}
			b.StopTimer()
			fi, err := os.Stat(k.DB.Location + "-wal")
			if err != nil {
				b.Fatal(err)
			}
			const header, frame = 32, 24 + 4096
			b.ReportMetric(float64(fi.Size()-header)/frame/float64(b.N), "wal-frames/batch")
		})
	}
}

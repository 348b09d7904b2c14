package keys

import (
	"context"
	"database/sql"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// reachableKEK is a key-encryption key behind a KMS that can go down:
// while down, every call fails as an unreachable KMS does.
type reachableKEK struct {
	KEK
	down atomic.Bool
}

func (k *reachableKEK) Wrap(ctx context.Context, p, ad []byte) ([]byte, error) {
	if k.down.Load() {
		return nil, errs.E(errs.Unavailable, "the KMS does not answer")
	}
	return k.KEK.Wrap(ctx, p, ad)
}

func (k *reachableKEK) Unwrap(ctx context.Context, w, ad []byte) ([]byte, error) {
	if k.down.Load() {
		return nil, errs.E(errs.Unavailable, "the KMS does not answer")
	}
	return k.KEK.Unwrap(ctx, w, ad)
}

// TestCRY04_KMSOutageKeepsCachedKeysForTheirLifeOnly: while the KMS is
// down, values under a data key this node unwrapped lately still open, for
// the cache's short life and no longer; a key that must be made or
// unwrapped anew fails as unavailable (503), and nothing is stored; when
// the KMS is back, everything works again.
func TestCRY04_KMSOutageKeepsCachedKeysForTheirLifeOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		base := newKeyring(t, d)
		kek := &reachableKEK{KEK: base.KEK}
		k := &Keyring{DB: base.DB, KEK: kek, CacheTTL: time.Minute}
		now := time.Now()
		k.keys().now = func() time.Time { return now }

		dk := current(t, k, OrgScope("org1"))
		var keys int
		if err := k.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&keys); err != nil {
			t.Fatal(err)
		}

		kek.down.Store(true)
		got, err := k.ByID(ctx, dk.ID, dk.Version)
		if err != nil || got.ID != dk.ID {
			t.Fatalf("cached key during the outage: %v", err)
		}
		err = k.DB.InTx(ctx, func(tx *sql.Tx) error {
			_, err := k.Current(ctx, tx, OrgScope("org2"))
			return err
		})
		if errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("a new key during the outage: %v, want unavailable", err)
		}
		if _, err := otherNode(k).ByID(ctx, dk.ID, dk.Version); errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("a node without the key cached, during the outage: %v, want unavailable", err)
		}
		var after int
		if err := k.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&after); err != nil || after != keys {
			t.Fatalf("%d data keys after the refused one, want %d (%v)", after, keys, err)
		}

		now = now.Add(time.Minute)
		if _, err := k.ByID(ctx, dk.ID, dk.Version); errs.KindOf(err) != errs.Unavailable {
			t.Fatalf("the key after its cache life, during the outage: %v, want unavailable", err)
		}

		kek.down.Store(false)
		if _, err := k.ByID(ctx, dk.ID, dk.Version); err != nil {
			t.Fatalf("the key once the KMS is back: %v", err)
		}
		current(t, k, OrgScope("org2"))
	})
}

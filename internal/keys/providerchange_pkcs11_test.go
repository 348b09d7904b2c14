//go:build pkcs11

package keys

import (
	"context"
	"fmt"
	"testing"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A change of provider from the local key file to a PKCS#11 token (CRY-04,
// CRY-08): with the two chained, values open throughout; re-wrapping every
// data key moves them all into the token, after which the token alone
// opens every value and the local key file opens none.
func TestCRY04_ProviderChangeFromLocalToPKCS11(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		k := newKeyring(t, d)
		local := k.KEK.(*LocalKEK)
		token := openToken(t, softHSM(t))
		type value struct {
			ad    Context
			plain string
			blob  []byte
		}
		var values []value
		for i := range 7 {
			s := StudyScope("org1", fmt.Sprintf("s%d", i))
			dk := current(t, k, s)
			ad := Context{OrgID: "org1", StudyID: s.ID, RecordID: "r", Field: "f"}
			b, err := Seal(dk, []byte(fmt.Sprintf("value %d", i)), ad)
			if err != nil {
				t.Fatal(err)
			}
			values = append(values, value{ad, fmt.Sprintf("value %d", i), b})
		}
		openAll := func(kek KEK) error {
			ring := &Keyring{DB: k.DB, KEK: kek}
			for _, v := range values {
				got, err := Open(ctx, ring, v.blob, v.ad)
				if err != nil {
					return err
				}
				if string(got) != v.plain {
					return fmt.Errorf("%q opened as %q", v.plain, got)
				}
			}
			return nil
		}
		if err := openAll(token); err == nil {
			t.Fatal("the token opens values wrapped by the local key")
		}

		chain := &Chain{Primary: token, Previous: []Provider{local}}
		store := &DataKeyStore{Label: "data keys", DB: k.DB}
		var cursor string
		for range 20 {
			b, err := store.Rewrap(ctx, chain, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			cursor = b.Cursor
			if err := openAll(chain); err != nil {
				t.Fatalf("halfway through the change: %v", err)
			}
			if b.Done {
				break
			}
		}
		use, err := store.KEKUse(ctx)
		if err != nil || len(use) != 1 || use[token.ID()] != len(values) {
			t.Fatalf("wrapping keys after the change: %v, %v (want all %d by %s)", use, err, len(values), token.ID())
		}
		if err := openAll(token); err != nil {
			t.Errorf("the token alone after the change: %v", err)
		}
		if err := openAll(local); err == nil {
			t.Error("the local key file still opens values after the change")
		}
	})
}

package consent_test

import (
	"context"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A participant with an account is told when a consent waits for them
// (WEB-07): once the study publishes its document, once again for a new
// version they must sign anew, and not once they signed.
func TestWEB07_AConsentToSignIsNoticedOncePerVersion(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		f := setup(t, d)
		notices := func(account string) int {
			return f.count(t, `SELECT count(*) FROM notifications WHERE account_id = $1 AND kind = 'consent'`, account)
		}
		if n, err := f.svc.QueueToSign(ctx); err != nil || n != 0 {
			t.Fatalf("before any document: %d %v", n, err)
		}
		f.publish(t, "Consent", false)
		if n, err := f.svc.QueueToSign(ctx); err != nil || n != 2 || notices(f.self.AccountID) != 1 || notices(f.otherSelf.AccountID) != 1 {
			t.Fatalf("a document published: %d %v, want both participants", n, err)
		}
		if n, err := f.svc.QueueToSign(ctx); err != nil || n != 0 {
			t.Fatalf("again: %d %v, want none", n, err)
		}
		if _, err := f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // a later publication
		f.publish(t, "Consent, second version", true)
		if n, err := f.svc.QueueToSign(ctx); err != nil || n != 2 || notices(f.self.AccountID) != 2 {
			t.Fatalf("a new version with re-consent: %d %v; %d notices of the signer", n, err, notices(f.self.AccountID))
		}
		if _, err := f.svc.Sign(ctx, confirmed(f.self), "clinic", f.at(f.p), signature(2)); err != nil {
			t.Fatal(err)
		}
		if n, err := f.svc.QueueToSign(ctx); err != nil || n != 0 || notices(f.self.AccountID) != 2 {
			t.Fatalf("after signing the new version: %d %v", n, err)
		}
	})
}

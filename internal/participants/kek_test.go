package participants_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// downKEK is the instance's key-encryption key behind a KMS that does not
// answer: it names the key, but wraps and unwraps nothing.
type downKEK struct{ keys.KEK }

var errKMSDown = errs.E(errs.Unavailable, "the key-management service does not answer")

func (downKEK) Wrap(context.Context, []byte, []byte) ([]byte, error)   { return nil, errKMSDown }
func (downKEK) Unwrap(context.Context, []byte, []byte) ([]byte, error) { return nil, errKMSDown }

func TestCRY04_UnreachableKEKFailsClosed(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.enrol(t, f.investigator, f.north, ada())

		// The same databases, on a node whose KMS is down (fresh keyrings:
		// no key in any cache).
		down := &participants.Service{Gate: newGate(f.clinical, f.identity, downKEK{f.kek}), Now: f.clock.now}
		tables := func() [4]int {
			return [4]int{
				count(t, f.clinical, `SELECT count(*) FROM participants`),
				count(t, f.identity, `SELECT count(*) FROM identities`),
				count(t, f.identity, `SELECT count(*) FROM data_keys`),
				count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE outcome = 'success'`),
			}
		}
		before := tables()
		_, err := down.Enrol(ctx, f.investigator, f.org.Slug, f.study.ID, f.north.ID, participants.Identity{participants.Name: "Lorenz Unwrapped"})
		if !errs.Is(err, errs.Unavailable) || !strings.Contains(errs.SafeMessage(err), "keys") {
			t.Errorf("enrol with the KMS down: %v, want Unavailable about keys", err)
		}
		rv, err := down.Reveal(ctx, f.confirmed(f.investigator), f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym)
		if !errs.Is(err, errs.Unavailable) || len(rv.Values) != 0 {
			t.Errorf("reveal with the KMS down: %+v, %v, want Unavailable and nothing", rv, err)
		}
		if after := tables(); after != before {
			t.Errorf("participants, identities, keys, success events: %v → %v; want nothing written", before, after)
		}
		// A pseudonymous request needs no key and still works.
		if _, err := down.Get(ctx, f.investigator, f.org.Slug, f.study.ID, f.north.ID, p.Pseudonym); err != nil {
			t.Errorf("pseudonymous read with the KMS down: %v", err)
		}
		// Without a keyring at all, the same.
		none := &participants.Service{Gate: newGate(f.clinical, f.identity, nil)}
		if _, err := none.Enrol(ctx, f.investigator, f.org.Slug, f.study.ID, f.north.ID, ada()); !errs.Is(err, errs.Unavailable) {
			t.Errorf("enrol without a key-encryption key: %v, want Unavailable", err)
		}
		for _, ev := range f.events(t, f.org.ID) {
			if ev.Outcome == audit.Success && ev.Action == "participant.enrol" && ev.Details["identity_fields"] == "name" {
				t.Errorf("an enrolment that failed was audited as done: %+v", ev)
			}
		}
	})
}

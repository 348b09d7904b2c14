package gate_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// withKeys gives the fixture's gate its keyrings and an identity database.
func withKeys(t *testing.T, f fixture, d sqldb.Dialect, kek keys.KEK) fixture {
	t.Helper()
	identity := sqldbtest.Open(t, d, sqldb.Identity)
	f.identity = identity
	f.identity = identity
	f.g = gate.New(gate.Config{
		Clinical: f.db, Keys: &keys.Keyring{DB: f.db, KEK: kek},
		Identity: identity, IdentityKeys: &keys.Keyring{DB: identity, KEK: kek},
	})
	return f
}

func localKEK(t *testing.T) keys.KEK {
	t.Helper()
	k, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type failingKEK struct{ keys.KEK }

func (failingKEK) Wrap(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errs.E(errs.Unavailable, "KMS unreachable")
}

func (failingKEK) Unwrap(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errs.E(errs.Unavailable, "KMS unreachable")
}

func count(t *testing.T, db *sqldb.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCRY03_WorkSealsAndOpensThroughTheTx(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := withKeys(t, setup(t, d), d, localKEK(t))
		ctx := context.Background()
		at := keys.Context{OrgID: f.org.ID, StudyID: f.study.ID, RecordID: "rec-1", Field: "note"}
		var sealed []byte
		err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "note.write", func(t *gate.Tx) error {
			// No key before authz allowed the work.
			if _, err := t.Vault().Seal(ctx, keys.StudyScope(f.org.ID, f.study.ID), at, []byte("x")); err == nil {
				return errors.New("sealed before Authorize")
			}
			if _, err := t.Identity(ctx); err == nil {
				return errors.New("identity database before Authorize")
			}
			if err := t.Authorize(authz.StudyRead, authz.Resource{OrgID: f.org.ID, StudyID: f.study.ID}); err != nil {
				return err
			}
			var err error
			if sealed, err = t.Vault().Seal(ctx, keys.StudyScope(f.org.ID, f.study.ID), at, []byte("sealed in the gate")); err != nil {
				return err
			}
			// Never for another organization than the request's.
			other := at
			other.OrgID = "another-org"
			if _, err := t.Vault().Open(ctx, other, sealed); err == nil || errs.KindOf(err) != errs.Internal {
				return errors.New("opened for another organization")
			}
			pt, err := t.Vault().Open(ctx, at, sealed)
			if err != nil || string(pt) != "sealed in the gate" {
				return errors.New("round trip failed")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(sealed), "sealed in the gate") || count(t, f.db, `SELECT count(*) FROM data_keys WHERE scope_kind = 'study'`) != 1 {
			t.Errorf("sealed %q; want ciphertext and one study key", sealed)
		}
	})
}

func TestCRY04_KeyFailureFailsTheRequestClosed(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := withKeys(t, setup(t, d), d, failingKEK{localKEK(t)})
		ctx := context.Background()
		before := len(events(t, f))
		err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error {
			if err := t.Authorize(authz.StudyCreate, authz.Resource{OrgID: f.org.ID}); err != nil {
				return err
			}
			st, err := orgs.CreateStudy(ctx, t, f.org.ID, orgs.KindStudy, "Sealed study")
			if err != nil {
				return err
			}
			_, err = t.Vault().Seal(ctx, keys.StudyScope(f.org.ID, st.ID), keys.Context{OrgID: f.org.ID, StudyID: st.ID, RecordID: st.ID, Field: "name"}, []byte("x"))
			return err
		})
		if !errs.Is(err, errs.Unavailable) || strings.Contains(errs.SafeMessage(err), "KMS") {
			t.Errorf("seal with the KMS down: %v (%q), want Unavailable with a safe message", err, errs.SafeMessage(err))
		}
		studies, _ := orgs.Studies(ctx, f.db, f.org.ID)
		if len(studies) != 1 || count(t, f.db, `SELECT count(*) FROM data_keys`) != 0 || len(events(t, f)) != before {
			t.Errorf("studies %d, keys %d, events %d → %d: want nothing written", len(studies), count(t, f.db, `SELECT count(*) FROM data_keys`), before, len(events(t, f)))
		}
	})
}

func TestCRY05_ValueThatDoesNotOpenFailsTheWholeRequest(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := withKeys(t, setup(t, d), d, localKEK(t))
		ctx := context.Background()
		at := keys.Context{OrgID: f.org.ID, StudyID: f.study.ID, RecordID: "rec-1", Field: "note"}
		var sealed []byte
		allow := func(t *gate.Tx) error {
			return t.Authorize(authz.StudyRead, authz.Resource{OrgID: f.org.ID, StudyID: f.study.ID})
		}
		if err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "note.write", func(t *gate.Tx) error {
			if err := allow(t); err != nil {
				return err
			}
			var err error
			sealed, err = t.Vault().Seal(ctx, keys.OrgScope(f.org.ID), at, []byte("note"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// Work that swallows the failure still fails, and writes nothing.
		elsewhere := at
		elsewhere.RecordID = "rec-2"
		err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "note.read", func(t *gate.Tx) error {
			if err := allow(t); err != nil {
				return err
			}
			t.Object("note", "rec-2")
			if _, err := t.Vault().Open(ctx, elsewhere, sealed); err == nil {
				return errors.New("a value moved to another record opened")
			}
			_, err := orgs.CreateStudy(ctx, t, f.org.ID, orgs.KindStudy, "Written after the failure")
			return err
		})
		if !errs.Is(err, errs.Unavailable) || !strings.Contains(errs.SafeMessage(err), "integrity") {
			t.Errorf("request after a failed open: %v, want the integrity failure", err)
		}
		studies, _ := orgs.Studies(ctx, f.db, f.org.ID)
		if len(studies) != 1 {
			t.Errorf("%d studies: the request's writes were committed", len(studies))
		}
		ev := events(t, f)[0]
		if ev.Action != "note.read" || ev.Outcome != audit.Failure || !ev.Security || ev.Details["error"] != "integrity" {
			t.Errorf("latest event %+v, want the failed security event", ev)
		}
	})
}

// TestCRY09_IdentityTransactionCommitsInTheSafeOrder: identity changes
// commit only once the clinical work and its event are written; removals
// (CommitAfterEvent) only once the clinical transaction committed.
func TestCRY09_IdentityTransactionCommitsInTheSafeOrder(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := withKeys(t, setup(t, d), d, localKEK(t))
		ctx := context.Background()
		insert := func(after bool, id string, fail error) error {
			do := f.g.Do
			if after {
				do = f.g.DoAlone
			}
			return do(ctx, f.admin, gate.OrgID(f.org.ID), "identity.test", func(t *gate.Tx) error {
				if err := t.Authorize(authz.StudyRead, authz.Resource{OrgID: f.org.ID, StudyID: f.study.ID}); err != nil {
					return err
				}
				it, err := t.Identity(ctx)
				if err != nil {
					return err
				}
				if after {
					it.CommitAfterEvent()
				}
				if _, err := it.ExecContext(ctx, `INSERT INTO identities (participant_id, org_id, study_id, created_at) VALUES ($1, $2, $3, 1)`,
					id, f.org.ID, f.study.ID); err != nil {
					return err
				}
				if fail != nil {
					t.Detail("password", "refused by the audit trail") // the event cannot be written
				}
				return nil
			})
		}
		identities := func() int { return count(t, f.identity, `SELECT count(*) FROM identities`) }
		for _, after := range []bool{false, true} {
			before := identities()
			if err := insert(after, "p-fail-"+map[bool]string{false: "a", true: "b"}[after], errors.New("fail")); err == nil {
				t.Fatalf("after=%v: an unauditable request succeeded", after)
			}
			if identities() != before {
				t.Errorf("after=%v: identity change committed without its event", after)
			}
			if err := insert(after, "p-ok-"+map[bool]string{false: "a", true: "b"}[after], nil); err != nil {
				t.Fatal(err)
			}
			if identities() != before+1 {
				t.Errorf("after=%v: identity change not committed", after)
			}
		}
	})
}

// identityWork is work that creates the study name in the clinical database
// and inserts into the identity database what stmt says.
func identityWork(ctx context.Context, f fixture, name, stmt string) func(t *gate.Tx) error {
	return func(t *gate.Tx) error {
		if err := t.Authorize(authz.StudyCreate, authz.Resource{OrgID: f.org.ID}); err != nil {
			return err
		}
		if _, err := orgs.CreateStudy(ctx, t, f.org.ID, orgs.KindStudy, name); err != nil {
			return err
		}
		it, err := t.Identity(ctx)
		if err != nil {
			return err
		}
		_, err = it.ExecContext(ctx, stmt)
		return err
	}
}

// failingIdentityCommits makes a table in f's identity database whose
// deferred foreign key fails the identity COMMIT of work that inserts a
// participant id no identity has (identityWork with "INSERT INTO
// commit_check (participant_id) VALUES ('nobody')"); NULL passes.
func failingIdentityCommits(t *testing.T, f fixture) {
	t.Helper()
	if _, err := f.identity.ExecContext(context.Background(), `CREATE TABLE commit_check (participant_id TEXT
		REFERENCES identities (participant_id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
}

// The clinical transaction commits only after the identity commit, and not
// at all if it failed: an identity commit that fails (here a deferred
// foreign key, checked only at COMMIT) leaves the request's clinical work
// and its event uncommitted, and the request answered as not carried out.
func TestCRY09_ClinicalCommitWaitsForTheIdentityCommit(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := withKeys(t, setup(t, d), d, localKEK(t))
		ctx := context.Background()
		failingIdentityCommits(t, f)
		err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.create",
			identityWork(ctx, f, "Before a failed identity commit", `INSERT INTO commit_check (participant_id) VALUES ('nobody')`))
		if !errs.Is(err, errs.Unavailable) {
			t.Errorf("request whose identity commit failed answered %v, want Unavailable", err)
		}
		if studyNamed(t, f, "Before a failed identity commit") {
			t.Error("the clinical work committed although the identity commit failed")
		}
		for _, ev := range events(t, f) {
			if ev.Action == "study.create" {
				t.Errorf("event %+v committed although the identity commit failed", ev)
			}
		}
	})
}

// Removals commit after their event, which only a batch of their own can
// keep: work in a shared batch that asks for it fails at once and commits
// nothing.
func TestCRY09_RemovalOutsideDoAloneFailsAtOnce(t *testing.T) {
	f := withKeys(t, setup(t, sqldb.SQLite), sqldb.SQLite, localKEK(t))
	ctx := context.Background()
	err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "identity.test", func(t *gate.Tx) error {
		if err := t.Authorize(authz.StudyRead, authz.Resource{OrgID: f.org.ID, StudyID: f.study.ID}); err != nil {
			return err
		}
		it, err := t.Identity(ctx)
		if err != nil {
			return err
		}
		it.CommitAfterEvent()
		_, err = it.ExecContext(ctx, `INSERT INTO identities (participant_id, org_id, study_id, created_at) VALUES ('p-x', $1, $2, 1)`,
			f.org.ID, f.study.ID)
		return err
	})
	if !errs.Is(err, errs.Internal) {
		t.Errorf("removal in a shared batch answered %v, want Internal", err)
	}
	if n := count(t, f.identity, `SELECT count(*) FROM identities`); n != 0 {
		t.Errorf("%d identity rows committed", n)
	}
}

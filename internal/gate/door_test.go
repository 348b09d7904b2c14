package gate_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/orgs/orgadmin"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// Work has nothing to query with before authz allowed it: a read before
// Authorize fails at once, ends the transaction (so nothing the work does
// afterwards commits) and fails the request.
func TestACL01_WorkThatQueriesBeforeAuthorizingFailsAtOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		var readErr, authErr error
		err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "study.create", func(t *gate.Tx) error {
			_, readErr = orgs.Studies(ctx, t, f.org.ID)
			authErr = t.Authorize(authz.StudyCreate, authz.Resource{OrgID: f.org.ID})
			_, err := orgs.CreateStudy(ctx, t, f.org.ID, orgs.KindStudy, "Read first")
			return err
		})
		if readErr == nil {
			t.Error("a query before Authorize was answered")
		}
		if authErr != nil {
			t.Errorf("authorize: %v", authErr)
		}
		if !errs.Is(err, errs.Internal) {
			t.Errorf("request: %v, want Internal", err)
		}
		if studyNamed(t, f, "Read first") {
			t.Error("work that queried before authorizing committed a study")
		}
		for _, ev := range events(t, f) {
			if ev.Outcome == audit.Success {
				t.Errorf("a success is on the trail: %+v", ev)
			}
		}
	})
}

// Allowed answering no gives no querier either.
func TestACL01_AllowedThatRefusesGivesNoQuerier(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	var readErr error
	err := f.g.Do(ctx, f.investigator, gate.OrgID(f.org.ID), "study.list", func(t *gate.Tx) error {
		if t.Allowed(authz.StudyCreate, authz.Resource{OrgID: f.org.ID}) {
			return errors.New("an investigator may create studies")
		}
		_, readErr = orgs.Studies(ctx, t, f.org.ID)
		return nil
	})
	if readErr == nil || !errs.Is(err, errs.Internal) {
		t.Errorf("read after a refused Allowed: %v; request: %v", readErr, err)
	}
}

// A list is authorized by asking, not by finding: every member lists the
// studies of an organization that has none, and is answered with an empty
// list and a success on the trail.
func TestACL01_ListingAnOrganizationWithoutStudies(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		ctx := context.Background()
		var (
			org          orgs.Organization
			admin, other gate.Actor
		)
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if org, err = orgs.CreateOrganization(ctx, tx, "Empty", ""); err != nil {
				return err
			}
			a, _, err := accounts.Enrol(ctx, tx, "admin@empty.example", "", authz.Assignment{OrgID: org.ID, Role: authz.OrgAdmin})
			if err != nil {
				return err
			}
			m, _, err := accounts.Enrol(ctx, tx, "manager@empty.example", "", authz.Assignment{OrgID: org.ID, Role: authz.OrgManager})
			admin = gate.Actor{AccountID: a.ID, SessionID: "s1", RemoteAddr: "192.0.2.1"}
			other = gate.Actor{AccountID: m.ID, SessionID: "s2", RemoteAddr: "192.0.2.2"}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		svc := &orgadmin.Service{Gate: gate.New(gate.Config{Clinical: db})}
		for _, a := range []gate.Actor{admin, other} {
			studies, err := svc.ListStudies(ctx, a, org.Slug)
			if err != nil || studies == nil || len(studies) != 0 {
				t.Errorf("list of an organization without studies: %v, %v; want an empty list", studies, err)
			}
		}
		evs, _, err := audit.Search(ctx, db, audit.Filter{OrgID: org.ID, Action: "study.list"})
		if err != nil || len(evs) != 2 || evs[0].Outcome != audit.Success || evs[1].Outcome != audit.Success {
			t.Errorf("trail = %+v, %v; want two successful listings", evs, err)
		}
	})
}

// A streamed answer is authorized and on the trail before its first byte:
// the read sees the request's event committed; what it sent is recorded
// after it, as a second event.
func TestAUD01_StreamedAnswerIsOnTheTrailBeforeItsFirstByte(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		var seenBefore int
		err := f.g.Do(ctx, f.admin, gate.OrgID(f.org.ID), "audit.export", func(t *gate.Tx) error {
			if err := t.Authorize(authz.AuditRead, authz.Resource{OrgID: f.org.ID}); err != nil {
				return err
			}
			t.Stream(func(q sqldb.Querier) (map[string]string, error) {
				evs, _, err := audit.Search(ctx, q, audit.Filter{OrgID: f.org.ID, Action: "audit.export"})
				seenBefore = len(evs)
				return map[string]string{"events": "7"}, err
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if seenBefore != 1 {
			t.Errorf("the read saw %d export events, want its own, committed before it", seenBefore)
		}
		sent, _, err := audit.Search(ctx, f.db, audit.Filter{OrgID: f.org.ID, Action: "audit.export.sent"})
		if err != nil || len(sent) != 1 || sent[0].Details["events"] != "7" || sent[0].ActorAccount != f.admin.AccountID {
			t.Errorf("sent events = %+v, %v", sent, err)
		}

		// A denied request never reaches its read.
		ran := false
		err = f.g.Do(ctx, f.investigator, gate.OrgID(f.org.ID), "audit.export", func(t *gate.Tx) error {
			t.Stream(func(sqldb.Querier) (map[string]string, error) { ran = true; return nil, nil })
			return t.Authorize(authz.AuditRead, authz.Resource{OrgID: f.org.ID})
		})
		if !gate.IsDenied(err) || ran {
			t.Errorf("denied export: %v, read ran %v", err, ran)
		}
	})
}

// Operator work commits with its event, whose actor is the operator; work
// that says it did nothing leaves neither data nor event.
func TestAUD01_OperatorWorkCommitsWithItsEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		err := f.g.Operate(ctx, "study.create", func(o *gate.OpTx) error {
			o.Org(f.org.ID)
			st, err := orgs.CreateStudy(ctx, o, f.org.ID, orgs.KindStudy, "By the operator")
			o.Object("study", st.ID)
			return err
		})
		if err != nil || !studyNamed(t, f, "By the operator") {
			t.Fatalf("operator work: %v", err)
		}
		err = f.g.Operate(ctx, "study.create", func(o *gate.OpTx) error {
			o.Org(f.org.ID)
			o.Nothing()
			_, err := orgs.CreateStudy(ctx, o, f.org.ID, orgs.KindStudy, "Nothing to see")
			return err
		})
		if err != nil || studyNamed(t, f, "Nothing to see") {
			t.Errorf("work that did nothing: %v; its write committed: %v", err, studyNamed(t, f, "Nothing to see"))
		}
		evs := events(t, f)
		if len(evs) != 1 || evs[0].ActorRole != "operator" || evs[0].Action != "study.create" || evs[0].ActorAccount != "" {
			t.Errorf("events = %+v, want the operator's one", evs)
		}
	})
}

// An account's own work is recorded as the account's, and AlsoIn puts the
// same event in each further organization's trail, in the same
// transaction: the work and all its events commit together or not at all.
func TestAUD01_OwnWorkIsRecordedInEachOrganizationItNames(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		var other orgs.Organization
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			other, err = orgs.CreateOrganization(ctx, tx, "Other", "")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		own := func(name string, fail error) error {
			return f.g.Own(ctx, f.admin, "account.rename", func(o *gate.OpTx) error {
				o.Org(f.org.ID)
				o.AlsoIn(other.ID)
				o.Object("account", f.admin.AccountID)
				if _, err := o.ExecContext(ctx, `UPDATE accounts SET display_name = $1 WHERE id = $2`, name, f.admin.AccountID); err != nil {
					return err
				}
				return fail
			})
		}
		if err := own("Refused", errs.E(errs.Invalid, "no")); !errs.Is(err, errs.Invalid) {
			t.Fatalf("failed work: %v", err)
		}
		if err := own("Ada", nil); err != nil {
			t.Fatal(err)
		}
		acc, err := accounts.ByID(ctx, f.db, f.admin.AccountID)
		if err != nil || acc.DisplayName != "Ada" {
			t.Errorf("account after the work: %+v, %v", acc, err)
		}
		for _, org := range []string{f.org.ID, other.ID} {
			evs, _, err := audit.Search(ctx, f.db, audit.Filter{OrgID: org, Limit: audit.MaxPage})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Action != "account.rename" || evs[0].ActorAccount != f.admin.AccountID ||
				evs[0].ActorSession != "s1" || evs[0].ObjectID != f.admin.AccountID || evs[0].Outcome != audit.Success {
				t.Errorf("trail of %s = %+v, want the one rename", org, evs)
			}
		}
	})
}

package auditadmin_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func emailOf(t *testing.T, db *sqldb.DB, a gate.Actor) string {
	t.Helper()
	acc, err := accounts.ByID(context.Background(), db, a.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	return acc.Email
}

// The trail's person is an account id or an e-mail address, in any case,
// for the search, the page and the export alike. A member, someone who
// acted here with a role taken away since, and another organization's
// admin whose refused attempt is on this trail are found; the address of
// an account that never came near the organization finds nothing, as an
// address without an account does (AUD-04).
func TestAUD04_TrailPersonByMembersEmail(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		if err := f.read(f.investigator, f.annRec); err != nil {
			t.Fatal(err)
		}
		// Another organization's admin tries this organization's trail.
		if _, err := f.svc.Trail(ctx, f.otherAdmin, f.org.Slug, audit.Filter{}); !gate.IsDenied(err) {
			t.Fatalf("another organization's admin: %v, want denied", err)
		}
		var former, stranger accounts.Account
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if stranger, err = accounts.Create(ctx, tx, "stranger@elsewhere.example", "Stranger"); err != nil {
				return err
			}
			if former, err = accounts.Create(ctx, tx, "former@clinic.example", "Former"); err != nil {
				return err
			}
			_, err = audit.Append(ctx, tx, nil, audit.Event{OrgID: f.org.ID, ActorAccount: former.ID, ActorRole: "monitor",
				StudyID: f.study.ID, Action: "study.read", Outcome: audit.Success})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		investigator, outsider := emailOf(t, f.db, f.investigator), emailOf(t, f.db, f.otherAdmin)
		for _, c := range []struct {
			actor string
			want  string // the one actor of the events found, "" for none
		}{
			{strings.ToUpper(investigator), f.investigator.AccountID},
			{investigator, f.investigator.AccountID},
			{f.investigator.AccountID, f.investigator.AccountID},
			{"Former@clinic.example", former.ID},
			{outsider, f.otherAdmin.AccountID},
			{"stranger@elsewhere.example", ""},
			{"nobody@clinic.example", ""},
		} {
			evs, _, err := f.svc.Search(ctx, f.admin, f.org.Slug, audit.Filter{Actor: c.actor})
			if err != nil {
				t.Fatalf("search actor=%s: %v", c.actor, err)
			}
			p, err := f.svc.Trail(ctx, f.admin, f.org.Slug, audit.Filter{Actor: c.actor})
			if err != nil {
				t.Fatalf("page actor=%s: %v", c.actor, err)
			}
			confirmed := f.admin
			confirmed.ConfirmedAt = time.Now()
			var exported []audit.Event
			if err := f.svc.Export(ctx, confirmed, f.org.Slug, audit.Filter{Actor: c.actor}, func(ev audit.Event) error {
				exported = append(exported, ev)
				return nil
			}); err != nil {
				t.Fatalf("export actor=%s: %v", c.actor, err)
			}
			for name, got := range map[string][]audit.Event{"search": evs, "page": p.Events, "export": exported} {
				if c.want == "" && len(got) != 0 {
					t.Errorf("%s actor=%s: %d events, want none", name, c.actor, len(got))
				}
				if c.want != "" && len(got) == 0 {
					t.Errorf("%s actor=%s: no events", name, c.actor)
				}
				for _, ev := range got {
					if ev.ActorAccount != c.want {
						t.Errorf("%s actor=%s: an event of %s", name, c.actor, ev.ActorAccount)
					}
				}
			}
		}

		// A monitor's page by address searches their study, as without.
		p, err := f.svc.Trail(ctx, f.monitor, f.org.Slug, audit.Filter{Actor: investigator})
		if err != nil || p.Filter.Study != f.study.ID || p.Filter.Actor != f.investigator.AccountID || len(p.Events) == 0 {
			t.Errorf("monitor's page by address: %+v, %v", p, err)
		}
		// Whoever may not read the trail learns nothing of an address.
		for _, a := range []gate.Actor{f.otherAdmin, f.investigator} {
			if _, err := f.svc.Trail(ctx, a, f.org.Slug, audit.Filter{Actor: investigator}); !gate.IsDenied(err) {
				t.Errorf("page by address as %s: %v, want denied", a.AccountID, err)
			}
			if _, _, err := f.svc.Search(ctx, a, f.org.Slug, audit.Filter{Actor: investigator}); !gate.IsDenied(err) {
				t.Errorf("search by address as %s: %v, want denied", a.AccountID, err)
			}
		}
		for _, bad := range []string{"bob", "bob@", "<bob@clinic.example>"} {
			if _, _, err := f.svc.Search(ctx, f.admin, f.org.Slug, audit.Filter{Actor: bad}); !errs.Is(err, errs.Invalid) {
				t.Errorf("actor=%q: %v, want Invalid", bad, err)
			}
			if _, err := f.svc.Trail(ctx, f.admin, f.org.Slug, audit.Filter{Actor: bad}); !errs.Is(err, errs.Invalid) {
				t.Errorf("page actor=%q: %v, want Invalid", bad, err)
			}
		}

		// The trail records whom an address found, never the address.
		evs, _, err := f.svc.Search(ctx, f.admin, f.org.Slug, audit.Filter{Action: "audit."})
		if err != nil {
			t.Fatal(err)
		}
		var details []map[string]string
		for _, ev := range evs {
			details = append(details, ev.Details)
		}
		body, _ := json.Marshal(details)
		for _, s := range []string{"@clinic.example", "@CLINIC.EXAMPLE", "@elsewhere.example", stranger.ID} {
			if strings.Contains(string(body), s) {
				t.Errorf("the trail's searches record %q", s)
			}
		}
		if !strings.Contains(string(body), "actor="+f.investigator.AccountID) {
			t.Errorf("the trail's searches do not name the member found")
		}
	})
}

// One account reads at most SearchesPerHour pages of the trail an hour
// (ASVS V2.4.1, V15.2.2): past it the answer is RateLimited and the refusal
// is on the trail; another account goes on.
func TestAUD04_TrailSearchesArePacedPerAccount(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	for i := range auditadmin.SearchesPerHour {
		if _, _, err := f.svc.Search(ctx, f.admin, f.org.Slug, audit.Filter{Limit: 1}); err != nil {
			t.Fatalf("search %d: %v", i+1, err)
		}
	}
	if _, _, err := f.svc.Search(ctx, f.admin, f.org.Slug, audit.Filter{Limit: 1}); !errs.Is(err, errs.RateLimited) {
		t.Fatalf("search %d in an hour: %v, want RateLimited", auditadmin.SearchesPerHour+1, err)
	}
	var refused int
	f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'audit.search' AND outcome = 'failure'`).Scan(&refused)
	if refused != 1 {
		t.Errorf("%d refused searches on the trail, want 1", refused)
	}
	if _, _, err := f.svc.Search(ctx, f.monitor, f.org.Slug, audit.Filter{Study: f.study.ID, Limit: 1}); err != nil {
		t.Errorf("another account's search: %v", err)
	}
}

// Exports are bounded (ASVS V2.4.1, V15.2.2): one covers at most
// MaxExportWindow, an account runs one at a time and a node at most
// MaxConcurrentExports; an export refused for one running is on the trail.
func TestAUD04_ExportsAreBoundedInWindowAndConcurrency(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	confirmed := func(a gate.Actor) gate.Actor { a.ConfirmedAt = time.Now(); return a }
	none := func(audit.Event) error { return nil }

	long := audit.Filter{From: time.Now().Add(-2 * auditadmin.MaxExportWindow)}
	if err := f.svc.Export(ctx, confirmed(f.admin), f.org.Slug, long, none); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "366 days") {
		t.Fatalf("an export of two years: %v, want refused", err)
	}

	// The admin's export holds its place while it streams.
	streaming, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		first := true
		done <- f.svc.Export(ctx, confirmed(f.admin), f.org.Slug, audit.Filter{}, func(audit.Event) error {
			if first {
				first = false
				close(streaming)
				<-release
			}
			return nil
		})
	}()
	<-streaming
	if err := f.svc.Export(ctx, confirmed(f.admin), f.org.Slug, audit.Filter{}, none); !errs.Is(err, errs.RateLimited) {
		t.Fatalf("a second export of one account at once: %v, want refused", err)
	}
	if err := f.svc.Export(ctx, confirmed(f.otherAdmin), f.other.Slug, audit.Filter{}, none); err != nil {
		t.Fatalf("another account's export beside it: %v", err)
	}
	// Two running at once fill the node.
	streaming2, release2 := make(chan struct{}), make(chan struct{})
	done2 := make(chan error, 1)
	go func() {
		first := true
		done2 <- f.svc.Export(ctx, confirmed(f.otherAdmin), f.other.Slug, audit.Filter{}, func(audit.Event) error {
			if first {
				first = false
				close(streaming2)
				<-release2
			}
			return nil
		})
	}()
	<-streaming2
	if err := f.svc.Export(ctx, confirmed(f.monitor), f.org.Slug, audit.Filter{Study: f.study.ID}, none); !errs.Is(err, errs.RateLimited) {
		t.Fatalf("a third export on the node at once: %v, want refused", err)
	}
	close(release)
	close(release2)
	if err := errors.Join(<-done, <-done2); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Export(ctx, confirmed(f.monitor), f.org.Slug, audit.Filter{Study: f.study.ID}, none); err != nil {
		t.Fatalf("an export once the others ended: %v", err)
	}
	var refused int
	f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action = 'audit.export' AND outcome <> 'success'`).Scan(&refused)
	if refused != 2 { // the two refused for running ones; a malformed filter is refused before
		t.Errorf("%d refused exports on the trail, want 2", refused)
	}
}

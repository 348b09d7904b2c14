package participants_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestWEB05_BadIdentityInputIsRefusedWithoutEchoingIt(t *testing.T) {
	f := setup(t, sqldb.SQLite)
	ctx := context.Background()
	for _, c := range []struct {
		field participants.Field
		value string
	}{
		{participants.BirthDate, "14/03/1957"},
		{participants.BirthDate, "2999-01-01"},
		{participants.BirthDate, "1700-01-01"},
		{participants.Email, "quorvanne-at-example"},
		{participants.Phone, "call 0612345678"},
		{participants.Phone, "12"},
		{participants.NationalID, "QX<script>771"},
		{participants.NationalID, strings.Repeat("9", 65)},
		{participants.Name, "Adelheid\x00Quorvanne"},
		{participants.Name, strings.Repeat("Quorvanne", 30)},
		{"religion", "none"},
	} {
		id := participants.Identity{participants.Name: "Valid Name", c.field: c.value}
		_, err := f.svc.Enrol(ctx, f.investigator, f.org.Slug, f.study.ID, f.north.ID, id)
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("%s %q: %v, want Invalid", c.field, c.value, err)
			continue
		}
		if strings.Contains(err.Error(), c.value) {
			t.Errorf("%s: the error %q repeats the value", c.field, err)
		}
	}
	if n := count(t, f.clinical, `SELECT count(*) FROM participants`); n != 0 {
		t.Errorf("%d participants stored from bad input", n)
	}
	if n := count(t, f.identity, `SELECT count(*) FROM identities`) + count(t, f.identity, `SELECT count(*) FROM data_keys`); n != 0 {
		t.Errorf("%d identity rows or keys stored from bad input", n)
	}
	// A refusal by authz comes before any check of the input.
	_, err := f.svc.Enrol(ctx, f.monitor, f.org.Slug, f.study.ID, f.north.ID, participants.Identity{participants.BirthDate: "bad"})
	if !errs.Is(err, errs.NotFound) {
		t.Errorf("bad input from a role that may not enrol: %v, want not found", err)
	}
}

func TestCRY09_SecondEnrolmentOfOneNationalIDIsRefused(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		f.enrol(t, f.investigator, f.north, participants.Identity{participants.NationalID: "123-45-678"})
		// The same id, written differently, at another site of the study.
		_, err := f.svc.Enrol(ctx, f.southInvestigator, f.org.Slug, f.study.ID, f.south.ID, participants.Identity{participants.NationalID: "12345 678"})
		if !errs.Is(err, errs.Conflict) {
			t.Fatalf("second enrolment: %v, want Conflict", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM participants`); n != 1 {
			t.Errorf("%d participants, want 1", n)
		}
		// Nor is the key made for the refused enrolment left behind.
		if n := count(t, f.identity, `SELECT count(*) FROM data_keys WHERE scope_kind = 'participant'`); n != 1 {
			t.Errorf("%d participant keys, want 1", n)
		}
		// In another study the same person may take part.
		f.enrol(t, f.admin, f.reg, participants.Identity{participants.NationalID: "123-45-678"})
		// The index is a keyed token, not the id.
		var tok string
		if err := f.identity.QueryRowContext(ctx, `SELECT national_id_index FROM identities LIMIT 1`).Scan(&tok); err != nil {
			t.Fatal(err)
		}
		if len(tok) != 43 || strings.Contains(tok, "12345678") {
			t.Errorf("blind index %q", tok)
		}
	})
}

func TestCRY06_DecryptGrantsAreCheckedAndAudited(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		good := participants.GrantRequest{AccountID: f.investigator.AccountID, Reason: "follow-up"}
		for _, c := range []struct {
			name string
			edit func(r *participants.GrantRequest)
		}{
			{"no reason", func(r *participants.GrantRequest) { r.Reason = "  " }},
			{"long reason", func(r *participants.GrantRequest) { r.Reason = strings.Repeat("x", 501) }},
			{"a field that is not sensitive", func(r *participants.GrantRequest) { r.Fields = []string{"name"} }},
			{"an unknown field", func(r *participants.GrantRequest) { r.Fields = []string{"religion"} }},
			{"expired already", func(r *participants.GrantRequest) { r.ExpiresAt = f.clock.now().Add(-time.Minute) }},
			{"an account of no role here", func(r *participants.GrantRequest) { r.AccountID = f.otherAdmin.AccountID }},
			{"an unknown account", func(r *participants.GrantRequest) { r.AccountID = ids.New() }},
			{"a site outside the grantee's", func(r *participants.GrantRequest) { r.SiteID = f.south.ID }},
			{"a site of another study", func(r *participants.GrantRequest) { r.SiteID = f.reg.ID }},
		} {
			r := good
			c.edit(&r)
			if _, err := f.svc.Grant(ctx, f.confirmed(f.admin), f.org.Slug, f.study.ID, r); !errs.Is(err, errs.Invalid) {
				t.Errorf("grant with %s: %v, want Invalid", c.name, err)
			}
		}
		// Only organization and study admins give grants; a study admin
		// only in their study.
		for _, a := range []struct {
			name string
			err  error
		}{
			{"monitor", func() error {
				_, err := f.svc.Grant(ctx, f.confirmed(f.monitor), f.org.Slug, f.study.ID, good)
				return err
			}()},
			{"investigator", func() error {
				_, err := f.svc.Grant(ctx, f.confirmed(f.investigator), f.org.Slug, f.study.ID, good)
				return err
			}()},
			{"organization manager", func() error {
				_, err := f.svc.Grant(ctx, f.confirmed(f.manager), f.org.Slug, f.study.ID, good)
				return err
			}()},
			{"study admin of another study", func() error {
				_, err := f.svc.Grant(ctx, f.confirmed(f.studyAdmin), f.org.Slug, f.registry.ID, participants.GrantRequest{AccountID: f.admin.AccountID, Reason: "x"})
				return err
			}()},
		} {
			if !errs.Is(a.err, errs.NotFound) {
				t.Errorf("grant by %s: %v, want not found", a.name, a.err)
			}
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM decrypt_grants`); n != 0 {
			t.Fatalf("%d grants stored from refused requests", n)
		}
		g, err := f.svc.Grant(ctx, f.confirmed(f.studyAdmin), f.org.Slug, f.study.ID, participants.GrantRequest{
			AccountID: f.investigator.AccountID, SiteID: f.north.ID, Reason: "source data verification, visit 3",
			ExpiresAt: f.clock.now().Add(24 * time.Hour),
		})
		if err != nil || len(g.Fields) != 2 || g.SiteID != f.north.ID || g.GrantedBy != f.studyAdmin.AccountID {
			t.Fatalf("grant: %+v, %v", g, err)
		}
		list, err := f.svc.Grants(ctx, f.admin, f.org.Slug, f.study.ID)
		if err != nil || len(list) != 1 || list[0].ID != g.ID || list[0].Reason != g.Reason || list[0].ExpiresAt.IsZero() {
			t.Errorf("grants: %+v, %v", list, err)
		}
		if err := f.svc.Revoke(ctx, f.studyAdmin, f.org.Slug, f.study.ID, ids.New()); !errs.Is(err, errs.NotFound) {
			t.Errorf("revoke an unknown grant: %v", err)
		}
		if err := f.svc.Revoke(ctx, f.admin, f.org.Slug, f.study.ID, g.ID); err != nil {
			t.Fatal(err)
		}
		// Both are security events naming the grant, never its reason.
		var grantEv, revokeEv int
		for _, ev := range f.events(t, f.org.ID) {
			if ev.Outcome != audit.Success || ev.ObjectID != g.ID {
				continue
			}
			if !ev.Security {
				t.Errorf("event %s is not flagged as a security event", ev.Action)
			}
			for _, v := range ev.Details {
				if strings.Contains(v, "verification") {
					t.Errorf("event %s holds the reason", ev.Action)
				}
			}
			switch ev.Action {
			case "decrypt.grant":
				grantEv++
				if ev.Details["account"] != f.investigator.AccountID || ev.Details["fields"] != "birth_date,national_id" || ev.Details["expires"] == "" {
					t.Errorf("grant event %+v", ev)
				}
			case "decrypt.revoke":
				revokeEv++
			}
		}
		if grantEv != 1 || revokeEv != 1 {
			t.Errorf("%d grant and %d revoke events, want 1 and 1", grantEv, revokeEv)
		}
	})
}

package links

import (
	"context"
	"database/sql"
	"testing"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type participantFixture struct {
	fixture
	ps                    *participants.Service
	site                  orgs.Site
	p                     participants.Participant
	investigator, monitor gate.Actor
}

func setupParticipant(t *testing.T, d sqldb.Dialect) participantFixture {
	t.Helper()
	ctx := context.Background()
	f := participantFixture{fixture: setup(t, d)}
	f.ps = &participants.Service{Gate: f.svc.Gate}
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		st, err := orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindStudy, "Trial")
		if err != nil {
			return err
		}
		if f.site, err = orgs.CreateSite(ctx, tx, f.org.ID, st.ID, "North"); err != nil {
			return err
		}
		if f.p, err = participants.Create(ctx, tx, f.org.ID, st.ID, f.site.ID); err != nil {
			return err
		}
		i, _, err := accounts.Enrol(ctx, tx, "investigator@clinic.example", "", authz.Assignment{OrgID: f.org.ID, Role: authz.SiteInvestigator, SiteID: f.site.ID})
		if err != nil {
			return err
		}
		m, _, err := accounts.Enrol(ctx, tx, "monitor@clinic.example", "", authz.Assignment{OrgID: f.org.ID, Role: authz.Monitor, StudyID: st.ID})
		if err != nil {
			return err
		}
		f.investigator, f.monitor = gate.Actor{AccountID: i.ID}, gate.Actor{AccountID: m.ID}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f participantFixture) invite(a gate.Actor, email string) error {
	return f.svc.InviteParticipant(context.Background(), f.ps, a, f.org.Slug, f.site.StudyID, f.site.ID, f.p.Pseudonym, email)
}

// selfOf lists the accounts related to the participant as their own, and
// whether each holds the participant role at the participant's site.
func (f participantFixture) selfOf(t *testing.T) map[string]bool {
	t.Helper()
	ctx := context.Background()
	rels, err := authz.RelationsOfParticipant(ctx, f.db, f.org.ID, f.p.Pseudonym)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range rels {
		if r.Kind != authz.RelationSelf {
			continue
		}
		as, _ := authz.AssignmentsOf(ctx, f.db, f.org.ID, r.AccountID)
		out[r.AccountID] = len(as) == 1 && as[0].Role == authz.Participant && as[0].SiteID == f.site.ID
	}
	return out
}

func TestACL05_ParticipantInvitationGrantsOnAcceptanceOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setupParticipant(t, d)
		ctx := context.Background()
		if err := f.invite(f.investigator, "Pat@Example.org"); err != nil {
			t.Fatal(err)
		}
		msgs := f.mails(t, "pat@example.org")
		if len(msgs) != 1 {
			t.Fatalf("%d invitation mails, want 1", len(msgs))
		}
		m := linkPattern.FindStringSubmatch(msgs[0])
		if m == nil || m[1] != "setup" {
			t.Fatalf("no setup link in:\n%s", msgs[0])
		}
		if got := f.selfOf(t); len(got) != 0 {
			t.Fatalf("own account before acceptance: %v", got)
		}
		// A refused password grants nothing and leaves the link usable.
		if err := f.svc.CompleteSetup(ctx, m[2], "short", gate.Actor{}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("weak password: %v", err)
		}
		if got := f.selfOf(t); len(got) != 0 {
			t.Fatalf("own account after a refused acceptance: %v", got)
		}
		if err := f.svc.CompleteSetup(ctx, m[2], "a patient's sturdy passphrase", gate.Actor{RemoteAddr: "192.0.2.9"}); err != nil {
			t.Fatal(err)
		}
		acc, err := accounts.ByEmail(ctx, f.db, "pat@example.org")
		if err != nil {
			t.Fatal(err)
		}
		if got := f.selfOf(t); len(got) != 1 || !got[acc.ID] {
			t.Fatalf("own accounts after acceptance: %v, want %s with the participant role at the site", got, acc.ID)
		}
		evs, _, err := audit.Search(ctx, f.db, audit.Filter{OrgID: f.org.ID, Participant: f.p.Pseudonym})
		if err != nil {
			t.Fatal(err)
		}
		actions := map[string]bool{}
		for _, ev := range evs {
			if ev.Security && ev.Outcome == audit.Success {
				actions[ev.Action] = true
			}
			for _, v := range ev.Details {
				if v == "pat@example.org" {
					t.Errorf("event %s holds the address", ev.Action)
				}
			}
		}
		if !actions["participant.account_invite"] || !actions["participant.account_link"] {
			t.Errorf("security events about the participant: %v", actions)
		}
		if err := f.svc.CompleteSetup(ctx, m[2], "a patient's sturdy passphrase", gate.Actor{}); !errs.Is(err, errs.NotFound) {
			t.Errorf("link used twice: %v", err)
		}
		if err := f.invite(f.investigator, "other@example.org"); !errs.Is(err, errs.Conflict) {
			t.Errorf("a participant with an account: %v, want Conflict", err)
		}
	})
}

func TestACL05_ParticipantInvitationRefusals(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setupParticipant(t, d)
		for _, tc := range []struct {
			name  string
			as    gate.Actor
			email string
			want  errs.Kind
		}{
			{"malformed address", f.investigator, "pat at example", errs.Invalid},
			{"staff address", f.investigator, "Manager@Clinic.example", errs.Conflict},
			{"own staff address", f.investigator, "investigator@clinic.example", errs.Conflict},
			{"monitor reads but may not invite", f.monitor, "pat@example.org", errs.Forbidden},
			{"organization manager", f.manager, "pat@example.org", errs.NotFound},
		} {
			err := f.invite(tc.as, tc.email)
			if !errs.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		if n := len(f.mails(t, "pat@example.org")) + len(f.mails(t, "manager@clinic.example")); n != 0 {
			t.Errorf("%d e-mails sent for refused invitations", n)
		}
		// A participant of another site is not found under this one.
		err := f.svc.InviteParticipant(context.Background(), f.ps, f.investigator, f.org.Slug, f.site.StudyID, "aaaaaaaaaaaaaaaaaaaaaaaaaa", f.p.Pseudonym, "pat@example.org")
		if !errs.Is(err, errs.NotFound) {
			t.Errorf("under another site: %v, want NotFound", err)
		}
	})
}

// An address whose account has a password accepts with that password,
// which stays; the link cannot replace it.
func TestACL05_ParticipantInvitationOfExistingAccountKeepsItsPassword(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setupParticipant(t, d)
		ctx := context.Background()
		if err := f.invite(f.investigator, "user@clinic.example"); err != nil {
			t.Fatal(err)
		}
		m := linkPattern.FindStringSubmatch(f.mails(t, "user@clinic.example")[0])
		if keep, err := f.svc.PeekSetup(ctx, m[2]); err != nil || !keep.KeepPassword || keep.Invitation {
			t.Fatalf("PeekSetup: %v %v, want an acceptance with the existing password", keep, err)
		}
		if err := f.svc.CompleteSetup(ctx, m[2], "an attacker's new passphrase", gate.Actor{}); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("a new password on an existing account: %v, want Unauthenticated", err)
		}
		if len(f.selfOf(t)) != 0 {
			t.Fatal("granted on a wrong password")
		}
		if err := f.svc.CompleteSetup(ctx, m[2], userPassword, gate.Actor{}); err != nil {
			t.Fatal(err)
		}
		if _, err := accounts.Authenticate(ctx, f.db, "user@clinic.example", userPassword); err != nil {
			t.Errorf("the existing password after acceptance: %v", err)
		}
		if len(f.selfOf(t)) != 1 {
			t.Error("no own account after acceptance")
		}
	})
}

package participants_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const participantPassword = "a patient's sturdy passphrase"

func (f *fixture) inviteAccount(t *testing.T, a gate.Actor, p participants.Participant, email string, ttl time.Duration) string {
	t.Helper()
	inv, err := f.svc.InviteAccount(context.Background(), a, f.org.Slug, p.StudyID, p.SiteID, p.Pseudonym, email, ttl)
	if err != nil {
		t.Fatalf("invite %s: %v", email, err)
	}
	return inv.Token
}

func (f *fixture) withdraw(a gate.Actor, p participants.Participant) error {
	return f.svc.WithdrawAccountInvitation(context.Background(), a, f.org.Slug, p.StudyID, p.SiteID, p.Pseudonym)
}

// acceptInvitation accepts a participant's invitation as the setup page
// does (links.Service.CompleteSetup): the link, the password and the own
// account in one transaction.
func (f *fixture) acceptInvitation(token string) error {
	ctx := context.Background()
	return f.clinical.InTx(ctx, func(tx *sql.Tx) error {
		pending, forParticipant, err := participants.InvitationOf(ctx, tx, token)
		if err != nil {
			return err
		}
		if _, err := accounts.CompleteSetupIn(ctx, tx, token, participantPassword, forParticipant); err != nil {
			return err
		}
		if !forParticipant {
			return errs.E(errs.Internal, "not a participant's invitation")
		}
		return participants.LinkAccount(ctx, linkTx{tx, "192.0.2.9"}, pending)
	})
}

// linkTx appends the link's event in the acceptance's transaction, from
// remoteAddr, as the setup page's does.
type linkTx struct {
	sqldb.Tx
	remoteAddr string
}

func (t linkTx) Record(ctx context.Context, ev audit.Event, _ ...string) error {
	ev.RemoteAddr = t.remoteAddr
	_, err := audit.Append(ctx, t.Tx, nil, ev)
	return err
}

// TestACL05_WithdrawnInvitationLinkStopsWorking invites a participant,
// withdraws the invitation and finds its link dead at the setup page's
// check and at acceptance; a new invitation is then accepted, after which
// the account is linked and no withdrawal applies. The withdrawal is a
// security event naming the participant and never the address.
func TestACL05_WithdrawnInvitationLinkStopsWorking(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.enrol(t, f.investigator, f.north, ada())
		const wrong, right = "Pat.Wrong@Example.org", "pat@example.org"

		first := f.inviteAccount(t, f.investigator, p, wrong, time.Hour)
		second := f.inviteAccount(t, f.investigator, p, wrong, time.Hour)
		if _, err := accounts.PeekLink(ctx, f.clinical, accounts.PurposeSetup, first); err != nil {
			t.Fatalf("the link before the withdrawal: %v", err)
		}
		if err := f.withdraw(f.investigator, p); err != nil {
			t.Fatalf("withdraw: %v", err)
		}
		for _, token := range []string{first, second} {
			if _, err := accounts.PeekLink(ctx, f.clinical, accounts.PurposeSetup, token); !errs.Is(err, errs.NotFound) {
				t.Errorf("the setup page's check of a withdrawn link: %v, want NotFound", err)
			}
			if err := f.acceptInvitation(token); !errs.Is(err, errs.NotFound) {
				t.Errorf("accepting a withdrawn link: %v, want NotFound", err)
			}
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM participant_relations WHERE org_id = $1 AND participant_id = $2`, f.org.ID, p.Pseudonym); n != 0 {
			t.Fatalf("%d relations after accepting withdrawn links", n)
		}
		if err := f.withdraw(f.investigator, p); !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "no pending invitation") {
			t.Errorf("withdraw again: %v, want Conflict: no pending invitation", err)
		}

		// A new invitation, by a data manager this time, is accepted.
		token := f.inviteAccount(t, f.dataManager, p, right, time.Hour)
		if err := f.acceptInvitation(token); err != nil {
			t.Fatalf("accept the new invitation: %v", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM participant_relations WHERE org_id = $1 AND participant_id = $2 AND kind = 'self'`, f.org.ID, p.Pseudonym); n != 1 {
			t.Fatalf("%d own accounts after accepting the new invitation, want 1", n)
		}
		if err := f.withdraw(f.investigator, p); !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "linked") {
			t.Errorf("withdraw after acceptance: %v, want Conflict: account linked", err)
		}

		evs, _, err := audit.Search(ctx, f.clinical, audit.Filter{OrgID: f.org.ID, Action: "participant.account_withdraw", Participant: p.Pseudonym})
		if err != nil {
			t.Fatal(err)
		}
		outcomes := map[audit.Outcome]int{}
		for _, ev := range evs {
			outcomes[ev.Outcome]++
			if !ev.Security || ev.ParticipantID != p.Pseudonym {
				t.Errorf("withdrawal event %+v: want a security event naming the participant", ev)
			}
			b, _ := json.Marshal(ev)
			for _, leak := range []string{"pat.wrong", "Pat.Wrong", right, first, second, ids.Digest(first)} {
				if strings.Contains(string(b), leak) {
					t.Errorf("withdrawal event holds %q: %s", leak, b)
				}
			}
		}
		if outcomes[audit.Success] != 1 || outcomes[audit.Failure] != 2 {
			t.Errorf("withdrawal events by outcome: %v, want 1 success and 2 failures", outcomes)
		}
		for _, ev := range evs {
			if ev.Outcome == audit.Success && ev.Details["withdrawn"] != "2" {
				t.Errorf("the withdrawal's details: %v, want 2 withdrawn", ev.Details)
			}
		}
	})
}

// TestACL05_InvitationWithdrawalRefusals: withdrawing takes the
// invitation's permission at the participant's site. Those who only read
// the participant are told they may not; everyone else, and every path
// that does not lead to the participant, gets the answer for a missing
// participant. Expired invitations are not pending. A refused withdrawal
// leaves the link working.
func TestACL05_InvitationWithdrawalRefusals(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		p := f.enrol(t, f.investigator, f.north, ada())
		token := f.inviteAccount(t, f.investigator, p, "pat@example.org", time.Hour)

		missing := f.svc.WithdrawAccountInvitation(ctx, f.admin, f.org.Slug, f.study.ID, f.north.ID, ids.New())
		if !errs.Is(missing, errs.NotFound) {
			t.Fatalf("an unknown participant: %v, want NotFound", missing)
		}
		for _, c := range []struct {
			name              string
			a                 gate.Actor
			slug, study, site string
			want              errs.Kind
		}{
			{"a monitor, who reads but may not invite", f.monitor, f.org.Slug, f.study.ID, f.north.ID, errs.Forbidden},
			{"another site's investigator", f.southInvestigator, f.org.Slug, f.study.ID, f.north.ID, errs.NotFound},
			{"another organization's admin", f.otherAdmin, f.org.Slug, f.study.ID, f.north.ID, errs.NotFound},
			{"another organization's admin, by its own path", f.otherAdmin, f.other.Slug, f.study.ID, f.north.ID, errs.NotFound},
			{"the organization manager (ACL-06)", f.manager, f.org.Slug, f.study.ID, f.north.ID, errs.NotFound},
			{"a study admin", f.studyAdmin, f.org.Slug, f.study.ID, f.north.ID, errs.NotFound},
			{"under another site", f.admin, f.org.Slug, f.study.ID, f.south.ID, errs.NotFound},
			{"under another study", f.admin, f.org.Slug, f.registry.ID, f.reg.ID, errs.NotFound},
		} {
			err := f.svc.WithdrawAccountInvitation(ctx, c.a, c.slug, c.study, c.site, p.Pseudonym)
			switch {
			case !errs.Is(err, c.want):
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			case c.want == errs.NotFound && err.Error() != missing.Error():
				t.Errorf("%s: %q, want the answer for a missing participant %q", c.name, err, missing)
			}
		}
		if _, err := accounts.PeekLink(ctx, f.clinical, accounts.PurposeSetup, token); err != nil {
			t.Errorf("the link after refused withdrawals: %v", err)
		}

		// An expired invitation is not pending; the pending one is
		// withdrawn by the organization's admin.
		q := f.enrol(t, f.investigator, f.north, participants.Identity{participants.Name: "Quinn Ardent"})
		f.inviteAccount(t, f.investigator, q, "quinn@example.org", -time.Minute)
		if err := f.withdraw(f.admin, q); !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "no pending invitation") {
			t.Errorf("only an expired invitation: %v, want Conflict: no pending invitation", err)
		}
		if err := f.withdraw(f.admin, p); err != nil {
			t.Errorf("the organization admin withdraws: %v", err)
		}
	})
}

// Package accountadmin lets an organization's administrators take away,
// and give back, its members' access: disable and enable a member's
// account (ASVS V7.4.2) and end the sessions and access tokens of one
// member or of every member (ASVS V7.4.5). Every call runs through the
// gate, authorized as authz.SecurityManage, in one transaction with its
// audit event; every change needs a fresh confirmation of the
// administrator (step-up, ACL-09) and is a security event (AUD-05),
// recorded in the organization and, for one account, in each other
// organization of that account, as its effect reaches them: accounts and
// their sessions are shared across organizations. An account that holds
// no role in the organization is NotFound, as a missing one is (ACL-08).
//
// The operator does the same from the command line (`custodia user
// disable`, `enable`, `sign-out`), with the same domain functions:
// accounts.Disable and accounts.Enable, sessions.EndAccess and
// sessions.EndMembersAccess.
package accountadmin

import (
	"context"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sessions"
)

// Service administers members' access.
type Service struct {
	Gate *gate.Gate
	Now  func() time.Time // for tests; time.Now when nil
	// Mail and BaseURL send the link of a factor recovery (recovery.go).
	Mail    mail.Sender
	BaseURL string
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Ended is what a call took away or gave back: whether the account's state
// changed (Disable, Enable), and how many members' sessions and access
// tokens ended.
type Ended struct {
	Changed  bool
	Members  int64
	Sessions int64
	Tokens   int64
}

// ErrSelf refuses an administrator's disabling of their own account: it
// would shut them out with no way back but another administrator.
var ErrSelf = errs.E(errs.Conflict, "you cannot disable your own account; ask another administrator")

// ErrNeededElsewhere refuses to disable an account that another
// organization cannot do without (its last administrator), without
// saying which or why: what a person is elsewhere is not this
// organization's to learn.
var ErrNeededElsewhere = errs.E(errs.Conflict, "this account cannot be disabled from this organization; take away its roles here instead, or ask the instance's operator")

// Members lists the organization's members with whether each is disabled
// or locked.
func (s *Service) Members(ctx context.Context, a gate.Actor, slug string) (orgs.Organization, []accounts.MemberAccess, error) {
	var out []accounts.MemberAccess
	var org orgs.Organization
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "account.access.list", func(t *gate.Tx) error {
		org = t.Org()
		t.Object("organization", org.ID)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		out, err = accounts.MembersAccess(ctx, t, org.ID)
		return err
	})
	return org, out, err
}

// change runs work on one member's account, recorded as action: authorized
// as authz.SecurityManage with a fresh confirmation, the account one that
// holds a role in the organization, and the event a security event in
// this organization and, when work says its change concerns them (echo),
// in each other organization of the account.
func (s *Service) change(ctx context.Context, a gate.Actor, slug, accountID, action string, work func(t *gate.Tx, acc accounts.Account) (echo bool, err error)) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), action, func(t *gate.Tx) error {
		org := t.Org()
		t.Security()
		t.Object("account", accountID)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		acc, err := accounts.ByID(ctx, t, accountID)
		if err != nil {
			return err
		}
		roles, err := authz.AssignmentsOf(ctx, t, org.ID, acc.ID)
		if err != nil {
			return err
		}
		if len(roles) == 0 {
			return errs.E(errs.NotFound, "account not found")
		}
		if echo, err := work(t, acc); err != nil || !echo {
			return err
		}
		others, err := accounts.Organizations(ctx, t, acc.ID)
		if err != nil {
			return err
		}
		for _, id := range others {
			if id != org.ID {
				t.AlsoIn(id)
			}
		}
		return nil
	})
}

// Disable disables a member's account and, in the same transaction, ends
// every session and access token it holds, recorded as account.disable. It
// refuses the administrator's own account (ErrSelf) and the last
// organization admin who can sign in of any organization
// (accounts.ErrLastAdmin). A disabled account is left as it is (Changed
// false), its sessions and tokens ended again should any remain.
func (s *Service) Disable(ctx context.Context, a gate.Actor, slug, accountID string) (Ended, error) {
	var out Ended
	err := s.change(ctx, a, slug, accountID, "account.disable", func(t *gate.Tx, acc accounts.Account) (bool, error) {
		if acc.ID == a.AccountID {
			return false, ErrSelf
		}
		last, err := accounts.LastAdminOf(ctx, t, acc.ID)
		if err != nil {
			return false, err
		}
		for _, org := range last {
			if org != t.Org().ID {
				return false, ErrNeededElsewhere
			}
		}
		now := s.now()
		if out.Changed, err = accounts.Disable(ctx, t, t.Dialect(), acc.ID, now); err != nil {
			return false, err
		}
		if out.Sessions, out.Tokens, err = sessions.EndAccess(ctx, t, acc.ID, now); err != nil {
			return false, err
		}
		out.Members = 1
		t.Detail("was_disabled", strconv.FormatBool(!out.Changed))
		t.Detail("sessions_ended_count", strconv.FormatInt(out.Sessions, 10))
		t.Detail("tokens_ended_count", strconv.FormatInt(out.Tokens, 10))
		return true, nil
	})
	return out, err
}

// Enable lifts the disabling of a member's account, recorded as
// account.enable; an enabled account is left as it is (Changed false). A
// lockout stays until it is unlocked.
func (s *Service) Enable(ctx context.Context, a gate.Actor, slug, accountID string) (Ended, error) {
	var out Ended
	err := s.change(ctx, a, slug, accountID, "account.enable", func(t *gate.Tx, acc accounts.Account) (bool, error) {
		var err error
		if out.Changed, err = accounts.Enable(ctx, t, acc.ID); err != nil {
			return false, err
		}
		t.Detail("was_disabled", strconv.FormatBool(out.Changed))
		return true, nil
	})
	return out, err
}

// SignOut ends every session and access token of a member, recorded as
// account.sessions.end; the member may sign in again at once. An
// administrator who names their own account ends their own sessions, the
// asking one included.
func (s *Service) SignOut(ctx context.Context, a gate.Actor, slug, accountID string) (Ended, error) {
	var out Ended
	err := s.change(ctx, a, slug, accountID, "account.sessions.end", func(t *gate.Tx, acc accounts.Account) (bool, error) {
		var err error
		if out.Sessions, out.Tokens, err = sessions.EndAccess(ctx, t, acc.ID, s.now()); err != nil {
			return false, err
		}
		out.Members = 1
		t.Detail("sessions_ended_count", strconv.FormatInt(out.Sessions, 10))
		t.Detail("tokens_ended_count", strconv.FormatInt(out.Tokens, 10))
		return true, nil
	})
	return out, err
}

// Locked lists the organization's locked members.
func (s *Service) Locked(ctx context.Context, a gate.Actor, slug string) (orgs.Organization, []accounts.LockedMember, error) {
	var out []accounts.LockedMember
	var org orgs.Organization
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "account.locked.list", func(t *gate.Tx) error {
		org = t.Org()
		t.Object("organization", org.ID)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		out, err = accounts.LockedMembers(ctx, t, org.ID)
		return err
	})
	return org, out, err
}

// Unlock lifts the lockout of a member of the organization (the one
// function behind `custodia user unlock`, accounts.Unlock), recorded as
// account.unlock, a security event, with the administrator as the actor,
// in this organization and in each other organization of the account, as
// its lock was. It reports whether the account was locked; an account
// that holds no role here is NotFound, like one that does not exist.
func (s *Service) Unlock(ctx context.Context, a gate.Actor, slug, accountID string) (bool, error) {
	var unlocked bool
	err := s.change(ctx, a, slug, accountID, "account.unlock", func(t *gate.Tx, acc accounts.Account) (bool, error) {
		var err error
		if unlocked, err = accounts.Unlock(ctx, t, acc.ID); err != nil || !unlocked {
			t.Detail("was_locked", "false")
			return false, err
		}
		return true, nil
	})
	return unlocked, err
}

// SignOutAll ends every session and access token of every member of the
// organization but the administrator's asking session, recorded as
// org.sessions.end in the organization's trail: for when its sessions may
// have been taken. Members' sessions end for their other organizations
// too (sessions belong to accounts).
func (s *Service) SignOutAll(ctx context.Context, a gate.Actor, slug string) (Ended, error) {
	var out Ended
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "org.sessions.end", func(t *gate.Tx) error {
		org := t.Org()
		t.Security()
		t.Object("organization", org.ID)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		var err error
		if out.Members, out.Sessions, out.Tokens, err = sessions.EndMembersAccess(ctx, t, org.ID, a.SessionID, s.now()); err != nil {
			return err
		}
		t.Detail("members_count", strconv.FormatInt(out.Members, 10))
		t.Detail("sessions_ended_count", strconv.FormatInt(out.Sessions, 10))
		t.Detail("tokens_ended_count", strconv.FormatInt(out.Tokens, 10))
		return nil
	})
	return out, err
}

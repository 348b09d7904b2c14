package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sessions"
)

// The operator's hold on members' access (ASVS V7.4.2, V7.4.5), as an
// organization's administrators have it (accountadmin.Service), with the
// same domain functions: disable and enable a member's account, end the
// sessions and access tokens of one member or of every member. Each is
// recorded as the operator's security event, for one account in each of
// its organizations.

// memberFlags are the flags of a command about one member of an
// organization.
type memberFlags struct {
	fs          *flag.FlagSet
	cfg         *instance.Config
	kc          *kekConfig
	slug, email *string
}

func newMemberFlags(env Env, name, usage string) memberFlags {
	fs := newFlags(env, name, usage)
	return memberFlags{fs: fs, cfg: instanceFlags(fs), kc: kekFlags(fs),
		slug:  fs.String("org", "", "the organization's `slug` (required)"),
		email: fs.String("email", "", "the person's e-mail `address`")}
}

// member finds, in o, the organization and the account of one of its
// members; an account without a role there is not found, like a missing
// one.
func member(ctx context.Context, o *gate.OpTx, slug, email string) (orgs.Organization, accounts.Account, error) {
	notMember := errs.E(errs.NotFound, "%s has no account in %s", email, slug)
	org, err := orgs.OrganizationBySlug(ctx, o, slug)
	if err != nil {
		return orgs.Organization{}, accounts.Account{}, err
	}
	acc, err := accounts.ByEmail(ctx, o, email)
	if errs.Is(err, errs.NotFound) {
		return orgs.Organization{}, accounts.Account{}, notMember
	}
	if err != nil {
		return orgs.Organization{}, accounts.Account{}, err
	}
	roles, err := authz.AssignmentsOf(ctx, o, org.ID, acc.ID)
	if err != nil {
		return orgs.Organization{}, accounts.Account{}, err
	}
	if len(roles) == 0 {
		return orgs.Organization{}, accounts.Account{}, notMember
	}
	return org, acc, nil
}

// accountEvents is action about the account, a security event, in each
// of its organizations.
func accountEvents(ctx context.Context, o *gate.OpTx, action, accountID string, details map[string]string) ([]audit.Event, error) {
	orgIDs, err := accounts.Organizations(ctx, o, accountID)
	if err != nil {
		return nil, err
	}
	var evs []audit.Event
	for _, id := range orgIDs {
		evs = append(evs, audit.Event{Action: action, OrgID: id, ObjectType: "account", ObjectID: accountID,
			Security: true, Details: details})
	}
	return evs, nil
}

// runUserDisable disables a member's account and ends its sessions and
// access tokens at once; the last organization admin who can sign in of
// any of its organizations is refused.
func runUserDisable(ctx context.Context, env Env, args []string) error {
	f := newMemberFlags(env, "user disable", "user disable --org SLUG --email EMAIL")
	email, err := f.parse(env, args)
	if err != nil {
		return err
	}
	var (
		changed       bool
		ended, tokens int64
	)
	err = f.operate(ctx, env, func(o *gate.OpTx) ([]audit.Event, error) {
		_, acc, err := member(ctx, o, *f.slug, email)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		if changed, err = accounts.Disable(ctx, o, o.Dialect(), acc.ID, now); err != nil {
			return nil, err
		}
		if ended, tokens, err = sessions.EndAccess(ctx, o, acc.ID, now); err != nil {
			return nil, err
		}
		return accountEvents(ctx, o, "account.disable", acc.ID, map[string]string{
			"was_disabled":         strconv.FormatBool(!changed),
			"sessions_ended_count": strconv.FormatInt(ended, 10),
			"tokens_ended_count":   strconv.FormatInt(tokens, 10),
		})
	})
	if err != nil {
		return err
	}
	if changed {
		fmt.Fprintf(env.Stdout, "Disabled the account %s: it cannot sign in until it is enabled; %d sessions and %d access tokens ended.\n", email, ended, tokens)
	} else {
		fmt.Fprintf(env.Stdout, "The account %s was disabled already; %d sessions and %d access tokens ended.\n", email, ended, tokens)
	}
	return nil
}

// runUserEnable lifts the disabling of a member's account.
func runUserEnable(ctx context.Context, env Env, args []string) error {
	f := newMemberFlags(env, "user enable", "user enable --org SLUG --email EMAIL")
	email, err := f.parse(env, args)
	if err != nil {
		return err
	}
	var changed bool
	err = f.operate(ctx, env, func(o *gate.OpTx) ([]audit.Event, error) {
		_, acc, err := member(ctx, o, *f.slug, email)
		if err != nil {
			return nil, err
		}
		if changed, err = accounts.Enable(ctx, o, acc.ID); err != nil || !changed {
			return nil, err
		}
		return accountEvents(ctx, o, "account.enable", acc.ID, nil)
	})
	if err != nil {
		return err
	}
	if changed {
		fmt.Fprintf(env.Stdout, "Enabled the account %s; it can sign in again.\n", email)
	} else {
		fmt.Fprintf(env.Stdout, "The account %s is not disabled; nothing changed.\n", email)
	}
	return nil
}

// runUserSignOut ends every session and access token of a member, or with
// --all of every member of the organization.
func runUserSignOut(ctx context.Context, env Env, args []string) error {
	f := newMemberFlags(env, "user sign-out", "user sign-out --org SLUG (--email EMAIL | --all)")
	all := f.fs.Bool("all", false, "sign out every member of the organization")
	if err := parse(f.fs, env, args); err != nil {
		return err
	}
	if *f.slug == "" || (*f.email == "") == !*all {
		return usageError{"--org and one of --email and --all are required"}
	}
	email := ""
	if !*all {
		var err error
		if email, err = accounts.NormalizeEmail(*f.email); err != nil {
			return err
		}
	}
	var members, ended, tokens int64
	err := f.operate(ctx, env, func(o *gate.OpTx) ([]audit.Event, error) {
		details := func() map[string]string {
			return map[string]string{
				"sessions_ended_count": strconv.FormatInt(ended, 10),
				"tokens_ended_count":   strconv.FormatInt(tokens, 10),
			}
		}
		if *all {
			org, err := orgs.OrganizationBySlug(ctx, o, *f.slug)
			if err != nil {
				return nil, err
			}
			if members, ended, tokens, err = sessions.EndMembersAccess(ctx, o, org.ID, "", time.Now()); err != nil {
				return nil, err
			}
			d := details()
			d["members_count"] = strconv.FormatInt(members, 10)
			return []audit.Event{{Action: "org.sessions.end", OrgID: org.ID, ObjectType: "organization", ObjectID: org.ID,
				Security: true, Details: d}}, nil
		}
		_, acc, err := member(ctx, o, *f.slug, email)
		if err != nil {
			return nil, err
		}
		if ended, tokens, err = sessions.EndAccess(ctx, o, acc.ID, time.Now()); err != nil {
			return nil, err
		}
		members = 1
		return accountEvents(ctx, o, "account.sessions.end", acc.ID, details())
	})
	if err != nil {
		return err
	}
	if *all {
		fmt.Fprintf(env.Stdout, "Signed out the %d members of %s: %d sessions and %d access tokens ended.\n", members, *f.slug, ended, tokens)
	} else {
		fmt.Fprintf(env.Stdout, "Signed out %s: %d sessions and %d access tokens ended; they can sign in again.\n", email, ended, tokens)
	}
	return nil
}

// parse reads the flags of a command about one member and returns the
// member's e-mail address, normalized.
func (f memberFlags) parse(env Env, args []string) (string, error) {
	if err := parse(f.fs, env, args); err != nil {
		return "", err
	}
	if *f.slug == "" || *f.email == "" {
		return "", usageError{"--org and --email are required"}
	}
	return accounts.NormalizeEmail(*f.email)
}

// operate runs work on the instance the flags name, as operator work.
func (f memberFlags) operate(ctx context.Context, env Env, work func(o *gate.OpTx) ([]audit.Event, error)) error {
	inst, err := openWriting(ctx, env, f.cfg, f.kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	return operate(ctx, inst, work)
}

package cli

import (
	"context"
	"fmt"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
)

// runUserUnlock lifts the lockout of a member of an organization (AUTH-04).
// The unlock is recorded as the operator's security event in each of the
// account's organizations, as its lock was.
func runUserUnlock(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "user unlock", "user unlock --org SLUG --email EMAIL")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	slug := fs.String("org", "", "the organization's `slug` (required)")
	email := fs.String("email", "", "the person's e-mail `address` (required)")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if *slug == "" || *email == "" {
		return usageError{"--org and --email are required"}
	}
	normEmail, err := accounts.NormalizeEmail(*email)
	if err != nil {
		return err
	}
	inst, err := openWriting(ctx, env, cfg, kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	notMember := errs.E(errs.NotFound, "%s has no account in %s", normEmail, *slug)
	var unlocked bool
	err = operate(ctx, inst, func(tx *gate.OpTx) ([]audit.Event, error) {
		org, err := orgs.OrganizationBySlug(ctx, tx, *slug)
		if err != nil {
			return nil, err
		}
		acc, err := accounts.ByEmail(ctx, tx, normEmail)
		if errs.Is(err, errs.NotFound) {
			return nil, notMember
		}
		if err != nil {
			return nil, err
		}
		roles, err := authz.AssignmentsOf(ctx, tx, org.ID, acc.ID)
		if err != nil {
			return nil, err
		}
		if len(roles) == 0 {
			return nil, notMember
		}
		if unlocked, err = accounts.Unlock(ctx, tx, acc.ID); err != nil || !unlocked {
			return nil, err
		}
		orgIDs, err := accounts.Organizations(ctx, tx, acc.ID)
		if err != nil {
			return nil, err
		}
		var evs []audit.Event
		for _, id := range orgIDs {
			evs = append(evs, audit.Event{Action: "account.unlock", OrgID: id,
				ObjectType: "account", ObjectID: acc.ID, Security: true})
		}
		return evs, nil
	})
	if err != nil {
		return err
	}
	if unlocked {
		fmt.Fprintf(env.Stdout, "Unlocked the account %s; it can sign in again.\n", normEmail)
	} else {
		fmt.Fprintf(env.Stdout, "The account %s is not locked; nothing changed.\n", normEmail)
	}
	return nil
}

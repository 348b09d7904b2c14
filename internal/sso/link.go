package sso

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// How an account was found for a provider's subject.
const (
	Linked  = "linked"  // linked at an earlier sign-in
	ByEmail = "email"   // an existing account, linked now by its e-mail address
	Created = "created" // made now (Provider.CreateAccounts)
)

// AccountFor finds, in tx, the account the person id signs in to through
// p: the one linked to their subject, else the account of their e-mail
// address, else (where p creates accounts) a new one; the last two are
// linked to the subject now. It answers the account and how it was found.
// No account is the refusal ReasonNoAccount.
func AccountFor(ctx context.Context, tx sqldb.Tx, p Provider, id Identity, now time.Time) (string, string, error) {
	var accountID string
	err := tx.QueryRowContext(ctx,
		`SELECT account_id FROM sso_identities WHERE org_id = $1 AND issuer = $2 AND subject = $3`,
		p.OrgID, id.Issuer, id.Subject).Scan(&accountID)
	switch {
	case err == nil:
		_, err := tx.ExecContext(ctx,
			`UPDATE sso_identities SET last_used_at = $1 WHERE org_id = $2 AND issuer = $3 AND subject = $4`,
			now.UnixMicro(), p.OrgID, id.Issuer, id.Subject)
		if err != nil {
			return "", "", fmt.Errorf("record single sign-on: %w", err)
		}
		return accountID, Linked, nil
	case !errors.Is(err, sql.ErrNoRows):
		return "", "", errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	how := ByEmail
	acc, err := accounts.ByEmail(ctx, tx, id.Email)
	switch {
	case errs.Is(err, errs.NotFound) && p.CreateAccounts:
		if acc, err = accounts.Create(ctx, tx, id.Email, id.Name); err != nil {
			return "", "", err
		}
		how = Created
	case errs.Is(err, errs.NotFound):
		return "", "", Refuse(ReasonNoAccount, nil)
	case err != nil:
		return "", "", err
	}
	// A subject links one account of an organization, and an account one
	// subject of each issuer: a second subject naming an account linked
	// already (a provider that reissued the person under a new subject)
	// is refused until an administrator sorts it out.
	var n int
	if err := tx.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM sso_identities WHERE org_id = $1 AND issuer = $2 AND account_id = $3`,
		p.OrgID, id.Issuer, acc.ID).Scan(&n); err != nil {
		return "", "", errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	if n > 0 {
		return "", "", Refuse(ReasonNoAccount, errors.New("the account is linked to another subject"))
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO sso_identities (org_id, issuer, subject, account_id, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $5)`,
		p.OrgID, id.Issuer, id.Subject, acc.ID, now.UnixMicro())
	if err != nil {
		return "", "", fmt.Errorf("link single sign-on: %w", err)
	}
	return acc.ID, how, nil
}

// OnlyHere reports whether the account holds roles in organization orgID
// alone, or none at all: the accounts an organization's provider may sign
// in. An account shared with another organization signs in with its
// password, so that no organization's provider reaches another's data.
func OnlyHere(ctx context.Context, q sqldb.Querier, accountID, orgID string) (bool, error) {
	orgIDs, err := accounts.Organizations(ctx, q, accountID)
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	for _, o := range orgIDs {
		if o != orgID {
			return false, nil
		}
	}
	return true, nil
}

// CheckRoles checks, in q, that every role of p exists in its
// organization and may be held where it is given (authz.CheckScope), and
// that none is a participant's: a participant's role comes with their
// record, never from a group.
func CheckRoles(ctx context.Context, q sqldb.Querier, p Provider) error {
	for _, r := range p.Roles {
		if r.Role == authz.Participant {
			return errs.E(errs.Invalid, "a group cannot give the participant role: participants are invited from their record")
		}
		a := authz.Assignment{OrgID: p.OrgID, Role: r.Role, StudyID: r.StudyID, SiteID: r.SiteID}
		if err := authz.CheckScope(ctx, q, &a); err != nil {
			if errs.Is(err, errs.NotFound) {
				return errs.E(errs.Invalid, "the group %q names a study or site that is not this organization's", errs.Clip(r.Group, 40))
			}
			return err
		}
	}
	return nil
}

// Changes are the roles a sign-in gave and took, as "role" or
// "role@study/site", for its audit event.
type Changes struct {
	Added, Removed []string
	// Kept are roles the groups no longer give that stay: the last
	// organization admin's.
	Kept []string
}

// Any reports whether the sign-in changed a role.
func (c Changes) Any() bool { return len(c.Added) > 0 || len(c.Removed) > 0 }

// SyncRoles makes, in tx, the roles the account's groups give in p's
// organization those it holds from groups: the roles of its groups that it
// does not hold are given (and recorded as the groups'), the groups' roles
// of groups it has left are taken away. Roles an administrator gave are
// left alone, as are roles whose study or site is gone (CheckScope). The
// organization's last admin keeps the role (Changes.Kept). A provider
// without roles changes nothing.
func SyncRoles(ctx context.Context, tx sqldb.Tx, d sqldb.Dialect, p Provider, accountID string, groups []string, now time.Time) (Changes, error) {
	var ch Changes
	if len(p.Roles) == 0 {
		return ch, nil
	}
	current, err := authz.AssignmentsOf(ctx, tx, p.OrgID, accountID)
	if err != nil {
		return ch, err
	}
	granted, err := grantsOf(ctx, tx, p.OrgID, accountID, current)
	if err != nil {
		return ch, err
	}
	var want []authz.Assignment
	for _, r := range p.Roles {
		if !slices.Contains(groups, r.Group) {
			continue
		}
		a := authz.Assignment{OrgID: p.OrgID, AccountID: accountID, Role: r.Role, StudyID: r.StudyID, SiteID: r.SiteID}
		if r.Role == authz.Participant || authz.CheckScope(ctx, tx, &a) != nil {
			continue // a study or site removed since the setting was saved
		}
		if !slices.ContainsFunc(want, func(w authz.Assignment) bool { return sameScope(w, a) }) {
			want = append(want, a)
		}
	}
	for _, a := range want {
		if slices.ContainsFunc(current, func(c authz.Assignment) bool { return sameScope(c, a) }) {
			continue
		}
		as, err := authz.Assign(ctx, tx, a)
		if err != nil {
			return ch, err
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO sso_grants (assignment_id, org_id, account_id, created_at) VALUES ($1, $2, $3, $4)`,
			as.ID, p.OrgID, accountID, now.UnixMicro()); err != nil {
			return ch, fmt.Errorf("record single sign-on role: %w", err)
		}
		ch.Added = append(ch.Added, describe(as))
	}
	for _, c := range current {
		if !granted[c.ID] || slices.ContainsFunc(want, func(w authz.Assignment) bool { return sameScope(w, c) }) {
			continue
		}
		err := authz.Unassign(ctx, tx, d, c)
		if errs.Is(err, errs.Conflict) {
			ch.Kept = append(ch.Kept, describe(c))
			continue
		}
		if err != nil {
			return ch, err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sso_grants WHERE assignment_id = $1`, c.ID); err != nil {
			return ch, fmt.Errorf("record single sign-on role: %w", err)
		}
		ch.Removed = append(ch.Removed, describe(c))
	}
	return ch, nil
}

// grantsOf are the ids of the account's assignments in the organization
// that groups gave; records of assignments removed meanwhile (by an
// administrator) are cleared.
func grantsOf(ctx context.Context, tx sqldb.Tx, orgID, accountID string, current []authz.Assignment) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT assignment_id FROM sso_grants WHERE org_id = $1 AND account_id = $2`, orgID, accountID)
	if err != nil {
		return nil, fmt.Errorf("read single sign-on roles: %w", err)
	}
	var stale []string
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read single sign-on roles: %w", err)
		}
		if slices.ContainsFunc(current, func(c authz.Assignment) bool { return c.ID == id }) {
			out[id] = true
		} else {
			stale = append(stale, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read single sign-on roles: %w", err)
	}
	for _, id := range stale {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sso_grants WHERE assignment_id = $1`, id); err != nil {
			return nil, fmt.Errorf("clear single sign-on roles: %w", err)
		}
	}
	return out, nil
}

func sameScope(a, b authz.Assignment) bool {
	return a.Role == b.Role && a.StudyID == b.StudyID && a.SiteID == b.SiteID
}

func describe(a authz.Assignment) string {
	var b strings.Builder
	b.WriteString(string(a.Role))
	if a.StudyID != "" {
		b.WriteString("@" + a.StudyID)
		if a.SiteID != "" {
			b.WriteString("/" + a.SiteID)
		}
	}
	return b.String()
}

package sso

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Sealed is a provider's client secret as stored: wrapped by the
// key-encryption key whose version KEKID names, bound to SecretAD.
type Sealed struct {
	Secret []byte
	KEKID  string
}

// ErrNotConfigured answers for an organization without a provider.
var ErrNotConfigured = Refuse(ReasonUnavailable, nil)

// Load reads the provider of organization orgID and its sealed client
// secret; an organization without one is ErrNotConfigured.
func Load(ctx context.Context, q sqldb.Querier, orgID string) (Provider, Sealed, error) {
	var (
		p                                Provider
		s                                Sealed
		scopes, roles, domains, amr, acr string
		updated                          int64
	)
	err := q.QueryRowContext(ctx,
		`SELECT issuer, client_id, client_secret, kek_id, scopes, email_claim, groups_claim, role_map,
		        allowed_domains, create_accounts, accept_provider_mfa, mfa_amr, mfa_acr, updated_at
		 FROM sso_providers WHERE org_id = $1`, orgID).Scan(
		&p.Issuer, &p.ClientID, &s.Secret, &s.KEKID, &scopes, &p.EmailClaim, &p.GroupsClaim, &roles,
		&domains, &p.CreateAccounts, &p.AcceptProviderMFA, &amr, &acr, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Provider{}, Sealed{}, ErrNotConfigured
	}
	if err != nil {
		return Provider{}, Sealed{}, errs.Wrap(errs.Unavailable, err, "read the single sign-on settings")
	}
	if err := json.Unmarshal([]byte(roles), &p.Roles); err != nil {
		return Provider{}, Sealed{}, fmt.Errorf("read the single sign-on roles of %s: %w", orgID, err)
	}
	p.OrgID = orgID
	p.Scopes, p.AllowedDomains, p.MFAAMR, p.MFAACR = strings.Fields(scopes), strings.Fields(domains), strings.Fields(amr), strings.Fields(acr)
	p.HasSecret = len(s.Secret) > 0
	p.UpdatedAt = time.UnixMicro(updated)
	return p, s, nil
}

// Save stores p, checked (Provider.Check, CheckRoles), as its
// organization's provider, with the client secret s, replacing the one it
// had; it reports whether there was one.
func Save(ctx context.Context, tx sqldb.Tx, p Provider, s Sealed, now time.Time) (bool, error) {
	if p.Roles == nil {
		p.Roles = []GroupRole{}
	}
	roles, err := json.Marshal(p.Roles)
	if err != nil {
		return false, fmt.Errorf("store the single sign-on roles: %w", err)
	}
	args := []any{p.OrgID, p.Issuer, p.ClientID, s.Secret, s.KEKID, strings.Join(p.Scopes, " "), p.EmailClaim, p.GroupsClaim,
		string(roles), strings.Join(p.AllowedDomains, " "), p.CreateAccounts, p.AcceptProviderMFA,
		strings.Join(p.MFAAMR, " "), strings.Join(p.MFAACR, " "), now.UnixMicro()}
	res, err := tx.ExecContext(ctx,
		`UPDATE sso_providers SET issuer = $2, client_id = $3, client_secret = $4, kek_id = $5, scopes = $6,
		   email_claim = $7, groups_claim = $8, role_map = $9, allowed_domains = $10, create_accounts = $11,
		   accept_provider_mfa = $12, mfa_amr = $13, mfa_acr = $14, updated_at = $15
		 WHERE org_id = $1`, args...)
	if err != nil {
		return false, fmt.Errorf("store the single sign-on settings: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fmt.Errorf("store the single sign-on settings: %w", err)
	} else if n == 1 {
		return true, nil
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO sso_providers (org_id, issuer, client_id, client_secret, kek_id, scopes, email_claim, groups_claim,
		   role_map, allowed_domains, create_accounts, accept_provider_mfa, mfa_amr, mfa_acr, updated_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`, args...)
	if err != nil {
		return false, fmt.Errorf("store the single sign-on settings: %w", err)
	}
	return false, nil
}

// Remove deletes the provider of organization orgID and its flows in
// progress, and reports whether it had one. The accounts it linked keep
// their roles and sign in with a password, if they have one.
func Remove(ctx context.Context, tx sqldb.Tx, orgID string) (bool, error) {
	if _, err := tx.ExecContext(ctx, `DELETE FROM sso_flows WHERE org_id = $1`, orgID); err != nil {
		return false, fmt.Errorf("remove single sign-on: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM sso_providers WHERE org_id = $1`, orgID)
	if err != nil {
		return false, fmt.Errorf("remove single sign-on: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("remove single sign-on: %w", err)
	}
	return n == 1, nil
}

// Summary describes p for an audit event: its issuer, client and settings,
// never its secret.
func (p Provider) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "issuer=%s client=%s email_claim=%s groups_claim=%s roles=%d domains=%s create_accounts=%t accept_provider_mfa=%t",
		p.Issuer, p.ClientID, p.EmailClaim, p.GroupsClaim, len(p.Roles), strings.Join(p.AllowedDomains, ","), p.CreateAccounts, p.AcceptProviderMFA)
	if p.AcceptProviderMFA {
		fmt.Fprintf(&b, " amr=%s acr=%s", strings.Join(p.MFAAMR, ","), strings.Join(p.MFAACR, ","))
	}
	return b.String()
}

// Package ssoadmin lets an organization's administrators keep its single
// sign-on provider (AUTH-13, package sso): read its settings, set them and
// remove them. Every call runs through the gate, authorized as
// authz.SecurityManage, in one transaction with its audit event; a change
// needs a fresh confirmation (ACL-09) and is a security event with the
// settings before and after, never the client secret. An organization the
// requester may not manage answers NotFound, as a missing one does
// (ACL-08).
package ssoadmin

import (
	"context"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sso"
)

// Service reads and changes organizations' single sign-on providers.
type Service struct {
	Gate *gate.Gate
	// Issuers are the issuer prefixes the operator allowed (serve
	// --sso-issuer); a provider outside them cannot be set.
	Issuers []string
	// RedirectURL is the server's callback address, which administrators
	// register at their provider.
	RedirectURL string
	Now         func() time.Time // for tests; time.Now when nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// maxSecret bounds a client secret.
const maxSecret = 1024

// Provider returns the organization and its provider's settings, and
// whether it has one; without one, the settings are sso.Default's.
func (s *Service) Provider(ctx context.Context, a gate.Actor, slug string) (orgs.Organization, sso.Provider, bool, error) {
	var (
		org        orgs.Organization
		p          sso.Provider
		configured bool
	)
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "org.sso.read", func(t *gate.Tx) error {
		org = t.Org()
		t.Object("organization", org.ID)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		p, _, err = sso.Load(ctx, t, org.ID)
		switch {
		case sso.ReasonOf(err) == sso.ReasonUnavailable:
			p, err = sso.Default(), nil
		case err == nil:
			configured = true
		}
		return err
	})
	return org, p, configured, err
}

// SetProvider makes p the organization's provider, with secret as its
// client's secret; an empty secret keeps the stored one, which only the
// same issuer and client may (a secret is bound to both). The settings are
// checked (sso.Provider.Check, sso.CheckRoles), and a group may give only
// roles the requester could grant themselves (authz.CanGrant), so that no
// one reaches a role through the provider that they could not give.
func (s *Service) SetProvider(ctx context.Context, a gate.Actor, slug string, p sso.Provider, secret string) error {
	if len(secret) > maxSecret {
		return errs.E(errs.Invalid, "the client secret may have at most %d characters", maxSecret)
	}
	return s.Gate.Do(ctx, a, gate.Slug(slug), "org.sso.set", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("organization", org.ID)
		t.Security()
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		p.OrgID = org.ID
		if err := p.Check(s.Issuers); err != nil {
			return err
		}
		if err := sso.CheckRoles(ctx, t, p); err != nil {
			return err
		}
		for _, r := range p.Roles {
			as := authz.Assignment{OrgID: org.ID, Role: r.Role, StudyID: r.StudyID, SiteID: r.SiteID}
			if err := authz.CheckScope(ctx, t, &as); err != nil {
				return err
			}
			if !authz.CanGrant(t.Subject, as) {
				return errs.E(errs.Forbidden, "you cannot let a group give the role %s: it holds permissions you do not have", r.Role)
			}
		}
		old, sealed, err := sso.Load(ctx, t, org.ID)
		had := err == nil
		if err != nil && sso.ReasonOf(err) != sso.ReasonUnavailable {
			return err
		}
		switch {
		case secret != "":
			vault, err := t.Secrets()
			if err != nil {
				return err
			}
			if sealed.Secret, sealed.KEKID, err = vault.Seal(ctx, []byte(secret), sso.SecretAD(org.ID, p.Issuer, p.ClientID)); err != nil {
				return err
			}
			t.Detail("client_auth", "new secret")
		case !had:
			return errs.E(errs.Invalid, "give the client secret the provider issued for Custodia")
		case old.Issuer != p.Issuer || old.ClientID != p.ClientID:
			return errs.E(errs.Invalid, "give the client secret again: it belongs to the issuer and client id it was given for")
		default:
			t.Detail("client_auth", "secret kept")
		}
		if had {
			t.Detail("before", old.Summary())
		}
		t.Detail("after", p.Summary())
		_, err = sso.Save(ctx, t, p, sealed, s.now())
		return err
	})
}

// RemoveProvider removes the organization's provider and its sign-ins in
// progress. People it signed in keep their accounts and roles, and sign in
// with their passwords, if they have one.
func (s *Service) RemoveProvider(ctx context.Context, a gate.Actor, slug string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "org.sso.remove", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("organization", org.ID)
		t.Security()
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		old, _, err := sso.Load(ctx, t, org.ID)
		if sso.ReasonOf(err) == sso.ReasonUnavailable {
			t.Detail("removed", "false")
			return nil
		}
		if err != nil {
			return err
		}
		t.Detail("before", old.Summary())
		_, err = sso.Remove(ctx, t, org.ID)
		return err
	})
}

// Package policyadmin lets an organization's administrators keep its
// security policy: read and set it (AUTH-09, the fields of
// policy.Security).
// Every call runs through the gate, authorized as authz.SecurityManage, in
// one transaction with its audit event; every change is a security event
// (AUD-05). An organization the requester may not manage answers NotFound,
// as a missing one does (ACL-08).
package policyadmin

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/policy"
)

// Service reads and changes organizations' security settings.
type Service struct {
	Gate *gate.Gate
}

// Policy returns the organization and its security policy.
func (s *Service) Policy(ctx context.Context, a gate.Actor, slug string) (orgs.Organization, policy.Security, error) {
	var p policy.Security
	var org orgs.Organization
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "org.policy.read", func(t *gate.Tx) error {
		org = t.Org()
		t.Object("organization", org.ID)
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		p, err = policy.Of(ctx, t, org.ID)
		return err
	})
	return org, p, err
}

// SetPolicy replaces the organization's security policy with p, on the
// record as org.policy.set with the policy before and after. Where the
// instance requires a second factor by default (production), a policy
// without it needs reason, which the event keeps (ASVS V6.3.3): lifting the
// requirement is a decision someone answers for.
func (s *Service) SetPolicy(ctx context.Context, a gate.Actor, slug string, p policy.Security, reason string) error {
	reason = strings.Join(strings.Fields(reason), " ")
	switch {
	case !utf8.ValidString(reason) || strings.ContainsFunc(reason, unicode.IsControl):
		return errs.E(errs.Invalid, "the reason must be text without control characters")
	case len(reason) > maxReason:
		// Counted in bytes: the reason is kept whole in the audit event.
		return errs.E(errs.Invalid, "the reason may have at most %d bytes (as many letters without accents, fewer with)", maxReason)
	}
	return s.Gate.Do(ctx, a, gate.Slug(slug), "org.policy.set", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("organization", org.ID)
		t.Security()
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		waived := !p.RequireSecondFactor && policy.SecondFactorByDefault()
		if waived && reason == "" {
			return errs.E(errs.Invalid, "this instance requires a second factor by default: give the reason for lifting the requirement, which the audit trail keeps")
		}
		old, err := policy.Set(ctx, t, org.ID, p)
		if err != nil {
			return err
		}
		t.Detail("before", old.Summary())
		t.Detail("after", p.Summary())
		if waived {
			t.Detail("second_factor_waiver", reason)
		}
		return nil
	})
}

// maxReason bounds the reason for lifting the second-factor requirement,
// as the audit trail bounds every detail.
const maxReason = 500

// Package netadmin lets administrators set the network ranges of their
// organization and studies (ACL-07). Every change runs through the gate:
// authorized as authz.NetworkManage, in one transaction, audited as a
// security event with the ranges before and after. A change that would
// shut out the very person making it is refused, so an administrator
// cannot lock themselves out by a typing error.
package netadmin

import (
	"context"
	"net/netip"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/orgs"
)

// Service changes network ranges.
type Service struct {
	Gate *gate.Gate
}

func (s *Service) org(ctx context.Context, slug string) (orgs.Organization, error) {
	return orgs.Resolve(ctx, s.Gate.DB, slug)
}

// SetOrganization replaces the organization's ranges with allowed; an empty
// list lifts the restriction. It returns the ranges as stored.
func (s *Service) SetOrganization(ctx context.Context, a gate.Actor, slug string, allowed []string) ([]netip.Prefix, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	err = s.Gate.Do(ctx, a, org.ID, "network.set", func(t *gate.Tx) error {
		t.Object("organization", org.ID)
		t.Security()
		if err := t.Authorize(authz.NetworkManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		out, err = set(ctx, t, a, org.ID, "", allowed)
		return err
	})
	return out, err
}

// SetStudy replaces one study's ranges with allowed; an empty list lifts
// the study's own restriction (its organization's stays). It returns the
// ranges as stored.
func (s *Service) SetStudy(ctx context.Context, a gate.Actor, slug, studyID string, allowed []string) ([]netip.Prefix, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	err = s.Gate.Do(ctx, a, org.ID, "network.set", func(t *gate.Tx) error {
		t.Security()
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		t.Object("study", st.ID)
		if err := t.Authorize(authz.NetworkManage, authz.Resource{OrgID: org.ID, StudyID: st.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		out, err = set(ctx, t, a, org.ID, st.ID, allowed)
		return err
	})
	return out, err
}

// set checks and stores the ranges of one scope, once the requester was
// authorized for it.
func set(ctx context.Context, t *gate.Tx, a gate.Actor, orgID, studyID string, allowed []string) ([]netip.Prefix, error) {
	ranges, err := netpolicy.ParseRanges(allowed)
	if err != nil {
		return nil, err
	}
	if !netpolicy.Allows(ranges, a.RemoteAddr) {
		return nil, errs.E(errs.Invalid,
			"these ranges would shut you out: your address %s is in none of them; include it, or make the change from inside the new ranges", a.RemoteAddr)
	}
	before, err := netpolicy.Load(ctx, t, orgID)
	if err != nil {
		return nil, err
	}
	old := before.Organization()
	if studyID != "" {
		old = before.Study(studyID)
	}
	if err := netpolicy.Replace(ctx, t.Tx, orgID, studyID, ranges); err != nil {
		return nil, err
	}
	t.Detail("before", netpolicy.Describe(old))
	t.Detail("after", netpolicy.Describe(ranges))
	return ranges, nil
}

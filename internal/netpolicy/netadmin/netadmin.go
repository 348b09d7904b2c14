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

// SetOrganization replaces the organization's ranges with allowed; an empty
// list lifts the restriction. It returns the ranges as stored.
func (s *Service) SetOrganization(ctx context.Context, a gate.Actor, slug string, allowed []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "network.set", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("organization", org.ID)
		t.Security()
		if err := t.Authorize(authz.NetworkManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		var err error
		out, err = set(ctx, t, a, org.ID, "", allowed)
		return err
	})
	return out, err
}

// SetStudy replaces one study's ranges with allowed; an empty list lifts
// the study's own restriction (its organization's stays). It returns the
// ranges as stored.
func (s *Service) SetStudy(ctx context.Context, a gate.Actor, slug, studyID string, allowed []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "network.set", func(t *gate.Tx) error {
		org := t.Org()
		t.Security()
		t.Object("study", studyID)
		if err := t.Authorize(authz.NetworkManage, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		st, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
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
	if err := netpolicy.Replace(ctx, t, orgID, studyID, ranges); err != nil {
		return nil, err
	}
	t.Detail("before", netpolicy.Describe(old))
	t.Detail("after", netpolicy.Describe(ranges))
	return ranges, nil
}

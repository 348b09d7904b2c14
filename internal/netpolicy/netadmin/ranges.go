package netadmin

import (
	"context"
	"net/netip"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/orgs"
)

// Ranges are the network ranges of an organization that one requester may
// change: the organization's own when they manage them, and those of each
// study they manage. What they may not change is left out.
type Ranges struct {
	Org orgs.Organization
	// Manages says whether the requester sets the organization's ranges;
	// Organization holds them only then.
	Manages      bool
	Organization []netip.Prefix
	Studies      []StudyRanges
}

// StudyRanges are one study's ranges.
type StudyRanges struct {
	Study  orgs.Study
	Ranges []netip.Prefix
}

// Ranges reads the ranges the requester may change (authz.NetworkManage):
// an organization admin sees the organization's and every study's, a
// study admin their studies'. Someone who may change none is told the
// organization is not found.
func (s *Service) Ranges(ctx context.Context, a gate.Actor, slug string) (Ranges, error) {
	var out Ranges
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "network.read", func(t *gate.Tx) error {
		org := t.Org()
		out.Org = org
		if err := t.AuthorizeList(authz.NetworkManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		out.Manages = t.Allowed(authz.NetworkManage, authz.Resource{OrgID: org.ID})
		studies, err := orgs.Studies(ctx, t, org.ID)
		if err != nil {
			return err
		}
		var managed []orgs.Study
		for _, st := range studies {
			if t.Allowed(authz.NetworkManage, authz.Resource{OrgID: org.ID, StudyID: st.ID}) {
				managed = append(managed, st)
			}
		}
		p, err := netpolicy.Load(ctx, t, org.ID)
		if err != nil {
			return err
		}
		if out.Manages {
			out.Organization = p.Organization()
		}
		for _, st := range managed {
			out.Studies = append(out.Studies, StudyRanges{Study: st, Ranges: p.Study(st.ID)})
		}
		return nil
	})
	if err != nil {
		return Ranges{}, err
	}
	return out, nil
}

package entries

import (
	"context"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
)

// Record is a participant record of the signed-in account's own: where
// its entries are, for the portal (ePRO).
type Record struct {
	Org, OrgName, StudyID, SiteID, Participant string
}

// Records lists the participant records that are the requester's own (a
// participant account, by its relation of kind self). It is the account's
// own work: a person may always find their own records, so the look is
// recorded nowhere.
func (s *Service) Records(ctx context.Context, a gate.Actor) ([]Record, error) {
	out := []Record{}
	err := s.Gate.Own(ctx, a, "entry.records", func(o *gate.OpTx) error {
		o.Nothing()
		orgIDs, err := accounts.Organizations(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		for _, orgID := range orgIDs {
			rels, err := authz.RelationsOf(ctx, o, orgID, a.AccountID)
			if err != nil {
				return err
			}
			var org orgs.Organization
			for _, r := range rels {
				if r.Kind != authz.RelationSelf || r.AccountID != a.AccountID || r.OrgID != orgID {
					continue
				}
				p, err := participants.ByPseudonym(ctx, o, orgID, r.ParticipantID)
				if errs.Is(err, errs.NotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if org.ID == "" {
					if org, err = orgs.OrganizationByID(ctx, o, orgID); err != nil {
						return err
					}
				}
				out = append(out, Record{Org: org.Slug, OrgName: org.Name, StudyID: p.StudyID, SiteID: p.SiteID, Participant: p.Pseudonym})
			}
		}
		return nil
	})
	return out, err
}

package auditadmin

import (
	"context"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/ratelimit"
)

// TrailPage is one page of the trail as a person reads it in the browser
// (AUD-04): the events of Search, with what a reader needs to make sense
// of them and to narrow the search.
type TrailPage struct {
	Org orgs.Organization
	// Filter is the filter as searched: a reader who may read only some
	// studies' trails and named none searches the first of them.
	Filter audit.Filter
	Events []audit.Event
	Next   string
	// WholeOrganization: the reader may read the whole organization's
	// trail; otherwise only that of Studies.
	WholeOrganization bool
	// Studies are the studies whose trail the reader may read.
	Studies []orgs.Study
	// StudyNames and People name the studies and the acting accounts of
	// the page's events (display name, else e-mail address).
	StudyNames map[string]string
	People     map[string]string
}

// Trail searches the trail like Search, in the same audited read
// (audit.search) and under the same authorization, and also returns the
// studies the reader may search and the names of the page's actors.
func (s *Service) Trail(ctx context.Context, a gate.Actor, slug string, f audit.Filter) (TrailPage, error) {
	f.OrgID = "-" // checked with a placeholder; the gate resolves slug
	email, err := checkFilter(f)
	if err != nil {
		return TrailPage{}, err
	}
	p := TrailPage{StudyNames: map[string]string{}, People: map[string]string{}}
	err = s.Gate.Read(ctx, a, gate.Slug(slug), "audit.search", func(t *gate.Tx) error {
		org := t.Org()
		p.Org, f.OrgID = org, org.ID
		if err := t.AuthorizeList(authz.AuditRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		p.WholeOrganization = t.Allowed(authz.AuditRead, authz.Resource{OrgID: org.ID})
		studies, err := orgs.Studies(ctx, t, org.ID)
		if err != nil {
			return err
		}
		for _, st := range studies {
			if p.WholeOrganization || t.Allowed(authz.AuditRead, authz.Resource{OrgID: org.ID, StudyID: st.ID}) {
				p.Studies = append(p.Studies, st)
			}
		}
		if f.Study == "" && !p.WholeOrganization && len(p.Studies) > 0 {
			f.Study = p.Studies[0].ID
		}
		if err := authorize(t, f); err != nil {
			return err
		}
		if err := s.pace.Check(ratelimit.Rule{Bucket: "audit.search:account:" + t.Subject.AccountID, Limit: SearchesPerHour, Window: time.Hour}); err != nil {
			return err
		}
		if found, err := resolve(ctx, t, &f, email); err != nil || !found {
			return err // no member has the address: no events
		}
		if p.Events, p.Next, err = audit.Search(ctx, t, f); err != nil {
			return err
		}
		for _, st := range studies {
			p.StudyNames[st.ID] = st.Name
		}
		for _, ev := range p.Events {
			id := ev.ActorAccount
			if _, done := p.People[id]; done || id == "" {
				continue
			}
			acc, err := accounts.ByID(ctx, t, id)
			switch {
			case errs.Is(err, errs.NotFound):
				p.People[id] = ""
			case err != nil:
				return err
			case acc.DisplayName != "":
				p.People[id] = acc.DisplayName
			default:
				p.People[id] = acc.Email
			}
		}
		return nil
	})
	if err != nil {
		return TrailPage{}, err
	}
	p.Filter = f
	return p, nil
}

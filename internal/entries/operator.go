package entries

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"strconv"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
)

// ExportAsOperator is the export of a study on the operator's command
// (custodia export): every site and every field, but sensitive values,
// which open only under a person's decrypt grant. It is on the audit trail
// before the first byte, as the operator's entry.export of the study, and
// again with the count and SHA-256 of what was sent (entry.export.sent);
// read is a read-only snapshot of the clinical database, which the export
// reads from alone. It answers how many values it wrote.
func (s *Service) ExportAsOperator(ctx context.Context, read sqldb.Querier, studyID, format string, w io.Writer) (int, error) {
	if format != FormatCSV && format != FormatJSONL && format != FormatODM && format != FormatREDCap {
		return 0, errs.E(errs.Invalid, "format must be csv, json, odm or redcap")
	}
	var (
		org       orgs.Organization
		study     orgs.Study
		union     []*forms.Form
		schedule  []forms.Visit
		allowed   = map[string]exportSite{}
		siteNames = map[string]string{}
	)
	err := s.Gate.Operate(ctx, "entry.export", func(o *gate.OpTx) error {
		var orgID string
		err := o.QueryRowContext(ctx, `SELECT org_id FROM studies WHERE id = $1`, studyID).Scan(&orgID)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, "no study %s", errs.Clip(studyID, 32))
		}
		if err != nil {
			return err
		}
		if org, err = orgs.OrganizationByID(ctx, o, orgID); err != nil {
			return err
		}
		if study, err = orgs.StudyByID(ctx, o, orgID, studyID); err != nil {
			return err
		}
		names, u, _, err := studyForms(ctx, o, orgID, studyID)
		if err != nil {
			return err
		}
		union = u
		if schedule, err = forms.Schedule(ctx, o, orgID, studyID); err != nil {
			return err
		}
		sites, err := orgs.Sites(ctx, o, orgID, studyID)
		if err != nil {
			return err
		}
		for _, site := range sites {
			es := exportSite{visible: map[string]bool{}, open: map[string]bool{}}
			for _, n := range names {
				es.visible[n] = true
			}
			allowed[site.ID], siteNames[site.ID] = es, site.Name
		}
		o.Org(orgID)
		o.Study(studyID, "")
		o.Object("study", studyID)
		o.Detail("format", format)
		o.Detail("sites", strconv.Itoa(len(allowed)))
		o.Detail("via", "cli")
		return nil
	})
	if err != nil {
		return 0, err
	}
	begin := func() (io.Writer, error) { return w, nil }
	var sent map[string]string
	switch format {
	case FormatODM:
		sent, err = exportODM(ctx, nil, read, org.ID, forms.ODMStudy{OID: "S." + studyID, Name: study.Name, Visits: schedule, Forms: union}, allowed, siteNames, begin)
	case FormatREDCap:
		repeating := map[string]bool{}
		for _, v := range schedule {
			repeating[v.Key] = v.Repeating
		}
		sent, err = exportREDCap(ctx, nil, read, org.ID, studyID, union, repeating, allowed, begin)
	default:
		sent, err = exportFrom(ctx, nil, read, org.ID, studyID, format, allowed, begin)
	}
	n, _ := strconv.Atoi(sent["values"])
	aerr := s.Gate.Operate(ctx, "entry.export.sent", func(o *gate.OpTx) error {
		o.Org(org.ID)
		o.Study(studyID, "")
		o.Object("study", studyID)
		for k, v := range sent {
			o.Detail(k, v)
		}
		o.Detail("via", "cli")
		if err != nil {
			o.Detail("error", errs.KindOf(err).String())
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if aerr != nil {
		return n, errs.Wrap(errs.Unavailable, aerr, "what was exported could not be recorded")
	}
	return n, nil
}

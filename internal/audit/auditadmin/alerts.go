package auditadmin

import (
	"context"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
)

// Alerts returns the organization and its alerts, newest first, to those
// who may read its whole trail (AUTH-12, AUD-05).
func (s *Service) Alerts(ctx context.Context, a gate.Actor, slug string) (orgs.Organization, []alerts.Alert, error) {
	var (
		org orgs.Organization
		out []alerts.Alert
	)
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "alert.list", func(t *gate.Tx) error {
		org = t.Org()
		if err := t.Authorize(authz.AuditRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		out, err = alerts.List(ctx, t, org.ID)
		return err
	})
	if err != nil {
		return orgs.Organization{}, nil, err
	}
	if out == nil {
		out = []alerts.Alert{}
	}
	return org, out, nil
}

// MarkAlertRead records that an administrator has seen an alert.
func (s *Service) MarkAlertRead(ctx context.Context, a gate.Actor, slug, alertID string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "alert.read", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("alert", alertID)
		if err := t.Authorize(authz.AuditRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		return alerts.MarkRead(ctx, t, org.ID, alertID, time.Now())
	})
}

// AlertRules returns the organization's alert rules.
func (s *Service) AlertRules(ctx context.Context, a gate.Actor, slug string) (alerts.Rules, error) {
	var r alerts.Rules
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "alert.rules.read", func(t *gate.Tx) error {
		org := t.Org()
		if err := t.Authorize(authz.AuditRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		r, err = alerts.RulesOf(ctx, t, org.ID)
		return err
	})
	return r, err
}

// SetAlertRules replaces the organization's alert rules (none: the
// default, every security event). Organization administrators only; the
// change is a security event naming the old and the new rules.
func (s *Service) SetAlertRules(ctx context.Context, a gate.Actor, slug string, prefixes []string) (alerts.Rules, error) {
	prefixes, err := alerts.CheckRules(prefixes)
	if err != nil {
		return alerts.Rules{}, err
	}
	var r alerts.Rules
	err = s.Gate.Do(ctx, a, gate.Slug(slug), "alert.rules.set", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("organization", org.ID)
		t.Security()
		if err := t.Authorize(authz.SecurityManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		old, err := alerts.RulesOf(ctx, t, org.ID)
		if err != nil {
			return err
		}
		if err := alerts.SetRules(ctx, t, org.ID, prefixes, time.Now()); err != nil {
			return err
		}
		t.Detail("old", describeRules(old))
		if r, err = alerts.RulesOf(ctx, t, org.ID); err != nil {
			return err
		}
		t.Detail("new", describeRules(r))
		return nil
	})
	return r, err
}

func describeRules(r alerts.Rules) string {
	if r.Default {
		return "default"
	}
	q := make([]string, len(r.Prefixes))
	for i, p := range r.Prefixes {
		q[i] = `"` + p + `"`
	}
	return strings.Join(q, ",")
}

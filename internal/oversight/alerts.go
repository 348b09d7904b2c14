package oversight

import (
	"context"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
)

// Alerts returns the organization's alerts, newest first, to those who may
// read its whole trail (AUTH-12, AUD-05).
func (s *Service) Alerts(ctx context.Context, a gate.Actor, slug string) ([]alerts.Alert, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return nil, err
	}
	var out []alerts.Alert
	err = s.Gate.Do(ctx, a, org.ID, "alert.list", func(t *gate.Tx) error {
		if err := t.Authorize(authz.AuditRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		out, err = alerts.List(ctx, t, org.ID)
		return err
	})
	if out == nil {
		out = []alerts.Alert{}
	}
	return out, err
}

// MarkAlertRead records that an administrator has seen an alert.
func (s *Service) MarkAlertRead(ctx context.Context, a gate.Actor, slug, alertID string) error {
	org, err := s.org(ctx, slug)
	if err != nil {
		return err
	}
	return s.Gate.Do(ctx, a, org.ID, "alert.read", func(t *gate.Tx) error {
		t.Object("alert", alertID)
		if err := t.Authorize(authz.AuditRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		return alerts.MarkRead(ctx, t.Tx, org.ID, alertID, time.Now())
	})
}

// AlertRules returns the organization's alert rules.
func (s *Service) AlertRules(ctx context.Context, a gate.Actor, slug string) (alerts.Rules, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return alerts.Rules{}, err
	}
	var r alerts.Rules
	err = s.Gate.Do(ctx, a, org.ID, "alert.rules.read", func(t *gate.Tx) error {
		if err := t.Authorize(authz.AuditRead, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		r, err = alerts.RulesOf(ctx, t, org.ID)
		return err
	})
	return r, err
}

// SetAlertRules replaces the organization's alert rules (none: the
// default, every security event). Organization administrators only; the
// change is a security event naming the old and the new rules.
func (s *Service) SetAlertRules(ctx context.Context, a gate.Actor, slug string, prefixes []string) (alerts.Rules, error) {
	org, err := s.org(ctx, slug)
	if err != nil {
		return alerts.Rules{}, err
	}
	prefixes, err = alerts.CheckRules(prefixes)
	if err != nil {
		return alerts.Rules{}, err
	}
	var r alerts.Rules
	err = s.Gate.Do(ctx, a, org.ID, "alert.rules.set", func(t *gate.Tx) error {
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
		if err := alerts.SetRules(ctx, t.Tx, org.ID, prefixes, time.Now()); err != nil {
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

package keyops

import (
	"context"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
)

// Service lets administrators request, list and approve key operations
// through the gate, as the API and the browser pages do: authorization
// key.manage, a fresh confirmation of identity (ACL-09) for requests and
// approvals, and the security event in the same transaction as the change.
// Carrying an approved request out stays with the operator on the server
// (custodia keys), who holds the key provider's settings.
type Service struct {
	Gate *gate.Gate
	Now  func() time.Time
}

// History is how far back List looks.
const History = 30 * 24 * time.Hour

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// describe puts what the audit trail says of r on the gate's event.
func describe(t *gate.Tx, r Request) {
	t.Object("key-request", r.ID)
	for k, v := range r.details() {
		t.Detail(k, v)
	}
}

// Request records a key operation of kind with p, requested by a.
func (s *Service) Request(ctx context.Context, a gate.Actor, slug string, kind Kind, p Params) (Request, error) {
	if err := checkParams(kind, p); err != nil {
		return Request{}, err
	}
	return s.decide(ctx, a, slug, "key.request", func(t *gate.Tx, orgID string) (Request, error) {
		return Create(ctx, t, orgID, a.AccountID, kind, p, s.now())
	}, func(t *gate.Tx) { t.Detail("kind", string(kind)) })
}

// Approve records a's approval of request id of the organization. The
// approver must hold key.manage there and must not be the requester
// (CRY-08).
func (s *Service) Approve(ctx context.Context, a gate.Actor, slug, id string) (Request, error) {
	return s.decide(ctx, a, slug, "key.approve", func(t *gate.Tx, orgID string) (Request, error) {
		return Approve(ctx, t, orgID, id, a.AccountID, s.now())
	}, func(t *gate.Tx) { t.Object("key-request", id) })
}

// decide runs a request or an approval as a security event of action:
// first what is known of it (before), then authorization key.manage and a
// fresh confirmation, then the work, whose request the event describes.
func (s *Service) decide(ctx context.Context, a gate.Actor, slug, action string,
	work func(t *gate.Tx, orgID string) (Request, error), before func(t *gate.Tx)) (Request, error) {
	var out Request
	err := s.Gate.Do(ctx, a, gate.Slug(slug), action, func(t *gate.Tx) error {
		org := t.Org()
		t.Security()
		before(t)
		if err := t.Authorize(authz.KeyManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		r, err := work(t, org.ID)
		if err != nil {
			return err
		}
		describe(t, r)
		out = r
		return nil
	})
	return out, err
}

// List returns the organization's key requests of the last History, newest
// first.
func (s *Service) List(ctx context.Context, a gate.Actor, slug string) ([]Request, error) {
	var out []Request
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "key.list", func(t *gate.Tx) error {
		org := t.Org()
		if err := t.Authorize(authz.KeyManage, authz.Resource{OrgID: org.ID}); err != nil {
			return err
		}
		var err error
		out, err = List(ctx, t, org.ID, s.now().Add(-History))
		return err
	})
	return out, err
}

package keyadmin

import (
	"context"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
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
	l, err := s.list(ctx, a, slug, false)
	return l.Requests, err
}

// Listing is List as the keys page shows it: the organization, its
// requests and the accounts that made and approved them.
type Listing struct {
	Org      orgs.Organization
	Requests []Request
	// People are the accounts the requests name (requester, approver), by
	// id; an account that no longer exists is missing.
	People map[string]accounts.Account
}

// Listing returns what List returns with the organization and the
// accounts the requests name, read in the same audited read (key.list)
// under the same authorization, the accounts in one statement.
func (s *Service) Listing(ctx context.Context, a gate.Actor, slug string) (Listing, error) {
	return s.list(ctx, a, slug, true)
}

func (s *Service) list(ctx context.Context, a gate.Actor, slug string, people bool) (Listing, error) {
	var l Listing
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "key.list", func(t *gate.Tx) error {
		l.Org = t.Org()
		if err := t.Authorize(authz.KeyManage, authz.Resource{OrgID: l.Org.ID}); err != nil {
			return err
		}
		var err error
		if l.Requests, err = List(ctx, t, l.Org.ID, s.now().Add(-History)); err != nil || !people {
			return err
		}
		named := make([]string, 0, 2*len(l.Requests))
		for _, r := range l.Requests {
			named = append(named, r.RequestedBy, r.ApprovedBy)
		}
		l.People, err = accounts.ByIDs(ctx, t, named)
		return err
	})
	if err != nil {
		return Listing{}, err
	}
	return l, nil
}

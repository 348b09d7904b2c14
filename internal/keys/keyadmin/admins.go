package keyadmin

import (
	"context"
	"errors"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sqldb"
)

// Admins lets administrators request and approve key operations from the
// command line on the server, each proving who they are with their
// password (never given as a flag). A wrong password counts towards the
// account's lockout (AUTH-04) like any other, and every request, approval
// and refusal is a security event.
type Admins struct {
	Gate *gate.Gate
	// Factors proves the administrators' passwords (mfa.Service.Prove).
	Factors *mfa.Service
	Now     func() time.Time
}

func (s *Admins) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// actorOf finds the account of email. An unknown address costs a password
// check all the same and answers like a wrong password (AUTH-06).
func (s *Admins) actorOf(ctx context.Context, email, password string) (gate.Actor, error) {
	var id string
	err := s.Gate.Operate(ctx, "key.admin.find", func(tx *gate.OpTx) error {
		tx.Nothing() // a read, of what the operator may always read
		var err error
		id, err = accounts.KnownID(ctx, tx, email)
		return err
	})
	if err != nil {
		return gate.Actor{}, errs.Wrap(errs.Unavailable, err, "find account")
	}
	if id == "" {
		accounts.Hash(ctx, password) // what checking a password costs
		return gate.Actor{}, accounts.ErrBadCredentials
	}
	return gate.Actor{AccountID: id, RemoteAddr: "local", UserAgent: "custodia keys"}, nil
}

// prove runs then for the account of email once its password is proven,
// in the transaction that records the security event action. A refusal by
// then is recorded as a denied security event of its own.
func (s *Admins) prove(ctx context.Context, email, password, action string, then func(tx sqldb.Tx, a gate.Actor, ev *audit.Event) (Request, error)) (Request, error) {
	a, err := s.actorOf(ctx, email, password)
	if err != nil {
		return Request{}, err
	}
	var out, refused Request
	err = s.Factors.Prove(ctx, a, action, "", password, func(tx sqldb.Tx, ev *audit.Event) error {
		r, err := then(tx, a, ev)
		if err != nil {
			refused = r
			return err
		}
		out = r
		*ev = withProof(Event(action, r, audit.Success), *ev)
		return nil
	})
	switch {
	case errors.Is(err, mfa.ErrWrongCode):
		return Request{}, accounts.ErrBadCredentials
	case err != nil && refused.ID != "":
		// The refusal stands on its own, the account's as its actor.
		ev := Event(action, refused, audit.Denied)
		ev.Details["reason"] = errs.KindOf(err).String()
		if aerr := s.Gate.Account(ctx, a, action, func(tx *gate.OpTx) error {
			asEvent(tx, ev)
			return nil
		}); aerr != nil {
			return Request{}, errs.Wrap(errs.Unavailable, aerr, "the refusal could not be audited")
		}
	}
	return out, err
}

// withProof keeps the actor and proof of the event Prove made, with the
// request's action, object and details.
func withProof(ev, proof audit.Event) audit.Event {
	ev.ActorAccount, ev.ActorSession, ev.RemoteAddr, ev.UserAgent = proof.ActorAccount, proof.ActorSession, proof.RemoteAddr, proof.UserAgent
	for k, v := range proof.Details {
		ev.Details[k] = v
	}
	ev.Details["via"] = "cli"
	return ev
}

// Request records a key operation requested by the administrator of
// orgID whose e-mail address and password are given.
func (s *Admins) Request(ctx context.Context, email, password, orgID string, kind Kind, p Params) (Request, error) {
	if err := checkParams(kind, p); err != nil {
		return Request{}, err
	}
	return s.prove(ctx, email, password, "key.request", func(tx sqldb.Tx, a gate.Actor, _ *audit.Event) (Request, error) {
		r, err := Create(ctx, tx, orgID, a.AccountID, kind, p, s.now())
		if err != nil {
			return Request{ID: "-", OrgID: orgID, Kind: kind, Params: p, RequestedBy: a.AccountID}, err
		}
		return r, nil
	})
}

// Approve records the approval of request id by the administrator whose
// e-mail address and password are given, who must not be its requester.
func (s *Admins) Approve(ctx context.Context, email, password, id string) (Request, error) {
	return s.prove(ctx, email, password, "key.approve", func(tx sqldb.Tx, a gate.Actor, _ *audit.Event) (Request, error) {
		r, err := Approve(ctx, tx, "", id, a.AccountID, s.now())
		if err != nil && r.ID == "" {
			return Request{ID: "-"}, err // unknown request: nothing to name
		}
		return r, err
	})
}

package mfa

import (
	"context"
	"errors"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/sqldb"
)

// ProofPassword names a proof by the account's password in audit events;
// a code's proof is named by its Method.
const ProofPassword = "password"

// Prove checks that a signed-in person is the account's owner, not just the
// holder of its session: exactly one of code (a TOTP or recovery code of
// the account's factor) and password. On success it spends the code, runs
// then and records the security event action, all in one transaction, so
// the code is spent exactly when what then writes commits; then may shape
// the event (add details, or make it another action about another object).
// A wrong code or password is ErrWrongCode, counts towards the account's
// lockout (AUTH-04) and is on the audit trail; the checks are limited per
// account (AUTH-05).
func (s *Service) Prove(ctx context.Context, a gate.Actor, action, code, password string, then func(tx sqldb.Tx, ev *audit.Event) error) error {
	return s.prove(ctx, a, action, code, password, nil, then)
}

// prove is Prove that first runs before, in the same transaction, to find
// what then changes; its error ends the step before any check.
func (s *Service) prove(ctx context.Context, a gate.Actor, action, code, password string, before func(q sqldb.Querier) error, then func(tx sqldb.Tx, ev *audit.Event) error) error {
	if (code == "") == (password == "") {
		return errs.E(errs.Invalid, "give either a current code or the account's password")
	}
	// The password's hash is slow by design: it is checked before the work,
	// which holds its lane's turn, and its verdict is recorded in the work.
	passwordOK := false
	if password != "" {
		err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
			acc, err := accounts.ByID(ctx, q, a.AccountID)
			if err != nil {
				return err
			}
			_, _, err = accounts.Check(ctx, q, acc.Email, password)
			return err
		})
		switch {
		case err == nil:
			passwordOK = true
		case !errors.Is(err, accounts.ErrBadCredentials):
			return err
		}
	}
	return s.run(ctx, a, action, func(o *gate.OpTx, out *outcome) error {
		if before != nil {
			if err := before(o); err != nil {
				return err
			}
		}
		if err := s.limit(ctx, o, a.AccountID); err != nil {
			return err
		}
		method := ProofPassword
		if password != "" && !passwordOK {
			return out.refuse(ctx, o, map[string]string{"reason": "wrong_password"}, true, ErrWrongCode)
		}
		if code != "" {
			m, err := s.spendCode(ctx, o, out, a, code)
			if err != nil || m == "" {
				return err
			}
			method = m
		}
		ev := event(a, action, audit.Success)
		ev.Security = true
		ev.Details = map[string]string{"proof": method}
		if then != nil {
			if err := then(o, &ev); err != nil {
				return err
			}
		}
		recordAs(o, ev)
		return inEachOrg(ctx, o, a.AccountID)
	})
}

package mfa

import (
	"context"
	"database/sql"
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
// then and appends the security event action, all in one transaction, so
// the code is spent exactly when what then writes commits; then may add
// details to the event. A wrong code or password is ErrWrongCode, counts
// towards the account's lockout (AUTH-04) and is on the audit trail; the
// checks are limited per account (AUTH-05).
func (s *Service) Prove(ctx context.Context, a gate.Actor, action, code, password string, then func(tx sqldb.Tx, ev *audit.Event) error) error {
	if (code == "") == (password == "") {
		return errs.E(errs.Invalid, "give either a current code or the account's password")
	}
	if err := s.limit(ctx, a.AccountID); err != nil {
		return err
	}
	method := ProofPassword
	var p proof
	if password != "" {
		acc, err := accounts.ByID(ctx, s.DB, a.AccountID)
		if err != nil {
			return err
		}
		if _, _, err := accounts.Check(ctx, s.DB, acc.Email, password); err != nil {
			if !errors.Is(err, accounts.ErrBadCredentials) {
				return err
			}
			return s.refuse(ctx, a, action, "wrong_password", true, ErrWrongCode)
		}
	} else {
		var err error
		if p, err = s.check(ctx, a.AccountID, code); err != nil {
			return err
		}
		method = string(p.method)
	}
	now := s.now()
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if code != "" {
			if err := p.spend(ctx, tx, a, now); err != nil {
				return err
			}
		}
		ev := event(a, action, audit.Success)
		ev.Security = true
		ev.Details = map[string]string{"proof": method}
		if then != nil {
			if err := then(tx, &ev); err != nil {
				return err
			}
		}
		return appendForEachOrg(ctx, tx, a.AccountID, ev)
	})
	if errors.Is(err, ErrWrongCode) {
		return s.refuse(ctx, a, action, "wrong_code", true, ErrWrongCode)
	}
	return err
}

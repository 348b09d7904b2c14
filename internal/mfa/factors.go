package mfa

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Enrolment is what a person needs to add a TOTP factor to an
// authenticator app: the secret in base32 for typing, the otpauth URI, and
// the URI as a PNG QR code. It is shown once, to its owner only.
type Enrolment struct {
	Secret string
	URI    string
	QRPNG  []byte
}

// Begin starts setting up a TOTP factor for the actor's account: a fresh
// 20-byte secret, sealed by the gate's vault as a pending factor that does
// nothing until Confirm. A pending factor left from an earlier Begin is
// replaced. An account that has a TOTP or SMS factor must remove it first;
// one that has passkeys only may add an authenticator app after a recent
// step-up of the session (admit), so whoever holds a stolen session cannot
// slip in their own authenticator.
func (s *Service) Begin(ctx context.Context, a gate.Actor) (Enrolment, error) {
	if err := s.sealing(); err != nil {
		return Enrolment{}, err
	}
	secret := make([]byte, SecretSize)
	defer clear(secret)
	rand.Read(secret) // never fails on supported platforms (crypto/rand docs)
	id := ids.New()
	var email string
	err := s.run(ctx, a, "mfa.totp.begin", func(o *gate.OpTx, out *outcome) error {
		acc, err := accounts.ByID(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		email = acc.Email
		if _, err := s.admitted(ctx, o, out, true, "mfa.totp.enrol"); err != nil || out.refused != nil {
			return err
		}
		sec, err := secrets(o)
		if err != nil {
			return err
		}
		sealed, kekID, err := sec.Seal(ctx, secret, secretAD(acc.ID, id))
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
		}
		if _, err := o.ExecContext(ctx,
			`DELETE FROM account_factors WHERE account_id = $1 AND confirmed_at IS NULL`, acc.ID); err != nil {
			return fmt.Errorf("replace pending factor: %w", err)
		}
		if _, err := o.ExecContext(ctx,
			`INSERT INTO account_factors (id, account_id, kind, kek_id, wrapped, last_step, created_at)
			 VALUES ($1, $2, 'totp', $3, $4, 0, $5)`,
			id, acc.ID, kekID, sealed, out.now.UnixMicro()); err != nil {
			return fmt.Errorf("store pending factor: %w", err)
		}
		o.Detail("factor_id", id)
		return nil
	})
	if err != nil {
		return Enrolment{}, err
	}
	e := Enrolment{Secret: secretEncoding.EncodeToString(secret), URI: URI(email, secret)}
	if e.QRPNG, err = QRCode(e.URI); err != nil {
		return Enrolment{}, errs.Wrap(errs.Internal, err, "draw the QR code")
	}
	return e, nil
}

// Confirm activates the pending factor of the actor's account once the
// person shows a correct code from it and records mfa.totp.enrol, a
// security event. For the account's first second factor it returns new
// recovery codes, in their display form, for showing this once: only their
// hashes are kept. Beside a passkey it returns none: the account's recovery
// codes stand, as for a second passkey. Beside a factor, the step-up that
// Begin needed is needed again.
func (s *Service) Confirm(ctx context.Context, a gate.Actor, code string) ([]string, error) {
	return s.ConfirmThen(ctx, a, code, nil)
}

// ConfirmThen is Confirm that also runs then, if not nil, in the
// transaction that activates the factor, so that what then writes (a
// session, for a person who enrols while signing in) commits with it or not
// at all.
func (s *Service) ConfirmThen(ctx context.Context, a gate.Actor, code string, then func(tx sqldb.Tx) error) ([]string, error) {
	if err := s.sealing(); err != nil {
		return nil, err
	}
	var codes []string
	err := s.run(ctx, a, "mfa.totp.enrol", func(o *gate.OpTx, out *outcome) error {
		if err := s.limit(ctx, o, a.AccountID); err != nil {
			return err
		}
		first, err := s.admitted(ctx, o, out, true, "mfa.totp.enrol")
		if err != nil || out.refused != nil {
			return err
		}
		f, err := readFactor(ctx, o, a.AccountID, true)
		if err != nil {
			return err
		}
		sec, err := secrets(o)
		if err != nil {
			return err
		}
		secret, err := openSecret(ctx, sec, a.AccountID, f)
		if err != nil {
			return err
		}
		step, ok := matchStep(secret, strings.TrimSpace(code), out.now)
		clear(secret)
		if !ok {
			// A mistyped first code proves nothing about the account; it is
			// on the record but does not count towards the lockout.
			return out.refuse(ctx, o, map[string]string{"reason": "wrong_code"}, false, ErrWrongCode)
		}
		res, err := o.ExecContext(ctx,
			`UPDATE account_factors SET confirmed_at = $1, last_step = $2
			 WHERE id = $3 AND account_id = $4 AND confirmed_at IS NULL AND last_step < $2`,
			out.now.UnixMicro(), step, f.id, a.AccountID)
		if sqldb.IsUniqueViolation(err) {
			return errHasFactor
		}
		if err != nil {
			return fmt.Errorf("activate factor: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errNoPending // confirmed or replaced meanwhile
		}
		codes, err = enrolled(ctx, o, a, f.id, nil, first, out.now, then)
		return err
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// enrolled finishes, in the work of o, the set-up of a factor just
// activated (an app, a phone or a passkey): drops the account's pending app
// or phone set-ups, gives it recovery codes if this is its first factor
// (returned for showing once; beside another factor the codes it has
// stand), makes the work's event a security event in each of the account's
// organizations with the factor's id and details, and runs then, if not
// nil, so that what then writes commits with the factor.
func enrolled(ctx context.Context, o *gate.OpTx, a gate.Actor, factorID string, details map[string]string, first bool, now time.Time, then func(tx sqldb.Tx) error) ([]string, error) {
	if _, err := o.ExecContext(ctx,
		`DELETE FROM account_factors WHERE account_id = $1 AND confirmed_at IS NULL`, a.AccountID); err != nil {
		return nil, fmt.Errorf("drop pending factors: %w", err)
	}
	var codes []string
	if first {
		var err error
		if codes, err = replaceRecoveryCodes(ctx, o, a.AccountID, now); err != nil {
			return nil, err
		}
	}
	o.Security()
	o.Detail("factor_id", factorID)
	o.Detail("recovery_codes_count", strconv.Itoa(len(codes)))
	for k, v := range details {
		o.Detail(k, v)
	}
	if err := inEachOrg(ctx, o, a.AccountID); err != nil {
		return nil, err
	}
	if then != nil {
		if err := then(o); err != nil {
			return nil, err
		}
	}
	return codes, nil
}

// proof is a code checked against an account's factor and not yet spent.
type proof struct {
	accountID string
	method    Method
	factorID  string
	step      int64
	hash      string
	smsCodeID string // for MethodSMS: the texted code matched
	ok        bool   // the code can be spent
	tried     bool   // a wrong texted code: one of its tries is used up
}

// check works out, in the work of o, what code is: a TOTP code of the
// account's active factor, and which time step, a texted code, or a
// recovery code. A wrong code is a proof that does not spend, not an
// error; a wrong texted code has used up one of its tries in o, which
// stands only if the work commits.
func (s *Service) check(ctx context.Context, o *gate.OpTx, accountID, challenge, code string) (proof, error) {
	code = strings.TrimSpace(code)
	p := proof{accountID: accountID, method: MethodRecovery}
	if isTOTPShape(code) {
		p.method = MethodTOTP
		f, err := readFactor(ctx, o, accountID, false)
		if errors.Is(err, errNoFactor) {
			return s.checkSMS(ctx, o, accountID, challenge, code) // six digits: a texted code
		}
		if err != nil {
			return proof{}, err
		}
		sec, err := secrets(o)
		if err != nil {
			return proof{}, err
		}
		secret, err := openSecret(ctx, sec, accountID, f)
		if err != nil {
			return proof{}, err
		}
		p.factorID = f.id
		p.step, p.ok = matchStep(secret, code, s.now())
		clear(secret)
		return p, nil
	}
	if norm, ok := normalizeRecovery(code); ok {
		p.hash, p.ok = recoveryHash(accountID, norm), true
	}
	return p, nil
}

// spend accepts the proof in the work of o, once: the TOTP step only if it
// is later than the last step accepted for the factor, a recovery code only
// if unused. The condition and the write are one statement, so of two
// nodes spending one code at once, one finds it spent (in PostgreSQL the
// second UPDATE waits for the first's row lock and then re-checks its
// WHERE; in SQLite transactions take the write lock at BEGIN). Anything
// else is ErrWrongCode. The use of a recovery code is recorded beside the
// work's own event.
func (p proof) spend(ctx context.Context, o *gate.OpTx, a gate.Actor, now time.Time) error {
	if !p.ok {
		return ErrWrongCode
	}
	var res sql.Result
	var err error
	switch p.method {
	case MethodTOTP:
		res, err = o.ExecContext(ctx,
			`UPDATE account_factors SET last_step = $1
			 WHERE id = $2 AND account_id = $3 AND confirmed_at IS NOT NULL AND last_step < $1`,
			p.step, p.factorID, p.accountID)
	case MethodRecovery:
		res, err = o.ExecContext(ctx,
			`UPDATE recovery_codes SET used_at = $1
			 WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL`,
			now.UnixMicro(), p.accountID, p.hash)
	case MethodSMS:
		res, err = spendSMS(ctx, o, p, now)
	default:
		return ErrWrongCode
	}
	if err != nil {
		return fmt.Errorf("spend code: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("spend code: %w", err)
	} else if n != 1 {
		return ErrWrongCode
	}
	if p.method == MethodRecovery {
		return recordRecoveryUse(ctx, o, a)
	}
	return nil
}

// recordRecoveryUse puts the use of a recovery code on the trail of each of
// the account's organizations, as a security event (AUD-05), with the
// number of codes left, beside the event of the work that spent it.
func recordRecoveryUse(ctx context.Context, o *gate.OpTx, a gate.Actor) error {
	left, err := RecoveryCodesLeft(ctx, o, a.AccountID)
	if err != nil {
		return err
	}
	orgIDs, err := accounts.Organizations(ctx, o, a.AccountID)
	if err != nil {
		return err
	}
	ev := event(a, "mfa.recovery.use", audit.Success)
	ev.Security = true
	ev.Details = map[string]string{"recovery_codes_left_count": strconv.Itoa(left)}
	return o.Record(ctx, ev, orgIDs...)
}

// Verify checks code, a TOTP, texted or recovery code, against the actor's
// account (a texted code only if it was texted for challenge), spends it, and runs then with the method in the same
// transaction: the code is spent exactly when what then writes (a session)
// commits. The work is recorded as then shapes ev: by default
// auth.second-factor, a success naming the factor (the method). A wrong,
// used or replayed code is ErrWrongCode and nothing is written but a
// texted code's spent try, recorded as mfa.sms.verify, failed; the caller
// records the failure and counts it (CountFailure).
func (s *Service) Verify(ctx context.Context, a gate.Actor, challenge, code string, then func(tx sqldb.Tx, m Method, ev *audit.Event) error) error {
	return s.run(ctx, a, "auth.second-factor", func(o *gate.OpTx, out *outcome) error {
		p, err := s.check(ctx, o, a.AccountID, challenge, code)
		if err != nil {
			return err
		}
		if !p.ok && p.tried {
			o.Action("mfa.sms.verify")
			return out.refuse(ctx, o, map[string]string{"reason": "wrong_code"}, false, ErrWrongCode)
		}
		if err := p.spend(ctx, o, a, out.now); err != nil {
			return err
		}
		ev := event(a, "auth.second-factor", audit.Success)
		ev.Details = map[string]string{"factor": string(p.method)}
		if then != nil {
			if err := then(o, p.method, &ev); err != nil {
				return err
			}
		}
		recordAs(o, ev)
		return nil
	})
}

// Remove deletes the actor's TOTP factor and, if it was the account's last
// factor (no passkey remains), its recovery codes. The person
// proves to be the account's owner, not just the holder of its session, with
// a current code (TOTP or recovery) or the account's password: exactly one
// of code and password. A wrong one counts towards the lockout.
func (s *Service) Remove(ctx context.Context, a gate.Actor, code, password string) error {
	var f factor
	return s.prove(ctx, a, "mfa.totp.remove", code, password, func(q sqldb.Querier) error {
		var err error
		f, err = readFactor(ctx, q, a.AccountID, false)
		return err
	}, func(tx sqldb.Tx, ev *audit.Event) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM account_factors WHERE id = $1`, f.id)
		if err != nil {
			return fmt.Errorf("remove factor: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errNoFactor // removed meanwhile
		}
		if err := dropRecoveryCodesIfLast(ctx, tx, a.AccountID); err != nil {
			return err
		}
		ev.Details["factor_id"] = f.id
		return nil
	})
}

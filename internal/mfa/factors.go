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
// 20-byte secret, stored wrapped by the KEK as a pending factor that does
// nothing until Confirm. A pending factor left from an earlier Begin is
// replaced. An account that has a TOTP or SMS factor must remove it first;
// one that has passkeys only may add an authenticator app after a recent
// step-up of the session (admit), so whoever holds a stolen session cannot
// slip in their own authenticator.
func (s *Service) Begin(ctx context.Context, a gate.Actor) (Enrolment, error) {
	if s.KEK == nil {
		return Enrolment{}, errNoKEK
	}
	acc, err := accounts.ByID(ctx, s.DB, a.AccountID)
	if err != nil {
		return Enrolment{}, err
	}
	if err := s.admitOrRecord(ctx, a, true, "mfa.totp.enrol"); err != nil {
		return Enrolment{}, err
	}
	secret := make([]byte, SecretSize)
	defer clear(secret)
	rand.Read(secret) // never fails on supported platforms (crypto/rand docs)
	id := ids.New()
	wrapped, err := s.KEK.Wrap(ctx, secret, secretAD(acc.ID, id))
	if err != nil {
		return Enrolment{}, errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
	}
	now := s.now()
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.admit(ctx, tx, a, true); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM account_factors WHERE account_id = $1 AND confirmed_at IS NULL`, acc.ID); err != nil {
			return fmt.Errorf("replace pending factor: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO account_factors (id, account_id, kind, kek_id, wrapped, last_step, created_at)
			 VALUES ($1, $2, 'totp', $3, $4, 0, $5)`,
			id, acc.ID, s.KEK.ID(), wrapped, now.UnixMicro()); err != nil {
			return fmt.Errorf("store pending factor: %w", err)
		}
		ev := event(a, "mfa.totp.begin", audit.Success)
		ev.Details = map[string]string{"factor_id": id}
		_, err = audit.Append(ctx, tx, ev)
		return err
	})
	if err != nil {
		return Enrolment{}, err
	}
	e := Enrolment{Secret: secretEncoding.EncodeToString(secret), URI: URI(acc.Email, secret)}
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
	if s.KEK == nil {
		return nil, errNoKEK
	}
	if err := s.limit(ctx, a.AccountID); err != nil {
		return nil, err
	}
	if err := s.admitOrRecord(ctx, a, true, "mfa.totp.enrol"); err != nil {
		return nil, err
	}
	f, err := readFactor(ctx, s.DB, a.AccountID, true)
	if err != nil {
		return nil, err
	}
	secret, err := s.unwrap(ctx, a.AccountID, f)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
	}
	now := s.now()
	step, ok := matchStep(secret, strings.TrimSpace(code), now)
	clear(secret)
	if !ok {
		// A mistyped first code proves nothing about the account; it is on
		// the record but does not count towards the lockout.
		return nil, s.refuse(ctx, a, "mfa.totp.enrol", "wrong_code", false, ErrWrongCode)
	}
	var codes []string
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		first, err := s.admit(ctx, tx, a, true)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE account_factors SET confirmed_at = $1, last_step = $2
			 WHERE id = $3 AND account_id = $4 AND confirmed_at IS NULL AND last_step < $2`,
			now.UnixMicro(), step, f.id, a.AccountID)
		if sqldb.IsUniqueViolation(err) {
			return errHasFactor
		}
		if err != nil {
			return fmt.Errorf("activate factor: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errNoPending // confirmed or replaced meanwhile
		}
		codes, err = enrolled(ctx, tx, a, "mfa.totp.enrol", f.id, nil, first, now, then)
		return err
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// enrolled finishes, in tx, the set-up of a factor just activated (an app,
// a phone or a passkey): drops the account's pending app or phone set-ups,
// gives it recovery codes if this is its first factor (returned for
// showing once; beside another factor the codes it has stand), records the
// security event action with the factor's id and details, and runs then,
// if not nil, so that what then writes commits with the factor.
func enrolled(ctx context.Context, tx sqldb.Tx, a gate.Actor, action, factorID string, details map[string]string, first bool, now time.Time, then func(tx sqldb.Tx) error) ([]string, error) {
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM account_factors WHERE account_id = $1 AND confirmed_at IS NULL`, a.AccountID); err != nil {
		return nil, fmt.Errorf("drop pending factors: %w", err)
	}
	var codes []string
	if first {
		var err error
		if codes, err = replaceRecoveryCodes(ctx, tx, a.AccountID, now); err != nil {
			return nil, err
		}
	}
	ev := event(a, action, audit.Success)
	ev.Security = true
	ev.Details = map[string]string{"factor_id": factorID, "recovery_codes_count": strconv.Itoa(len(codes))}
	for k, v := range details {
		ev.Details[k] = v
	}
	if err := appendForEachOrg(ctx, tx, a.AccountID, ev); err != nil {
		return nil, err
	}
	if then != nil {
		if err := then(tx); err != nil {
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
}

// check works out what code is, outside any transaction (unwrapping may
// call an external KMS): a TOTP code of the account's active factor, and
// which time step, or a recovery code. A wrong code is a proof that does
// not spend, not an error.
func (s *Service) check(ctx context.Context, accountID, code string) (proof, error) {
	code = strings.TrimSpace(code)
	p := proof{accountID: accountID, method: MethodRecovery}
	if isTOTPShape(code) {
		p.method = MethodTOTP
		f, err := readFactor(ctx, s.DB, accountID, false)
		if errors.Is(err, errNoFactor) {
			return s.checkSMS(ctx, accountID, code) // six digits: a texted code
		}
		if err != nil {
			return proof{}, err
		}
		secret, err := s.unwrap(ctx, accountID, f)
		if err != nil {
			return proof{}, errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
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

// spend accepts the proof in tx, once: the TOTP step only if it is later
// than the last step accepted for the factor, a recovery code only if
// unused. The condition and the write are one statement, so of two nodes
// spending one code at once, one finds it spent (in PostgreSQL the second
// UPDATE waits for the first's row lock and then re-checks its WHERE; in
// SQLite transactions take the write lock at BEGIN). Anything else is
// ErrWrongCode. The use of a recovery code is recorded as a's.
func (p proof) spend(ctx context.Context, tx sqldb.Tx, a gate.Actor, now time.Time) error {
	if !p.ok {
		return ErrWrongCode
	}
	var res sql.Result
	var err error
	switch p.method {
	case MethodTOTP:
		res, err = tx.ExecContext(ctx,
			`UPDATE account_factors SET last_step = $1
			 WHERE id = $2 AND account_id = $3 AND confirmed_at IS NOT NULL AND last_step < $1`,
			p.step, p.factorID, p.accountID)
	case MethodRecovery:
		res, err = tx.ExecContext(ctx,
			`UPDATE recovery_codes SET used_at = $1
			 WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL`,
			now.UnixMicro(), p.accountID, p.hash)
	case MethodSMS:
		res, err = spendSMS(ctx, tx, p, now)
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
		return recordRecoveryUse(ctx, tx, a)
	}
	return nil
}

// recordRecoveryUse puts the use of a recovery code on the trail of each of
// the account's organizations, as a security event (AUD-05), with the
// number of codes left.
func recordRecoveryUse(ctx context.Context, tx sqldb.Tx, a gate.Actor) error {
	left, err := RecoveryCodesLeft(ctx, tx, a.AccountID)
	if err != nil {
		return err
	}
	ev := event(a, "mfa.recovery.use", audit.Success)
	ev.Security = true
	ev.Details = map[string]string{"recovery_codes_left_count": strconv.Itoa(left)}
	return appendForEachOrg(ctx, tx, a.AccountID, ev)
}

// Verify checks code, a TOTP code or a recovery code, against the actor's
// account, spends it, and runs then with the method in the same
// transaction: the code is spent exactly when what then writes (a session)
// commits. A wrong, used or replayed code is ErrWrongCode and nothing is
// written; the caller records the failure and counts it (CountFailure).
func (s *Service) Verify(ctx context.Context, a gate.Actor, code string, then func(tx sqldb.Tx, m Method) error) error {
	p, err := s.check(ctx, a.AccountID, code)
	if err != nil {
		return err
	}
	if !p.ok {
		return ErrWrongCode
	}
	now := s.now()
	return s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if err := p.spend(ctx, tx, a, now); err != nil {
			return err
		}
		if then != nil {
			return then(tx, p.method)
		}
		return nil
	})
}

// Remove deletes the actor's TOTP factor and, if it was the account's last
// factor (no passkey remains), its recovery codes. The person
// proves to be the account's owner, not just the holder of its session, with
// a current code (TOTP or recovery) or the account's password: exactly one
// of code and password. A wrong one counts towards the lockout.
func (s *Service) Remove(ctx context.Context, a gate.Actor, code, password string) error {
	f, err := readFactor(ctx, s.DB, a.AccountID, false)
	if err != nil {
		return err
	}
	return s.Prove(ctx, a, "mfa.totp.remove", code, password, func(tx sqldb.Tx, ev *audit.Event) error {
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

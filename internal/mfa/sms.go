package mfa

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
)

// SMS factors (AUTH-08): a phone number, stored only sealed by the gate's
// vault of account secrets like a TOTP secret, to which six-digit codes are sent.
// A code is valid SMSCodeTTL, accepted once (the statement that accepts it
// spends it), dead after SMSCodeTries wrong tries, and stored only wrapped
// as well, so neither a copy of the database nor a log holds one. Sending
// is limited per account (SMSSendsPerWindow in SMSSendWindow), which also
// bounds what a stolen password can cost in text messages.
const (
	SMSCodeTTL        = 5 * time.Minute
	SMSCodeTries      = 5
	SMSSendsPerWindow = 5
	SMSSendWindow     = 15 * time.Minute
	smsSendBucket     = "mfa:sms-send:account:"
)

// SMSRisks is what people are told where they choose text messages as
// their second factor (ASVS V6.6.1).
const SMSRisks = "Text messages are the weakest second factor: a code can be read by whoever takes over " +
	"your phone number (a SIM swap or a ported number) or sees your phone's screen, and it can be " +
	"intercepted on its way. Prefer an authenticator app or a passkey where you can."

// purposes of a texted code.
const (
	smsSignIn = "sign-in"
	smsEnrol  = "enrol"
)

var (
	errNoSMS        = errs.E(errs.Unavailable, "text messages are unavailable: no SMS sender is configured")
	errNoSMSFactor  = errs.E(errs.NotFound, "no phone number is set up for this account")
	errNoSMSPending = errs.E(errs.NotFound, "no phone number set-up is in progress; start again")
)

// phoneAD and smsCodeAD are the associated data of a wrapped phone number
// and a wrapped code: a label and the ids they belong to, length-prefixed,
// so a value copied to another row does not unwrap.
func phoneAD(accountID, factorID string) []byte {
	return lengthPrefixed("custodia.sms-phone.v1", accountID, factorID)
}

func smsCodeAD(accountID, factorID, codeID string) []byte {
	return lengthPrefixed("custodia.sms-code.v1", accountID, factorID, codeID)
}

func lengthPrefixed(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// newSMSCode returns six uniformly random digits.
func newSMSCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return fmt.Sprintf("%06d", n.Int64())
}

func (s *Service) smsReady() error {
	if err := s.sealing(); err != nil {
		return err
	}
	if s.SMS == nil {
		return errNoSMS
	}
	return nil
}

// limitSends counts a text message to the account against its limit, in
// the work that issues its code.
func (s *Service) limitSends(ctx context.Context, q sqldb.Querier, accountID string) error {
	lim := &ratelimit.Limiter{DB: q, Now: s.now}
	return lim.Check(ctx, ratelimit.Rule{Bucket: smsSendBucket + accountID, Limit: SMSSendsPerWindow, Window: SMSSendWindow})
}

// readSMSFactor returns the account's confirmed SMS factor, or with
// pending its latest unconfirmed one.
func readSMSFactor(ctx context.Context, q sqldb.Querier, accountID string, pending bool) (factor, error) {
	return readFactorOfKind(ctx, q, accountID, "sms", pending, errNoSMSFactor, errNoSMSPending)
}

// issueSMSCode stores a fresh code of purpose for the factor, sealed, in
// the work of o and returns it for sending; a sign-in code belongs to the
// sign-in challenge that asked for it, and only matches there. Earlier live
// codes of the same purpose die, so only the latest text counts.
func issueSMSCode(ctx context.Context, o *gate.OpTx, sec *gate.Secrets, accountID, factorID, purpose, challenge string, now time.Time) (string, error) {
	code, id := newSMSCode(), ids.New()
	sealed, kekID, err := sec.Seal(ctx, []byte(code), smsCodeAD(accountID, factorID, id))
	if err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
	}
	if _, err := o.ExecContext(ctx,
		`DELETE FROM sms_codes WHERE account_id = $1 AND (expires_at < $2 OR purpose = $3)`,
		accountID, now.UnixMicro(), purpose); err != nil {
		return "", fmt.Errorf("clear old codes: %w", err)
	}
	if _, err := o.ExecContext(ctx,
		`INSERT INTO sms_codes (id, account_id, factor_id, purpose, kek_id, wrapped, created_at, expires_at, challenge_id)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		id, accountID, factorID, purpose, kekID, sealed, now.UnixMicro(), now.Add(SMSCodeTTL).UnixMicro(), nullable(challenge)); err != nil {
		return "", fmt.Errorf("store code: %w", err)
	}
	return code, nil
}

func smsText(code string) string {
	return "Your Custodia code is " + code + ". It is valid for 5 minutes. Never share it; Custodia staff will never ask for it."
}

// send hands a text to the sender, once the code is committed. Its failure
// is reported without the message, which holds a code.
func (s *Service) send(ctx context.Context, phone, code string) error {
	if err := s.SMS.Send(ctx, sms.Message{To: phone, Text: smsText(code)}); err != nil {
		return errs.Wrap(errs.Unavailable, errors.New("sms sender failed"), "the text message could not be sent; try again later")
	}
	return nil
}

// BeginSMS starts setting up an SMS factor for the actor's account: the
// phone number is stored sealed as a pending factor, and a code is texted
// to it for ConfirmSMS. It returns the number masked. Like Begin, it is
// refused for an account that has a TOTP or SMS factor, and beside a
// passkey it needs a recent step-up (admit).
func (s *Service) BeginSMS(ctx context.Context, a gate.Actor, phone string) (string, error) {
	if err := s.smsReady(); err != nil {
		return "", err
	}
	phone, err := sms.NormalizePhone(phone)
	if err != nil {
		return "", err
	}
	id := ids.New()
	var code string
	err = s.run(ctx, a, "mfa.sms.begin", func(o *gate.OpTx, out *outcome) error {
		if _, err := s.admitted(ctx, o, out, true, "mfa.sms.enrol"); err != nil || out.refused != nil {
			return err
		}
		if err := s.limitSends(ctx, o, a.AccountID); err != nil {
			return err
		}
		sec, err := secrets(o)
		if err != nil {
			return err
		}
		sealed, kekID, err := sec.Seal(ctx, []byte(phone), phoneAD(a.AccountID, id))
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
		}
		if _, err := o.ExecContext(ctx,
			`DELETE FROM account_factors WHERE account_id = $1 AND kind = 'sms' AND confirmed_at IS NULL`, a.AccountID); err != nil {
			return fmt.Errorf("replace pending factor: %w", err)
		}
		if _, err := o.ExecContext(ctx,
			`INSERT INTO account_factors (id, account_id, kind, kek_id, wrapped, last_step, created_at)
			 VALUES ($1, $2, 'sms', $3, $4, 0, $5)`,
			id, a.AccountID, kekID, sealed, out.now.UnixMicro()); err != nil {
			return fmt.Errorf("store pending factor: %w", err)
		}
		if code, err = issueSMSCode(ctx, o, sec, a.AccountID, id, smsEnrol, "", out.now); err != nil {
			return err
		}
		o.Detail("factor_id", id)
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := s.send(ctx, phone, code); err != nil {
		return "", err
	}
	return sms.Mask(phone), nil
}

// ConfirmSMS activates the pending SMS factor once the person gives the
// code texted to it, and returns the recovery codes, shown once, as Confirm
// does: for the account's first factor only.
func (s *Service) ConfirmSMS(ctx context.Context, a gate.Actor, code string) ([]string, error) {
	return s.ConfirmSMSThen(ctx, a, code, nil)
}

// ConfirmSMSThen is ConfirmSMS that also runs then, if not nil, in the
// transaction that activates the factor.
func (s *Service) ConfirmSMSThen(ctx context.Context, a gate.Actor, code string, then func(tx sqldb.Tx) error) ([]string, error) {
	if err := s.sealing(); err != nil {
		return nil, err
	}
	var codes []string
	err := s.run(ctx, a, "mfa.sms.enrol", func(o *gate.OpTx, out *outcome) error {
		if err := s.limit(ctx, o, a.AccountID); err != nil {
			return err
		}
		first, err := s.admitted(ctx, o, out, true, "mfa.sms.enrol")
		if err != nil || out.refused != nil {
			return err
		}
		f, err := readSMSFactor(ctx, o, a.AccountID, true)
		if err != nil {
			return err
		}
		sec, err := secrets(o)
		if err != nil {
			return err
		}
		codeID, ok, err := matchSMSCode(ctx, o, sec, a.AccountID, f.id, smsEnrol, "", strings.TrimSpace(code), out.now)
		if err != nil {
			return err
		}
		if ok {
			err = spendSMSCode(ctx, o, a.AccountID, codeID, out.now)
		}
		if !ok || errors.Is(err, ErrWrongCode) {
			return out.refuse(ctx, o, map[string]string{"reason": "wrong_code"}, false, ErrWrongCode)
		}
		if err != nil {
			return err
		}
		res, err := o.ExecContext(ctx,
			`UPDATE account_factors SET confirmed_at = $1 WHERE id = $2 AND account_id = $3 AND confirmed_at IS NULL`,
			out.now.UnixMicro(), f.id, a.AccountID)
		if sqldb.IsUniqueViolation(err) {
			return errHasFactor
		}
		if err != nil {
			return fmt.Errorf("activate factor: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errNoSMSPending
		}
		codes, err = enrolled(ctx, o, a, f.id, nil, first, out.now, then)
		return err
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// SendSignInCode texts a code to the SMS factor of the actor's account, for
// the second step of its sign-in through challenge, and returns the number
// masked. The code completes that challenge only (ASVS V6.6.2: Verify with
// the same challenge). The caller has checked the sign-in challenge; sends
// are limited per account.
func (s *Service) SendSignInCode(ctx context.Context, a gate.Actor, challenge string) (string, error) {
	if challenge == "" {
		return "", errs.E(errs.Internal, "a sign-in code is texted for a sign-in challenge")
	}
	if err := s.smsReady(); err != nil {
		return "", err
	}
	var phone, code string
	err := s.run(ctx, a, "mfa.sms.send", func(o *gate.OpTx, out *outcome) error {
		f, err := readSMSFactor(ctx, o, a.AccountID, false)
		if err != nil {
			return err
		}
		if err := s.limitSends(ctx, o, a.AccountID); err != nil {
			return err
		}
		sec, err := secrets(o)
		if err != nil {
			return err
		}
		number, err := sec.Open(ctx, f.wrapped, phoneAD(a.AccountID, f.id))
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
		}
		phone = string(number)
		if code, err = issueSMSCode(ctx, o, sec, a.AccountID, f.id, smsSignIn, challenge, out.now); err != nil {
			return err
		}
		o.Detail("factor_id", f.id)
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := s.send(ctx, phone, code); err != nil {
		return "", err
	}
	return sms.Mask(phone), nil
}

// RemoveSMS deletes the actor's SMS factor (and, with the account's last
// factor, its recovery codes), given the
// account's password or a current code (a texted code or a recovery code);
// a wrong one counts towards the lockout.
func (s *Service) RemoveSMS(ctx context.Context, a gate.Actor, code, password string) error {
	var f factor
	return s.prove(ctx, a, "mfa.sms.remove", code, password, func(q sqldb.Querier) error {
		var err error
		f, err = readSMSFactor(ctx, q, a.AccountID, false)
		return err
	}, func(tx sqldb.Tx, ev *audit.Event) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM account_factors WHERE id = $1`, f.id)
		if err != nil {
			return fmt.Errorf("remove factor: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errNoSMSFactor // removed meanwhile
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sms_codes WHERE account_id = $1`, a.AccountID); err != nil {
			return fmt.Errorf("remove factor: %w", err)
		}
		if err := dropRecoveryCodesIfLast(ctx, tx, a.AccountID); err != nil {
			return err
		}
		ev.Details["factor_id"] = f.id
		return nil
	})
}

// checkSMS is check for a six-digit code of an account without a TOTP
// factor: the latest live sign-in code texted to its SMS factor for
// challenge. Without a challenge (a confirmation, a removal) no texted
// code matches.
func (s *Service) checkSMS(ctx context.Context, o *gate.OpTx, accountID, challenge, code string) (proof, error) {
	p := proof{accountID: accountID, method: MethodSMS}
	f, err := readSMSFactor(ctx, o, accountID, false)
	if errors.Is(err, errNoSMSFactor) {
		return p, nil
	}
	if err != nil {
		return proof{}, err
	}
	sec, err := secrets(o)
	if err != nil {
		return proof{}, err
	}
	p.smsCodeID, p.ok, err = matchSMSCode(ctx, o, sec, accountID, f.id, smsSignIn, challenge, code, s.now())
	p.tried = !p.ok && p.smsCodeID != ""
	if !p.ok {
		p.smsCodeID = ""
	}
	return p, err
}

// matchSMSCode compares code with the latest live code of purpose for the
// factor and challenge ("" for none), in constant time, in the work of o.
// A wrong code uses up one of that code's tries: it returns that code's id,
// not ok.
func matchSMSCode(ctx context.Context, o *gate.OpTx, sec *gate.Secrets, accountID, factorID, purpose, challenge, code string, now time.Time) (string, bool, error) {
	var id string
	var sealed []byte
	err := o.QueryRowContext(ctx,
		`SELECT id, wrapped FROM sms_codes
		 WHERE account_id = $1 AND factor_id = $2 AND purpose = $3 AND COALESCE(challenge_id, '') = $6
		   AND used_at IS NULL AND expires_at > $4 AND attempts < $5
		 ORDER BY created_at DESC, id LIMIT 1`,
		accountID, factorID, purpose, now.UnixMicro(), SMSCodeTries, challenge).Scan(&id, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, errs.Wrap(errs.Unavailable, err, "read code")
	}
	want, err := sec.Open(ctx, sealed, smsCodeAD(accountID, factorID, id))
	if err != nil {
		return "", false, errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
	}
	ok := len(code) == len(want) && subtle.ConstantTimeCompare([]byte(code), want) == 1
	clear(want)
	if !ok {
		if _, err := o.ExecContext(ctx, `UPDATE sms_codes SET attempts = attempts + 1 WHERE id = $1`, id); err != nil {
			return "", false, errs.Wrap(errs.Unavailable, err, "record wrong code")
		}
		return id, false, nil
	}
	return id, true, nil
}

// spendSMS spends a matched sign-in code in tx (proof.spend).
func spendSMS(ctx context.Context, tx sqldb.Tx, p proof, now time.Time) (sql.Result, error) {
	return tx.ExecContext(ctx,
		`UPDATE sms_codes SET used_at = $1
		 WHERE id = $2 AND account_id = $3 AND used_at IS NULL AND expires_at > $1 AND attempts < $4`,
		now.UnixMicro(), p.smsCodeID, p.accountID, SMSCodeTries)
}

// spendSMSCode spends a matched code once; a code spent or expired
// meanwhile is ErrWrongCode.
func spendSMSCode(ctx context.Context, tx sqldb.Tx, accountID, codeID string, now time.Time) error {
	res, err := spendSMS(ctx, tx, proof{accountID: accountID, smsCodeID: codeID}, now)
	if err != nil {
		return fmt.Errorf("spend code: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return ErrWrongCode
	}
	return nil
}

// methodsOf lists the ways the account can give its second factor: a code
// of its TOTP factor or one texted to its phone, and a recovery code.
func methodsOf(ctx context.Context, q sqldb.Querier, accountID string) ([]Method, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT kind FROM account_factors WHERE account_id = $1 AND confirmed_at IS NOT NULL ORDER BY kind DESC`, accountID)
	if err != nil {
		return nil, fmt.Errorf("list second factors: %w", err)
	}
	defer rows.Close()
	var out []Method
	for rows.Next() {
		var kind string
		if err := rows.Scan(&kind); err != nil {
			return nil, fmt.Errorf("list second factors: %w", err)
		}
		out = append(out, Method(kind))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list second factors: %w", err)
	}
	return withPasskeys(ctx, q, accountID, append(out, MethodRecovery))
}

// nullable stores "" as NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Phone opens the phone number of an account's confirmed SMS factor, in
// operator work o, for a text that tells the account something waits
// (notify); found is false when the account has none.
func Phone(ctx context.Context, o *gate.OpTx, accountID string) (phone string, found bool, err error) {
	f, err := readSMSFactor(ctx, o, accountID, false)
	if errs.Is(err, errs.NotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	sec, err := secrets(o)
	if err != nil {
		return "", false, err
	}
	number, err := sec.Open(ctx, f.wrapped, phoneAD(accountID, f.id))
	if err != nil {
		return "", false, errs.Wrap(errs.Unavailable, err, "second factors are unavailable")
	}
	return string(number), true, nil
}

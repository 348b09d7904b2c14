// Package mfa owns second factors (AUTH-08): TOTP authenticators (RFC 6238)
// with their one-time recovery codes, the short-lived challenges that stand
// between a right password and a session, and the organization policy that
// requires a second factor of every member (AUTH-09).
//
// It promises that a TOTP secret is stored only wrapped by the
// key-encryption key, bound to its account and factor; that a TOTP code (its
// time step) and a recovery code are each accepted at most once, also when
// several server nodes share one database, because the statement that
// accepts one is the statement that spends it; and that every enrolment,
// removal, use of a recovery code and failed code is on the audit trail,
// which never holds a secret or a code.
package mfa

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
)

// Method is a way to give the second factor.
type Method string

const (
	MethodTOTP     Method = "totp"
	MethodRecovery Method = "recovery"
	MethodSMS      Method = "sms" // a code sent by text message (sms.go)
)

// Methods are the ways an account with a TOTP factor can give it.
var Methods = []Method{MethodTOTP, MethodRecovery}

// Service manages the second factors of signed-in people and checks codes
// at sign-in. Its KEK wraps and unwraps TOTP secrets; without one, TOTP is
// unavailable (and an account that has a factor cannot sign in) rather than
// stored in clear.
type Service struct {
	DB  *sqldb.DB
	KEK keys.KEK
	// SMS sends codes by text message; without one, SMS factors are
	// unavailable.
	SMS sms.Sender
	// Passkeys is the WebAuthn relying party (webauthn.go); without one,
	// passkeys are unavailable.
	Passkeys RelyingParty
	Now      func() time.Time // for tests; time.Now when nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

var (
	// ErrWrongCode answers a code that is wrong, used already or of a step
	// no later than the last one accepted, and a wrong password given to
	// remove a factor.
	ErrWrongCode = errs.E(errs.Forbidden, "the code is wrong or was used already")

	errNoKEK     = errs.E(errs.Unavailable, "second factors are unavailable: no key-encryption key is configured")
	errNoFactor  = errs.E(errs.NotFound, "no authenticator is set up for this account")
	errNoPending = errs.E(errs.NotFound, "no authenticator set-up is in progress; start again")
	errHasFactor = errs.E(errs.Conflict, "an authenticator is set up already; remove it before setting up another")
	errEnrolled  = errs.E(errs.Conflict, "this account has a second factor already; sign in with it")
)

// Limits of the checks a signed-in person makes (confirming, removing,
// regenerating), per account: with the lockout they bound guessing by
// whoever holds a stolen session.
const (
	accountBucket    = "mfa:account:"
	AccountPerMinute = 10
)

func (s *Service) limit(ctx context.Context, accountID string) error {
	lim := &ratelimit.Limiter{DB: s.DB, Now: s.now}
	return lim.Check(ctx, ratelimit.Rule{Bucket: accountBucket + accountID, Limit: AccountPerMinute, Window: time.Minute})
}

// secretAD is the associated data a TOTP secret is wrapped with: a label
// and the account and factor ids, length-prefixed, so a wrapped secret
// copied to another account's or factor's row does not unwrap.
func secretAD(accountID, factorID string) []byte {
	var b []byte
	for _, f := range []string{"custodia.totp-secret.v1", accountID, factorID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// factor is a stored TOTP factor.
type factor struct {
	id       string
	wrapped  []byte
	lastStep int64
}

// readFactor returns the account's confirmed TOTP factor, or with pending
// its latest unconfirmed one.
func readFactor(ctx context.Context, q sqldb.Querier, accountID string, pending bool) (factor, error) {
	return readFactorOfKind(ctx, q, accountID, "totp", pending, errNoFactor, errNoPending)
}

// readFactorOfKind returns the account's confirmed factor of kind (totp or
// sms), or with pending its latest unconfirmed one; none or nonePending
// when there is no such factor.
func readFactorOfKind(ctx context.Context, q sqldb.Querier, accountID, kind string, pending bool, none, nonePending error) (factor, error) {
	stmt := `SELECT id, wrapped, last_step FROM account_factors
		WHERE account_id = $1 AND kind = $2 AND confirmed_at IS NOT NULL`
	if pending {
		stmt = `SELECT id, wrapped, last_step FROM account_factors
		WHERE account_id = $1 AND kind = $2 AND confirmed_at IS NULL ORDER BY created_at DESC, id LIMIT 1`
	}
	var f factor
	err := q.QueryRowContext(ctx, stmt, accountID, kind).Scan(&f.id, &f.wrapped, &f.lastStep)
	if errors.Is(err, sql.ErrNoRows) {
		if pending {
			return factor{}, nonePending
		}
		return factor{}, none
	}
	if err != nil {
		return factor{}, errs.Wrap(errs.Unavailable, err, "read second factor")
	}
	return f, nil
}

func (s *Service) unwrap(ctx context.Context, accountID string, f factor) ([]byte, error) {
	if s.KEK == nil {
		return nil, errNoKEK
	}
	secret, err := s.KEK.Unwrap(ctx, f.wrapped, secretAD(accountID, f.id))
	if err != nil {
		return nil, fmt.Errorf("unwrap TOTP secret of factor %s: %w", f.id, err)
	}
	return secret, nil
}

// HasFactor reports whether the account has an active (confirmed) second
// factor: a TOTP or SMS factor, or a passkey.
func HasFactor(ctx context.Context, q sqldb.Querier, accountID string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx,
		`SELECT (SELECT COUNT(*) FROM account_factors WHERE account_id = $1 AND confirmed_at IS NOT NULL)
		      + (SELECT COUNT(*) FROM webauthn_credentials WHERE account_id = $1)`, accountID).Scan(&n)
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "read second factors")
	}
	return n > 0, nil
}

// Summary says which second factors an account has.
type Summary struct {
	TOTP     bool // an authenticator app
	SMS      bool // a phone that receives codes
	Passkeys int
	// RecoveryCodesLeft is how many of the account's recovery codes are
	// unused.
	RecoveryCodesLeft int
}

// SummaryOf reads which active second factors the account has and how
// many recovery codes it has left.
func SummaryOf(ctx context.Context, q sqldb.Querier, accountID string) (Summary, error) {
	var m Summary
	var totp, text int
	err := q.QueryRowContext(ctx,
		`SELECT (SELECT COUNT(*) FROM account_factors WHERE account_id = $1 AND kind = 'totp' AND confirmed_at IS NOT NULL),
		        (SELECT COUNT(*) FROM account_factors WHERE account_id = $1 AND kind = 'sms' AND confirmed_at IS NOT NULL),
		        (SELECT COUNT(*) FROM webauthn_credentials WHERE account_id = $1),
		        (SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL)`,
		accountID).Scan(&totp, &text, &m.Passkeys, &m.RecoveryCodesLeft)
	if err != nil {
		return Summary{}, errs.Wrap(errs.Unavailable, err, "read second factors")
	}
	m.TOTP, m.SMS = totp > 0, text > 0
	return m, nil
}

// Summary tells the actor which second factors their own account has and
// how many recovery codes it has left, as their account page shows them
// (ListPasskeys names the passkeys).
func (s *Service) Summary(ctx context.Context, a gate.Actor) (Summary, error) {
	if a.AccountID == "" {
		return Summary{}, errs.E(errs.Unauthenticated, "sign-in required")
	}
	return SummaryOf(ctx, s.DB, a.AccountID)
}

// appendForEachOrg records ev about the account once in each of its
// organizations, so that each one's administrators find a change of its
// second factor in their trail (AUD-05), or once without an organization if
// it has none.
func appendForEachOrg(ctx context.Context, tx sqldb.Tx, accountID string, ev audit.Event) error {
	orgIDs, err := accounts.Organizations(ctx, tx, accountID)
	if err != nil {
		return err
	}
	if len(orgIDs) == 0 {
		orgIDs = []string{""}
	}
	for _, org := range orgIDs {
		ev.OrgID = org
		if _, err := audit.Append(ctx, tx, ev); err != nil {
			return err
		}
	}
	return nil
}

// event is an audit event of a's, about the account's second factor.
func event(a gate.Actor, action string, outcome audit.Outcome) audit.Event {
	ua := a.UserAgent
	if len(ua) > 512 {
		ua = ua[:512]
	}
	return audit.Event{
		Action: action, Outcome: outcome,
		ActorAccount: a.AccountID, ActorSession: a.SessionID, RemoteAddr: a.RemoteAddr, UserAgent: ua,
		ObjectType: "account", ObjectID: a.AccountID,
	}
}

// refuse records a failed check of a signed-in person's code or password
// and, if counts, counts it towards the account's lockout (AUTH-04), raising
// the lockout's alerts (AUTH-12). It returns cause, unless the record could
// not be written.
func (s *Service) refuse(ctx context.Context, a gate.Actor, action, reason string, counts bool, cause error) error {
	return s.refuseWith(ctx, a, action, map[string]string{"reason": reason}, counts, cause)
}

// refuseWith is refuse with the failure's details.
func (s *Service) refuseWith(ctx context.Context, a gate.Actor, action string, details map[string]string, counts bool, cause error) error {
	ev := event(a, action, audit.Failure)
	ev.Details = details
	var raised []alerts.Alert
	err := s.DB.InTx(ctx, func(tx *sql.Tx) error {
		raised = nil
		if _, err := audit.Append(ctx, tx, ev); err != nil {
			return err
		}
		if !counts {
			return nil
		}
		var err error
		raised, err = CountFailure(ctx, tx, a.AccountID, a.RemoteAddr, s.now())
		return err
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "second factor unavailable")
	}
	Announce(ctx, raised)
	return cause
}

// CountFailure counts a wrong code towards the account's lockout, in the
// transaction that records it, exactly like a wrong password (AUTH-04). The
// failure that locks the account raises an alert for each of its
// organizations (AUTH-12); the caller announces them after tx commits.
func CountFailure(ctx context.Context, tx sqldb.Tx, accountID, remoteAddr string, now time.Time) ([]alerts.Alert, error) {
	locked, err := accounts.RecordFailure(ctx, tx, accountID, remoteAddr, now)
	if err != nil || !locked {
		return nil, err
	}
	orgIDs, err := accounts.Organizations(ctx, tx, accountID)
	if err != nil {
		return nil, err
	}
	if len(orgIDs) == 0 {
		orgIDs = []string{""}
	}
	var raised []alerts.Alert
	for _, org := range orgIDs {
		al, err := alerts.Raise(ctx, alertTx(tx), alerts.Alert{OrgID: org, Kind: alerts.AccountLocked, Subject: accountID})
		if err != nil {
			return nil, err
		}
		raised = append(raised, al)
	}
	return raised, nil
}

// Announce tells the operator about committed alerts through slog's default
// logger.
func Announce(ctx context.Context, raised []alerts.Alert) {
	alerts.Announce(ctx, slog.Default(), alerts.Discard{}, raised...)
}

// Package mfa owns second factors (AUTH-08): TOTP authenticators (RFC 6238)
// with their one-time recovery codes, the short-lived challenges that stand
// between a right password and a session, and the organization policy that
// requires a second factor of every member (AUTH-09).
//
// It promises that a TOTP secret, a phone number and a texted code are
// stored only sealed by the gate's vault of account secrets (wrapped by the
// key-encryption key, which mfa never holds), bound to their account and
// factor; that a TOTP code (its time step) and a recovery code are each
// accepted at most once, also when several server nodes share one database,
// because the statement that accepts one is the statement that spends it;
// and that every enrolment, removal, use of a recovery code and failed code
// is on the audit trail, which never holds a secret or a code. It reaches
// the database only through the gate (internal/gate): each step is one work
// that commits its changes with its event.
package mfa

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
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
// at sign-in. It reaches the database only through its gate: an account's
// own changes (setting up or removing a factor, new recovery codes, a
// step-up) as the account's own work (gate.Gate.Own), the steps of a
// sign-in that has no session yet as work about the account
// (gate.Gate.Account). Secrets are sealed and opened with the vault that
// work is handed (gate.OpTx.Secrets); without a key-encryption key, TOTP
// and texted codes are unavailable (and an account that has such a factor
// cannot sign in) rather than stored in clear.
type Service struct {
	Gate *gate.Gate
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

// SecretsAvailable reports whether factors that hold a secret (TOTP and
// texted codes) can be used: whether a key-encryption key is configured.
func (s *Service) SecretsAvailable() bool {
	return s.Gate != nil && s.Gate.SecretsAvailable()
}

// sealing refuses a step that needs the vault of secrets when there is none.
func (s *Service) sealing() error {
	if !s.SecretsAvailable() {
		return errNoKEK
	}
	return nil
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

// limit counts a check by the account in the work's transaction: the
// attempt is spent with what the work commits (a refusal on the record,
// or the change).
func (s *Service) limit(ctx context.Context, q sqldb.Querier, accountID string) error {
	lim := &ratelimit.Limiter{DB: q, Now: s.now}
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

// secrets is the vault of the work's account secrets.
func secrets(o *gate.OpTx) (*gate.Secrets, error) {
	sec, err := o.Secrets()
	if err != nil {
		return nil, errNoKEK
	}
	return sec, nil
}

// openSecret opens the TOTP secret of factor f of the account.
func openSecret(ctx context.Context, sec *gate.Secrets, accountID string, f factor) ([]byte, error) {
	secret, err := sec.Open(ctx, f.wrapped, secretAD(accountID, f.id))
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, fmt.Errorf("open TOTP secret of factor %s: %w", f.id, err), "second factors are unavailable")
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
	// OldRecoveryCodes: the account has unused codes stored before codes
	// of the former, shorter kind stopped working; some may not work, and
	// the person should make new ones.
	OldRecoveryCodes bool
}

// SummaryOf reads which active second factors the account has and how
// many recovery codes it has left.
func SummaryOf(ctx context.Context, q sqldb.Querier, accountID string) (Summary, error) {
	var m Summary
	var totp, text, old int
	err := q.QueryRowContext(ctx,
		`SELECT (SELECT COUNT(*) FROM account_factors WHERE account_id = $1 AND kind = 'totp' AND confirmed_at IS NOT NULL),
		        (SELECT COUNT(*) FROM account_factors WHERE account_id = $1 AND kind = 'sms' AND confirmed_at IS NOT NULL),
		        (SELECT COUNT(*) FROM webauthn_credentials WHERE account_id = $1),
		        (SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL AND strong),
		        (SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL AND NOT strong)`,
		accountID).Scan(&totp, &text, &m.Passkeys, &m.RecoveryCodesLeft, &old)
	if err != nil {
		return Summary{}, errs.Wrap(errs.Unavailable, err, "read second factors")
	}
	m.TOTP, m.SMS, m.OldRecoveryCodes = totp > 0, text > 0, old > 0
	return m, nil
}

// Summary tells the actor which second factors their own account has and
// how many recovery codes it has left, as their account page shows them
// (ListPasskeys names the passkeys).
func (s *Service) Summary(ctx context.Context, a gate.Actor) (Summary, error) {
	var m Summary
	err := s.Gate.Own(ctx, a, "mfa.summary", func(o *gate.OpTx) error {
		o.Nothing() // the account's own settings, read only
		var err error
		m, err = SummaryOf(ctx, o, a.AccountID)
		return err
	})
	return m, err
}

// run runs work for a, recorded as action: an account's own work if a has
// a session, work about the account for a sign-in that has none yet. The
// work's event is about the account. A refusal the work recorded
// (outcome.refuse, outcome.stepUp) commits with its event and is answered
// then; alerts the work raised are announced once committed.
func (s *Service) run(ctx context.Context, a gate.Actor, action string, work func(o *gate.OpTx, out *outcome) error) error {
	var out outcome
	do := func(o *gate.OpTx) error {
		out = outcome{now: s.now(), actor: a}
		o.Object("account", a.AccountID)
		return work(o, &out)
	}
	var err error
	if a.SessionID != "" {
		err = s.Gate.Own(ctx, a, action, do)
	} else {
		err = s.Gate.Account(ctx, a, action, do)
	}
	if err != nil {
		return err
	}
	Announce(ctx, out.raised)
	return out.refused
}

// outcome is what a work of the service learned besides its changes.
type outcome struct {
	now   time.Time
	actor gate.Actor
	// refused is the answer of a refusal recorded as the work's event.
	refused error
	// raised are the alerts the work raised, announced once committed.
	raised []alerts.Alert
}

// spendCode checks code in the work of o and spends it, answering the
// method it proved; a wrong code is refused as refuse tells, with the
// reason wrong_code, and answers no method and no error.
func (s *Service) spendCode(ctx context.Context, o *gate.OpTx, out *outcome, a gate.Actor, code string) (string, error) {
	p, err := s.check(ctx, o, a.AccountID, "", code)
	if err != nil {
		return "", err
	}
	err = p.spend(ctx, o, a, out.now)
	if errors.Is(err, ErrWrongCode) {
		return "", out.refuse(ctx, o, map[string]string{"reason": "wrong_code"}, true, ErrWrongCode)
	}
	if err != nil {
		return "", err
	}
	return string(p.method), nil
}

// refuse records the work as a failed check of its actor's code or
// password, with details (a reason; never the code), and, if counts,
// counts it towards the account's lockout (AUTH-04), raising the lockout's
// alerts (AUTH-12). The work then returns nil, so that the failure and
// what the work spent on the way (a rate-limit attempt, a texted code's
// try) commit together, and the service answers cause.
func (out *outcome) refuse(ctx context.Context, o *gate.OpTx, details map[string]string, counts bool, cause error) error {
	o.Outcome(audit.Failure)
	for k, v := range details {
		o.Detail(k, v)
	}
	out.refused = cause
	if !counts {
		return nil
	}
	var err error
	out.raised, err = CountFailure(ctx, o, out.actor.AccountID, out.actor.RemoteAddr, out.now)
	return err
}

// stepUp records the work as denied for want of a fresh confirmation of
// the actor's session, as the gate records its own (ACL-09): a security
// event in each of the account's organizations, so the trail shows the
// attempt. The service answers gate.ErrStepUpRequired.
func (out *outcome) stepUp(ctx context.Context, o *gate.OpTx) error {
	o.Outcome(audit.Denied)
	o.Security()
	o.Detail("reason", "step-up required")
	out.refused = gate.ErrStepUpRequired
	return inEachOrg(ctx, o, out.actor.AccountID)
}

// inEachOrg records the work's event in each of the account's
// organizations, so that each one's administrators find a change of its
// second factor in their trail (AUD-05), or once without an organization if
// it has none.
func inEachOrg(ctx context.Context, o *gate.OpTx, accountID string) error {
	orgIDs, err := accounts.Organizations(ctx, o, accountID)
	if err != nil {
		return err
	}
	o.InEach(orgIDs)
	return nil
}

// recordAs makes ev, as a caller shaped it, the work's event: its action,
// outcome, actor, organization, object, flag and details.
func recordAs(o *gate.OpTx, ev audit.Event) {
	o.Action(ev.Action)
	if ev.Outcome != "" {
		o.Outcome(ev.Outcome)
	}
	o.As(ev.ActorAccount, ev.ActorSession)
	o.Org(ev.OrgID)
	o.Object(ev.ObjectType, ev.ObjectID)
	if ev.Security {
		o.Security()
	}
	for k, v := range ev.Details {
		o.Detail(k, v)
	}
}

// event is an audit event of a's, about the account's second factor, as a
// caller that shapes the work's event sees it.
func event(a gate.Actor, action string, outcome audit.Outcome) audit.Event {
	return audit.Event{
		Action: action, Outcome: outcome,
		ActorAccount: a.AccountID, ActorSession: a.SessionID, RemoteAddr: a.RemoteAddr, UserAgent: a.UserAgent,
		ObjectType: "account", ObjectID: a.AccountID,
	}
}

// FailureTx is the work that counts a failure: it records the lock and the
// alerts a failure may bring besides its own event (gate.OpTx).
type FailureTx interface {
	accounts.Recorder
	alerts.Tx
}

// CountFailure counts a wrong code towards the account's lockout, in the
// transaction that records it, exactly like a wrong password (AUTH-04). The
// failure that locks the account raises an alert for each of its
// organizations (AUTH-12); the caller announces them after tx commits.
func CountFailure(ctx context.Context, tx FailureTx, accountID, remoteAddr string, now time.Time) ([]alerts.Alert, error) {
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
		al, err := alerts.Raise(ctx, tx, alerts.Alert{OrgID: org, Kind: alerts.AccountLocked, Subject: accountID})
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

// ClearFactors removes every second factor of the account (TOTP and SMS
// factors, confirmed or not, and passkeys) and its recovery codes, in tx:
// the end of a factor recovery (accounts.FactorRecovery), after which the
// person enrols a factor anew. It returns how many factors it removed.
func ClearFactors(ctx context.Context, tx sqldb.Tx, accountID string) (int64, error) {
	var removed int64
	for _, q := range []string{
		`DELETE FROM account_factors WHERE account_id = $1`,
		`DELETE FROM webauthn_credentials WHERE account_id = $1`,
		`DELETE FROM recovery_codes WHERE account_id = $1`,
	} {
		res, err := tx.ExecContext(ctx, q, accountID)
		if err != nil {
			return 0, errs.Wrap(errs.Unavailable, err, "remove second factors")
		}
		if !strings.Contains(q, "recovery_codes") {
			n, _ := res.RowsAffected()
			removed += n
		}
	}
	return removed, nil
}

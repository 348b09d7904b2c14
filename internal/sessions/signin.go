package sessions

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/alerts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sqldb"
)

// addressAlertEvery bounds how often one source address over its sign-in
// limit raises an alert, so a long attack raises one an hour, not one a
// request.
const addressAlertEvery = time.Hour

// SignIn checks a person's e-mail address and password and starts a
// session, for callers that cannot ask for a second factor: an account that
// needs one (SignInStep's challenge) fails with ErrSecondStepRequired and
// gets no session.
func (s *Store) SignIn(ctx context.Context, email, password, remoteAddr, userAgent string) (string, Session, error) {
	st, err := s.SignInStep(ctx, email, password, remoteAddr, userAgent)
	if err != nil {
		return "", Session{}, err
	}
	if st.Challenge.Token != "" {
		return "", Session{}, ErrSecondStepRequired
	}
	return st.Token, st.Session, nil
}

// ErrSecondStepRequired is SignIn's answer for an account that must give or
// set up a second factor.
var ErrSecondStepRequired = errs.E(errs.Unauthenticated, "this account signs in with a second factor")

// Step is where a right password leads: a session (Token and Session), or,
// for an account with a second factor or one whose organization requires
// one (AUTH-08, AUTH-09), a challenge (Challenge.Token set) that the second
// step, SecondFactor or EnrolConfirm, turns into a session.
type Step struct {
	Token     string
	Session   Session
	Challenge mfa.Challenge
}

// SignInStep checks a person's e-mail address and password and either
// starts a session or, when the account must give or set up a second
// factor, issues a challenge instead (valid mfa.ChallengeTTL, from this
// source address only).
//
// Before any password is checked, the attempt counts against the limits of
// its source address and of the e-mail address it names, in the database
// shared by all nodes (AUTH-05); past a limit it fails with errs.RateLimited,
// whose ratelimit.RetryAfter says when to come back. A failure counts
// towards the account's lockout (AUTH-04), in the transaction that records
// it. The failure that locks the account raises an alert for each of its
// organizations, and a source address going past its limit one for the
// operator (AUTH-12).
//
// Every attempt, refused, failed or successful, is on the audit trail with
// its time, address, outcome and, when the e-mail address belongs to an
// account, that account (AUTH-11); the session or challenge and its event
// commit together. Every failed check is accounts.ErrBadCredentials, whether
// the account is unknown, locked or the password wrong (AUTH-06): only a
// right password learns whether a second factor follows.
func (s *Store) SignInStep(ctx context.Context, email, password, remoteAddr, userAgent string) (Step, error) {
	from := gate.Actor{RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	rules := signInRules(email, remoteAddr)
	// Read who the address names and whether the limits have room, then
	// check the password outside any transaction: the attempt's work
	// holds a turn that other requests wait for.
	var (
		cand accounts.Candidate
		full error // the refusal of a limit with no room
		need mfa.Requirement
	)
	err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		var err error
		if full, err = s.full(ctx, q, rules); err != nil || full != nil {
			return err
		}
		if cand, err = accounts.Find(ctx, q, email); err != nil {
			return err
		}
		if id := cand.AccountID(); id != "" {
			need, err = mfa.RequirementOf(ctx, q, id)
		}
		return err
	})
	if err != nil {
		return Step{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	var (
		acc   accounts.Account
		at    accounts.Attempted
		up    accounts.Upgrade
		cause error
	)
	if full == nil {
		acc, at, up, cause = cand.Check(ctx, password)
	}
	// The attempt counts against the limits in the transaction that
	// records it (AUTH-05): a refusal, a failure with its count towards the
	// lockout (AUTH-04), or the session or challenge (Gate.Attempt).
	var (
		st      Step
		refusal error
		raised  []alerts.Alert
	)
	err = s.Gate.Attempt(ctx, from, "auth.login", func(o *gate.OpTx) error {
		raised, refusal = nil, nil
		limited := full
		if limited == nil {
			if err := (&ratelimit.Limiter{DB: o, Now: s.now}).Check(ctx, rules...); err != nil {
				if !errs.Is(err, errs.RateLimited) {
					return err
				}
				limited = err
			}
		}
		if limited != nil {
			refusal = limited
			known, err := accounts.KnownID(ctx, o, email)
			if err != nil {
				return err
			}
			raised, err = s.refusedIn(ctx, o, known, refusal)
			return err
		}
		if cause != nil {
			refusal = cause
			var err error
			raised, err = s.failedIn(ctx, o, remoteAddr, at, cause)
			return err
		}
		if err := up.Store(ctx, o); err != nil {
			return err
		}
		if need == mfa.NoSecondFactor {
			err := s.start(ctx, o, acc.ID, remoteAddr, userAgent, &st)
			if errors.Is(err, accounts.ErrBadCredentials) {
				// Locked by a concurrent failure since the check.
				refusal = err
				raised, err = s.failedIn(ctx, o, remoteAddr, accounts.Attempted{AccountID: acc.ID, Locked: true}, err)
			}
			return err
		}
		// The failure count stands until the second step succeeds, so that
		// whoever knows the password cannot clear it between guesses at the
		// code.
		purpose := mfa.PurposeSecondFactor
		if need == mfa.MustEnrol {
			purpose = mfa.PurposeEnrolment
		}
		var err error
		if st.Challenge, err = mfa.IssueChallenge(ctx, o, acc.ID, purpose, remoteAddr, s.now()); err != nil {
			return err
		}
		o.Action("auth.challenge")
		o.As(acc.ID, "")
		o.Detail("purpose", string(purpose))
		return nil
	})
	if err != nil {
		return Step{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	announce(ctx, raised)
	if refusal != nil {
		return Step{}, refusal
	}
	return st, nil
}

// full returns the refusal of the first of rules that would refuse an
// attempt now, without counting one, or nil.
func (s *Store) full(ctx context.Context, q sqldb.Querier, rules []ratelimit.Rule) (refusal, err error) {
	lim := &ratelimit.Limiter{DB: q, Now: s.now}
	for _, r := range rules {
		full, wait, err := lim.Full(ctx, r.Bucket, r.Limit, r.Window)
		if err != nil {
			return nil, err
		}
		if full {
			return errs.Wrap(errs.RateLimited, &ratelimit.Exceeded{Rule: r, Wait: wait}, ratelimit.Message), nil
		}
	}
	return nil, nil
}

// start begins a session for the account in o, the work of the sign-in's
// last step, recorded as auth.login of the new session, and ends the
// account's oldest beyond SessionsPerAccount. It fails with
// accounts.ErrBadCredentials if another node locked the account since its
// check.
func (s *Store) start(ctx context.Context, o *gate.OpTx, accountID, remoteAddr, userAgent string, st *Step) error {
	if err := accounts.ResetFailures(ctx, o, accountID); err != nil {
		return err
	}
	token, sess, err := s.create(ctx, o, accountID, remoteAddr, userAgent)
	if err != nil {
		return err
	}
	if err := s.endOverLimit(ctx, o, sess, remoteAddr, userAgent); err != nil {
		return err
	}
	o.As(accountID, sess.ID)
	st.Token, st.Session = token, sess
	return nil
}

// open begins a session for the account in tx, for a caller that records
// the event (the second step, whose event package mfa's work records): it
// makes ev the session's auth.login.
func (s *Store) open(ctx context.Context, tx sqldb.Tx, ev *audit.Event, accountID, remoteAddr, userAgent string) (string, Session, error) {
	if err := accounts.ResetFailures(ctx, tx, accountID); err != nil {
		return "", Session{}, err
	}
	token, sess, err := s.create(ctx, tx, accountID, remoteAddr, userAgent)
	if err != nil {
		return "", Session{}, err
	}
	if err := s.endOverLimit(ctx, tx, sess, remoteAddr, userAgent); err != nil {
		return "", Session{}, err
	}
	ev.Action, ev.ActorAccount, ev.ActorSession, ev.Outcome = "auth.login", accountID, sess.ID, audit.Success
	return token, sess, nil
}

// Limits of the second step (AUTH-05): per source address as for the
// password, per account, and per challenge, whose lifetime admits
// ChallengeAttempts codes at once and one a minute after that.
const (
	secondAddressBucket   = "second-factor:address:"
	secondAccountBucket   = "second-factor:account:"
	secondChallengeBucket = "second-factor:challenge:"
	ChallengeAttempts     = 5
)

// SecondFactor is the second step of a sign-in with a second factor: it
// takes the challenge SignInStep issued and a TOTP or recovery code of the
// account's factor and starts a session exactly as a password-only sign-in
// does. The code, the challenge and the session are spent and written in one
// transaction. Every failure is mfa.ErrChallenge, whatever failed: an
// unknown, used or expired challenge, one from another address, or a wrong
// or replayed code. A wrong code counts towards the account's lockout like
// a wrong password (AUTH-04), and every attempt is on the audit trail
// (AUTH-11).
func (s *Store) SecondFactor(ctx context.Context, factors *mfa.Service, challenge, code, remoteAddr, userAgent string) (string, Session, error) {
	return s.secondStep(ctx, factors, challenge, remoteAddr, userAgent,
		func(a gate.Actor, c mfa.Challenge, then func(tx sqldb.Tx, m mfa.Method, ev *audit.Event) error) error {
			return factors.Verify(ctx, a, c.ID, code, then)
		})
}

// secondStep opens the sign-in challenge, has verify check the second
// factor (a code or a passkey's assertion) and, in the transaction that
// spends it, spends the challenge and starts the session. Every failure is
// recorded and counted as secondStepFailed says.
func (s *Store) secondStep(ctx context.Context, factors *mfa.Service, challenge, remoteAddr, userAgent string,
	verify func(a gate.Actor, c mfa.Challenge, then func(tx sqldb.Tx, m mfa.Method, ev *audit.Event) error) error) (string, Session, error) {
	ev := audit.Event{Action: "auth.second-factor", RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	c, err := s.openChallenge(ctx, ev, challenge, mfa.PurposeSecondFactor, remoteAddr)
	if err != nil {
		return "", Session{}, err
	}
	if factors == nil {
		return "", Session{}, errs.E(errs.Unavailable, "second factors are unavailable")
	}
	a := gate.Actor{AccountID: c.AccountID, RemoteAddr: remoteAddr, UserAgent: userAgent}
	var token string
	var sess Session
	err = verify(a, c, func(tx sqldb.Tx, m mfa.Method, login *audit.Event) error {
		if err := mfa.SpendChallenge(ctx, tx, c, s.now()); err != nil {
			return err
		}
		*login = ev
		login.Details = map[string]string{"factor": string(m)}
		var err error
		token, sess, err = s.open(ctx, tx, login, c.AccountID, remoteAddr, userAgent)
		return err
	})
	if err != nil {
		return "", Session{}, s.secondStepFailed(ctx, ev, c.AccountID, err)
	}
	return token, sess, nil
}

// The enrolment of an account whose organization requires a second factor
// and that has none (AUTH-09): the challenge SignInStep issued allows
// setting up one factor, an authenticator app (EnrolBegin, EnrolConfirm) or
// a passkey (EnrolPasskeyBegin, EnrolPasskeyConfirm), and nothing else.
// Each step opens the challenge the same way (openEnrolment: its lifetime,
// address and limits are those of a second step), and the confirming step
// spends it with the factor and starts the session in one transaction
// (enrolSession, enrolmentFailed).

// openEnrolment opens an enrolment challenge for a step of ev's, and
// returns it with the requester as the factor service knows them: the
// account, without a session.
func (s *Store) openEnrolment(ctx context.Context, factors *mfa.Service, ev audit.Event, challenge, remoteAddr, userAgent string) (mfa.Challenge, gate.Actor, error) {
	c, err := s.openChallenge(ctx, ev, challenge, mfa.PurposeEnrolment, remoteAddr)
	if err != nil {
		return mfa.Challenge{}, gate.Actor{}, err
	}
	if factors == nil {
		return mfa.Challenge{}, gate.Actor{}, errs.E(errs.Unavailable, "second factors are unavailable")
	}
	return c, gate.Actor{AccountID: c.AccountID, RemoteAddr: remoteAddr, UserAgent: userAgent}, nil
}

func enrolmentEvent(remoteAddr, userAgent string) audit.Event {
	return audit.Event{Action: "auth.enrolment", RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
}

// enrolSession is what the confirming step of an enrolment runs in the
// transaction that activates the factor: it spends the challenge and starts
// the session, recording auth.enrolment with the factor set up.
func (s *Store) enrolSession(ctx context.Context, c mfa.Challenge, ev audit.Event, m mfa.Method, token *string, sess *Session) func(tx sqldb.Tx) error {
	return func(tx sqldb.Tx) error {
		if err := mfa.SpendChallenge(ctx, tx, c, s.now()); err != nil {
			return err
		}
		login := ev
		login.Details = map[string]string{"factor": string(m), "enrolled": "true"}
		var err error
		if *token, *sess, err = s.open(ctx, tx, &login, c.AccountID, ev.RemoteAddr, ev.UserAgent); err != nil {
			return err
		}
		return record(ctx, tx, login)
	}
}

// enrolmentFailed is what the requester of a failed confirming step gets.
// A wrong code or an unusable answer is on the record already and does not
// count towards the lockout (it proves nothing about the account); a
// challenge spent meanwhile, or a right one for an account locked
// meanwhile, is a failed second step.
func (s *Store) enrolmentFailed(ctx context.Context, ev audit.Event, accountID string, err error) error {
	switch {
	case errors.Is(err, mfa.ErrWrongCode):
		return mfa.ErrChallenge
	case errs.Is(err, errs.NotFound), errs.Is(err, errs.Conflict), errs.Is(err, errs.RateLimited),
		errs.Is(err, errs.Invalid), errs.Is(err, errs.Unavailable):
		return err
	}
	return s.secondStepFailed(ctx, ev, accountID, err)
}

// EnrolBegin starts setting up a TOTP factor for the account of an
// enrolment challenge. Its failures are those of SecondFactor.
func (s *Store) EnrolBegin(ctx context.Context, factors *mfa.Service, challenge, remoteAddr, userAgent string) (mfa.Enrolment, error) {
	_, a, err := s.openEnrolment(ctx, factors, enrolmentEvent(remoteAddr, userAgent), challenge, remoteAddr, userAgent)
	if err != nil {
		return mfa.Enrolment{}, err
	}
	return factors.Begin(ctx, a)
}

// EnrolConfirm activates the factor begun with EnrolBegin once code, from
// the new authenticator, is right, and starts the session in the same
// transaction that spends the challenge. It returns the session's token and
// the account's recovery codes, shown this once.
func (s *Store) EnrolConfirm(ctx context.Context, factors *mfa.Service, challenge, code, remoteAddr, userAgent string) (string, Session, []string, error) {
	ev := enrolmentEvent(remoteAddr, userAgent)
	c, a, err := s.openEnrolment(ctx, factors, ev, challenge, remoteAddr, userAgent)
	if err != nil {
		return "", Session{}, nil, err
	}
	var token string
	var sess Session
	codes, err := factors.ConfirmThen(ctx, a, code, s.enrolSession(ctx, c, ev, mfa.MethodTOTP, &token, &sess))
	if err != nil {
		return "", Session{}, nil, s.enrolmentFailed(ctx, ev, c.AccountID, err)
	}
	return token, sess, codes, nil
}

// EnrolPasskeyBegin starts registering a passkey for the account of an
// enrolment challenge, instead of an authenticator app, and returns the
// creation options for navigator.credentials.create; the ceremony is bound
// to the challenge. Its failures are those of EnrolBegin; without a relying
// party it is Unavailable.
func (s *Store) EnrolPasskeyBegin(ctx context.Context, factors *mfa.Service, challenge, remoteAddr, userAgent string) ([]byte, error) {
	c, a, err := s.openEnrolment(ctx, factors, enrolmentEvent(remoteAddr, userAgent), challenge, remoteAddr, userAgent)
	if err != nil {
		return nil, err
	}
	return factors.BeginEnrolmentPasskey(ctx, a, c.ID)
}

// EnrolPasskeyConfirm stores the passkey the browser made for the options
// of EnrolPasskeyBegin, named name, and starts the session in the same
// transaction that spends the challenge, as EnrolConfirm does. It returns
// the session's token and the account's recovery codes, shown this once.
func (s *Store) EnrolPasskeyConfirm(ctx context.Context, factors *mfa.Service, challenge, name string, response []byte, remoteAddr, userAgent string) (string, Session, []string, error) {
	ev := enrolmentEvent(remoteAddr, userAgent)
	c, a, err := s.openEnrolment(ctx, factors, ev, challenge, remoteAddr, userAgent)
	if err != nil {
		return "", Session{}, nil, err
	}
	var token string
	var sess Session
	_, codes, err := factors.ConfirmEnrolmentPasskeyThen(ctx, a, c.ID, name, response, s.enrolSession(ctx, c, ev, mfa.MethodWebAuthn, &token, &sess))
	if err != nil {
		return "", Session{}, nil, s.enrolmentFailed(ctx, ev, c.AccountID, err)
	}
	return token, sess, codes, nil
}

// openChallenge counts an attempt at a second step against the limits of
// its source address, finds its live challenge for purpose p and counts the
// attempt against the limits of the challenge and its account. Refusals
// and unknown challenges are recorded as ev (AUTH-11); an unknown challenge
// is mfa.ErrChallenge.
func (s *Store) openChallenge(ctx context.Context, ev audit.Event, token string, p mfa.Purpose, remoteAddr string) (mfa.Challenge, error) {
	addr := secondAddressBucket + ratelimit.AddressKey(remoteAddr)
	err := s.spend(ctx,
		ratelimit.Rule{Bucket: addr, Limit: ratelimit.AddressPerMinute, Window: time.Minute},
		ratelimit.Rule{Bucket: addr, Limit: ratelimit.AddressPerHour, Window: time.Hour})
	if err != nil {
		return mfa.Challenge{}, s.refuse(ctx, ev, "", err)
	}
	var c mfa.Challenge
	err = s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		var err error
		c, err = mfa.LookupChallenge(ctx, q, token, p, remoteAddr, s.now())
		return err
	})
	if errors.Is(err, mfa.ErrChallenge) {
		ev.Details = map[string]string{"reason": "challenge"}
		return mfa.Challenge{}, s.recordFailure(ctx, ev, accounts.Attempted{}, err)
	}
	if err != nil {
		return mfa.Challenge{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	err = s.spend(ctx,
		ratelimit.Rule{Bucket: secondChallengeBucket + c.ID, Limit: ChallengeAttempts, Window: mfa.ChallengeTTL},
		ratelimit.Rule{Bucket: secondAccountBucket + c.AccountID, Limit: ratelimit.AccountPerMinute, Window: time.Minute})
	if err != nil {
		return mfa.Challenge{}, s.refuse(ctx, ev, c.AccountID, err)
	}
	return c, nil
}

// spend counts an attempt against rules, as bookkeeping of its own
// (Gate.Stamp) that stands whatever becomes of the attempt, and returns
// the refusal of the first rule that refuses it (errs.RateLimited), or a
// fault.
func (s *Store) spend(ctx context.Context, rules ...ratelimit.Rule) error {
	var refused error
	err := s.Gate.Stamp(ctx, func(q sqldb.Querier) error {
		refused = (&ratelimit.Limiter{DB: q, Now: s.now}).Check(ctx, rules...)
		if errs.Is(refused, errs.RateLimited) {
			return nil // what was counted stands
		}
		return refused
	})
	if err != nil {
		return err
	}
	return refused
}

// refuse records a refusal by a rate limit and returns it, or the fault
// that kept it from being recorded.
func (s *Store) refuse(ctx context.Context, ev audit.Event, accountID string, refusal error) error {
	if !errs.Is(refusal, errs.RateLimited) {
		return errs.Wrap(errs.Unavailable, refusal, "sign-in unavailable")
	}
	if err := s.recordRefusal(ctx, ev, accountID, refusal); err != nil {
		return errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	return refusal
}

// secondStepFailed records a failed second step of the account and returns
// what the requester gets: mfa.ErrChallenge, or Unavailable for a fault. A
// wrong code, and a right one for an account locked meanwhile, count
// towards the lockout.
func (s *Store) secondStepFailed(ctx context.Context, ev audit.Event, accountID string, cause error) error {
	at := accounts.Attempted{AccountID: accountID}
	switch {
	case errors.Is(cause, mfa.ErrWrongCode):
		ev.Details = map[string]string{"reason": "wrong_code"}
	case errors.Is(cause, accounts.ErrBadCredentials):
		at.Locked = true
	case errors.Is(cause, mfa.ErrChallenge):
		ev.Details = map[string]string{"reason": "challenge"}
	default:
		return errs.Wrap(errs.Unavailable, cause, "sign-in unavailable")
	}
	if err := s.recordFailure(ctx, ev, at, cause); !errors.Is(err, cause) {
		return err
	}
	return mfa.ErrChallenge
}

// Bucket prefixes of the sign-in limits.
const (
	addressBucket = "login:address:"
	accountBucket = "login:account:"
)

// signInRules are the limits one attempt counts against: its source address
// (per minute and per hour) and the e-mail address it names. The e-mail
// address appears only as a digest, and the same way whether or not it
// belongs to an account.
func signInRules(email, remoteAddr string) []ratelimit.Rule {
	norm, err := accounts.NormalizeEmail(email)
	if err != nil {
		norm = strings.ToLower(strings.TrimSpace(email))
	}
	addr := addressBucket + ratelimit.AddressKey(remoteAddr)
	return []ratelimit.Rule{
		{Bucket: addr, Limit: ratelimit.AddressPerMinute, Window: time.Minute},
		{Bucket: addr, Limit: ratelimit.AddressPerHour, Window: time.Hour},
		{Bucket: accountBucket + ids.Digest(norm), Limit: ratelimit.AccountPerMinute, Window: time.Minute},
	}
}

// recordRefusal puts an attempt refused by a rate limit on the audit
// trail, as an attempt in the gate (Gate.Attempt) recorded as ev's action,
// naming the account it was for, if known (refusedIn).
func (s *Store) recordRefusal(ctx context.Context, ev audit.Event, accountID string, refusal error) error {
	var raised []alerts.Alert
	err := s.Gate.Attempt(ctx, gate.Actor{RemoteAddr: ev.RemoteAddr, UserAgent: ev.UserAgent}, ev.Action, func(o *gate.OpTx) error {
		var err error
		raised, err = s.refusedIn(ctx, o, accountID, refusal)
		return err
	})
	if err != nil {
		return err
	}
	announce(ctx, raised)
	return nil
}

// refusedIn records, in o, an attempt refused by a rate limit: denied,
// naming the account it was for, if known. When the source address's limit
// refused it, the address raises an alert for the operator, at most once
// per addressAlertEvery, in the same transaction. The caller announces the
// alerts once it committed.
func (s *Store) refusedIn(ctx context.Context, o *gate.OpTx, accountID string, refusal error) ([]alerts.Alert, error) {
	o.As(accountID, "")
	o.Outcome(audit.Denied)
	o.Detail("reason", "rate_limited")
	subject := ""
	var ex *ratelimit.Exceeded
	if errors.As(refusal, &ex) {
		for _, prefix := range []string{addressBucket, secondAddressBucket, tokenFailureBucket} {
			if strings.HasPrefix(ex.Rule.Bucket, prefix) {
				subject = strings.TrimPrefix(ex.Rule.Bucket, prefix)
			}
		}
	}
	if subject == "" {
		return nil, nil
	}
	lim := &ratelimit.Limiter{DB: o, Now: s.now}
	raise, _, err := lim.Allow(ctx, "alert:"+addressBucket+subject, 1, addressAlertEvery)
	if err != nil || !raise {
		return nil, err
	}
	a, err := alerts.Raise(ctx, o, alerts.Alert{Kind: alerts.AddressLimited, Subject: subject})
	if err != nil {
		return nil, err
	}
	return []alerts.Alert{a}, nil
}

// recordFailure puts a failed attempt on the audit trail, as an attempt
// in the gate (Gate.Attempt) recorded as ev's action with its details
// (failedIn). It returns the error the requester gets: cause, unless the
// record could not be written.
func (s *Store) recordFailure(ctx context.Context, ev audit.Event, at accounts.Attempted, cause error) error {
	var raised []alerts.Alert
	err := s.Gate.Attempt(ctx, gate.Actor{RemoteAddr: ev.RemoteAddr, UserAgent: ev.UserAgent}, ev.Action, func(o *gate.OpTx) error {
		for k, v := range ev.Details {
			o.Detail(k, v)
		}
		var err error
		raised, err = s.failedIn(ctx, o, ev.RemoteAddr, at, cause)
		return err
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	announce(ctx, raised)
	return cause
}

// failedIn records, in o, a failed attempt and, for wrong credentials (a
// password or a second-factor code), counts it towards the lockout in the
// same transaction; the failure that locks the account raises its alerts,
// which the caller announces once it committed.
func (s *Store) failedIn(ctx context.Context, o *gate.OpTx, remoteAddr string, at accounts.Attempted, cause error) ([]alerts.Alert, error) {
	o.As(at.AccountID, "")
	o.Outcome(audit.Failure)
	switch {
	case at.Disabled:
		o.Detail("reason", "disabled")
	case at.Locked:
		o.Detail("reason", "locked")
	}
	if !errors.Is(cause, accounts.ErrBadCredentials) && !errors.Is(cause, mfa.ErrWrongCode) {
		return nil, nil // a fault, not a guess
	}
	return mfa.CountFailure(ctx, o, at.AccountID, remoteAddr, s.now())
}

// announce tells the operator about committed alerts through slog's
// default logger. Administrators read them in the application until mail
// delivery exists.
func announce(ctx context.Context, raised []alerts.Alert) {
	alerts.Announce(ctx, slog.Default(), alerts.Discard{}, raised...)
}

// SignOut ends a session, on the record.
func (s *Store) SignOut(ctx context.Context, sess Session, remoteAddr, userAgent string) error {
	from := gate.Actor{AccountID: sess.AccountID, SessionID: sess.ID, RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	return s.Gate.Account(ctx, from, "auth.logout", func(o *gate.OpTx) error {
		_, err := o.ExecContext(ctx,
			`UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, s.now().UnixMicro(), sess.ID)
		return err
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

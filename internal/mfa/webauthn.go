package mfa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// WebAuthn passkeys and security keys (AUTH-08). An account may register
// several; each is a second factor on its own. The server keeps its half of
// every ceremony (the options with their random challenge) for
// CeremonyTTL, bound to what began it (the session that registers or
// confirms, the sign-in or enrolment challenge that asks: a binding, whose
// kind is the ceremony's kind in the schema), and spends it once: an answer
// replayed, or given to another session, sign-in or kind of ceremony, finds
// nothing to answer. Passkeys must verify
// their user (a PIN or biometric on the device), so a passkey is a factor of
// its own and not merely a possession. An assertion whose signature counter
// does not move past the stored one comes from a cloned authenticator: it is
// refused and raises a security event (AUD-05).
//
// The ceremonies' cryptography is the RelyingParty's, which the server
// provides (package relyingparty, over github.com/go-webauthn/webauthn);
// this file keeps the state, the rules and the record.

// MethodWebAuthn gives the second factor with a passkey or security key.
const MethodWebAuthn Method = "webauthn"

// CeremonyTTL is how long the server waits for the answer to a WebAuthn
// ceremony it began.
const CeremonyTTL = 5 * time.Minute

// PasskeyNameMax bounds a passkey's name, in characters.
const PasskeyNameMax = 64

// RelyingParty is the WebAuthn relying party: it makes the options a browser
// hands its authenticator and verifies the authenticator's answer against
// them. options and state are JSON: options for the browser, state for the
// server to keep until the answer. A RelyingParty keeps nothing itself.
type RelyingParty interface {
	// BeginRegistration makes creation options for a new credential of
	// user, excluding the ones the account has.
	BeginRegistration(user PasskeyUser, existing []Passkey) (options, state []byte, err error)
	// FinishRegistration verifies the browser's answer to the creation
	// options of state and returns the new credential (ID, Name and times
	// unset).
	FinishRegistration(user PasskeyUser, state, response []byte) (Passkey, error)
	// BeginLogin makes request options allowing the account's credentials.
	BeginLogin(user PasskeyUser, creds []Passkey) (options, state []byte, err error)
	// FinishLogin verifies an assertion against the request options of
	// state and the account's credentials.
	FinishLogin(user PasskeyUser, creds []Passkey, state, response []byte) (Assertion, error)
}

// PasskeyUser is the account as an authenticator knows it: the user handle
// (the account's id: opaque, never personal data) and the name shown in the
// device's account picker.
type PasskeyUser struct {
	Handle []byte
	Name   string
}

// Passkey is a registered WebAuthn credential of an account.
type Passkey struct {
	ID                string // Custodia's id
	CredentialID      []byte // the authenticator's
	PublicKey         []byte // COSE_Key
	AttestationType   string
	AttestationFormat string
	AAGUID            []byte
	SignCount         uint32
	Transports        []string
	UserVerified      bool
	BackupEligible    bool
	BackupState       bool
	Name              string
	CreatedAt         time.Time
	LastUsedAt        time.Time // zero if never used to sign in
}

// Assertion is what a verified sign-in answer says.
type Assertion struct {
	CredentialID []byte
	SignCount    uint32
	// CloneWarning: the counter did not move past the stored one.
	CloneWarning bool
	BackupState  bool
}

var (
	errNoRP = errs.E(errs.Unavailable,
		"passkeys are unavailable: the server's public URL (--public-url) must name a host, not an IP address")
	errNoPasskey        = errs.E(errs.NotFound, "passkey not found")
	errNoCeremony       = errs.E(errs.NotFound, "no passkey registration is in progress; start again")
	errPasskeyResponse  = errs.E(errs.Invalid, "the authenticator's answer does not fit this registration; start again")
	errPasskeyKnown     = errs.E(errs.Conflict, "this passkey is registered already")
	errPasskeyNameValid = errs.E(errs.Invalid, "a passkey's name is at most %d printable characters", PasskeyNameMax)
)

const passkeyColumns = `id, credential_id, public_key, attestation_type, attestation_format, aaguid,
	sign_count, transports, user_verified, backup_eligible, backup_state, name, created_at, last_used_at`

// Passkeys lists the account's passkeys, oldest first.
func Passkeys(ctx context.Context, q sqldb.Querier, accountID string) ([]Passkey, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT `+passkeyColumns+` FROM webauthn_credentials WHERE account_id = $1 ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read passkeys")
	}
	defer rows.Close()
	var out []Passkey
	for rows.Next() {
		var p Passkey
		var count, created int64
		var used sql.NullInt64
		var transports string
		if err := rows.Scan(&p.ID, &p.CredentialID, &p.PublicKey, &p.AttestationType, &p.AttestationFormat, &p.AAGUID,
			&count, &transports, &p.UserVerified, &p.BackupEligible, &p.BackupState, &p.Name, &created, &used); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read passkeys")
		}
		p.SignCount = uint32(count)
		p.Transports = strings.Fields(transports)
		p.CreatedAt = time.UnixMicro(created)
		if used.Valid {
			p.LastUsedAt = time.UnixMicro(used.Int64)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read passkeys")
	}
	return out, nil
}

// ListPasskeys lists the actor's passkeys, oldest first.
func (s *Service) ListPasskeys(ctx context.Context, a gate.Actor) ([]Passkey, error) {
	var out []Passkey
	err := s.Gate.Own(ctx, a, "mfa.webauthn.list", func(o *gate.OpTx) error {
		o.Nothing() // the account's own passkeys, read only
		var err error
		out, err = Passkeys(ctx, o, a.AccountID)
		return err
	})
	return out, err
}

// withPasskeys puts MethodWebAuthn first among methods, the ways the
// account can give its second factor at sign-in, if it has a passkey.
func withPasskeys(ctx context.Context, q sqldb.Querier, accountID string, methods []Method) ([]Method, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM webauthn_credentials WHERE account_id = $1`, accountID).Scan(&n)
	if err != nil {
		return nil, fmt.Errorf("list passkeys: %w", err)
	}
	if n == 0 {
		return methods, nil
	}
	return append([]Method{MethodWebAuthn}, methods...), nil
}

func (s *Service) rp() (RelyingParty, error) {
	if s.Passkeys == nil {
		return nil, errNoRP
	}
	return s.Passkeys, nil
}

// passkeyUser is the account as its authenticators know it.
func passkeyUser(ctx context.Context, q sqldb.Querier, accountID string) (PasskeyUser, error) {
	acc, err := accounts.ByID(ctx, q, accountID)
	if err != nil {
		return PasskeyUser{}, err
	}
	return PasskeyUser{Handle: []byte(acc.ID), Name: acc.Email}, nil
}

// admit decides, in q, whether the actor may add a second factor to its
// account, and reports whether it would be the account's first. code says
// the new factor is a TOTP or SMS factor: an account has at most one of
// those, because a six-digit code is checked against one of them; passkeys
// may be added beside anything. From a signed-in session every new factor,
// the first too (ASVS V7.5.1), needs a confirmation of the session within
// gate.StepUpWindow (ACL-09), so whoever holds a stolen session cannot slip
// in a factor of their own; the security event of the new factor follows.
// Without a session (enrolment while signing in, which is for an account
// without a factor, right after its password), the first factor needs no
// more, and an account that has one meanwhile is refused.
func (s *Service) admit(ctx context.Context, q sqldb.Querier, a gate.Actor, code bool) (first bool, err error) {
	var codes, passkeys int
	err = q.QueryRowContext(ctx,
		`SELECT (SELECT COUNT(*) FROM account_factors WHERE account_id = $1 AND confirmed_at IS NOT NULL),
		        (SELECT COUNT(*) FROM webauthn_credentials WHERE account_id = $1)`, a.AccountID).Scan(&codes, &passkeys)
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "read second factors")
	}
	first = codes+passkeys == 0
	switch {
	case code && codes > 0:
		return false, errHasFactor
	case first && a.SessionID == "":
		return true, nil // enrolment while signing in: the password was just given
	case a.SessionID == "":
		return false, errEnrolled
	}
	if !confirmedRecently(a, s.now()) {
		return false, gate.ErrStepUpRequired
	}
	return first, nil
}

// admitted is admit in the work of o, for a step that adds a factor: a
// refusal for want of a fresh confirmation is recorded as action, denied,
// as the gate records its own (ACL-09), so the trail shows an attempt to
// add a factor from a session that had not confirmed lately; the work then
// ends with nil and the step answers gate.ErrStepUpRequired (out.refused).
func (s *Service) admitted(ctx context.Context, o *gate.OpTx, out *outcome, code bool, action string) (first bool, err error) {
	first, err = s.admit(ctx, o, out.actor, code)
	if errors.Is(err, gate.ErrStepUpRequired) {
		o.Action(action)
		return false, out.stepUp(ctx, o)
	}
	return first, err
}

// binding is what a ceremony is bound to, and so which ceremony it is: its
// kind (a column of webauthn_ceremonies, whose CHECK holds each kind to its
// column) and the session or the challenge that began it. A registration
// is bound to the session that registers ('register') or, for a passkey set
// up while signing in, to the enrolment challenge ('enrol'); an assertion
// to the sign-in challenge it answers ('sign-in') or, for a step-up, to the
// session that confirms ('step-up'). A ceremony is looked up by kind and
// id together, so one of one kind never answers for another, whatever the
// ids look like. Make one with the constructors below.
type binding struct {
	kind      string
	session   string // of 'register' and 'step-up'
	challenge string // of 'enrol' and 'sign-in'
}

const (
	ceremonyRegister = "register"
	ceremonyEnrol    = "enrol"
	ceremonySignIn   = "sign-in"
	ceremonyStepUp   = "step-up"
)

// registerBinding binds a registration to the session that registers.
func registerBinding(sessionID string) binding {
	return binding{kind: ceremonyRegister, session: sessionID}
}

// enrolBinding binds a registration to the enrolment challenge of a
// sign-in that sets up its first factor.
func enrolBinding(challengeID string) binding {
	return binding{kind: ceremonyEnrol, challenge: challengeID}
}

// signInBinding binds an assertion to the sign-in challenge it answers.
func signInBinding(challengeID string) binding {
	return binding{kind: ceremonySignIn, challenge: challengeID}
}

// stepUpBinding binds an assertion to the session it confirms (ACL-09).
func stepUpBinding(sessionID string) binding {
	return binding{kind: ceremonyStepUp, session: sessionID}
}

// registration reports whether b binds a registration (creation options)
// rather than an assertion (request options).
func (b binding) registration() bool { return b.kind == ceremonyRegister || b.kind == ceremonyEnrol }

// column names the column that holds b's session or challenge and its
// value; ok is false for a binding the constructors do not make (an empty
// id, or an id in the other column), which is our fault, not the caller's.
func (b binding) column() (column, id string, ok bool) {
	switch b.kind {
	case ceremonyRegister, ceremonyStepUp:
		return "session_id", b.session, b.session != "" && b.challenge == ""
	case ceremonyEnrol, ceremonySignIn:
		return "challenge_id", b.challenge, b.challenge != "" && b.session == ""
	}
	return "", "", false
}

// misbound answers a binding the constructors did not make.
func misbound(b binding) error {
	return errs.E(errs.Internal, "passkey ceremony of kind %q without its session or challenge", b.kind)
}

// BeginPasskey starts registering a passkey for the actor's account from
// the actor's session, and returns the creation options for the browser
// (navigator.credentials.create). An earlier registration of the same
// session still waiting is replaced. An account that has a second factor
// already needs a recent step-up. Nothing is guessed here (an answer is a
// signature, not a code), and a session has one registration at a time, so
// registration is not limited beyond the session's own requests.
func (s *Service) BeginPasskey(ctx context.Context, a gate.Actor) ([]byte, error) {
	if a.SessionID == "" {
		return nil, errs.E(errs.Forbidden, "registering a passkey needs a signed-in session")
	}
	return s.beginRegistration(ctx, a, registerBinding(a.SessionID))
}

// BeginEnrolmentPasskey is BeginPasskey for a person who sets up a factor
// while signing in, because an organization requires one (AUTH-09): the
// registration is bound to the enrolment challenge challengeID, which the
// caller has checked, instead of a session.
func (s *Service) BeginEnrolmentPasskey(ctx context.Context, a gate.Actor, challengeID string) ([]byte, error) {
	return s.beginRegistration(ctx, a, enrolBinding(challengeID))
}

// beginRegistration makes creation options for the actor's account and
// keeps the ceremony under b, a registration's binding, replacing one
// there already.
func (s *Service) beginRegistration(ctx context.Context, a gate.Actor, b binding) ([]byte, error) {
	if !b.registration() {
		return nil, misbound(b)
	}
	rp, err := s.rp()
	if err != nil {
		return nil, err
	}
	id := ids.New()
	var options []byte
	err = s.run(ctx, a, "mfa.webauthn.begin", func(o *gate.OpTx, out *outcome) error {
		if _, err := s.admitted(ctx, o, out, false, "mfa.webauthn.register"); err != nil || out.refused != nil {
			return err
		}
		user, err := passkeyUser(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		existing, err := Passkeys(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		var state []byte
		options, state, err = rp.BeginRegistration(user, existing)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "begin passkey registration")
		}
		if err := storeCeremony(ctx, o, id, a.AccountID, b, state, out.now); err != nil {
			return err
		}
		o.Detail("ceremony_id", id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return options, nil
}

// storeCeremony keeps the server's half of a ceremony for CeremonyTTL
// under b, in place of one there already, and clears expired ones.
func storeCeremony(ctx context.Context, tx sqldb.Tx, id, accountID string, b binding, state []byte, now time.Time) error {
	column, boundTo, ok := b.column()
	if !ok {
		return misbound(b)
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM webauthn_ceremonies WHERE expires_at < $1 OR (kind = $2 AND account_id = $3 AND `+column+` = $4)`,
		now.UnixMicro(), b.kind, accountID, boundTo); err != nil {
		return fmt.Errorf("clear ceremonies: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO webauthn_ceremonies (id, account_id, kind, `+column+`, state, created_at, expires_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, accountID, b.kind, boundTo, string(state), now.UnixMicro(), now.Add(CeremonyTTL).UnixMicro()); err != nil {
		return fmt.Errorf("store ceremony: %w", err)
	}
	return nil
}

// normalizePasskeyName trims a passkey's name and checks it; an empty name
// becomes "Passkey".
func normalizePasskeyName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "Passkey", nil
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > PasskeyNameMax {
		return "", errPasskeyNameValid
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "", errPasskeyNameValid
		}
	}
	return name, nil
}

// ceremony is the server's half of a ceremony, not yet spent.
type ceremony struct {
	id    string
	state []byte
}

// readCeremony returns the account's live ceremony under b.
func readCeremony(ctx context.Context, q sqldb.Querier, accountID string, b binding, now time.Time) (ceremony, bool, error) {
	column, boundTo, ok := b.column()
	if !ok {
		return ceremony{}, false, misbound(b)
	}
	var c ceremony
	var state string
	err := q.QueryRowContext(ctx,
		`SELECT id, state FROM webauthn_ceremonies
		 WHERE account_id = $1 AND kind = $2 AND `+column+` = $3 AND used_at IS NULL AND expires_at > $4
		 ORDER BY created_at DESC, id LIMIT 1`,
		accountID, b.kind, boundTo, now.UnixMicro()).Scan(&c.id, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return ceremony{}, false, nil
	}
	if err != nil {
		return ceremony{}, false, errs.Wrap(errs.Unavailable, err, "read passkey ceremony")
	}
	c.state = []byte(state)
	return c, true, nil
}

// spendCeremony marks a ceremony used in tx, once; a ceremony spent or
// expired meanwhile is ErrWrongCode.
func spendCeremony(ctx context.Context, tx sqldb.Tx, id string, now time.Time) error {
	res, err := tx.ExecContext(ctx,
		`UPDATE webauthn_ceremonies SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1`,
		now.UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("spend passkey ceremony: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return ErrWrongCode
	}
	return nil
}

// ConfirmPasskey completes the registration begun with BeginPasskey from
// the same session: response is the browser's PublicKeyCredential (JSON)
// from navigator.credentials.create, name what the person calls the
// passkey. It stores the credential and records mfa.webauthn.register, a
// security event (AUD-05). For the account's first second factor it
// returns new recovery codes, shown once; otherwise none.
func (s *Service) ConfirmPasskey(ctx context.Context, a gate.Actor, name string, response []byte) (Passkey, []string, error) {
	return s.ConfirmPasskeyThen(ctx, a, name, response, nil)
}

// ConfirmPasskeyThen is ConfirmPasskey that also runs then, if not nil, in
// the transaction that stores the passkey (a renewed session).
func (s *Service) ConfirmPasskeyThen(ctx context.Context, a gate.Actor, name string, response []byte, then func(tx sqldb.Tx) error) (Passkey, []string, error) {
	if a.SessionID == "" {
		return Passkey{}, nil, errs.E(errs.Forbidden, "registering a passkey needs a signed-in session")
	}
	return s.confirmRegistration(ctx, a, registerBinding(a.SessionID), name, response, then)
}

// ConfirmEnrolmentPasskeyThen completes the registration begun with
// BeginEnrolmentPasskey for the enrolment challenge challengeID, as
// ConfirmPasskeyThen does; then (the session of the sign-in, which spends
// the challenge) commits with the passkey or not at all. The passkey is the
// account's first factor, so the recovery codes come with it.
func (s *Service) ConfirmEnrolmentPasskeyThen(ctx context.Context, a gate.Actor, challengeID, name string, response []byte, then func(tx sqldb.Tx) error) (Passkey, []string, error) {
	return s.confirmRegistration(ctx, a, enrolBinding(challengeID), name, response, then)
}

// confirmRegistration completes the registration under b.
func (s *Service) confirmRegistration(ctx context.Context, a gate.Actor, b binding, name string, response []byte, then func(tx sqldb.Tx) error) (Passkey, []string, error) {
	if !b.registration() {
		return Passkey{}, nil, misbound(b)
	}
	rp, err := s.rp()
	if err != nil {
		return Passkey{}, nil, err
	}
	if name, err = normalizePasskeyName(name); err != nil {
		return Passkey{}, nil, err
	}
	var pk Passkey
	var codes []string
	err = s.run(ctx, a, "mfa.webauthn.register", func(o *gate.OpTx, out *outcome) error {
		first, err := s.admitted(ctx, o, out, false, "mfa.webauthn.register")
		if err != nil || out.refused != nil {
			return err
		}
		c, ok, err := readCeremony(ctx, o, a.AccountID, b, out.now)
		if err != nil {
			return err
		}
		if !ok {
			return errNoCeremony
		}
		user, err := passkeyUser(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		pk, err = rp.FinishRegistration(user, c.state, response)
		if err != nil {
			// A failed registration proves nothing about the account: on
			// the record, not counted towards the lockout.
			return out.refuse(ctx, o, map[string]string{"reason": "invalid_response"}, false, errPasskeyResponse)
		}
		pk.ID, pk.Name, pk.CreatedAt = ids.New(), name, out.now
		if err := spendCeremony(ctx, o, c.id, out.now); err != nil {
			return errNoCeremony
		}
		_, err = o.ExecContext(ctx,
			`INSERT INTO webauthn_credentials (`+passkeyColumns+`, account_id)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, $14)`,
			pk.ID, pk.CredentialID, pk.PublicKey, pk.AttestationType, pk.AttestationFormat, pk.AAGUID,
			int64(pk.SignCount), strings.Join(pk.Transports, " "), pk.UserVerified, pk.BackupEligible, pk.BackupState,
			pk.Name, out.now.UnixMicro(), a.AccountID)
		if sqldb.IsUniqueViolation(err) {
			return errPasskeyKnown
		}
		if err != nil {
			return fmt.Errorf("store passkey: %w", err)
		}
		codes, err = enrolled(ctx, o, a, pk.ID, map[string]string{
			"aaguid": aaguidString(pk.AAGUID), "backup_eligible": strconv.FormatBool(pk.BackupEligible),
		}, first, out.now, then)
		return err
	})
	if err != nil {
		return Passkey{}, nil, err
	}
	return pk, codes, nil
}

// aaguidString writes an AAGUID in the usual UUID form.
func aaguidString(b []byte) string {
	if len(b) != 16 {
		return ""
	}
	const hex = "0123456789abcdef"
	var out []byte
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out)
}

// AAGUIDString is the passkey's authenticator model in the usual UUID form.
func (p Passkey) AAGUIDString() string { return aaguidString(p.AAGUID) }

// RemovePasskey deletes one passkey of the actor's account, given the
// account's password or a current code (mfa.Service.Prove); a wrong one
// counts towards the lockout. A passkey of another account is not found.
// With the account's last second factor go its recovery codes.
func (s *Service) RemovePasskey(ctx context.Context, a gate.Actor, id, code, password string) error {
	if !ids.Valid(id) {
		return errNoPasskey
	}
	return s.prove(ctx, a, "mfa.webauthn.remove", code, password, func(q sqldb.Querier) error {
		var n int
		err := q.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM webauthn_credentials WHERE id = $1 AND account_id = $2`, id, a.AccountID).Scan(&n)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read passkeys")
		}
		if n != 1 {
			return errNoPasskey
		}
		return nil
	}, func(tx sqldb.Tx, ev *audit.Event) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webauthn_credentials WHERE id = $1 AND account_id = $2`, id, a.AccountID)
		if err != nil {
			return fmt.Errorf("remove passkey: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errNoPasskey // removed meanwhile
		}
		if err := dropRecoveryCodesIfLast(ctx, tx, a.AccountID); err != nil {
			return err
		}
		ev.Details["factor_id"] = id
		return nil
	})
}

// dropRecoveryCodesIfLast deletes the account's recovery codes in tx, the
// transaction that removed one of its factors, if no factor is left: the
// codes stand in for any of its factors, so they stay while one does.
func dropRecoveryCodesIfLast(ctx context.Context, tx sqldb.Tx, accountID string) error {
	has, err := HasFactor(ctx, tx, accountID)
	if err != nil || has {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE account_id = $1`, accountID); err != nil {
		return fmt.Errorf("remove recovery codes: %w", err)
	}
	return nil
}

// BeginPasskeySignIn makes the request options (navigator.credentials.get)
// for the second step of the sign-in whose challenge is challengeID, for
// the actor's account, and keeps the ceremony bound to that challenge; an
// earlier one for the same challenge is replaced. The caller has checked
// the challenge. An account without passkeys gets ErrWrongCode.
func (s *Service) BeginPasskeySignIn(ctx context.Context, a gate.Actor, challengeID string) ([]byte, error) {
	return s.beginAssertion(ctx, a, signInBinding(challengeID))
}

// beginAssertion makes request options allowing the actor's passkeys and
// keeps the ceremony under b, an assertion's binding, recorded as
// mfa.webauthn.request. An account without passkeys gets ErrWrongCode.
func (s *Service) beginAssertion(ctx context.Context, a gate.Actor, b binding) ([]byte, error) {
	if b.registration() {
		return nil, misbound(b)
	}
	rp, err := s.rp()
	if err != nil {
		return nil, err
	}
	id := ids.New()
	var options []byte
	err = s.run(ctx, a, "mfa.webauthn.request", func(o *gate.OpTx, out *outcome) error {
		creds, err := Passkeys(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		if len(creds) == 0 {
			return ErrWrongCode
		}
		user, err := passkeyUser(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		var state []byte
		options, state, err = rp.BeginLogin(user, creds)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "begin passkey sign-in")
		}
		if err := storeCeremony(ctx, o, id, a.AccountID, b, state, out.now); err != nil {
			return err
		}
		o.Detail("ceremony_id", id)
		o.Detail("ceremony", b.kind)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return options, nil
}

// VerifyPasskey checks response, the browser's PublicKeyCredential (JSON)
// from navigator.credentials.get, against the ceremony of the sign-in
// challenge challengeID and the actor's passkeys. In one transaction it
// spends the ceremony, moves the passkey's counter on and runs then with
// MethodWebAuthn, so the answer is spent exactly when what then writes (a
// session) commits; the work is recorded as then shapes ev (by default
// auth.second-factor, a success naming the factor). Anything wrong (no
// ceremony, an answer replayed, of another passkey, without user
// verification or with a bad signature) is ErrWrongCode and nothing is
// written; the caller records and counts it. A counter that did not move
// past the stored one is ErrWrongCode too, recorded as mfa.webauthn.clone,
// a security event.
func (s *Service) VerifyPasskey(ctx context.Context, a gate.Actor, challengeID string, response []byte, then func(tx sqldb.Tx, m Method, ev *audit.Event) error) error {
	rp, err := s.rp()
	if err != nil {
		return err
	}
	return s.run(ctx, a, "auth.second-factor", func(o *gate.OpTx, out *outcome) error {
		_, err := verifyAssertion(ctx, o, rp, a, signInBinding(challengeID), response, out.now)
		var clone *cloneWarning
		if errors.As(err, &clone) {
			recordAs(o, clone.event(a))
			out.refused = ErrWrongCode
			return inEachOrg(ctx, o, a.AccountID)
		}
		if err != nil {
			return err
		}
		ev := event(a, "auth.second-factor", audit.Success)
		ev.Details = map[string]string{"factor": string(MethodWebAuthn)}
		if then != nil {
			if err := then(o, MethodWebAuthn, &ev); err != nil {
				return err
			}
		}
		recordAs(o, ev)
		return nil
	})
}

// cloneWarning is an assertion whose counter went backwards or stood
// still: it comes from a cloned authenticator.
type cloneWarning struct {
	pk Passkey
	as Assertion
}

func (c *cloneWarning) Error() string { return "passkey counter did not move: a cloned authenticator" }

// Is makes a clone warning a wrong code to whoever does not look closer.
func (c *cloneWarning) Is(target error) bool { return target == ErrWrongCode }

// event is mfa.webauthn.clone, a security event naming the passkey and
// both counters; its caller records it in each of the account's
// organizations.
func (c *cloneWarning) event(a gate.Actor) audit.Event {
	ev := event(a, "mfa.webauthn.clone", audit.Denied)
	ev.Security = true
	ev.Details = map[string]string{
		"factor_id": c.pk.ID, "stored_sign_count": strconv.FormatUint(uint64(c.pk.SignCount), 10),
		"presented_sign_count": strconv.FormatUint(uint64(c.as.SignCount), 10),
	}
	return ev
}

// verifyAssertion checks an assertion against the ceremony under b, an
// assertion's binding, and the actor's passkeys, in the work of o, and
// returns the passkey that answered, its ceremony spent and its counter
// moved on. Anything wrong is ErrWrongCode, and a counter that did not move
// a *cloneWarning.
func verifyAssertion(ctx context.Context, o *gate.OpTx, rp RelyingParty, a gate.Actor, b binding, response []byte, now time.Time) (Passkey, error) {
	if b.registration() {
		return Passkey{}, misbound(b)
	}
	c, ok, err := readCeremony(ctx, o, a.AccountID, b, now)
	if err != nil {
		return Passkey{}, err
	}
	if !ok {
		return Passkey{}, ErrWrongCode
	}
	creds, err := Passkeys(ctx, o, a.AccountID)
	if err != nil {
		return Passkey{}, err
	}
	user, err := passkeyUser(ctx, o, a.AccountID)
	if err != nil {
		return Passkey{}, err
	}
	as, err := rp.FinishLogin(user, creds, c.state, response)
	if err != nil {
		return Passkey{}, ErrWrongCode
	}
	var pk Passkey
	for _, p := range creds {
		if string(p.CredentialID) == string(as.CredentialID) {
			pk = p
		}
	}
	if pk.ID == "" {
		return Passkey{}, ErrWrongCode
	}
	if as.CloneWarning {
		return Passkey{}, &cloneWarning{pk: pk, as: as}
	}
	if err := spendCeremony(ctx, o, c.id, now); err != nil {
		return Passkey{}, err
	}
	// The counter moves strictly forward, or stays at zero for
	// authenticators that keep none; the condition and the write are one
	// statement, so of two nodes taking one assertion, one finds the
	// counter moved.
	res, err := o.ExecContext(ctx,
		`UPDATE webauthn_credentials SET sign_count = $1, backup_state = $2, last_used_at = $3
		 WHERE id = $4 AND account_id = $5 AND (sign_count < $1 OR (sign_count = 0 AND $1 = 0))`,
		int64(as.SignCount), as.BackupState, now.UnixMicro(), pk.ID, a.AccountID)
	if err != nil {
		return Passkey{}, fmt.Errorf("record passkey use: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return Passkey{}, ErrWrongCode
	}
	return pk, nil
}

// errNoPasskeys answers a passkey step-up of an account that has none.
var errNoPasskeys = errs.E(errs.NotFound, "this account has no passkey; confirm with the password or a code")

// BeginPasskeyProof makes the request options (navigator.credentials.get)
// for a step-up (ACL-09) answered with one of the actor's own passkeys, and
// keeps the ceremony bound to the actor's session; an earlier one of the
// session is replaced. An account without passkeys is NotFound.
func (s *Service) BeginPasskeyProof(ctx context.Context, a gate.Actor) ([]byte, error) {
	if a.SessionID == "" {
		return nil, errs.E(errs.Forbidden, "confirming with a passkey needs a signed-in session")
	}
	options, err := s.beginAssertion(ctx, a, stepUpBinding(a.SessionID))
	if errors.Is(err, ErrWrongCode) {
		return nil, errNoPasskeys
	}
	return options, err
}

// ProvePasskey is Prove answered with a passkey: response is the browser's
// assertion for the options BeginPasskeyProof gave the same session. On
// success it spends the ceremony, moves the passkey's counter on, runs then
// and appends the security event action (proof "webauthn", and the
// passkey), all in one transaction. Anything wrong (no live ceremony of
// this session: none begun, spent, expired or another session's; an
// assertion of a passkey that is not the account's, replayed, without user
// verification or with a bad signature) is ErrWrongCode: it counts towards
// the account's lockout (AUTH-04), is on the audit trail and spends the
// session's ceremony, so one set of options is answered at most once. The
// checks are limited per account, as Prove's are (AUTH-05).
func (s *Service) ProvePasskey(ctx context.Context, a gate.Actor, action string, response []byte, then func(tx sqldb.Tx, ev *audit.Event) error) error {
	if a.SessionID == "" {
		return errs.E(errs.Forbidden, "confirming with a passkey needs a signed-in session")
	}
	rp, err := s.rp()
	if err != nil {
		return err
	}
	b := stepUpBinding(a.SessionID)
	return s.run(ctx, a, action, func(o *gate.OpTx, out *outcome) error {
		if err := s.limit(ctx, o, a.AccountID); err != nil {
			return err
		}
		pk, err := verifyAssertion(ctx, o, rp, a, b, response, out.now)
		var clone *cloneWarning
		if errors.As(err, &clone) {
			orgIDs, oerr := accounts.Organizations(ctx, o, a.AccountID)
			if oerr != nil {
				return oerr
			}
			if err := o.Record(ctx, clone.event(a), orgIDs...); err != nil {
				return err
			}
		}
		if errors.Is(err, ErrWrongCode) {
			// One set of options is answered at most once, rightly or not.
			if _, err := o.ExecContext(ctx,
				`UPDATE webauthn_ceremonies SET used_at = $1
				 WHERE account_id = $2 AND kind = $3 AND session_id = $4 AND used_at IS NULL`,
				out.now.UnixMicro(), a.AccountID, b.kind, b.session); err != nil {
				return errs.Wrap(errs.Unavailable, err, "second factor unavailable")
			}
			return out.refuse(ctx, o, map[string]string{"reason": "wrong_passkey", "proof": string(MethodWebAuthn)}, true, ErrWrongCode)
		}
		if err != nil {
			return err
		}
		ev := event(a, action, audit.Success)
		ev.Security = true
		ev.Details = map[string]string{"proof": string(MethodWebAuthn), "factor_id": pk.ID}
		if then != nil {
			if err := then(o, &ev); err != nil {
				return err
			}
		}
		recordAs(o, ev)
		return inEachOrg(ctx, o, a.AccountID)
	})
}

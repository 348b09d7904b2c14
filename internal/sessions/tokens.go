package sessions

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/ratelimit"
	"github.com/custodia/custodia/internal/sqldb"
)

// Personal access tokens (AUTH-10) let a person's scripts use the API
// without a browser: "Authorization: Bearer <token>" on API routes, never
// a cookie. A token is made only from a signed-in session, shown once, and
// only its SHA-256 is kept. It is scoped (read: safe methods only; write:
// state-changing requests too, enforced by the API's guard), expires after
// at most TokenMaxDays, and is revoked by its owner, by a password reset,
// by an administrator ending the account's sessions or disabling it and,
// in effect, by a lockout: a locked account's tokens are refused. Signing
// out everywhere and a password change end them too (ASVS V7.4.3). In the
// audit trail a token appears by its id only, as the session "token:<id>".

// Scope is what a token may do.
type Scope string

const (
	// ScopeRead allows GET and HEAD requests only.
	ScopeRead Scope = "read"
	// ScopeWrite allows state-changing requests as well; it implies read.
	ScopeWrite Scope = "write"
)

// Token lifetimes in days.
const (
	TokenDefaultDays = 90
	TokenMaxDays     = 365
	// TokensPerAccount bounds the live tokens of one account.
	TokensPerAccount = 50
)

// tokenPrefix marks Custodia access tokens, so that secret scanners and
// people recognise one in a paste.
const tokenPrefix = "cst_"

// TokenActorPrefix begins the session field of a request made with an
// access token: "token:" and the token's id.
const TokenActorPrefix = "token:"

// Failed bearer attempts per source address (AUTH-05): past the limit,
// every bearer request from the address is refused unchecked until the
// window allows another.
const (
	tokenFailureBucket     = "token:address:"
	TokenFailuresPerMinute = 20
)

// AccessToken is a personal access token, without its secret.
type AccessToken struct {
	ID         string
	AccountID  string
	Name       string
	Scopes     []Scope
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt time.Time // zero if never used
}

// Allows reports whether the token holds scope sc.
func (t AccessToken) Allows(sc Scope) bool { return slices.Contains(t.Scopes, sc) }

// Actor is the session field for requests made with the token.
func (t AccessToken) Actor() string { return TokenActorPrefix + t.ID }

// IsTokenActor reports whether a request's session field names an access
// token rather than a session.
func IsTokenActor(sessionID string) bool { return strings.HasPrefix(sessionID, TokenActorPrefix) }

var (
	errNoToken       = errs.E(errs.Unauthenticated, "the access token is invalid, expired or revoked")
	errTokenNotFound = errs.E(errs.NotFound, "access token not found")
)

// parseScopes checks the scopes asked for: at least one, each known, and
// returns them in order with write implying read.
func parseScopes(in []string) ([]Scope, error) {
	if len(in) == 0 {
		return nil, errs.E(errs.Invalid, `scopes must name at least one of "read" and "write"`)
	}
	write := false
	for _, s := range in {
		switch Scope(s) {
		case ScopeRead:
		case ScopeWrite:
			write = true
		default:
			return nil, errs.E(errs.Invalid, `unknown scope %q (want "read" or "write")`, s)
		}
	}
	if write {
		return []Scope{ScopeRead, ScopeWrite}, nil
	}
	return []Scope{ScopeRead}, nil
}

func scopesText(sc []Scope) string {
	out := make([]string, len(sc))
	for i, s := range sc {
		out[i] = string(s)
	}
	return strings.Join(out, " ")
}

func checkTokenName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 100 {
		return "", errs.E(errs.Invalid, "a token needs a name of 1 to 100 characters")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "", errs.E(errs.Invalid, "a token name may not contain control characters")
		}
	}
	return name, nil
}

// CreateToken makes an access token for the account of sess, the signed-in
// session asking (a request made with a token cannot make another). days
// is its lifetime, 0 for TokenDefaultDays, at most TokenMaxDays. It returns
// the token, to be shown this once, and its record; token.create, a
// security event, commits with it.
func (s *Store) CreateToken(ctx context.Context, sess Session, a gate.Actor, name string, scopes []string, days int) (string, AccessToken, error) {
	if sess.ID == "" || IsTokenActor(sess.ID) || IsTokenActor(a.SessionID) {
		return "", AccessToken{}, errs.E(errs.Forbidden, "access tokens are made from a signed-in session, not with another token")
	}
	name, err := checkTokenName(name)
	if err != nil {
		return "", AccessToken{}, err
	}
	sc, err := parseScopes(scopes)
	if err != nil {
		return "", AccessToken{}, err
	}
	if days == 0 {
		days = TokenDefaultDays
	}
	if days < 1 || days > TokenMaxDays {
		return "", AccessToken{}, errs.E(errs.Invalid, "expires_in_days must be between 1 and %d", TokenMaxDays)
	}
	secret, _ := ids.NewSecret()
	secret = tokenPrefix + secret
	now := s.now()
	t := AccessToken{
		ID: ids.New(), AccountID: sess.AccountID, Name: name, Scopes: sc,
		CreatedAt: now, ExpiresAt: now.Add(time.Duration(days) * 24 * time.Hour),
	}
	err = s.Gate.Own(ctx, tokenActor(sess, a), "token.create", func(o *gate.OpTx) error {
		// A token outlives the session that makes it and reaches the API
		// without a second factor: the owner proves themselves first
		// (ACL-09, ASVS V7.4.3).
		if err := o.RequireStepUp(now); err != nil {
			return err
		}
		var live int
		if err := o.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM access_tokens WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > $2`,
			t.AccountID, now.UnixMicro()).Scan(&live); err != nil {
			return fmt.Errorf("count access tokens: %w", err)
		}
		if live >= TokensPerAccount {
			return errs.E(errs.Conflict, "this account has %d live access tokens already; revoke one first", live)
		}
		if _, err := o.ExecContext(ctx,
			`INSERT INTO access_tokens (id, token_hash, account_id, name, scopes, created_at, expires_at)
			 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			t.ID, ids.Digest(secret), t.AccountID, t.Name, scopesText(t.Scopes), now.UnixMicro(), t.ExpiresAt.UnixMicro()); err != nil {
			return fmt.Errorf("create access token: %w", err)
		}
		return tokenEvent(ctx, o, t)
	})
	if err != nil {
		return "", AccessToken{}, err
	}
	return secret, t, nil
}

// tokenActor is who changes a token: the account of sess, from the session
// asking or the token a.SessionID names.
func tokenActor(sess Session, a gate.Actor) gate.Actor {
	sessionField := sess.ID
	if a.SessionID != "" {
		sessionField = a.SessionID
	}
	return gate.Actor{AccountID: sess.AccountID, SessionID: sessionField, RemoteAddr: a.RemoteAddr,
		UserAgent: truncate(a.UserAgent, 512), ConfirmedAt: sess.ConfirmedAt}
}

// tokenEvent shapes the event of a change of a token, a security event
// (AUD-05), recorded in each organization of the account.
func tokenEvent(ctx context.Context, o *gate.OpTx, t AccessToken) error {
	orgIDs, err := accounts.Organizations(ctx, o, t.AccountID)
	if err != nil {
		return err
	}
	o.InEach(orgIDs)
	o.Security()
	o.Object("access_token", t.ID)
	o.Detail("token_id", t.ID)
	o.Detail("scopes", scopesText(t.Scopes))
	o.Detail("token_expires", t.ExpiresAt.UTC().Format(time.RFC3339))
	return nil
}

const tokenColumns = `id, account_id, name, scopes, created_at, expires_at, last_used_at`

// tokenColumnsOfT are tokenColumns of the table aliased t.
const tokenColumnsOfT = `t.id, t.account_id, t.name, t.scopes, t.created_at, t.expires_at, t.last_used_at`

// tokenScan receives a row's tokenColumns.
type tokenScan struct {
	t                AccessToken
	scopes           string
	created, expires int64
	used             sql.NullInt64
}

func (sc *tokenScan) dest() []any {
	return []any{&sc.t.ID, &sc.t.AccountID, &sc.t.Name, &sc.scopes, &sc.created, &sc.expires, &sc.used}
}

func (sc *tokenScan) token() AccessToken {
	t := sc.t
	for _, f := range strings.Fields(sc.scopes) {
		t.Scopes = append(t.Scopes, Scope(f))
	}
	t.CreatedAt, t.ExpiresAt = time.UnixMicro(sc.created), time.UnixMicro(sc.expires)
	if sc.used.Valid {
		t.LastUsedAt = time.UnixMicro(sc.used.Int64)
	}
	return t
}

func scanToken(row interface{ Scan(...any) error }) (AccessToken, error) {
	var sc tokenScan
	if err := row.Scan(sc.dest()...); err != nil {
		return AccessToken{}, err
	}
	return sc.token(), nil
}

// ListTokens lists the account's tokens that are not revoked, newest
// first, expired ones included, so their owner sees them end.
func (s *Store) ListTokens(ctx context.Context, accountID string) ([]AccessToken, error) {
	out := []AccessToken{}
	err := s.Gate.Own(ctx, gate.Actor{AccountID: accountID}, "token.list", func(o *gate.OpTx) error {
		o.Nothing() // the account's own, to read at any time
		rows, err := o.QueryContext(ctx,
			`SELECT `+tokenColumns+` FROM access_tokens WHERE account_id = $1 AND revoked_at IS NULL
			 ORDER BY created_at DESC, id`, accountID)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "list access tokens")
		}
		defer rows.Close()
		for rows.Next() {
			t, err := scanToken(rows)
			if err != nil {
				return errs.Wrap(errs.Unavailable, err, "list access tokens")
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeToken revokes one of the account's tokens. Another account's
// token, or a revoked or unknown one, is NotFound alike (ACL-08).
func (s *Store) RevokeToken(ctx context.Context, sess Session, a gate.Actor, id string) error {
	if !ids.Valid(id) {
		return errTokenNotFound
	}
	return s.Gate.Own(ctx, tokenActor(sess, a), "token.revoke", func(o *gate.OpTx) error {
		t, err := scanToken(o.QueryRowContext(ctx,
			`UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL
			 RETURNING `+tokenColumns, s.now().UnixMicro(), id, sess.AccountID))
		if errors.Is(err, sql.ErrNoRows) {
			return errTokenNotFound
		}
		if err != nil {
			return fmt.Errorf("revoke access token: %w", err)
		}
		return tokenEvent(ctx, o, t)
	})
}

// RevokeTokensIn revokes every token of an account within a caller's
// transaction: the one that resets the account's password (AUTH-07).
func RevokeTokensIn(ctx context.Context, tx sqldb.Tx, accountID string, now time.Time) error {
	_, err := revokeTokens(ctx, tx, accountID, now)
	return err
}

// revokeTokens revokes every live token of an account in tx and tells how
// many: at a password change or reset and at "sign out everywhere".
func revokeTokens(ctx context.Context, tx sqldb.Querier, accountID string, now time.Time) (int64, error) {
	res, err := tx.ExecContext(ctx,
		`UPDATE access_tokens SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL`,
		now.UnixMicro(), accountID)
	if err != nil {
		return 0, fmt.Errorf("revoke access tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("revoke access tokens: %w", err)
	}
	return n, nil
}

// LookupToken returns the live token for a bearer secret presented from
// remoteAddr and records its use. An unknown, expired or revoked token, one
// of a locked (AUTH-04) or disabled (ASVS V7.4.2) account and one of an account whose password has
// expired (AUTH-09) are all errNoToken, a failure that is on the audit
// trail (AUTH-11) and counts against the address's limit of failed bearer
// attempts (AUTH-05); past that limit the address gets RateLimited without
// any check.
func (s *Store) LookupToken(ctx context.Context, secret, remoteAddr, userAgent string) (AccessToken, error) {
	rule := ratelimit.Rule{Bucket: tokenFailureBucket + ratelimit.AddressKey(remoteAddr), Limit: TokenFailuresPerMinute, Window: time.Minute}
	ev := audit.Event{Action: "auth.token", RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	var (
		full   bool
		wait   time.Duration
		t      AccessToken
		reason string
	)
	err := s.Gate.Identify(ctx, func(q sqldb.Querier) error {
		// The token, its account's state and policies and the address's
		// failures so far, in one statement; a token not found reads the
		// failures alone. Past the limit the token is not used, whatever
		// it is.
		var (
			stored sql.NullInt64
			found  bool
			err    error
		)
		t, reason, stored, found, err = s.findToken(ctx, q, secret, ratelimit.Key(rule.Bucket, rule.Window))
		if err != nil {
			return err
		}
		limiter := &ratelimit.Limiter{DB: q, Now: s.now}
		if found {
			full, wait, err = limiter.FullGiven(stored, rule.Limit, rule.Window)
		} else {
			full, wait, err = limiter.Full(ctx, rule.Bucket, rule.Limit, rule.Window)
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
		}
		return nil
	})
	if err != nil {
		return AccessToken{}, err
	}
	if full {
		refusal := errs.Wrap(errs.RateLimited, &ratelimit.Exceeded{Rule: rule, Wait: wait}, ratelimit.Message)
		return AccessToken{}, s.refuse(ctx, ev, "", refusal)
	}
	if reason != "" {
		// The failure and the budget it spends commit together.
		err := s.Gate.Attempt(ctx, gate.Actor{RemoteAddr: ev.RemoteAddr, UserAgent: ev.UserAgent}, ev.Action, func(o *gate.OpTx) error {
			o.As(t.AccountID, "")
			o.Outcome(audit.Failure)
			o.Detail("reason", reason)
			if t.ID != "" {
				o.Object("access_token", t.ID)
			}
			_, _, err := (&ratelimit.Limiter{DB: o, Now: s.now}).Allow(ctx, rule.Bucket, rule.Limit, rule.Window)
			return err
		})
		if err != nil {
			return AccessToken{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
		}
		return AccessToken{}, errNoToken
	}
	now := s.now()
	if t.LastUsedAt.IsZero() || now.Sub(t.LastUsedAt) >= touchEvery {
		if err := s.Gate.Stamp(ctx, func(q sqldb.Querier) error {
			_, err := q.ExecContext(ctx, `UPDATE access_tokens SET last_used_at = $1 WHERE id = $2`, now.UnixMicro(), t.ID)
			return err
		}); err != nil {
			return AccessToken{}, errs.Wrap(errs.Unavailable, err, "record token use")
		}
		t.LastUsedAt = now
	}
	return t, nil
}

// findToken looks a secret up, and reads with it the stored state of the
// rate-limit bucket named limitKey (ratelimit.StoredTat) into bucket, found
// telling whether it was read. A token that may not be used comes back with the
// reason (for the audit trail; the requester learns none of it) and, if it
// exists, its record.
func (s *Store) findToken(ctx context.Context, q sqldb.Querier, secret, limitKey string) (t AccessToken, reason string, bucket sql.NullInt64, found bool, err error) {
	if len(secret) != len(tokenPrefix)+ids.SecretLen || !strings.HasPrefix(secret, tokenPrefix) {
		return AccessToken{}, "unknown", bucket, false, nil
	}
	var (
		revoked, changed sql.NullInt64
		locked, disabled bool
		policies         policy.Account
	)
	rows, err := q.QueryContext(ctx,
		`SELECT `+tokenColumnsOfT+`, t.revoked_at, a.locked_at IS NOT NULL, a.disabled_at IS NOT NULL, a.password_changed_at,
		        (`+ratelimit.StoredTat+`$2), `+policy.AccountPolicyColumns+`
		 FROM access_tokens t JOIN accounts a ON a.id = t.account_id`+policy.AccountPolicies+` WHERE t.token_hash = $1`,
		ids.Digest(secret), limitKey)
	var scan tokenScan
	if err == nil {
		found, err = policies.Scan(rows, append(scan.dest(), &revoked, &locked, &disabled, &changed, &bucket)...)
	}
	if err != nil {
		return AccessToken{}, "", bucket, false, errs.Wrap(errs.Unavailable, err, "look up access token")
	}
	if !found {
		return AccessToken{}, "unknown", bucket, false, nil
	}
	t = scan.token()
	now := s.now()
	switch {
	case revoked.Valid:
		return t, "revoked", bucket, true, nil
	case !now.Before(t.ExpiresAt):
		return t, "expired", bucket, true, nil
	case disabled:
		return t, "disabled", bucket, true, nil
	case locked:
		return t, "locked", bucket, true, nil
	case policies.PasswordExpired(changed, now):
		return t, "password_expired", bucket, true, nil
	}
	return t, "", bucket, true, nil
}

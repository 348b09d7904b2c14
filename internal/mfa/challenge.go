package mfa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Purpose says what a sign-in challenge lets its holder do next.
type Purpose string

const (
	// PurposeSecondFactor: give a TOTP or recovery code of the account's
	// factor.
	PurposeSecondFactor Purpose = "second-factor"
	// PurposeEnrolment: set up a factor, because an organization's policy
	// requires one and the account has none; nothing else.
	PurposeEnrolment Purpose = "enrolment"
)

// ChallengeTTL is how long a challenge is valid.
const ChallengeTTL = 5 * time.Minute

// Challenge is what a right password earns an account that needs a second
// factor: a bearer token, valid for ChallengeTTL from the source address
// that gave the password, that a second step spends once for a session.
type Challenge struct {
	Token     string // only when issued; the database keeps its SHA-256
	ID        string
	AccountID string
	Purpose   Purpose
	ExpiresAt time.Time
	// Methods are the ways the account can give its second factor, for a
	// challenge of PurposeSecondFactor (set when issued).
	Methods []Method
}

// ErrChallenge is the one answer to a second sign-in step that does not
// succeed: an unknown, used or expired challenge, one from another address
// or of another purpose, and a wrong code alike.
var ErrChallenge = errs.E(errs.Unauthenticated, "the code is wrong or this sign-in has expired")

// IssueChallenge creates a challenge for the account in tx, bound to
// remoteAddr, and clears challenges that expired more than a day ago.
func IssueChallenge(ctx context.Context, tx sqldb.Tx, accountID string, p Purpose, remoteAddr string, now time.Time) (Challenge, error) {
	if p != PurposeSecondFactor && p != PurposeEnrolment {
		return Challenge{}, errs.E(errs.Internal, "unknown challenge purpose %q", p)
	}
	token, digest := ids.NewSecret()
	c := Challenge{Token: token, ID: ids.New(), AccountID: accountID, Purpose: p, ExpiresAt: now.Add(ChallengeTTL)}
	if _, err := tx.ExecContext(ctx, `DELETE FROM login_challenges WHERE expires_at < $1`,
		now.Add(-24*time.Hour).UnixMicro()); err != nil {
		return Challenge{}, fmt.Errorf("clear old challenges: %w", err)
	}
	_, err := tx.ExecContext(ctx,
		`INSERT INTO login_challenges (id, token_hash, account_id, purpose, remote_addr, created_at, expires_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		c.ID, digest, accountID, string(p), remoteAddr, now.UnixMicro(), c.ExpiresAt.UnixMicro())
	if err != nil {
		return Challenge{}, fmt.Errorf("issue challenge: %w", err)
	}
	if p == PurposeSecondFactor {
		if c.Methods, err = methodsOf(ctx, tx, accountID); err != nil {
			return Challenge{}, err
		}
	}
	return c, nil
}

// LookupChallenge returns the live challenge of token for purpose p, asked
// for from remoteAddr, without spending it. Anything else is ErrChallenge.
func LookupChallenge(ctx context.Context, q sqldb.Querier, token string, p Purpose, remoteAddr string, now time.Time) (Challenge, error) {
	if len(token) != ids.SecretLen {
		return Challenge{}, ErrChallenge
	}
	c := Challenge{Purpose: p}
	var expires int64
	var addr string
	err := q.QueryRowContext(ctx,
		`SELECT id, account_id, remote_addr, expires_at FROM login_challenges
		 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3`,
		ids.Digest(token), string(p), now.UnixMicro()).Scan(&c.ID, &c.AccountID, &addr, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Challenge{}, ErrChallenge
	}
	if err != nil {
		return Challenge{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	if addr != remoteAddr {
		return Challenge{}, ErrChallenge
	}
	c.ExpiresAt = time.UnixMicro(expires)
	return c, nil
}

// SpendChallenge marks a challenge used in tx, the transaction that starts
// the session, if it is still live; otherwise (spent by a concurrent
// request, or expired meanwhile) it is ErrChallenge.
func SpendChallenge(ctx context.Context, tx sqldb.Tx, c Challenge, now time.Time) error {
	res, err := tx.ExecContext(ctx,
		`UPDATE login_challenges SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1`,
		now.UnixMicro(), c.ID)
	if err != nil {
		return fmt.Errorf("spend challenge: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("spend challenge: %w", err)
	} else if n != 1 {
		return ErrChallenge
	}
	return nil
}

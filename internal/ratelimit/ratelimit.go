// Package ratelimit counts attempts in buckets kept in the clinical
// database, so that every server node on one database enforces the same
// limits (AUTH-05, AVL-04): an attacker gains nothing by spreading attempts
// over nodes.
//
// Each bucket follows the generic cell rate algorithm (GCRA): a bucket with
// limit n per window w accepts a burst of n attempts, and after that one
// attempt every w/n. It stores one number per bucket, its theoretical
// arrival time (tat), and one INSERT … ON CONFLICT DO UPDATE … WHERE …
// RETURNING statement decides and records an attempt atomically in SQLite
// (3.35 and later) and PostgreSQL alike. A refused attempt changes nothing,
// so it does not push the next permitted attempt further away.
//
// A Limiter counts in the querier it is given: in the server, the
// transaction of the attempt's own work in the gate (gate.OpTx), so that
// the spent budget commits together with the attempt's audit event, and
// not at all when the attempt is not carried out.
package ratelimit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Sign-in limits (AUTH-05). A person who mistypes a password a few times
// never meets them; a script does within seconds.
const (
	// AddressPerMinute and AddressPerHour bound the sign-in attempts from one
	// source address (an IPv6 /64), whatever accounts they name: they stop
	// credential stuffing from one machine, while an office behind one NAT
	// still has room for its morning sign-ins.
	AddressPerMinute = 20
	AddressPerHour   = 100
	// AccountPerMinute bounds the attempts that name one e-mail address,
	// from whatever source; with the lockout after accounts.LockAfter
	// consecutive failures it stops guessing spread over many addresses.
	// It applies to addresses without an account alike, so it reveals
	// nothing about which accounts exist (AUTH-06).
	AccountPerMinute = 10
)

// Invitation limits (ASVS V2.4.1, V15.2.2): every invitation, of a member
// or of a participant to their own account, sends an e-mail. An
// organization onboarding its staff stays well within them; a script
// sending mail through the instance, or at one address, does not.
const (
	InvitesPerAccountPerHour = 100
	InvitesPerOrgPerHour     = 500
	InvitesPerAddressPerDay  = 5
)

// InviteRules are the limits of one invitation, by the inviting account,
// in the organization, to the address (its digest: the address itself is
// not stored).
func InviteRules(accountID, orgID, addressDigest string) []Rule {
	return []Rule{
		{Bucket: "invite:account:" + accountID, Limit: InvitesPerAccountPerHour, Window: time.Hour},
		{Bucket: "invite:org:" + orgID, Limit: InvitesPerOrgPerHour, Window: time.Hour},
		{Bucket: "invite:address:" + addressDigest, Limit: InvitesPerAddressPerDay, Window: 24 * time.Hour},
	}
}

// sweepOdds is the chance (1 in sweepOdds) that an Allow also deletes the
// buckets that have emptied, so the table stays small without a timer.
const sweepOdds = 64

// Limiter decides whether an attempt is within its limits. DB is where the
// buckets are counted: the database, or the transaction of the work whose
// attempt it counts, so that the attempt is spent with what the work
// commits.
type Limiter struct {
	// DB is where the buckets are counted: the attempt's transaction.
	DB  sqldb.Querier
	Now func() time.Time // for tests; time.Now when nil
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Allow records an attempt in bucket if it stays within limit attempts per
// window and reports whether it did. When it did not, retryAfter is how long
// until an attempt would be accepted, if nobody else tries meanwhile.
//
// The row is keyed by bucket and window together, so one bucket name may
// carry several windows (20 a minute and 100 an hour).
func (l *Limiter) Allow(ctx context.Context, bucket string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error) {
	if err := usable(limit, window); err != nil {
		return false, 0, err
	}
	key := Key(bucket, window)
	now := l.now().UnixMicro()
	w := window.Microseconds()
	step := w / int64(limit) // what one attempt adds to tat
	var tat int64
	err = l.DB.QueryRowContext(ctx,
		`INSERT INTO rate_limits (bucket, tat) VALUES ($1, $2)
		 ON CONFLICT (bucket) DO UPDATE
		 SET tat = (CASE WHEN rate_limits.tat > $5 THEN $5 WHEN rate_limits.tat > $3 THEN rate_limits.tat ELSE $3 END) + $4
		 WHERE (CASE WHEN rate_limits.tat > $5 THEN $5 WHEN rate_limits.tat > $3 THEN rate_limits.tat ELSE $3 END) + $4 <= $5
		 RETURNING tat`,
		key, now+step, now, step, now+w).Scan(&tat)
	switch {
	case err == nil:
		ok = true
	case errors.Is(err, sql.ErrNoRows):
		// The WHERE refused the update, so nothing was written; read the
		// bucket only to tell the requester when to come back.
		if err := l.DB.QueryRowContext(ctx, `SELECT tat FROM rate_limits WHERE bucket = $1`, key).Scan(&tat); err != nil {
			return false, 0, fmt.Errorf("read rate limit: %w", err)
		}
		if tat > now+w {
			// Written while the clock ran fast: store the bucket as full
			// from now, so that it drains from here.
			tat = clamp(tat, now, w)
			if _, err := l.DB.ExecContext(ctx, `UPDATE rate_limits SET tat = $1 WHERE bucket = $2 AND tat > $1`, tat, key); err != nil {
				return false, 0, fmt.Errorf("correct rate limit: %w", err)
			}
		}
		retryAfter = time.Duration(max(tat, now)+step-now-w) * time.Microsecond
		retryAfter = max(retryAfter, time.Microsecond)
	default:
		return false, 0, fmt.Errorf("count attempt: %w", err)
	}
	if rand.IntN(sweepOdds) == 0 {
		l.Sweep(ctx)
	}
	return ok, retryAfter, nil
}

// Sweep deletes the buckets that hold no attempts any more. Allow calls it
// now and then; a failure only leaves rows for the next sweep.
func (l *Limiter) Sweep(ctx context.Context) error {
	if _, err := l.DB.ExecContext(ctx, `DELETE FROM rate_limits WHERE tat < $1`, l.now().UnixMicro()); err != nil {
		return fmt.Errorf("sweep rate limits: %w", err)
	}
	return nil
}

// Rule is one limit on one bucket.
type Rule struct {
	Bucket string
	Limit  int
	Window time.Duration
}

// Check records an attempt against each rule in order and stops at the
// first that refuses it, with an error of kind errs.RateLimited whose cause
// is an *Exceeded. Rules before the refusing one have counted the attempt.
func (l *Limiter) Check(ctx context.Context, rules ...Rule) error {
	for _, r := range rules {
		ok, wait, err := l.Allow(ctx, r.Bucket, r.Limit, r.Window)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "rate limit unavailable")
		}
		if !ok {
			return errs.Wrap(errs.RateLimited, &Exceeded{Rule: r, Wait: wait}, Message)
		}
	}
	return nil
}

// Message is what a refused requester reads.
const Message = "too many attempts; try again later"

// Exceeded is the cause of a refusal: the rule that refused and how long
// until it would accept an attempt.
type Exceeded struct {
	Rule Rule
	Wait time.Duration
}

func (e *Exceeded) Error() string {
	return fmt.Sprintf("more than %d attempts per %s", e.Rule.Limit, e.Rule.Window)
}

// RetryAfter is how long the requester should wait; the HTTP shells read it
// for the Retry-After header.
func (e *Exceeded) RetryAfter() time.Duration { return e.Wait }

// RetryAfter returns the wait carried by a refusal in err's chain, or 0.
func RetryAfter(err error) time.Duration {
	var e *Exceeded
	if errors.As(err, &e) {
		return e.Wait
	}
	return 0
}

// AddressKey is the part of a source address that a limit counts: the
// address itself for IPv4, and its /64 network for IPv6, since one machine
// commonly holds a whole /64. Something that is no IP address is used as
// given.
func AddressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.WithZone("").Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// Full reports, without counting an attempt, whether the next attempt in
// bucket would be refused, and if so how long until it would be accepted.
// A caller that counts only failures (Allow after each failure) asks it
// before every attempt, so that past the limit even a right guess is
// refused unchecked.
func (l *Limiter) Full(ctx context.Context, bucket string, limit int, window time.Duration) (bool, time.Duration, error) {
	if err := usable(limit, window); err != nil {
		return false, 0, err
	}
	var tat sql.NullInt64
	err := l.DB.QueryRowContext(ctx, StoredTat+`$1`, Key(bucket, window)).Scan(&tat)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, 0, fmt.Errorf("read rate limit: %w", err)
	}
	return l.FullGiven(tat, limit, window)
}

// StoredTat is the statement that reads a bucket's stored state, to which
// the caller appends the parameter of its key (Key): a caller that reads it
// as a subquery of a statement of its own, to spare a round trip, passes
// what it read to FullGiven.
const StoredTat = `SELECT tat FROM rate_limits WHERE bucket = `

// Key is the key of bucket's row for window.
func Key(bucket string, window time.Duration) string { return bucket + "/" + window.String() }

// FullGiven is Full for a bucket's stored state that the caller read
// (StoredTat), NULL for a bucket that has none.
func (l *Limiter) FullGiven(stored sql.NullInt64, limit int, window time.Duration) (bool, time.Duration, error) {
	if err := usable(limit, window); err != nil {
		return false, 0, err
	}
	if !stored.Valid {
		return false, 0, nil
	}
	now := l.now().UnixMicro()
	w := window.Microseconds()
	step := w / int64(limit)
	tat := clamp(stored.Int64, now, w)
	if next := max(tat, now) + step; next > now+w {
		return true, max(time.Duration(next-now-w)*time.Microsecond, time.Microsecond), nil
	}
	return false, 0, nil
}

func usable(limit int, window time.Duration) error {
	if limit < 1 || window < time.Microsecond*time.Duration(limit) {
		return fmt.Errorf("rate limit %d per %s is not usable", limit, window)
	}
	return nil
}

// clamp limits a bucket's stored tat to now+w, the fullest a bucket can be.
// A later tat was written while the clock ran fast; read as it is, it
// would refuse every attempt until the wall clock caught up with it (a
// day fast: a day of refusals). Clamped, and stored so by the refusal
// (Allow), the bucket is full and drains as usual.
func clamp(tat, now, w int64) int64 { return min(tat, now+w) }

package sso

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// FlowTTL is how long a sign-in may stay at the provider.
const FlowTTL = 10 * time.Minute

// Flow is a sign-in in progress at an organization's provider.
type Flow struct {
	ID    string
	OrgID string
	// Nonce is the value the ID token must carry.
	Nonce string
	// Next is the page to return to once signed in.
	Next      string
	ExpiresAt time.Time
}

// Begun is a flow just begun, with what only its browser holds: State,
// which travels through the provider and comes back with its answer, and
// Binding, which stays in the browser's cookie. The database keeps only
// their digests.
type Begun struct {
	Flow
	State, Binding string
}

// BeginFlow records a new flow of organization orgID, returning to next,
// and clears flows that ended more than a day ago.
func BeginFlow(ctx context.Context, q sqldb.Querier, orgID, next string, now time.Time) (Begun, error) {
	state, stateHash := ids.NewSecret()
	binding, bindingHash := ids.NewSecret()
	nonce, _ := ids.NewSecret()
	b := Begun{Flow: Flow{ID: ids.New(), OrgID: orgID, Nonce: nonce, Next: next, ExpiresAt: now.Add(FlowTTL)}, State: state, Binding: binding}
	if _, err := q.ExecContext(ctx, `DELETE FROM sso_flows WHERE expires_at < $1`, now.Add(-24*time.Hour).UnixMicro()); err != nil {
		return Begun{}, fmt.Errorf("clear old single sign-on flows: %w", err)
	}
	_, err := q.ExecContext(ctx,
		`INSERT INTO sso_flows (id, state_hash, binding_hash, org_id, nonce, next_path, created_at, expires_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		b.ID, stateHash, bindingHash, orgID, nonce, next, now.UnixMicro(), b.ExpiresAt.UnixMicro())
	if err != nil {
		return Begun{}, fmt.Errorf("begin single sign-on: %w", err)
	}
	return b, nil
}

// FlowOf finds the live flow of state, begun in the browser that holds
// binding, without spending it. Anything else (an unknown, spent or
// expired state, or one begun in another browser) is the refusal
// ReasonState.
func FlowOf(ctx context.Context, q sqldb.Querier, state, binding string, now time.Time) (Flow, error) {
	if len(state) != ids.SecretLen || len(binding) != ids.SecretLen {
		return Flow{}, Refuse(ReasonState, errors.New("no state or binding"))
	}
	var (
		f           Flow
		bindingHash string
		expires     int64
		used        sql.NullInt64
	)
	err := q.QueryRowContext(ctx,
		`SELECT id, org_id, nonce, next_path, binding_hash, expires_at, used_at FROM sso_flows WHERE state_hash = $1`,
		ids.Digest(state)).Scan(&f.ID, &f.OrgID, &f.Nonce, &f.Next, &bindingHash, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return Flow{}, Refuse(ReasonState, errors.New("unknown state"))
	}
	if err != nil {
		return Flow{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	f.ExpiresAt = time.UnixMicro(expires)
	switch {
	case subtle.ConstantTimeCompare([]byte(bindingHash), []byte(ids.Digest(binding))) != 1:
		return Flow{}, Refuse(ReasonState, errors.New("state of another browser"))
	case used.Valid:
		return Flow{}, Refuse(ReasonState, errors.New("state spent"))
	case !now.Before(f.ExpiresAt):
		return Flow{}, Refuse(ReasonState, errors.New("state expired"))
	}
	return f, nil
}

// SpendFlow marks f used in tx, the transaction that records how the
// sign-in ended, if it is still live; otherwise (spent by a concurrent
// request, or expired meanwhile) it is the refusal ReasonState.
func SpendFlow(ctx context.Context, tx sqldb.Tx, f Flow, now time.Time) error {
	res, err := tx.ExecContext(ctx,
		`UPDATE sso_flows SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1`, now.UnixMicro(), f.ID)
	if err != nil {
		return fmt.Errorf("spend single sign-on flow: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("spend single sign-on flow: %w", err)
	} else if n != 1 {
		return Refuse(ReasonState, errors.New("state spent or expired meanwhile"))
	}
	return nil
}

// Verifier is the PKCE code verifier (RFC 7636) of the flow whose browser
// holds binding: 43 characters derived from it, so that the verifier is
// stored nowhere and only the browser that began the flow can have its
// code redeemed.
func Verifier(binding string) string {
	h := sha256.Sum256([]byte("custodia sso pkce verifier\x00" + binding))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

package sessions

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sqldb"
)

// SessionsPerAccount bounds the live sessions of one account (ASVS
// V7.1.2): a sign-in that would make one more ends the account's oldest
// live session (the one signed in first), so that a person who signs in
// on a new device keeps the devices they use and a forgotten or stolen
// session does not live on beside an eleventh. Each session so ended is on
// the record as auth.session.limit, a security event, in each organization
// of the account. Renewing a session (a new id at a privilege change)
// replaces it and counts as none.
const SessionsPerAccount = 10

// endOverLimit ends, in tx, the work of the sign-in that started sess, the
// account's oldest live sessions beyond SessionsPerAccount, and records
// each (see SessionsPerAccount). tx is the gate's account work (record).
func (s *Store) endOverLimit(ctx context.Context, tx sqldb.Tx, sess Session, remoteAddr, userAgent string) error {
	lim, err := s.limitsOf(ctx, tx, sess.AccountID)
	if err != nil {
		return err
	}
	now := s.now()
	rows, err := tx.QueryContext(ctx,
		`SELECT id FROM sessions
		 WHERE account_id = $1 AND id <> $2 AND revoked_at IS NULL AND expires_at > $3 AND last_seen_at > $4 AND created_at > $5
		 ORDER BY created_at DESC, id DESC`,
		sess.AccountID, sess.ID, now.UnixMicro(), now.Add(-lim.Idle).UnixMicro(), now.Add(-lim.Absolute).UnixMicro())
	if err != nil {
		return fmt.Errorf("count sessions: %w", err)
	}
	var live []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("count sessions: %w", err)
		}
		live = append(live, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count sessions: %w", err)
	}
	if len(live) < SessionsPerAccount {
		return nil
	}
	orgIDs, err := accounts.Organizations(ctx, tx, sess.AccountID)
	if err != nil {
		return err
	}
	if len(orgIDs) == 0 {
		orgIDs = []string{""}
	}
	// The newest SessionsPerAccount-1 stay beside the new one.
	for _, id := range live[SessionsPerAccount-1:] {
		if _, err := tx.ExecContext(ctx,
			`UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, now.UnixMicro(), id); err != nil {
			return fmt.Errorf("end oldest session: %w", err)
		}
		for _, org := range orgIDs {
			err := record(ctx, tx, audit.Event{
				Action: "auth.session.limit", OrgID: org, ActorAccount: sess.AccountID, ActorSession: sess.ID,
				RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512), Outcome: audit.Success, Security: true,
				ObjectType: "session", ObjectID: id,
				Details: map[string]string{"limit": strconv.Itoa(SessionsPerAccount), "new_session_id": sess.ID},
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// EndAccess ends, in q, every session and every access token of the
// account, for work that takes its access away from outside: an
// administrator or the operator disabling the account (ASVS V7.4.2) or
// ending its sessions (ASVS V7.4.5). It reports how many of each ended;
// the caller records them.
func EndAccess(ctx context.Context, q sqldb.Querier, accountID string, now time.Time) (sessions, tokens int64, err error) {
	res, err := q.ExecContext(ctx,
		`UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL`, now.UnixMicro(), accountID)
	if err != nil {
		return 0, 0, fmt.Errorf("end sessions: %w", err)
	}
	if sessions, err = res.RowsAffected(); err != nil {
		return 0, 0, fmt.Errorf("end sessions: %w", err)
	}
	if tokens, err = revokeTokens(ctx, q, accountID, now); err != nil {
		return 0, 0, err
	}
	return sessions, tokens, nil
}

// EndMembersAccess ends, in q, every session and every access token of
// every account that holds a role in the organization, but the session
// keep (the administrator's own, asking), for an administrator or the
// operator who fears the organization's sessions were taken (ASVS
// V7.4.5). Sessions belong to accounts, not organizations: a member's
// sessions end for their other organizations too. It reports how many
// members there are and how many sessions and tokens ended.
func EndMembersAccess(ctx context.Context, q sqldb.Querier, orgID, keep string, now time.Time) (members, sessions, tokens int64, err error) {
	if err := q.QueryRowContext(ctx,
		`SELECT COUNT(DISTINCT account_id) FROM role_assignments WHERE org_id = $1`, orgID).Scan(&members); err != nil {
		return 0, 0, 0, fmt.Errorf("count members: %w", err)
	}
	res, err := q.ExecContext(ctx,
		`UPDATE sessions SET revoked_at = $1
		 WHERE account_id IN (SELECT account_id FROM role_assignments WHERE org_id = $2) AND id <> $3 AND revoked_at IS NULL`,
		now.UnixMicro(), orgID, keep)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("end sessions: %w", err)
	}
	if sessions, err = res.RowsAffected(); err != nil {
		return 0, 0, 0, fmt.Errorf("end sessions: %w", err)
	}
	res, err = q.ExecContext(ctx,
		`UPDATE access_tokens SET revoked_at = $1
		 WHERE account_id IN (SELECT account_id FROM role_assignments WHERE org_id = $2) AND revoked_at IS NULL`,
		now.UnixMicro(), orgID)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("revoke access tokens: %w", err)
	}
	if tokens, err = res.RowsAffected(); err != nil {
		return 0, 0, 0, fmt.Errorf("revoke access tokens: %w", err)
	}
	return members, sessions, tokens, nil
}

// Recovered is what the end of a factor recovery took away.
type Recovered struct {
	Factors, Sessions, Tokens int64
}

// Details are the finished recovery's details for its audit event.
func (r Recovered) Details() map[string]string {
	return map[string]string{"done": "true",
		"factors_removed_count": strconv.FormatInt(r.Factors, 10),
		"sessions_ended_count":  strconv.FormatInt(r.Sessions, 10)}
}

// FinishFactorRecovery ends, in tx, a factor recovery that the person has
// proved and a second administrator approved (ASVS V6.4.4): the account's
// second factors and recovery codes go, and its sessions and access tokens
// end, so that whoever held a factor or a session holds nothing; the
// person signs in with their password and enrols a factor anew.
func FinishFactorRecovery(ctx context.Context, tx sqldb.Tx, r *accounts.FactorRecovery, now time.Time) (Recovered, error) {
	var out Recovered
	if err := accounts.FinishFactorRecovery(ctx, tx, r, now); err != nil {
		return out, err
	}
	var err error
	if out.Factors, err = mfa.ClearFactors(ctx, tx, r.AccountID); err != nil {
		return out, err
	}
	out.Sessions, out.Tokens, err = EndAccess(ctx, tx, r.AccountID, now)
	return out, err
}

package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/sqldb"
)

// ForgetAccount deletes, in q, every session and access token of the
// account, with the addresses and browsers they were used from: for an
// account the purge of inactive data forgets (LIFE-02; accounts.Forget).
// It reports how many sessions and tokens it deleted; the caller records
// them. Nothing refers to a session or a token by a foreign key; the
// audit trail names them by id.
func ForgetAccount(ctx context.Context, q sqldb.Querier, accountID string) (sessions, tokens int64, err error) {
	res, err := q.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = $1`, accountID)
	if err != nil {
		return 0, 0, fmt.Errorf("forget sessions: %w", err)
	}
	if sessions, err = res.RowsAffected(); err != nil {
		return 0, 0, fmt.Errorf("forget sessions: %w", err)
	}
	res, err = q.ExecContext(ctx, `DELETE FROM access_tokens WHERE account_id = $1`, accountID)
	if err != nil {
		return 0, 0, fmt.Errorf("forget access tokens: %w", err)
	}
	if tokens, err = res.RowsAffected(); err != nil {
		return 0, 0, fmt.Errorf("forget access tokens: %w", err)
	}
	return sessions, tokens, nil
}

// SubjectSession is one session of an account as a data subject's export
// holds it (LIFE-02): when, from where and with what it was used.
type SubjectSession struct {
	CreatedAt  time.Time  `json:"created_at"`
	LastSeenAt time.Time  `json:"last_seen_at"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
	RemoteAddr string     `json:"remote_addr"`
	UserAgent  string     `json:"user_agent"`
}

// SubjectToken is one personal access token, without its secret.
type SubjectToken struct {
	Name       string     `json:"name"`
	Scopes     string     `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// ReadSubject reads, for a data subject's export, every session and
// access token the account holds, ended ones too, oldest first.
func ReadSubject(ctx context.Context, q sqldb.Querier, accountID string) ([]SubjectSession, []SubjectToken, error) {
	at := func(v *int64) *time.Time {
		if v == nil {
			return nil
		}
		t := time.UnixMicro(*v).UTC()
		return &t
	}
	rows, err := q.QueryContext(ctx, `SELECT created_at, last_seen_at, revoked_at, remote_addr, user_agent FROM sessions
		WHERE account_id = $1 ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, nil, fmt.Errorf("read sessions: %w", err)
	}
	sessions := []SubjectSession{}
	for rows.Next() {
		var s SubjectSession
		var created, seen int64
		var revoked *int64
		if err := rows.Scan(&created, &seen, &revoked, &s.RemoteAddr, &s.UserAgent); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read sessions: %w", err)
		}
		s.CreatedAt, s.LastSeenAt, s.EndedAt = time.UnixMicro(created).UTC(), time.UnixMicro(seen).UTC(), at(revoked)
		sessions = append(sessions, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read sessions: %w", err)
	}
	rows, err = q.QueryContext(ctx, `SELECT name, scopes, created_at, expires_at, last_used_at, revoked_at FROM access_tokens
		WHERE account_id = $1 ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, nil, fmt.Errorf("read access tokens: %w", err)
	}
	defer rows.Close()
	tokens := []SubjectToken{}
	for rows.Next() {
		var t SubjectToken
		var created, expires int64
		var used, revoked *int64
		if err := rows.Scan(&t.Name, &t.Scopes, &created, &expires, &used, &revoked); err != nil {
			return nil, nil, fmt.Errorf("read access tokens: %w", err)
		}
		t.CreatedAt, t.ExpiresAt, t.LastUsedAt, t.RevokedAt = time.UnixMicro(created).UTC(), time.UnixMicro(expires).UTC(), at(used), at(revoked)
		tokens = append(tokens, t)
	}
	return sessions, tokens, rows.Err()
}

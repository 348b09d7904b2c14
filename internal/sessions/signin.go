package sessions

import (
	"context"
	"database/sql"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
)

// SignIn checks a person's e-mail address and password and starts a
// session. Every attempt is on the audit trail with its time, address,
// outcome and, when the address belongs to an account, that account
// (AUTH-11); the session and its event commit together. Every failure is
// accounts.ErrBadCredentials.
func (s *Store) SignIn(ctx context.Context, email, password, remoteAddr, userAgent string) (string, Session, error) {
	ev := audit.Event{Action: "auth.login", RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512)}
	acc, known, err := accounts.Attempt(ctx, s.DB, email, password)
	if err != nil {
		ev.ActorAccount, ev.Outcome = known, audit.Failure
		if aerr := s.DB.InTx(ctx, func(tx *sql.Tx) error {
			_, err := audit.Append(ctx, tx, ev)
			return err
		}); aerr != nil {
			return "", Session{}, errs.Wrap(errs.Unavailable, aerr, "sign-in unavailable")
		}
		return "", Session{}, err
	}
	var token string
	var sess Session
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if token, sess, err = s.create(ctx, tx, acc.ID, remoteAddr, userAgent); err != nil {
			return err
		}
		ev.ActorAccount, ev.ActorSession, ev.Outcome = acc.ID, sess.ID, audit.Success
		_, err = audit.Append(ctx, tx, ev)
		return err
	})
	if err != nil {
		return "", Session{}, errs.Wrap(errs.Unavailable, err, "sign-in unavailable")
	}
	return token, sess, nil
}

// SignOut ends a session, on the record.
func (s *Store) SignOut(ctx context.Context, sess Session, remoteAddr, userAgent string) error {
	return s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, s.now().UnixMicro(), sess.ID); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{
			Action: "auth.logout", ActorAccount: sess.AccountID, ActorSession: sess.ID,
			RemoteAddr: remoteAddr, UserAgent: truncate(userAgent, 512), Outcome: audit.Success,
		})
		return err
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

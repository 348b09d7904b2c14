package sessions

import (
	"context"

	"github.com/custodia/custodia/internal/accounts"
)

// SignIn checks a person's e-mail address and password and starts a
// session. Every failure is accounts.ErrBadCredentials.
func (s *Store) SignIn(ctx context.Context, email, password, remoteAddr, userAgent string) (string, Session, error) {
	acc, err := accounts.Authenticate(ctx, s.DB, email, password)
	if err != nil {
		return "", Session{}, err
	}
	return s.Create(ctx, acc.ID, remoteAddr, userAgent)
}

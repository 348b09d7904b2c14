// Package accounts owns the people who sign in: one account per person
// (AUTH-01), their password hashes and their one-time links. Accounts are
// shared across organizations; what a person may do in an organization comes
// from role assignments (package authz).
package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

// Account is one person's sign-in identity.
type Account struct {
	ID          string
	Email       string
	DisplayName string
	HasPassword bool
	CreatedAt   int64
}

// NormalizeEmail checks an e-mail address and returns the form stored and
// compared: a bare address, lower case.
func NormalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 254 {
		return "", errs.E(errs.Invalid, "an e-mail address of at most 254 characters is required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return "", errs.E(errs.Invalid, "%q is not a valid e-mail address", s)
	}
	return strings.ToLower(a.Address), nil
}

// CheckDisplayName validates the name shown for a person.
func CheckDisplayName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 200 {
		return "", errs.E(errs.Invalid, "a display name must be valid text of at most 200 characters")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", errs.E(errs.Invalid, "a display name may not contain control characters")
		}
	}
	return s, nil
}

// Create adds an account without a password. An empty display name becomes
// the part of the e-mail address before the @.
func Create(ctx context.Context, tx sqldb.Tx, email, displayName string) (Account, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return Account{}, err
	}
	if displayName, err = CheckDisplayName(displayName); err != nil {
		return Account{}, err
	}
	if displayName == "" {
		displayName = email[:strings.IndexByte(email, '@')]
	}
	a := Account{ID: ids.New(), Email: email, DisplayName: displayName, CreatedAt: sqldb.Now()}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO accounts (id, email, display_name, created_at) VALUES ($1, $2, $3, $4)`,
		a.ID, a.Email, a.DisplayName, a.CreatedAt)
	if sqldb.IsUniqueViolation(err) {
		return Account{}, errs.E(errs.Conflict, "an account for %s exists already", email)
	}
	if err != nil {
		return Account{}, fmt.Errorf("create account: %w", err)
	}
	return a, nil
}

// ByEmail finds an account by e-mail address.
func ByEmail(ctx context.Context, q sqldb.Querier, email string) (Account, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return Account{}, err
	}
	return scanAccount(q.QueryRowContext(ctx,
		`SELECT id, email, display_name, password_hash IS NOT NULL, created_at FROM accounts WHERE email = $1`, email))
}

// ByID finds an account by id.
func ByID(ctx context.Context, q sqldb.Querier, id string) (Account, error) {
	if !ids.Valid(id) {
		return Account{}, errs.E(errs.NotFound, "account not found")
	}
	return scanAccount(q.QueryRowContext(ctx,
		`SELECT id, email, display_name, password_hash IS NOT NULL, created_at FROM accounts WHERE id = $1`, id))
}

// ByIDs finds the accounts of ids in one statement, by id, for a page that
// names the people behind a list (a page's worth: at most a few hundred);
// an id without an account is missing from the answer.
func ByIDs(ctx context.Context, q sqldb.Querier, idList []string) (map[string]Account, error) {
	out := map[string]Account{}
	var (
		args  []any
		marks []string
		seen  = map[string]bool{}
	)
	for _, id := range idList {
		if !ids.Valid(id) || seen[id] {
			continue
		}
		seen[id] = true
		args = append(args, id)
		marks = append(marks, "$"+strconv.Itoa(len(args)))
	}
	if len(args) == 0 {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT id, email, display_name, password_hash IS NOT NULL, created_at FROM accounts
		WHERE id IN (`+strings.Join(marks, ", ")+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("find accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Account
		if err := rows.Scan(&a.ID, &a.Email, &a.DisplayName, &a.HasPassword, &a.CreatedAt); err != nil {
			return nil, fmt.Errorf("find accounts: %w", err)
		}
		out[a.ID] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find accounts: %w", err)
	}
	return out, nil
}

func scanAccount(row *sql.Row) (Account, error) {
	var a Account
	err := row.Scan(&a.ID, &a.Email, &a.DisplayName, &a.HasPassword, &a.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, errs.E(errs.NotFound, "account not found")
	}
	if err != nil {
		return Account{}, fmt.Errorf("find account: %w", err)
	}
	return a, nil
}

// SetPassword checks a new password against p and the rules of the
// account's organizations (the stricter of each, AUTH-02), stores its hash
// and restarts the password's age for rotation (AUTH-09). It hashes in tx's
// time; the server's flows, whose transactions hold a turn shared with
// other requests, read the rules first (PasswordRules), hash outside
// (NewPassword) and store in their work (Password.Store).
func SetPassword(ctx context.Context, tx sqldb.Tx, a Account, password string, p Policy) error {
	p, err := PasswordRules(ctx, tx, a.ID, p)
	if err != nil {
		return err
	}
	pw, err := NewPassword(ctx, a, password, p)
	if err != nil {
		return err
	}
	return pw.Store(ctx, tx)
}

// PasswordRules reads the rules a new password of the account keeps: p,
// made stricter by those of its organizations (AUTH-02).
func PasswordRules(ctx context.Context, q sqldb.Querier, accountID string, p Policy) (Policy, error) {
	eff, err := policy.Effective(ctx, q, accountID)
	if err != nil {
		return Policy{}, err
	}
	p.MinLength = max(p.MinLength, eff.PasswordMinLength)
	p.RequireMixed = p.RequireMixed || eff.PasswordRequireMixed
	if p.MaxLength == 0 {
		p.MaxLength = DefaultPolicy.MaxLength
	}
	words, err := organizationWords(ctx, q, accountID)
	if err != nil {
		return Policy{}, err
	}
	p.Words = append(p.Words[:len(p.Words):len(p.Words)], words...)
	return p, nil
}

// organizationWords are the names and slugs of the organizations the
// account belongs to or is invited to, which its password may not contain.
func organizationWords(ctx context.Context, q sqldb.Querier, accountID string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, slug FROM organizations WHERE id IN (
		SELECT org_id FROM role_assignments WHERE account_id = $1
		UNION SELECT org_id FROM member_invitations WHERE account_id = $1 AND decided_at IS NULL)`, accountID)
	if err != nil {
		return nil, fmt.Errorf("read the organizations' names: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, slug string
		if err := rows.Scan(&name, &slug); err != nil {
			return nil, fmt.Errorf("read the organizations' names: %w", err)
		}
		out = append(out, name, slug, strings.Join(strings.Fields(name), ""))
	}
	return out, rows.Err()
}

// Password is a new password of an account, checked and hashed, ready to
// be stored.
type Password struct{ accountID, hash string }

// NewPassword checks password against p, the rules PasswordRules read for
// a, and hashes it. It is the slow part of setting a password, run outside
// any transaction.
func NewPassword(ctx context.Context, a Account, password string, p Policy) (Password, error) {
	if err := p.Check(password, a.Email, a.DisplayName); err != nil {
		return Password{}, err
	}
	h, err := Hash(ctx, password)
	if err != nil {
		return Password{}, err
	}
	return Password{accountID: a.ID, hash: h}, nil
}

// Store writes the password in tx and restarts its age (AUTH-09).
func (pw Password) Store(ctx context.Context, tx sqldb.Tx) error {
	if pw.hash == "" {
		return errs.E(errs.Internal, "no password to store")
	}
	_, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = $1, password_changed_at = $3 WHERE id = $2`, pw.hash, pw.accountID, sqldb.Now())
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return nil
}

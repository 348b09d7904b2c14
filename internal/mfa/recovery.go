package mfa

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Recovery codes: RecoveryCodes per account, each recoveryLen symbols of a
// 32-symbol alphabet (50 random bits), shown once as "XXXXX-XXXXX". The
// alphabet leaves out 0, 1, I and O, which are read for one another.
const (
	RecoveryCodes    = 10
	recoveryLen      = 10
	recoveryAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
)

// newRecoveryCodes returns fresh codes in their display form.
func newRecoveryCodes() []string {
	out := make([]string, RecoveryCodes)
	b := make([]byte, recoveryLen)
	for i := range out {
		rand.Read(b) // never fails on supported platforms (crypto/rand docs)
		c := make([]byte, 0, recoveryLen+1)
		for j, x := range b {
			if j == recoveryLen/2 {
				c = append(c, '-')
			}
			c = append(c, recoveryAlphabet[x&31]) // 256 is a multiple of 32: uniform
		}
		out[i] = string(c)
	}
	return out
}

// normalizeRecovery returns the stored form of a recovery code as a person
// may type it: case, spaces and dashes do not matter. ok is false for
// anything that cannot be a recovery code.
func normalizeRecovery(s string) (string, bool) {
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(s) != recoveryLen {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(recoveryAlphabet, s[i]) < 0 {
			return "", false
		}
	}
	return s, true
}

// recoveryHash is the stored form of a recovery code: SHA-256 over a label,
// the account id and the code. A code holds 50 random bits, so no
// dictionary applies and a slow hash would add little: finding one by brute
// force from a copy of the database takes on the order of 2^49 hashes per
// account (the account id in the input keeps one search from covering
// several accounts), and a found code is still worth nothing without the
// account's password, which argon2id protects.
func recoveryHash(accountID, normalized string) string {
	h := sha256.New()
	h.Write([]byte("custodia.recovery-code.v1\x00"))
	h.Write([]byte(accountID))
	h.Write([]byte{0})
	h.Write([]byte(normalized))
	return hex.EncodeToString(h.Sum(nil))
}

// replaceRecoveryCodes deletes the account's recovery codes and stores the
// hashes of fresh ones, which it returns for showing once.
func replaceRecoveryCodes(ctx context.Context, tx *sql.Tx, accountID string, now time.Time) ([]string, error) {
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE account_id = $1`, accountID); err != nil {
		return nil, fmt.Errorf("delete recovery codes: %w", err)
	}
	codes := newRecoveryCodes()
	for _, c := range codes {
		norm, _ := normalizeRecovery(c)
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO recovery_codes (id, account_id, code_hash, created_at) VALUES ($1, $2, $3, $4)`,
			ids.New(), accountID, recoveryHash(accountID, norm), now.UnixMicro()); err != nil {
			return nil, fmt.Errorf("store recovery code: %w", err)
		}
	}
	return codes, nil
}

// RecoveryCodesLeft counts the account's unused recovery codes.
func RecoveryCodesLeft(ctx context.Context, q sqldb.Querier, accountID string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL`, accountID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count recovery codes: %w", err)
	}
	return n, nil
}

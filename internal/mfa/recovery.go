package mfa

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Recovery codes: RecoveryCodes per account, each recoveryLen symbols of a
// 32-symbol alphabet (120 random bits; ASVS V6.5.2 asks for at least 112
// where, as here, the stored form is a fast hash), shown once in groups of
// recoveryGroup: "XXXXXX-XXXXXX-XXXXXX-XXXXXX". The alphabet leaves out 0,
// 1, I and O, which are read for one another. Codes of the former kind (10
// symbols, 50 bits) are not accepted: a fast hash of 50 bits is found by
// brute force from a copy of the database. Rows stored before that are
// marked not strong (migration 0024) and are not counted as codes left.
const (
	RecoveryCodes    = 10
	recoveryLen      = 24
	recoveryGroup    = 6
	recoveryAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
)

// newRecoveryCodes returns fresh codes in their display form.
func newRecoveryCodes() []string {
	out := make([]string, RecoveryCodes)
	b := make([]byte, recoveryLen)
	for i := range out {
		rand.Read(b) // never fails on supported platforms (crypto/rand docs)
		c := make([]byte, 0, recoveryLen+recoveryLen/recoveryGroup)
		for j, x := range b {
			if j > 0 && j%recoveryGroup == 0 {
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
// the account id and the code. A code holds 120 random bits, so no
// dictionary applies and a slow hash would add nothing: finding one by brute
// force from a copy of the database takes on the order of 2^119 hashes per
// account (the account id in the input keeps one search from covering
// several accounts).
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
func replaceRecoveryCodes(ctx context.Context, tx sqldb.Tx, accountID string, now time.Time) ([]string, error) {
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE account_id = $1`, accountID); err != nil {
		return nil, fmt.Errorf("delete recovery codes: %w", err)
	}
	codes := newRecoveryCodes()
	for _, c := range codes {
		norm, _ := normalizeRecovery(c)
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO recovery_codes (id, account_id, code_hash, created_at, strong) VALUES ($1, $2, $3, $4, TRUE)`,
			ids.New(), accountID, recoveryHash(accountID, norm), now.UnixMicro()); err != nil {
			return nil, fmt.Errorf("store recovery code: %w", err)
		}
	}
	return codes, nil
}

// RecoveryCodesLeft counts the account's unused recovery codes of the
// current kind.
func RecoveryCodesLeft(ctx context.Context, q sqldb.Querier, accountID string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL AND strong`, accountID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count recovery codes: %w", err)
	}
	return n, nil
}

// ProofStepUp names, in the event of new recovery codes, the proof by a
// confirmation of the session within gate.StepUpWindow.
const ProofStepUp = "step_up"

// errNothingToRecover refuses recovery codes to an account without a second
// factor.
var errNothingToRecover = errs.E(errs.Conflict,
	"recovery codes stand in for a second factor, and this account has none: set one up first")

// confirmedRecently reports whether the actor's session confirmed its owner
// within gate.StepUpWindow before now (ACL-09); a confirmation from the
// future, beyond a minute of clock skew between nodes, does not count.
func confirmedRecently(a gate.Actor, now time.Time) bool {
	return !a.ConfirmedAt.IsZero() && now.Sub(a.ConfirmedAt) <= gate.StepUpWindow && !a.ConfirmedAt.After(now.Add(time.Minute))
}

// RenewRecoveryCodes replaces the actor's recovery codes with fresh ones,
// returned for showing once; the old ones stop working. The person proves
// to be the account's owner, not just the holder of its session, in one of
// two ways. Without code, by a confirmation of the session within
// gate.StepUpWindow (the password, a code or a passkey given to
// sessions.Store.Confirm, as for other sensitive actions), so that an
// account whose factors are passkeys or a phone renews its codes as well as
// one with an authenticator app; without one the answer is
// gate.ErrStepUpRequired. With code, as before: a current code of the
// account (TOTP, texted or recovery), which is checked and spent whatever
// the confirmation; a wrong one counts towards the lockout. Recovery codes
// stand in for a second factor, so an account without one is refused. The
// renewal is the security event mfa.recovery.regenerate, naming its proof.
func (s *Service) RenewRecoveryCodes(ctx context.Context, a gate.Actor, code string) ([]string, error) {
	code = strings.TrimSpace(code)
	var codes []string
	err := s.run(ctx, a, "mfa.recovery.regenerate", func(o *gate.OpTx, out *outcome) error {
		if err := s.limit(ctx, o, a.AccountID); err != nil {
			return err
		}
		has, err := HasFactor(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		if !has {
			return errNothingToRecover
		}
		method := ProofStepUp
		if code != "" {
			m, err := s.spendCode(ctx, o, out, a, code)
			if err != nil || m == "" {
				return err
			}
			method = m
		} else if !confirmedRecently(a, out.now) {
			return out.stepUp(ctx, o)
		}
		if codes, err = replaceRecoveryCodes(ctx, o, a.AccountID, out.now); err != nil {
			return err
		}
		o.Security()
		o.Detail("proof", method)
		o.Detail("recovery_codes_count", strconv.Itoa(len(codes)))
		if code == "" {
			o.Detail("step_up_age_s", strconv.FormatInt(int64(out.now.Sub(a.ConfirmedAt)/time.Second), 10))
		}
		return inEachOrg(ctx, o, a.AccountID)
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

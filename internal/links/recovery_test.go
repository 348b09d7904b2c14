package links

import (
	"context"
	"database/sql"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/accounts/accountadmin"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

var recoverLink = regexp.MustCompile(`https://custodia\.clinic\.example/recover/([A-Za-z0-9_-]+)`)

// lostFactors gives a new member of f.org, who knows password, a TOTP
// factor, a passkey and recovery codes, as a person has before losing them,
// and a live session.
func lostFactors(t *testing.T, f fixture, email string) accounts.Account {
	t.Helper()
	ctx := context.Background()
	var acc accounts.Account
	err := f.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if acc, _, err = accounts.Enrol(ctx, tx, email, "Lost Phone", authz.Assignment{OrgID: f.org.ID, Role: authz.OrgManager}); err != nil {
			return err
		}
		if err := accounts.SetPassword(ctx, tx, acc, userPassword, accounts.DefaultPolicy); err != nil {
			return err
		}
		for _, q := range []string{
			`INSERT INTO account_factors (id, account_id, kind, kek_id, wrapped, last_step, created_at, confirmed_at) VALUES ($1, $2, 'totp', 'local:x', $3, 0, 1, 1)`,
			`INSERT INTO webauthn_credentials (id, account_id, credential_id, public_key, attestation_type, attestation_format, aaguid, user_verified, backup_eligible, backup_state, name, created_at)
			 VALUES ($1, $2, $3, $3, 'none', 'none', $3, TRUE, FALSE, FALSE, 'key', 1)`,
			`INSERT INTO recovery_codes (id, account_id, code_hash, created_at) VALUES ($1, $2, $3, 1)`,
		} {
			id := strings.Repeat(string(rune('b'+len(q)%20)), 26)
			if _, err := tx.ExecContext(ctx, q, id[:26], acc.ID, []byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.sess.Create(ctx, acc.ID, "192.0.2.9", "test"); err != nil {
		t.Fatal(err)
	}
	return acc
}

func factorsLeft(t *testing.T, f fixture, accountID string) (factors, codes, sessions int) {
	t.Helper()
	ctx := context.Background()
	f.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM account_factors WHERE account_id = $1) + (SELECT count(*) FROM webauthn_credentials WHERE account_id = $1)`, accountID).Scan(&factors)
	f.db.QueryRowContext(ctx, `SELECT count(*) FROM recovery_codes WHERE account_id = $1`, accountID).Scan(&codes)
	f.db.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE account_id = $1 AND revoked_at IS NULL`, accountID).Scan(&sessions)
	return
}

// A member who lost every factor and recovery code is recovered only when
// an administrator starts it, the person proves their address (the
// e-mailed link) and their password, and a second administrator approves
// (ASVS V6.4.4); then every factor and code goes and every session ends.
// Refused: the starter approving, the person approving, an administrator
// recovering themselves, approval without a fresh confirmation, a wrong
// password, a link used twice. Every step is a security event.
func TestAUTH08_LostFactorsAreRecoveredUnderTwoAdministrators(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		admins := &accountadmin.Service{Gate: f.svc.Gate, Mail: f.svc.Mail, BaseURL: f.svc.BaseURL}
		var second gate.Actor
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			a, _, err := accounts.Enrol(ctx, tx, "second@clinic.example", "", authz.Assignment{OrgID: f.org.ID, Role: authz.OrgAdmin})
			second = gate.Actor{AccountID: a.ID}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		now := func(a gate.Actor) gate.Actor { a.ConfirmedAt = time.Now(); return a }
		lost := lostFactors(t, f, "lost@clinic.example")
		person := gate.Actor{AccountID: lost.ID, RemoteAddr: "192.0.2.9"}

		if _, err := admins.StartFactorRecovery(ctx, now(f.admin), f.org.Slug, f.admin.AccountID); !errs.Is(err, errs.Conflict) {
			t.Fatalf("an administrator recovering themselves: %v", err)
		}
		if _, err := admins.StartFactorRecovery(ctx, f.admin, f.org.Slug, lost.ID); !errs.Is(err, errs.StepUpRequired) {
			t.Fatalf("start without a fresh confirmation: %v", err)
		}
		r, err := admins.StartFactorRecovery(ctx, now(f.admin), f.org.Slug, lost.ID)
		if err != nil {
			t.Fatal(err)
		}
		msgs := f.mails(t, "lost@clinic.example")
		if len(msgs) != 1 {
			t.Fatalf("%d mails to the person, want 1", len(msgs))
		}
		m := recoverLink.FindStringSubmatch(msgs[0])
		if m == nil {
			t.Fatalf("no recovery link in %q", msgs[0])
		}
		token := m[1]

		if _, err := admins.ApproveFactorRecovery(ctx, now(f.admin), f.org.Slug, r.ID); !errs.Is(err, errs.Conflict) {
			t.Fatalf("the starter approving: %v", err)
		}
		if _, err := admins.ApproveFactorRecovery(ctx, now(person), f.org.Slug, r.ID); !gate.IsDenied(err) {
			t.Fatalf("the person approving their own recovery: %v", err)
		}
		if _, err := admins.ApproveFactorRecovery(ctx, second, f.org.Slug, r.ID); !errs.Is(err, errs.StepUpRequired) {
			t.Fatalf("approval without a fresh confirmation: %v", err)
		}
		if done, err := f.svc.ProveFactorRecovery(ctx, token, "not the password at all", person); done || !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("a wrong password: %v, %v", done, err)
		}
		if n, c, s := factorsLeft(t, f, lost.ID); n != 2 || c != 1 || s != 1 {
			t.Fatalf("before the recovery is done: %d factors, %d codes, %d sessions", n, c, s)
		}
		done, err := f.svc.ProveFactorRecovery(ctx, token, userPassword, person)
		if err != nil || done {
			t.Fatalf("the person's proof before the approval: %v, done %v", err, done)
		}
		if n, _, _ := factorsLeft(t, f, lost.ID); n != 2 {
			t.Fatal("the proof alone removed factors")
		}
		if _, err := f.svc.ProveFactorRecovery(ctx, token, userPassword, person); !errs.Is(err, errs.NotFound) {
			t.Fatalf("the link used twice: %v", err)
		}
		r, err = admins.ApproveFactorRecovery(ctx, now(second), f.org.Slug, r.ID)
		if err != nil || !r.Done() {
			t.Fatalf("the second administrator's approval: %v, done %v", err, r.Done())
		}
		if n, c, s := factorsLeft(t, f, lost.ID); n != 0 || c != 0 || s != 0 {
			t.Fatalf("after the recovery: %d factors, %d codes, %d sessions; want none", n, c, s)
		}
		if has, err := mfa.HasFactor(ctx, f.db, lost.ID); err != nil || has {
			t.Fatalf("HasFactor after the recovery: %v %v", has, err)
		}
		if _, err := admins.ApproveFactorRecovery(ctx, now(second), f.org.Slug, r.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("a done recovery approved again: %v", err)
		}
		f.svc.Wait()
		if n := len(f.mails(t, "lost@clinic.example")); n != 2 {
			t.Errorf("%d mails to the person, want the link and the notice", n)
		}

		// The other order: approved first, done when the person proves.
		other := lostFactors(t, f, "other@clinic.example")
		r2, err := admins.StartFactorRecovery(ctx, now(second), f.org.Slug, other.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r2, err = admins.ApproveFactorRecovery(ctx, now(f.admin), f.org.Slug, r2.ID); err != nil || r2.Done() {
			t.Fatalf("approval before the proof: %v, done %v", err, r2.Done())
		}
		token2 := recoverLink.FindStringSubmatch(f.mails(t, "other@clinic.example")[0])[1]
		if done, err := f.svc.ProveFactorRecovery(ctx, token2, userPassword, gate.Actor{RemoteAddr: "192.0.2.10"}); err != nil || !done {
			t.Fatalf("the proof after the approval: %v, done %v", err, done)
		}
		if n, c, s := factorsLeft(t, f, other.ID); n != 0 || c != 0 || s != 0 {
			t.Fatalf("after the recovery: %d factors, %d codes, %d sessions", n, c, s)
		}

		var steps int
		f.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE action LIKE 'account.factor_recovery.%' AND security AND outcome = 'success' AND org_id = $1`, f.org.ID).Scan(&steps)
		if steps != 6 {
			t.Errorf("%d successful recovery steps on the organization's trail, want 6 (start, prove, approve twice)", steps)
		}
	})
}

package retention

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/notify"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sso"
)

// Swept counts what a sweep did.
type Swept struct {
	Noticed, Ended, Purged int
}

// sweepPage bounds the subjects one read or one notice transaction takes.
const sweepPage = 200

// Sweep runs the purge of inactive data over every organization (LIFE-02),
// in three steps, each a transaction of its own per subject or page that
// reads again what it acts on:
//
//  1. end the notices whose subject was active since, is gone, or is no
//     longer inactive under the organization's period (retention.end);
//  2. notice the accounts and participants inactive for longer than the
//     period, neither noticed nor held (retention.notice, one event per
//     subject), and tell the organization's admins (notify, at most once a
//     day);
//  3. purge the subjects whose notice period is over and that are neither
//     held nor active since (retention.purge, security events).
//
// Several servers may sweep at once: a notice is made once (its key), and
// a purge finds its subject gone if another server purged it first.
func (s *Service) Sweep(ctx context.Context) (Swept, error) {
	var out Swept
	var orgIDs []string
	err := s.Gate.Operate(ctx, "retention.sweep", func(o *gate.OpTx) error {
		o.Nothing()
		rows, err := o.QueryContext(ctx, `SELECT id FROM organizations ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			orgIDs = append(orgIDs, id)
		}
		return rows.Err()
	})
	if err != nil {
		return out, errs.Wrap(errs.Unavailable, err, "retention: read the organizations")
	}
	// One organization's failure does not hold up the others'; the next
	// sweep tries it again.
	var failed []error
	for _, orgID := range orgIDs {
		if ctx.Err() != nil {
			failed = append(failed, ctx.Err())
			break
		}
		if err := s.sweepOrg(ctx, orgID, &out); err != nil {
			failed = append(failed, fmt.Errorf("retention of organization %s: %w", orgID, err))
		}
	}
	return out, errors.Join(failed...)
}

// standing is a notice as stored.
type standing struct {
	kind          Kind
	subject       string
	last, noticed int64
	due           int64
	// begun: a participant's purge erased their identity already.
	begun bool
}

func (s *Service) sweepOrg(ctx context.Context, orgID string, out *Swept) error {
	now := s.now()
	var pol policy.Security
	var standingNotices []standing
	err := s.Gate.Operate(ctx, "retention.sweep", func(o *gate.OpTx) error {
		o.Nothing()
		var err error
		if pol, err = policy.Of(ctx, o, orgID); err != nil {
			return err
		}
		standingNotices, err = noticesOf(ctx, o, orgID)
		return err
	})
	if err != nil {
		return err
	}
	// 1. Notices whose subject was active since, or is gone.
	for _, n := range standingNotices {
		ended, err := s.endIfActive(ctx, orgID, n, now)
		if err != nil {
			return err
		}
		if ended {
			out.Ended++
		}
	}
	// 2. Subjects inactive past the period.
	cutoff := now.Add(-pol.Inactivity()).UnixMicro()
	for _, kind := range []Kind{Participant, Account} {
		for after := ""; ; {
			var page []active
			err := s.Gate.Operate(ctx, "retention.sweep", func(o *gate.OpTx) error {
				o.Nothing()
				var err error
				page, err = activityPage(ctx, o, orgID, kind, after, sweepPage)
				return err
			})
			if err != nil {
				return err
			}
			var inactive []active
			for _, a := range page {
				if a.last <= cutoff {
					inactive = append(inactive, a)
				}
			}
			if len(inactive) > 0 {
				n, err := s.notice(ctx, orgID, kind, inactive, now, pol)
				if err != nil {
					return err
				}
				out.Noticed += n
			}
			if len(page) < sweepPage {
				break
			}
			after = page[len(page)-1].id
		}
	}
	// 3. Notices due.
	var due []standing
	err = s.Gate.Operate(ctx, "retention.sweep", func(o *gate.OpTx) error {
		o.Nothing()
		all, err := noticesOf(ctx, o, orgID)
		for _, n := range all {
			if n.due <= now.UnixMicro() {
				due = append(due, n)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, n := range due {
		var purged bool
		var err error
		switch n.kind {
		case Participant:
			purged, err = (&participants.Service{Gate: s.Gate, Now: s.Now}).PurgeInactive(ctx, "retention.purge", orgID, n.subject,
				s.purgeParticipantData, s.participantDue(now))
		case Account:
			purged, err = s.purgeAccount(ctx, orgID, n.subject, now)
		}
		if err != nil {
			return err
		}
		if purged {
			out.Purged++
		}
	}
	return nil
}

// noticesOf reads the organization's notices.
func noticesOf(ctx context.Context, q sqldb.Querier, orgID string) ([]standing, error) {
	rows, err := q.QueryContext(ctx, `SELECT kind, subject_id, last_active_at, noticed_at, due_at, purge_begun_at IS NOT NULL
		FROM retention_notices WHERE org_id = $1 ORDER BY due_at, kind, subject_id`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []standing
	for rows.Next() {
		var n standing
		if err := rows.Scan(&n.kind, &n.subject, &n.last, &n.noticed, &n.due, &n.begun); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// noticeOf reads the notice of one subject, or reports false.
func noticeOf(ctx context.Context, q sqldb.Querier, orgID string, kind Kind, subject string) (standing, bool, error) {
	n := standing{kind: kind, subject: subject}
	err := q.QueryRowContext(ctx, `SELECT last_active_at, noticed_at, due_at, purge_begun_at IS NOT NULL FROM retention_notices
		WHERE org_id = $1 AND kind = $2 AND subject_id = $3`, orgID, string(kind), subject).Scan(&n.last, &n.noticed, &n.due, &n.begun)
	if errors.Is(err, sql.ErrNoRows) {
		return standing{}, false, nil
	}
	if err != nil {
		return standing{}, false, errs.Wrap(errs.Unavailable, err, "read the notice")
	}
	return n, true, nil
}

// still reports, in q, whether a noticed subject is still as it was
// noticed: there (a participant not deleted, an account with a role here),
// not active since the notice's activity, and inactive past the
// organization's period as it stands at now. why says what ended it
// otherwise.
func still(ctx context.Context, q sqldb.Querier, orgID string, n standing, now time.Time) (ok bool, why string, err error) {
	last, found, err := activityOfSubject(ctx, q, orgID, n.kind, n.subject)
	if err != nil {
		return false, "", err
	}
	if !found {
		return false, "gone", nil
	}
	if last > n.last {
		return false, "active", nil
	}
	pol, err := policy.Of(ctx, q, orgID)
	if err != nil {
		return false, "", err
	}
	if last > now.Add(-pol.Inactivity()).UnixMicro() {
		return false, "period", nil
	}
	return true, "", nil
}

// endIfActive ends the notice of a subject that was active since, is gone
// or is no longer inactive, recorded as retention.end with why.
func (s *Service) endIfActive(ctx context.Context, orgID string, n standing, now time.Time) (bool, error) {
	ended := false
	err := s.Gate.Operate(ctx, "retention.end", func(o *gate.OpTx) error {
		o.Org(orgID)
		name(o, n.kind, n.subject)
		cur, found, err := noticeOf(ctx, o, orgID, n.kind, n.subject)
		if err != nil || !found || cur.noticed != n.noticed {
			o.Nothing() // ended, or purged, by another server meanwhile
			return err
		}
		if cur.begun {
			o.Nothing() // a purge under way is completed (step 3)
			return nil
		}
		ok, why, err := still(ctx, o, orgID, cur, now)
		if err != nil || ok {
			o.Nothing()
			return err
		}
		res, err := o.ExecContext(ctx, `DELETE FROM retention_notices WHERE org_id = $1 AND kind = $2 AND subject_id = $3
			AND noticed_at = $4`, orgID, string(n.kind), n.subject, n.noticed)
		if err != nil {
			return err
		}
		if gone, err := res.RowsAffected(); err != nil || gone != 1 {
			o.Nothing() // ended by another server meanwhile
			return err
		}
		o.Detail("reason", why)
		ended = true
		return nil
	})
	return ended, err
}

// name names a subject on an operation's event.
func name(o *gate.OpTx, kind Kind, subject string) {
	o.Object(string(kind), subject)
	if kind == Participant {
		o.Participant(subject)
	}
}

// notice records notices of the inactive subjects of one page, one event
// each, and tells the organization's admins that notices wait (once a
// day). A subject noticed or held meanwhile is left alone.
func (s *Service) notice(ctx context.Context, orgID string, kind Kind, inactive []active, now time.Time, pol policy.Security) (int, error) {
	noticed := 0
	err := s.Gate.Operate(ctx, "retention.notice", func(o *gate.OpTx) error {
		noticed = 0
		o.Org(orgID)
		o.Object("organization", orgID)
		due := now.Add(pol.InactivityNotice())
		cutoff := now.Add(-pol.Inactivity()).UnixMicro()
		for _, a := range inactive {
			// Read again under the subject's lock: a purge by another
			// server may have taken it since the page was read.
			if err := s.lock(ctx, o, orgID, kind, a.id); err != nil {
				return err
			}
			last, found, err := activityOfSubject(ctx, o, orgID, kind, a.id)
			if err != nil {
				return err
			}
			if !found || last > cutoff {
				continue
			}
			a.last = last
			res, err := o.ExecContext(ctx, `INSERT INTO retention_notices (org_id, kind, subject_id, last_active_at, noticed_at, due_at)
				SELECT $1, $2, $3, $4, $5, $6
				WHERE NOT EXISTS (SELECT 1 FROM retention_holds h WHERE h.org_id = $1 AND h.kind = $2 AND h.subject_id = $3)
				ON CONFLICT (org_id, kind, subject_id) DO NOTHING`,
				orgID, string(kind), a.id, a.last, now.UnixMicro(), due.UnixMicro())
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				continue
			}
			noticed++
			ev := audit.Event{Action: "retention.notice", OrgID: orgID, ObjectType: string(kind), ObjectID: a.id,
				Details: map[string]string{
					"last_active": time.UnixMicro(a.last).UTC().Format(time.DateOnly),
					"due":         due.UTC().Format(time.DateOnly),
				}}
			if kind == Participant {
				ev.ParticipantID = a.id
			}
			if err := o.Record(ctx, ev); err != nil {
				return err
			}
		}
		if noticed == 0 {
			o.Nothing()
			return nil
		}
		o.Detail("kind", string(kind))
		o.Detail("noticed_count", itoa(noticed))
		admins, err := administrators(ctx, o, orgID)
		if err != nil {
			return err
		}
		// One notice a day at most, however many subjects: its ref names
		// the day.
		ref := "retention:" + orgID + ":" + now.UTC().Format(time.DateOnly)
		for _, id := range admins {
			if _, err := notify.Queue(ctx, o, id, orgID, notify.Retention, ref); err != nil {
				return err
			}
		}
		return nil
	})
	return noticed, err
}

// administrators lists the organization's admins who can sign in.
func administrators(ctx context.Context, q sqldb.Querier, orgID string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT r.account_id FROM role_assignments r JOIN accounts a ON a.id = r.account_id
		WHERE r.org_id = $1 AND r.role = $2 AND a.disabled_at IS NULL ORDER BY r.account_id`, orgID, string(authz.OrgAdmin))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// participantDue is the participants.Due of a purge for inactivity: the
// participant's notice is over at now, and, until the purge has begun, no
// hold stands and they are still as noticed (still). The step that begins
// the purge marks it on the notice in its transaction (purge_begun_at):
// the identity step, or the data step when the identity step found
// nothing left to erase (an identity erased before) and so recorded
// nothing. From then on the purge is completed, each step repeated until
// it is done. The mark is written in every step, so that two servers
// purging one participant at once wait for each other on the notice's
// row, and the second finds it gone.
func (s *Service) participantDue(now time.Time) participants.Due {
	return func(ctx context.Context, q sqldb.Querier, orgID, pseudonym, _ string) (bool, error) {
		n, found, err := noticeOf(ctx, q, orgID, Participant, pseudonym)
		if err != nil || !found || n.due > now.UnixMicro() {
			return false, err
		}
		if !n.begun {
			if h, err := held(ctx, q, orgID, Participant, pseudonym); err != nil || h {
				return false, err
			}
			if ok, _, err := still(ctx, q, orgID, n, now); err != nil || !ok {
				return false, err
			}
		}
		res, err := q.ExecContext(ctx, `UPDATE retention_notices SET purge_begun_at = coalesce(purge_begun_at, $4)
			WHERE org_id = $1 AND kind = $2 AND subject_id = $3`, orgID, string(Participant), pseudonym, now.UnixMicro())
		if err != nil {
			return false, err
		}
		marked, err := res.RowsAffected()
		return marked == 1, err
	}
}

// purgeParticipantData is the data step of a participant's purge for
// inactivity (participants.PurgeData): their entries and files, their own
// account's membership (forgotten if no organization keeps it), and their
// notice. Conversations and consents go with the participant's record.
func (s *Service) purgeParticipantData(ctx context.Context, q sqldb.Querier, orgID, pseudonym string) (string, error) {
	if err := s.lock(ctx, q, orgID, Participant, pseudonym); err != nil {
		return "", err
	}
	what, err := entries.PurgeInactiveParticipantData(ctx, q, orgID, pseudonym)
	if err != nil {
		return "", err
	}
	rels, err := authz.RelationsOfParticipant(ctx, q, orgID, pseudonym)
	if err != nil {
		return "", err
	}
	for _, r := range rels {
		if r.Kind != authz.RelationSelf {
			continue
		}
		_, forgotten, err := s.leave(ctx, q, orgID, r.AccountID)
		if err != nil {
			return "", err
		}
		what += " account=" + map[bool]string{true: "forgotten", false: "removed"}[forgotten]
	}
	for _, stmt := range []string{
		`DELETE FROM retention_notices WHERE org_id = $1 AND kind = 'participant' AND subject_id = $2`,
		`DELETE FROM retention_holds WHERE org_id = $1 AND kind = 'participant' AND subject_id = $2`,
	} {
		if _, err := q.ExecContext(ctx, stmt, orgID, pseudonym); err != nil {
			return "", err
		}
	}
	return what, nil
}

// leave takes every role of the account in the organization and, when no
// organization keeps it any more, forgets it (accounts.Forget with its
// factors, sessions, tokens and notices). The last organization admin who
// can sign in stays (Conflict).
func (s *Service) leave(ctx context.Context, q sqldb.Querier, orgID, accountID string) (removed int, forgotten bool, err error) {
	as, err := authz.AssignmentsOf(ctx, q, orgID, accountID)
	if err != nil {
		return 0, false, err
	}
	for _, a := range as {
		if err := authz.Unassign(ctx, q, s.Gate.Dialect(), a); err != nil {
			return 0, false, err
		}
		removed++
	}
	if err := sso.LeaveOrg(ctx, q, orgID, accountID); err != nil {
		return removed, false, err
	}
	others, err := accounts.Organizations(ctx, q, accountID)
	if err != nil || len(others) > 0 {
		return removed, false, err
	}
	if err := accounts.Forget(ctx, q, accountID, s.now()); err != nil {
		return removed, false, err
	}
	if _, err := mfa.ForgetAccount(ctx, q, accountID); err != nil {
		return removed, false, err
	}
	if _, _, err := sessions.ForgetAccount(ctx, q, accountID); err != nil {
		return removed, false, err
	}
	if err := notify.ForgetAccount(ctx, q, accountID); err != nil {
		return removed, false, err
	}
	return removed, true, nil
}

// purgeAccount purges a member's account noticed for inactivity, in one
// transaction recorded as retention.purge, a security event: its roles in
// the organization go and, if no organization keeps it, it is forgotten.
// An account not due (held, active since, gone, or the organization's last
// admin who can sign in) is left, and nothing is recorded.
func (s *Service) purgeAccount(ctx context.Context, orgID, accountID string, now time.Time) (bool, error) {
	purged := false
	err := s.Gate.Operate(ctx, "retention.purge", func(o *gate.OpTx) error {
		o.Org(orgID)
		name(o, Account, accountID)
		o.Security()
		if err := s.lock(ctx, o, orgID, Account, accountID); err != nil {
			return err
		}
		n, found, err := noticeOf(ctx, o, orgID, Account, accountID)
		if err != nil || !found || n.due > now.UnixMicro() {
			o.Nothing()
			return err
		}
		if h, err := held(ctx, o, orgID, Account, accountID); err != nil || h {
			o.Nothing()
			return err
		}
		if ok, _, err := still(ctx, o, orgID, n, now); err != nil || !ok {
			o.Nothing()
			return err
		}
		// The notice goes first: two servers purging the account at once
		// wait for each other on its row, and the second finds it gone.
		res, err := o.ExecContext(ctx, `DELETE FROM retention_notices WHERE org_id = $1 AND kind = 'account' AND subject_id = $2
			AND noticed_at = $3`, orgID, accountID, n.noticed)
		if err != nil {
			return err
		}
		if gone, err := res.RowsAffected(); err != nil || gone != 1 {
			o.Nothing()
			return err
		}
		removed, forgotten, err := s.leave(ctx, o, orgID, accountID)
		if errs.KindOf(err) == errs.Conflict {
			o.Nothing() // the last admin stays, noticed
			return nil
		}
		if err != nil {
			return err
		}
		o.Detail("roles_removed", itoa(removed))
		o.Detail("forgotten", boolText(forgotten))
		purged = true
		return nil
	})
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "purge account "+accountID)
	}
	return purged, nil
}

// lock locks, on PostgreSQL, the row of a subject (its participant's or
// its account's) until the transaction ends, so that a notice and a purge
// of one subject by two servers run one after the other: the second reads
// what the first committed. SQLite runs one writing transaction at a
// time. A subject gone is no error: the caller reads it as gone.
func (s *Service) lock(ctx context.Context, q sqldb.Querier, orgID string, kind Kind, id string) error {
	if s.Gate.Dialect() != sqldb.Postgres {
		return nil
	}
	stmt := `SELECT id FROM participants WHERE org_id = $1 AND id = $2 FOR UPDATE`
	args := []any{orgID, id}
	if kind == Account {
		stmt, args = `SELECT id FROM accounts WHERE id = $1 FOR UPDATE`, []any{id}
	}
	rows, err := q.QueryContext(ctx, stmt, args...)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "lock the "+string(kind))
	}
	for rows.Next() {
	}
	rows.Close()
	return rows.Err()
}

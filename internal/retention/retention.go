// Package retention owns the purge of inactive data and data subjects'
// requests (LIFE-02).
//
// What it promises:
//
//   - An organization's accounts and participants without activity for its
//     inactivity period (policy.Security.InactivityDays, two years unless
//     it says otherwise) are noticed: listed to its administrators, who
//     are told (notify, kind retention), each notice on the audit trail.
//     The notice period later (InactivityNoticeDays, 30 days by default)
//     the sweep purges them: a participant as a deleted one is purged
//     (their identity crypto-shredded, then entries, files, consents,
//     conversations and record; participants.PurgeInactive), an account by
//     taking its roles in the organization and, once no organization
//     keeps it, forgetting its address, name, password, factors, sessions
//     and notices (accounts.Forget). Activity since the notice ends it; a
//     legal hold keeps its subject for as long as it stands.
//   - Activity is what the instance records of use, read where it is
//     recorded (activity.go): for an account its sessions, access tokens,
//     password, creation and roles here; for a participant their entries,
//     files, consents, conversations, relations, enrolment and the sessions
//     of their own account.
//   - The sweep runs on every server (cli/sweep.go); every step of it is a
//     transaction of its own that checks again what it is about, so a
//     sweep cut short is completed by the next and two servers sweeping at
//     once notice and purge once.
//   - An organization admin exports everything the instance holds about
//     one participant, their own account with it, as one zip of a JSON
//     document and the signed consent PDFs and files (Export), with a
//     fresh confirmation, on the trail with its counts and SHA-256. Erasing
//     them afterwards is the participants package's erasure (LIFE-03).
//
// Every call runs through the gate: authorized as authz.RetentionManage or
// authz.SubjectExport, in one transaction with its audit event.
package retention

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/policy"
	"github.com/custodia/custodia/internal/sqldb"
)

// Kind is what a notice or a hold is about.
type Kind string

const (
	// Participant names a participant by pseudonym.
	Participant Kind = "participant"
	// Account names a member's account by id.
	Account Kind = "account"
)

// ParseKind reads a kind named by a request.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Participant, Account:
		return k, nil
	}
	return "", errs.E(errs.NotFound, "no such kind of subject: participant or account")
}

// Service keeps the notices and holds, sweeps, and exports bundles.
type Service struct {
	Gate *gate.Gate
	// Now is the clock of the sweep and of notices; time.Now if nil.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Notice is an account or a participant noticed for the purge of inactive
// data: inactive since LastActiveAt, noticed at NoticedAt, purged at DueAt
// unless held or active again.
type Notice struct {
	Kind    Kind   `json:"kind"`
	Subject string `json:"subject"`
	// StudyID and SiteID place a participant; Email and Name name an
	// account.
	StudyID      string    `json:"study_id,omitempty"`
	SiteID       string    `json:"site_id,omitempty"`
	Email        string    `json:"email,omitempty"`
	Name         string    `json:"name,omitempty"`
	LastActiveAt time.Time `json:"last_active_at"`
	NoticedAt    time.Time `json:"noticed_at"`
	DueAt        time.Time `json:"due_at"`
}

// Hold is a legal hold: its subject is not purged for inactivity while it
// stands.
type Hold struct {
	Kind    Kind      `json:"kind"`
	Subject string    `json:"subject"`
	StudyID string    `json:"study_id,omitempty"`
	SiteID  string    `json:"site_id,omitempty"`
	Email   string    `json:"email,omitempty"`
	Name    string    `json:"name,omitempty"`
	Reason  string    `json:"reason"`
	HeldBy  string    `json:"held_by"`
	HeldAt  time.Time `json:"held_at"`
}

// Overview is what an organization's administrators see of its retention:
// its periods, the notices standing and the holds.
type Overview struct {
	InactivityDays int      `json:"inactivity_days"`
	NoticeDays     int      `json:"notice_days"`
	Notices        []Notice `json:"notices"`
	Holds          []Hold   `json:"holds"`
}

// MaxReason bounds a hold's reason, in characters.
const MaxReason = 500

// holdReason checks a hold's reason: required, text, bounded.
func holdReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", errs.E(errs.Invalid, "a reason is required for a legal hold")
	case !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxReason:
		return "", errs.E(errs.Invalid, "the reason must be text of at most %d characters", MaxReason)
	case strings.ContainsFunc(reason, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }):
		return "", errs.E(errs.Invalid, "the reason may not contain control characters")
	}
	return reason, nil
}

// manage authorizes the organization's retention (authz.RetentionManage)
// for work recorded as action.
func manage(t *gate.Tx) error {
	org := t.Org()
	t.Object("organization", org.ID)
	return t.Authorize(authz.RetentionManage, authz.Resource{OrgID: org.ID})
}

// List answers the organization's retention: its periods, the notices
// standing (the soonest due first) and the holds, to its administrators.
func (s *Service) List(ctx context.Context, a gate.Actor, slug string) (Overview, error) {
	out := Overview{Notices: []Notice{}, Holds: []Hold{}}
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "retention.list", func(t *gate.Tx) error {
		if err := manage(t); err != nil {
			return err
		}
		org := t.Org()
		pol, err := policy.Of(ctx, t, org.ID)
		if err != nil {
			return err
		}
		out.InactivityDays, out.NoticeDays = pol.InactivityDays, pol.InactivityNoticeDays
		if out.Notices, err = notices(ctx, t, org.ID); err != nil {
			return err
		}
		if out.Holds, err = holds(ctx, t, org.ID); err != nil {
			return err
		}
		accs := map[string]bool{}
		for _, n := range out.Notices {
			if n.Kind == Account {
				accs[n.Subject] = true
			}
		}
		for _, h := range out.Holds {
			if h.Kind == Account {
				accs[h.Subject] = true
			}
		}
		named, err := accountNames(ctx, t, accs)
		if err != nil {
			return err
		}
		for i, n := range out.Notices {
			if acc, ok := named[n.Subject]; ok && n.Kind == Account {
				out.Notices[i].Email, out.Notices[i].Name = acc.Email, acc.DisplayName
			}
		}
		for i, h := range out.Holds {
			if acc, ok := named[h.Subject]; ok && h.Kind == Account {
				out.Holds[i].Email, out.Holds[i].Name = acc.Email, acc.DisplayName
			}
		}
		t.Detail("notices_count", itoa(len(out.Notices)))
		t.Detail("holds_count", itoa(len(out.Holds)))
		return nil
	})
	return out, err
}

func accountNames(ctx context.Context, q sqldb.Querier, set map[string]bool) (map[string]accounts.Account, error) {
	if len(set) == 0 {
		return nil, nil
	}
	list := make([]string, 0, len(set))
	for id := range set {
		list = append(list, id)
	}
	return accounts.ByIDs(ctx, q, list)
}

// notices reads the organization's notices, the soonest due first.
func notices(ctx context.Context, q sqldb.Querier, orgID string) ([]Notice, error) {
	rows, err := q.QueryContext(ctx, `SELECT n.kind, n.subject_id, coalesce(p.study_id, ''), coalesce(p.site_id, ''),
			n.last_active_at, n.noticed_at, n.due_at
		FROM retention_notices n LEFT JOIN participants p ON n.kind = 'participant' AND p.org_id = n.org_id AND p.id = n.subject_id
		WHERE n.org_id = $1 ORDER BY n.due_at, n.kind, n.subject_id`, orgID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the notices")
	}
	defer rows.Close()
	out := []Notice{}
	for rows.Next() {
		var n Notice
		var last, noticed, due int64
		if err := rows.Scan(&n.Kind, &n.Subject, &n.StudyID, &n.SiteID, &last, &noticed, &due); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the notices")
		}
		n.LastActiveAt, n.NoticedAt, n.DueAt = time.UnixMicro(last).UTC(), time.UnixMicro(noticed).UTC(), time.UnixMicro(due).UTC()
		out = append(out, n)
	}
	return out, rows.Err()
}

// holds reads the organization's holds, the newest first.
func holds(ctx context.Context, q sqldb.Querier, orgID string) ([]Hold, error) {
	rows, err := q.QueryContext(ctx, `SELECT h.kind, h.subject_id, coalesce(p.study_id, ''), coalesce(p.site_id, ''),
			h.reason, h.held_by, h.held_at
		FROM retention_holds h LEFT JOIN participants p ON h.kind = 'participant' AND p.org_id = h.org_id AND p.id = h.subject_id
		WHERE h.org_id = $1 ORDER BY h.held_at DESC, h.kind, h.subject_id`, orgID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the holds")
	}
	defer rows.Close()
	out := []Hold{}
	for rows.Next() {
		var h Hold
		var at int64
		if err := rows.Scan(&h.Kind, &h.Subject, &h.StudyID, &h.SiteID, &h.Reason, &h.HeldBy, &at); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the holds")
		}
		h.HeldAt = time.UnixMicro(at).UTC()
		out = append(out, h)
	}
	return out, rows.Err()
}

// subjectOf finds, in the request's organization, the subject a request
// names and names it on the event: a participant (not deleted) or an
// account holding a role there. Anything else is not found.
func subjectOf(ctx context.Context, t *gate.Tx, kind Kind, id string) (Hold, error) {
	org := t.Org()
	t.Object(string(kind), id)
	h := Hold{Kind: kind, Subject: id}
	if !ids.Valid(id) {
		return Hold{}, errs.E(errs.NotFound, "%s not found", kind)
	}
	switch kind {
	case Participant:
		t.Participant(id)
		p, err := participants.ByPseudonym(ctx, t, org.ID, id)
		if err != nil {
			return Hold{}, err
		}
		h.StudyID, h.SiteID = p.StudyID, p.SiteID
	case Account:
		as, err := authz.AssignmentsOf(ctx, t, org.ID, id)
		if err != nil {
			return Hold{}, err
		}
		if len(as) == 0 {
			return Hold{}, errs.E(errs.NotFound, "account not found")
		}
	}
	return h, nil
}

// SetHold places a legal hold on an account or a participant of the
// organization, with its reason: it is not purged for inactivity while the
// hold stands, and a notice standing for it ends. A hold placed again takes
// the new reason. It needs retention.manage and a fresh confirmation, and
// is a security event naming the subject (a participant's in their access
// log), never the reason.
func (s *Service) SetHold(ctx context.Context, a gate.Actor, slug string, kind Kind, subject, reason string) (Hold, error) {
	var out Hold
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "retention.hold", func(t *gate.Tx) error {
		if err := manage(t); err != nil {
			return err
		}
		t.Security()
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		why, err := holdReason(reason)
		if err != nil {
			return err
		}
		h, err := subjectOf(ctx, t, kind, subject)
		if err != nil {
			return err
		}
		org := t.Org()
		now := s.now()
		h.Reason, h.HeldBy, h.HeldAt = why, t.Subject.AccountID, now.UTC()
		if _, err := t.ExecContext(ctx, `INSERT INTO retention_holds (org_id, kind, subject_id, reason, held_by, held_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (org_id, kind, subject_id) DO UPDATE SET reason = excluded.reason, held_by = excluded.held_by, held_at = excluded.held_at`,
			org.ID, string(kind), subject, why, h.HeldBy, now.UnixMicro()); err != nil {
			return errs.Wrap(errs.Unavailable, err, "place the hold")
		}
		res, err := t.ExecContext(ctx, `DELETE FROM retention_notices WHERE org_id = $1 AND kind = $2 AND subject_id = $3`,
			org.ID, string(kind), subject)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "place the hold")
		}
		n, _ := res.RowsAffected()
		t.Detail("notice_ended", boolText(n > 0))
		out = h
		return nil
	})
	return out, err
}

// LiftHold lifts the legal hold on an account or a participant of the
// organization. From then on it is noticed again when inactive, and purged
// a full notice period after that notice. Lifting a hold that does not
// stand is not found. It needs retention.manage and a fresh confirmation,
// and is a security event.
func (s *Service) LiftHold(ctx context.Context, a gate.Actor, slug string, kind Kind, subject string) error {
	return s.Gate.Do(ctx, a, gate.Slug(slug), "retention.release", func(t *gate.Tx) error {
		if err := manage(t); err != nil {
			return err
		}
		t.Security()
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		t.Object(string(kind), subject)
		if kind == Participant && ids.Valid(subject) {
			t.Participant(subject)
		}
		res, err := t.ExecContext(ctx, `DELETE FROM retention_holds WHERE org_id = $1 AND kind = $2 AND subject_id = $3`,
			t.Org().ID, string(kind), subject)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "lift the hold")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errs.E(errs.NotFound, "no legal hold stands for this %s", kind)
		}
		return nil
	})
}

// held reports whether a hold stands for the subject.
func held(ctx context.Context, q sqldb.Querier, orgID string, kind Kind, subject string) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM retention_holds WHERE org_id = $1 AND kind = $2 AND subject_id = $3`,
		orgID, string(kind), subject).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "read the holds")
	}
	return true, nil
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

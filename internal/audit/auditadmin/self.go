package auditadmin

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
)

// Access is one access to a participant's record, told as the participant
// may learn it: when, by whom in words (the role, never a name, an account
// id or an address), what was done in words, and whether it was refused.
// Nothing about other participants, and no details of the event, is in it.
type Access struct {
	Time         time.Time
	Organization string // the organization's name
	Who          string // e.g. "a member of the study team"
	Roles        []string
	Action       string // the event's action, e.g. "participant.read"
	What         string // in plain words, e.g. "looked at your record"
	Refused      bool
}

// Own access log page sizes.
const (
	DefaultAccessPage = 50
	MaxAccessPage     = 200
)

// accessLogAction is the audit action of a participant reading their own
// access log.
const accessLogAction = "participant.access_log"

// AccessLog lists who accessed the signed-in person's own participant
// records, newest first: the events of every organization whose subject is
// a participant the account is linked to as its own (authz.RelationSelf).
// The requester names no participant, so no one can ask for another's
// log. Each record's read is an audited read through the gate as the
// participant themselves (participant.read on their own record), and the
// person's own actions, this read among them, are left out: the log tells
// what others did. A record the account may no longer read (its role was
// taken away) is left out. cursor is a previous page's next ("" for the
// newest), limit 1 to MaxAccessPage (0: DefaultAccessPage).
func (s *Service) AccessLog(ctx context.Context, a gate.Actor, cursor string, limit int) ([]Access, string, error) {
	if a.AccountID == "" {
		return nil, "", errs.E(errs.Unauthenticated, "sign-in required")
	}
	if limit == 0 {
		limit = DefaultAccessPage
	}
	if limit < 1 || limit > MaxAccessPage {
		return nil, "", errs.E(errs.Invalid, "limit must be between 1 and %d", MaxAccessPage)
	}
	if cursor != "" {
		// The trail's own check of a cursor, with a placeholder
		// organization.
		f := audit.Filter{OrgID: "-", Cursor: cursor}
		if err := f.Validate(); err != nil {
			return nil, "", err
		}
	}
	records, err := s.ownRecords(ctx, a)
	if err != nil {
		return nil, "", err
	}
	type found struct {
		ev  audit.Event
		org string
	}
	var all []found
	for _, p := range records {
		var (
			evs     []audit.Event
			orgName string
		)
		err = s.Gate.Do(ctx, a, gate.OrgID(p.OrgID), accessLogAction, func(t *gate.Tx) error {
			orgName = t.Org().Name
			t.Object("participant", p.Pseudonym)
			t.Participant(p.Pseudonym)
			if err := t.Authorize(authz.ParticipantRead, authz.Resource{
				OrgID: p.OrgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Pseudonym,
			}); err != nil {
				return err
			}
			var err error
			evs, err = othersAccesses(ctx, t, p, a.AccountID, cursor, limit+1)
			return err
		})
		if gate.IsDenied(err) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		for _, ev := range evs {
			all = append(all, found{ev, orgName})
		}
	}
	// Each record gave its newest limit+1 after the cursor, so the newest
	// limit of them all are here, and there are more if there are more
	// than limit.
	slices.SortFunc(all, func(x, y found) int {
		if c := y.ev.Time.Compare(x.ev.Time); c != 0 {
			return c
		}
		return cmp.Compare(y.ev.ID, x.ev.ID)
	})
	next := ""
	if len(all) > limit {
		all = all[:limit]
		last := all[limit-1].ev
		next = fmt.Sprintf("%d-%s", last.Time.UnixMicro(), last.ID) // the trail's cursor form
	}
	out := make([]Access, len(all))
	for i, f := range all {
		out[i] = accessOf(f.ev, f.org)
	}
	return out, next, nil
}

// ownRecords lists the participant records the account is linked to as
// the participant's own, in every organization where it holds a role. The
// account reads only its own links, so the lookup records nothing; each
// record's access log is read, and recorded, in its organization.
func (s *Service) ownRecords(ctx context.Context, a gate.Actor) ([]participants.Participant, error) {
	var out []participants.Participant
	err := s.Gate.Own(ctx, a, accessLogAction, func(o *gate.OpTx) error {
		o.Nothing()
		orgIDs, err := accounts.Organizations(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		for _, orgID := range orgIDs {
			rels, err := authz.RelationsOf(ctx, o, orgID, a.AccountID)
			if err != nil {
				return err
			}
			for _, r := range rels {
				if r.Kind != authz.RelationSelf || r.AccountID != a.AccountID || r.OrgID != orgID {
					continue
				}
				p, err := participants.ByPseudonym(ctx, o, orgID, r.ParticipantID)
				if errs.Is(err, errs.NotFound) {
					continue
				}
				if err != nil {
					return err
				}
				out = append(out, p)
			}
		}
		return nil
	})
	return out, err
}

// othersAccesses returns up to n events about participant p after cursor,
// newest first, leaving out those of the account itself.
func othersAccesses(ctx context.Context, t *gate.Tx, p participants.Participant, self, cursor string, n int) ([]audit.Event, error) {
	var out []audit.Event
	f := audit.Filter{OrgID: p.OrgID, Participant: p.Pseudonym, Cursor: cursor, Limit: min(audit.MaxPage, max(n, audit.DefaultPage))}
	for {
		page, next, err := audit.Search(ctx, t, f)
		if err != nil {
			return nil, err
		}
		for _, ev := range page {
			if ev.ParticipantID != p.Pseudonym || ev.OrgID != p.OrgID {
				continue // the index said so; the body must agree
			}
			if ev.ActorAccount == self {
				continue
			}
			out = append(out, ev)
			if len(out) == n {
				return out, nil
			}
		}
		if next == "" {
			return out, nil
		}
		f.Cursor = next
	}
}

// roleWords names the built-in roles as a participant reads them.
var roleWords = map[string]string{
	string(authz.OrgAdmin):         "organization administrator",
	string(authz.OrgManager):       "organization manager",
	string(authz.StudyAdmin):       "study administrator",
	string(authz.DataManager):      "data manager",
	string(authz.SiteInvestigator): "site investigator",
	string(authz.Monitor):          "monitor",
	string(authz.CareProvider):     "care provider",
	string(authz.Participant):      "participant",
}

// actionWords says what an action did to the participant's record.
var actionWords = map[string]string{
	"participant.read":             "looked at your record",
	"participant.enrol":            "enrolled you",
	"identity.reveal":              "looked at your name and contact details",
	"identity.erase":               "erased your name and contact details",
	"identity.sweep":               "destroyed leftover identifying details for good",
	"care.assign":                  "assigned a care provider to you",
	"participant.account_invite":   "invited you to an account of your own",
	"care.unassign":                "ended a care provider's assignment to you",
	"conversation.start":           "began a conversation with you",
	"conversation.read":            "read your conversation",
	"conversation.message":         "wrote to you in your conversation",
	"conversation.attachment":      "sent a file in your conversation",
	"conversation.attachment.read": "opened a file of your conversation",
	"conversation.mark_read":       "marked your conversation read",
	accessLogAction:                "looked at this access log",
	"subject.export":               "exported everything about you, for your request",
	"retention.notice":             "noticed your record for deletion after a long time without activity",
	"retention.end":                "kept your record: it is in use again",
	"retention.hold":               "put your record on legal hold",
	"retention.release":            "lifted the legal hold on your record",
	"retention.purge":              "deleted your record after a long time without activity",
}

// accessOf tells an event to the participant it is about.
func accessOf(ev audit.Event, org string) Access {
	out := Access{Time: ev.Time, Organization: org, Action: ev.Action, Refused: ev.Outcome != audit.Success}
	out.What = actionWords[ev.Action]
	if out.What == "" {
		out.What = "worked with your record"
	}
	var roles []string
	for r := range strings.SplitSeq(ev.ActorRole, ",") {
		if r = strings.TrimSpace(r); r == "" || r == "operator" {
			continue
		}
		if w, ok := roleWords[r]; ok {
			r = w
		}
		roles = append(roles, r)
	}
	out.Roles = roles
	switch {
	case ev.ActorRole == "operator" || ev.ActorAccount == "":
		out.Who = "the system"
	case len(roles) == 0:
		out.Who = "someone outside the study team"
	case len(roles) == 1 && roles[0] == roleWords[string(authz.Participant)]:
		out.Who = "another participant"
	default:
		out.Who = "a member of the study team"
	}
	return out
}

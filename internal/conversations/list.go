package conversations

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// List answers the requester's own conversations in the organization,
// newest first, each with its members and the requester's unread count,
// never a message. A conversation is listed only while authz would let the
// requester read it (a care provider no longer assigned to the participant
// does not see it).
func (s *Service) List(ctx context.Context, a gate.Actor, slug string) ([]Conversation, error) {
	out := []Conversation{}
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "conversation.list", func(t *gate.Tx) error {
		if err := listScope(t); err != nil {
			return err
		}
		cs, err := mine(ctx, t)
		if err != nil {
			return err
		}
		for _, c := range cs {
			out = append(out, c.Conversation)
		}
		t.Detail("count", strconv.Itoa(len(out)))
		return nil
	})
	return out, err
}

// mine finds the conversations of the requester that authz lets them use:
// those they are recorded a member of, and those of the participants whose
// own account is theirs.
func mine(ctx context.Context, t *gate.Tx) ([]*conv, error) {
	org := t.Org()
	var self []string
	for _, r := range t.Subject.Relations {
		if r.Kind == authz.RelationSelf && r.OrgID == org.ID {
			self = append(self, r.ParticipantID)
		}
	}
	rows, err := t.QueryContext(ctx, `SELECT id, study_id, site_id, participant_id, last_seq, last_at, created_by, created_at
		FROM conversations c WHERE org_id = $1 AND EXISTS
			(SELECT 1 FROM conversation_members m WHERE m.conversation_id = c.id AND m.account_id = $2)
		ORDER BY last_at DESC, id LIMIT $3`, org.ID, t.Subject.AccountID, MaxList)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list conversations")
	}
	var found []*conv
	for rows.Next() {
		c := &conv{orgID: org.ID}
		var lastAt, createdAt int64
		if err := rows.Scan(&c.ID, &c.StudyID, &c.SiteID, &c.Participant, &c.LastSeq, &lastAt, &c.CreatedBy, &createdAt); err != nil {
			rows.Close()
			return nil, errs.Wrap(errs.Unavailable, err, "list conversations")
		}
		c.LastAt, c.CreatedAt = time.UnixMicro(lastAt), time.UnixMicro(createdAt)
		found = append(found, c)
	}
	if err := rows.Close(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list conversations")
	}
	for _, p := range self {
		more, err := ofParticipant(ctx, t, org.ID, p)
		if err != nil {
			return nil, err
		}
		for _, c := range more {
			if !slices.ContainsFunc(found, func(f *conv) bool { return f.ID == c.ID }) {
				found = append(found, c)
			}
		}
	}
	slices.SortStableFunc(found, func(a, b *conv) int { return b.LastAt.Compare(a.LastAt) })
	var out []*conv
	for _, c := range found {
		if len(out) == MaxList {
			break
		}
		p, err := participants.ByPseudonym(ctx, t, org.ID, c.Participant)
		if errs.Is(err, errs.NotFound) {
			continue // deleted (LIFE-01)
		}
		if err != nil {
			return nil, err
		}
		if c.Members, err = members(ctx, t, c); err != nil {
			return nil, err
		}
		if !t.Allowed(authz.ConversationUse, resource(c)) {
			continue
		}
		c.Erased = p.Identity == participants.IdentityErased
		for _, m := range c.Members {
			if m.AccountID == t.Subject.AccountID {
				c.readSeq = m.ReadSeq
			}
		}
		if c.Unread, err = unread(ctx, t, c.ID, t.Subject.AccountID, c.readSeq); err != nil {
			return nil, err
		}
		if err := name(ctx, t, c.Members); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ofParticipant lists the conversations about one participant.
func ofParticipant(ctx context.Context, q sqldb.Querier, orgID, pseudonym string) ([]*conv, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, study_id, site_id, participant_id, last_seq, last_at, created_by, created_at
		FROM conversations WHERE org_id = $1 AND participant_id = $2 ORDER BY last_at DESC, id LIMIT $3`, orgID, pseudonym, MaxList)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list conversations")
	}
	defer rows.Close()
	var out []*conv
	for rows.Next() {
		c := &conv{orgID: orgID}
		var lastAt, createdAt int64
		if err := rows.Scan(&c.ID, &c.StudyID, &c.SiteID, &c.Participant, &c.LastSeq, &lastAt, &c.CreatedBy, &createdAt); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "list conversations")
		}
		c.LastAt, c.CreatedAt = time.UnixMicro(lastAt), time.UnixMicro(createdAt)
		out = append(out, c)
	}
	return out, rows.Err()
}

// ClientOf is one participant a care provider is assigned to, with the
// conversations about them the care provider is a member of.
type ClientOf struct {
	Participant participants.Participant
	// Conversations are the ids of those conversations, newest first;
	// Unread counts the requester's unread messages in all of them.
	Conversations []string
	Unread        int
}

// Clients answers the participants the requester is assigned to as their
// care provider (ACL-05) and may read, by pseudonym, each with the
// requester's conversations about them. A requester who is nobody's care
// provider has none.
func (s *Service) Clients(ctx context.Context, a gate.Actor, slug string) ([]ClientOf, error) {
	out := []ClientOf{}
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "conversation.clients", func(t *gate.Tx) error {
		if err := listScope(t); err != nil {
			return err
		}
		org := t.Org()
		cs, err := mine(ctx, t)
		if err != nil {
			return err
		}
		for _, r := range t.Subject.Relations {
			if r.Kind != authz.RelationCare || r.OrgID != org.ID || len(out) == MaxList {
				continue
			}
			p, err := participants.ByPseudonym(ctx, t, org.ID, r.ParticipantID)
			if errs.Is(err, errs.NotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if !t.Allowed(authz.ParticipantRead, authz.Resource{OrgID: org.ID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Pseudonym}) {
				continue
			}
			cl := ClientOf{Participant: p, Conversations: []string{}}
			for _, c := range cs {
				if c.Participant == p.Pseudonym {
					cl.Conversations = append(cl.Conversations, c.ID)
					cl.Unread += c.Unread
				}
			}
			out = append(out, cl)
		}
		t.Detail("count", strconv.Itoa(len(out)))
		return nil
	})
	return out, err
}

// Package conversations owns the private conversations between a care
// provider and their client (a participant), optionally with others of the
// participant's care team: their members, messages, attachments and unread
// counts.
//
// What it promises:
//
//   - Only the members read or write a conversation (ACL-05, ACL-06):
//     authz decides conversation.use on the conversation's participant and
//     members, so a care provider must be a member and still be one of the
//     participant's care providers, and the participant reaches their own
//     conversations through their own account. Organization admins and
//     managers, other care providers and other participants are refused
//     every conversation, as not found (ACL-08), and the refusal is on the
//     trail.
//   - Every read of a conversation or an attachment is an audit event
//     naming the participant, so it is in their access log (AUD-01).
//   - Message bodies, attachments and their names are sealed (CRY-03) under
//     a key of the conversation's own, bound to the conversation and the
//     message (CRY-05). That key is sealed under the participant's key in
//     the identity database, so erasing the participant (LIFE-03) leaves
//     the whole conversation unopenable, in every copy of the databases.
//   - A conversation is with the participant's care team only: a member
//     who is not one of the participant's care providers is refused, and
//     nothing is stored.
package conversations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/notify"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// Bounds of what a conversation takes (WEB-05; docs/limits.md).
const (
	// MaxBodyRunes bounds a message's text, in characters.
	MaxBodyRunes = 4000
	// MaxAttachmentBytes bounds an attachment's size.
	MaxAttachmentBytes = 10 << 20
	// MaxMembers bounds the members of a conversation, the participant
	// and the care providers together.
	MaxMembers = 10
	// MaxMessagesPage is the most messages one read answers;
	// DefaultMessagesPage is how many it answers unless asked.
	MaxMessagesPage     = 200
	DefaultMessagesPage = 50
	// MaxList is the most conversations, or clients, a list answers.
	MaxList = 500
	// maxAttachmentName bounds an attachment's name, in characters.
	maxAttachmentName = 200
)

// Service offers conversations to requests.
type Service struct {
	Gate *gate.Gate
}

// MemberKind says how a member belongs to a conversation.
type MemberKind string

const (
	// CareTeam: one of the participant's care providers.
	CareTeam MemberKind = "care-provider"
	// Client: the participant, through their own account.
	Client MemberKind = "participant"
)

// Member is one member of a conversation.
type Member struct {
	AccountID string
	Name      string // the account's display name
	Kind      MemberKind
	// ReadSeq is the last message the member marked read.
	ReadSeq int64
}

// Conversation describes a conversation, without its messages.
type Conversation struct {
	ID          string
	Participant string // pseudonym
	StudyID     string
	SiteID      string
	Members     []Member
	// LastSeq numbers the newest message (0: none yet); LastAt is when
	// it was sent, or when the conversation began.
	LastSeq   int64
	LastAt    time.Time
	CreatedBy string
	CreatedAt time.Time
	// Unread counts the messages of others after the requester's ReadSeq.
	Unread int
	// Erased: the participant's key was destroyed (LIFE-03), and with it
	// every message; nothing can be read or added any more.
	Erased bool
}

// Message is one message; Attachment is set for a message that carries a
// file.
type Message struct {
	ID         string
	Seq        int64
	Author     string // account id
	Body       string
	Attachment *Attachment
	CreatedAt  time.Time
}

// Attachment describes a file sent in a conversation.
type Attachment struct {
	ID        string
	Name      string
	MediaType string
	Size      int64
}

// errErased answers a change to a conversation whose participant was
// erased.
var errErased = errs.E(errs.Conflict, "this conversation was erased with its participant's data; nothing can be added to it")

// keyAt is where a conversation's key is sealed (under the participant's
// key); valueAt where a value of one of its messages or attachments is
// (under the conversation's key). Both name the conversation, and a value
// its message or attachment and field (CRY-05).
func keyAt(c *conv) keys.Context {
	return keys.Context{OrgID: c.orgID, StudyID: c.StudyID, RecordID: c.ID, Field: "conversation.key"}
}

func valueAt(c *conv, objectID, field string) keys.Context {
	return keys.Context{OrgID: c.orgID, StudyID: c.StudyID, RecordID: c.ID + "/" + objectID, Field: field}
}

// conv is a conversation as a request found it: what it tells, its
// organization and sealed key, and the requester's membership.
type conv struct {
	Conversation
	orgID     string
	sealedKey []byte
	readSeq   int64 // the requester's
	key       gate.WrappedKey
}

// listScope is what work that names no conversation yet is authorized on
// first: conversations anywhere in the organization, which only the
// relationship-scoped roles (care provider, participant) are allowed, for
// their own (authz.ConversationUse). Everyone else is refused here, before
// anything is read.
func listScope(t *gate.Tx) error {
	return t.AuthorizeList(authz.ConversationUse, authz.Resource{OrgID: t.Org().ID})
}

// resource is what authz decides a conversation's use on: its participant,
// where they are, and its members.
func resource(c *conv) authz.Resource {
	return authz.Resource{OrgID: c.orgID, StudyID: c.StudyID, SiteID: c.SiteID, ParticipantID: c.Participant,
		Members: memberIDs(c.Members)}
}

func memberIDs(ms []Member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.AccountID)
	}
	return out
}

// Start begins a conversation about participant (a pseudonym) between the
// requester and careTeam (account ids of other care providers of the
// participant), with the participant's own account, if they have one, as
// a member. The requester is one of the participant's care providers, or
// the participant, who then names at least one care provider. Every member
// named must be one of the participant's care providers: anyone else is
// refused, and nothing is stored.
func (s *Service) Start(ctx context.Context, a gate.Actor, slug, participant string, careTeam []string) (Conversation, error) {
	if len(careTeam) > MaxMembers-1 {
		return Conversation{}, errs.E(errs.Invalid, "a conversation has at most %d members", MaxMembers)
	}
	for _, id := range careTeam {
		if !ids.Valid(id) {
			return Conversation{}, errs.E(errs.Invalid, "members are account ids")
		}
	}
	var out Conversation
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "conversation.start", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("participant", participant)
		if ids.Valid(participant) {
			t.Participant(participant)
		}
		if err := listScope(t); err != nil {
			return err
		}
		p, err := participants.ByPseudonym(ctx, t, org.ID, participant)
		if err != nil {
			return err
		}
		rels, err := authz.RelationsOfParticipant(ctx, t, org.ID, p.Pseudonym)
		if err != nil {
			return err
		}
		c := &conv{orgID: org.ID}
		c.ID, c.Participant, c.StudyID, c.SiteID = ids.New(), p.Pseudonym, p.StudyID, p.SiteID
		c.CreatedBy, c.CreatedAt = t.Subject.AccountID, time.UnixMicro(sqldb.Now())
		c.LastAt = c.CreatedAt
		c.Members = relatedMembers(rels, append([]string{t.Subject.AccountID}, careTeam...))
		// Authz decides on the members as they will be: the requester
		// among them, related to the participant in their role's way.
		if err := t.Authorize(authz.ConversationUse, resource(c)); err != nil {
			return err
		}
		for _, id := range careTeam {
			if !slices.ContainsFunc(c.Members, func(m Member) bool { return m.AccountID == id }) {
				return errs.E(errs.Invalid, "every member must be one of this participant's care providers")
			}
		}
		if !slices.ContainsFunc(c.Members, func(m Member) bool { return m.Kind == CareTeam }) {
			return errs.E(errs.Invalid, "a conversation needs one of the participant's care providers")
		}
		if len(c.Members) > MaxMembers {
			return errs.E(errs.Invalid, "a conversation has at most %d members", MaxMembers)
		}
		if p.Identity == participants.IdentityErased {
			return errErased
		}
		t.Object("conversation", c.ID)
		it, err := t.Identity(ctx)
		if err != nil {
			return err
		}
		var sealed []byte
		c.key, sealed, err = it.Vault().NewWrappedKey(ctx, keys.ParticipantScope(org.ID, p.Pseudonym), keyAt(c))
		if errors.Is(err, keys.ErrKeyDestroyed) {
			return errErased
		}
		if err != nil {
			return err
		}
		now := c.CreatedAt.UnixMicro()
		if _, err := t.ExecContext(ctx, `INSERT INTO conversations
			(id, org_id, study_id, site_id, participant_id, sealed_key, last_seq, last_at, created_by, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $7)`,
			c.ID, org.ID, c.StudyID, c.SiteID, c.Participant, sealed, now, c.CreatedBy); err != nil {
			return errs.Wrap(errs.Unavailable, err, "store the conversation")
		}
		for _, m := range c.Members {
			if _, err := t.ExecContext(ctx, `INSERT INTO conversation_members (conversation_id, account_id, read_seq, added_by, added_at)
				VALUES ($1, $2, 0, $3, $4)`, c.ID, m.AccountID, c.CreatedBy, now); err != nil {
				return errs.Wrap(errs.Unavailable, err, "store the conversation's members")
			}
		}
		if err := name(ctx, t, c.Members); err != nil {
			return err
		}
		t.Detail("conversation", c.ID)
		t.Detail("members", strings.Join(memberIDs(c.Members), ","))
		out = c.Conversation
		return nil
	})
	return out, err
}

// relatedMembers are the accounts of wanted that are related to the
// participant of rels: as care providers, and as the participant's own
// account, which is always a member, named or not.
func relatedMembers(rels []authz.Relation, wanted []string) []Member {
	var out []Member
	add := func(id string, kind MemberKind) {
		if !slices.ContainsFunc(out, func(m Member) bool { return m.AccountID == id }) {
			out = append(out, Member{AccountID: id, Kind: kind})
		}
	}
	for _, id := range wanted {
		for _, r := range rels {
			if r.AccountID == id && r.Kind == authz.RelationCare {
				add(id, CareTeam)
			}
		}
	}
	for _, r := range rels {
		if r.Kind == authz.RelationSelf {
			add(r.AccountID, Client)
		}
	}
	return out
}

// name fills in the members' display names.
func name(ctx context.Context, q sqldb.Querier, ms []Member) error {
	accs, err := accounts.ByIDs(ctx, q, memberIDs(ms))
	if err != nil {
		return err
	}
	for i := range ms {
		ms[i].Name = accs[ms[i].AccountID].DisplayName
	}
	return nil
}

// open finds the conversation a request names and decides whether the
// requester may use it; only then are its members' names read. The
// participant (found or not) is named on the request's event, so that
// every attempt is in their access log.
func open(ctx context.Context, t *gate.Tx, id string) (*conv, error) {
	t.Object("conversation", id)
	if err := listScope(t); err != nil {
		return nil, err
	}
	if !ids.Valid(id) {
		return nil, errs.E(errs.NotFound, "conversation not found")
	}
	org := t.Org()
	c := &conv{orgID: org.ID}
	c.ID = id
	var lastAt, createdAt int64
	err := t.QueryRowContext(ctx, `SELECT study_id, site_id, participant_id, sealed_key, last_seq, last_at, created_by, created_at
		FROM conversations WHERE org_id = $1 AND id = $2`, org.ID, id).
		Scan(&c.StudyID, &c.SiteID, &c.Participant, &c.sealedKey, &c.LastSeq, &lastAt, &c.CreatedBy, &createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "conversation not found")
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the conversation")
	}
	c.LastAt, c.CreatedAt = time.UnixMicro(lastAt), time.UnixMicro(createdAt)
	t.Participant(c.Participant)
	// A deleted participant (LIFE-01) is hidden and locked with their
	// conversations.
	p, err := participants.ByPseudonym(ctx, t, org.ID, c.Participant)
	if err != nil {
		return nil, err
	}
	if c.Members, err = members(ctx, t, c); err != nil {
		return nil, err
	}
	if err := t.Authorize(authz.ConversationUse, resource(c)); err != nil {
		return nil, err
	}
	for _, m := range c.Members {
		if m.AccountID == t.Subject.AccountID {
			c.readSeq = m.ReadSeq
		}
	}
	if err := name(ctx, t, c.Members); err != nil {
		return nil, err
	}
	c.Erased = p.Identity == participants.IdentityErased
	return c, nil
}

// members lists a conversation's members: those it records and the
// participant's own account, which is a member whenever it exists.
func members(ctx context.Context, q sqldb.Querier, c *conv) ([]Member, error) {
	rows, err := q.QueryContext(ctx, `SELECT account_id, read_seq FROM conversation_members
		WHERE conversation_id = $1 ORDER BY added_at, account_id`, c.ID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the conversation's members")
	}
	defer rows.Close()
	var out []Member
	for rows.Next() {
		m := Member{Kind: CareTeam}
		if err := rows.Scan(&m.AccountID, &m.ReadSeq); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the conversation's members")
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the conversation's members")
	}
	rels, err := authz.RelationsOfParticipant(ctx, q, c.orgID, c.Participant)
	if err != nil {
		return nil, err
	}
	for _, r := range rels {
		if r.Kind != authz.RelationSelf {
			continue
		}
		if i := slices.IndexFunc(out, func(m Member) bool { return m.AccountID == r.AccountID }); i >= 0 {
			out[i].Kind = Client
		} else {
			out = append(out, Member{AccountID: r.AccountID, Kind: Client})
		}
	}
	return out, nil
}

// unlock opens the conversation's key; a conversation whose participant was
// erased is marked so and has none.
func unlock(ctx context.Context, t *gate.Tx, c *conv) error {
	if c.Erased {
		return nil
	}
	it, err := t.Identity(ctx)
	if err != nil {
		return err
	}
	c.key, err = it.Vault().OpenWrappedKey(ctx, keys.ParticipantScope(c.orgID, c.Participant), keyAt(c), c.sealedKey)
	if errors.Is(err, keys.ErrKeyDestroyed) {
		c.Erased = true
		return nil
	}
	return err
}

// unread counts the messages of others in conversation id after seq.
func unread(ctx context.Context, q sqldb.Querier, id, account string, seq int64) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM conversation_messages
		WHERE conversation_id = $1 AND seq > $2 AND author_id <> $3`, id, seq, account).Scan(&n); err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "count unread messages")
	}
	return n, nil
}

// Get reads a conversation and a page of its messages: the newest limit (1
// to MaxMessagesPage; 0 means DefaultMessagesPage) before message number
// before (0: the newest), oldest first. The read is an audit event naming
// the participant, with the messages it showed.
func (s *Service) Get(ctx context.Context, a gate.Actor, slug, id string, before int64, limit int) (Conversation, []Message, error) {
	if limit == 0 {
		limit = DefaultMessagesPage
	}
	if limit < 1 || limit > MaxMessagesPage {
		return Conversation{}, nil, errs.E(errs.Invalid, "limit must be between 1 and %d", MaxMessagesPage)
	}
	if before < 0 {
		return Conversation{}, nil, errs.E(errs.Invalid, "before must be a message number")
	}
	var (
		out  Conversation
		msgs []Message
	)
	err := s.Gate.Read(ctx, a, gate.Slug(slug), "conversation.read", func(t *gate.Tx) error {
		c, err := open(ctx, t, id)
		if err != nil {
			return err
		}
		if err := unlock(ctx, t, c); err != nil {
			return err
		}
		if c.Unread, err = unread(ctx, t, c.ID, t.Subject.AccountID, c.readSeq); err != nil {
			return err
		}
		out = c.Conversation
		msgs = []Message{}
		if c.Erased {
			t.Detail("erased", "true")
			return nil
		}
		if before == 0 {
			before = c.LastSeq + 1
		}
		msgs, err = messages(ctx, t, c, before, limit)
		if err != nil {
			return err
		}
		t.Detail("messages", strconv.Itoa(len(msgs)))
		if len(msgs) > 0 {
			t.Detail("seq", fmt.Sprintf("%d-%d", msgs[0].Seq, msgs[len(msgs)-1].Seq))
		}
		return nil
	})
	return out, msgs, err
}

// messages reads and opens a page of c's messages (see Get).
func messages(ctx context.Context, t *gate.Tx, c *conv, before int64, limit int) ([]Message, error) {
	type sealedMessage struct {
		m          Message
		body, name []byte
		created    int64
	}
	rows, err := t.QueryContext(ctx, `SELECT m.id, m.seq, m.author_id, m.sealed_body, m.created_at,
			COALESCE(a.id, ''), a.sealed_name, COALESCE(a.media_type, ''), COALESCE(a.size, 0)
		FROM conversation_messages m LEFT JOIN conversation_attachments a ON a.id = m.attachment_id AND a.conversation_id = m.conversation_id
		WHERE m.conversation_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3`, c.ID, before, limit)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the messages")
	}
	var page []sealedMessage
	for rows.Next() {
		var (
			sm  sealedMessage
			att Attachment
		)
		if err := rows.Scan(&sm.m.ID, &sm.m.Seq, &sm.m.Author, &sm.body, &sm.created, &att.ID, &sm.name, &att.MediaType, &att.Size); err != nil {
			rows.Close()
			return nil, errs.Wrap(errs.Unavailable, err, "read the messages")
		}
		if att.ID != "" {
			sm.m.Attachment = &att
		}
		page = append(page, sm)
	}
	if err := rows.Close(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the messages")
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read the messages")
	}
	out := make([]Message, 0, len(page))
	for i := len(page) - 1; i >= 0; i-- {
		sm := page[i]
		body, err := c.key.Open(ctx, valueAt(c, sm.m.ID, "message.body"), sm.body)
		if err != nil {
			return nil, err
		}
		sm.m.Body, sm.m.CreatedAt = string(body), time.UnixMicro(sm.created)
		if sm.m.Attachment != nil {
			n, err := c.key.Open(ctx, valueAt(c, sm.m.Attachment.ID, "attachment.name"), sm.name)
			if err != nil {
				return nil, err
			}
			sm.m.Attachment.Name = string(n)
		}
		out = append(out, sm.m)
	}
	return out, nil
}

// CheckBody checks a message's text: not blank, at most MaxBodyRunes
// characters of UTF-8, no control characters but line breaks and tabs.
func CheckBody(body string) error {
	if !utf8.ValidString(body) || strings.TrimSpace(body) == "" || utf8.RuneCountInString(body) > MaxBodyRunes ||
		strings.ContainsFunc(body, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }) {
		return errs.E(errs.Invalid, "a message is 1 to %d characters of text, without control characters", MaxBodyRunes)
	}
	return nil
}

// Send adds a message to a conversation and answers it; the requester has
// read everything up to it.
func (s *Service) Send(ctx context.Context, a gate.Actor, slug, id, body string) (Message, error) {
	if err := CheckBody(body); err != nil {
		return Message{}, err
	}
	var out Message
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "conversation.message", func(t *gate.Tx) error {
		c, err := open(ctx, t, id)
		if err != nil {
			return err
		}
		if err := unlock(ctx, t, c); err != nil {
			return err
		}
		out, err = add(ctx, t, c, body, nil)
		return err
	})
	return out, err
}

// add stores a message (with the attachment att, if not nil, stored
// already) as the conversation's next.
func add(ctx context.Context, t *gate.Tx, c *conv, body string, att *Attachment) (Message, error) {
	if c.Erased {
		return Message{}, errErased
	}
	m := Message{ID: ids.New(), Author: t.Subject.AccountID, Body: body, Attachment: att, CreatedAt: time.UnixMicro(sqldb.Now())}
	now := m.CreatedAt.UnixMicro()
	// The conversation's row is the counter of its messages, and its lock
	// orders concurrent sends.
	if err := t.QueryRowContext(ctx, `UPDATE conversations SET last_seq = last_seq + 1, last_at = $1
		WHERE org_id = $2 AND id = $3 RETURNING last_seq`, now, c.orgID, c.ID).Scan(&m.Seq); err != nil {
		return Message{}, errs.Wrap(errs.Unavailable, err, "number the message")
	}
	sealed, err := c.key.Seal(valueAt(c, m.ID, "message.body"), []byte(body))
	if err != nil {
		return Message{}, err
	}
	var attID any
	if att != nil {
		attID = att.ID
	}
	if _, err := t.ExecContext(ctx, `INSERT INTO conversation_messages (id, conversation_id, seq, author_id, sealed_body, attachment_id, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, m.ID, c.ID, m.Seq, m.Author, sealed, attID, now); err != nil {
		return Message{}, errs.Wrap(errs.Unavailable, err, "store the message")
	}
	if err := markRead(ctx, t, c, m.Seq); err != nil {
		return Message{}, err
	}
	// The other members are told that a message waits, and nothing more
	// (WEB-07).
	for _, mem := range c.Members {
		if mem.AccountID == t.Subject.AccountID {
			continue
		}
		if _, err := notify.Queue(ctx, t, mem.AccountID, c.orgID, notify.Message, m.ID); err != nil {
			return Message{}, err
		}
	}
	t.Detail("message", m.ID)
	t.Detail("seq", strconv.FormatInt(m.Seq, 10))
	return m, nil
}

// markRead records that the requester read c up to seq.
func markRead(ctx context.Context, t *gate.Tx, c *conv, seq int64) error {
	if _, err := t.ExecContext(ctx, `INSERT INTO conversation_members (conversation_id, account_id, read_seq, added_by, added_at)
		VALUES ($1, $2, $3, $2, $4)
		ON CONFLICT (conversation_id, account_id) DO UPDATE SET read_seq = excluded.read_seq
		WHERE conversation_members.read_seq < excluded.read_seq`, c.ID, t.Subject.AccountID, seq, sqldb.Now()); err != nil {
		return errs.Wrap(errs.Unavailable, err, "mark the conversation read")
	}
	return nil
}

// MarkRead records that the requester read the conversation up to message
// number upTo (0: its newest), and answers the conversation with the
// requester's unread count. Marks only move forward.
func (s *Service) MarkRead(ctx context.Context, a gate.Actor, slug, id string, upTo int64) (Conversation, error) {
	if upTo < 0 {
		return Conversation{}, errs.E(errs.Invalid, "up_to must be a message number")
	}
	var out Conversation
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "conversation.mark_read", func(t *gate.Tx) error {
		c, err := open(ctx, t, id)
		if err != nil {
			return err
		}
		if upTo == 0 || upTo > c.LastSeq {
			upTo = c.LastSeq
		}
		if upTo > c.readSeq {
			if err := markRead(ctx, t, c, upTo); err != nil {
				return err
			}
			c.readSeq = upTo
			for i := range c.Members {
				if c.Members[i].AccountID == t.Subject.AccountID {
					c.Members[i].ReadSeq = upTo
				}
			}
		}
		if c.Unread, err = unread(ctx, t, c.ID, t.Subject.AccountID, c.readSeq); err != nil {
			return err
		}
		t.Detail("read_seq", strconv.FormatInt(c.readSeq, 10))
		out = c.Conversation
		return nil
	})
	return out, err
}

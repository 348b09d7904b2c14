package conversations

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/participants"
)

// SubjectConversation is one conversation about a participant as a data
// subject's export holds it: its members and every message, each file's
// content going to the export's sink under its Path. Erased is set, with
// no message, when the participant's key was destroyed (LIFE-03).
type SubjectConversation struct {
	ID        string           `json:"id"`
	StudyID   string           `json:"study_id"`
	CreatedBy string           `json:"created_by"`
	CreatedAt time.Time        `json:"created_at"`
	Members   []SubjectMember  `json:"members"`
	Messages  []SubjectMessage `json:"messages"`
	Erased    bool             `json:"erased,omitempty"`
}

// SubjectMember is a member of a conversation, by account id.
type SubjectMember struct {
	Account string     `json:"account"`
	Kind    MemberKind `json:"kind"`
}

// SubjectMessage is one message, with its file if it carries one.
type SubjectMessage struct {
	Seq        int64              `json:"seq"`
	Author     string             `json:"author"`
	Body       string             `json:"body"`
	CreatedAt  time.Time          `json:"created_at"`
	Attachment *SubjectAttachment `json:"attachment,omitempty"`
}

// SubjectAttachment describes a file sent in a conversation.
type SubjectAttachment struct {
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
	Path      string `json:"path"`
}

// ReadSubjectConversations reads, for a data subject's export, every
// conversation about p with every message, opened, and hands each file's
// content to put (path, content). The work must be allowed
// authz.SubjectExport on p: the one read of conversations by someone who
// is not a member (ACL-06), for the participant themselves.
func ReadSubjectConversations(ctx context.Context, t *gate.Tx, p participants.Participant, put func(path string, content []byte) error) ([]SubjectConversation, error) {
	r := authz.Resource{OrgID: p.OrgID, StudyID: p.StudyID, SiteID: p.SiteID, ParticipantID: p.Pseudonym}
	if !t.Allowed(authz.SubjectExport, r) {
		return nil, gate.ErrDenied
	}
	convs, err := ofParticipant(ctx, t, p.OrgID, p.Pseudonym)
	if err != nil {
		return nil, err
	}
	out := []SubjectConversation{}
	for i := len(convs) - 1; i >= 0; i-- { // oldest first
		c := convs[i]
		if err := t.QueryRowContext(ctx, `SELECT sealed_key FROM conversations WHERE org_id = $1 AND id = $2`,
			p.OrgID, c.ID).Scan(&c.sealedKey); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the conversation")
		}
		if c.Members, err = members(ctx, t, c); err != nil {
			return nil, err
		}
		sc := SubjectConversation{ID: c.ID, StudyID: c.StudyID, CreatedBy: c.CreatedBy, CreatedAt: c.CreatedAt.UTC(),
			Members: []SubjectMember{}, Messages: []SubjectMessage{}}
		for _, m := range c.Members {
			sc.Members = append(sc.Members, SubjectMember{Account: m.AccountID, Kind: m.Kind})
		}
		c.Erased = p.Identity == participants.IdentityErased
		if err := unlock(ctx, t, c); err != nil {
			return nil, err
		}
		if c.Erased {
			sc.Erased = true
			out = append(out, sc)
			continue
		}
		for before := c.LastSeq + 1; before > 1; {
			page, err := messages(ctx, t, c, before, MaxMessagesPage)
			if err != nil {
				return nil, err
			}
			if len(page) == 0 {
				break
			}
			msgs := make([]SubjectMessage, 0, len(page))
			for _, m := range page {
				sm := SubjectMessage{Seq: m.Seq, Author: m.Author, Body: m.Body, CreatedAt: m.CreatedAt.UTC()}
				if a := m.Attachment; a != nil {
					sm.Attachment = &SubjectAttachment{Name: a.Name, MediaType: a.MediaType, Size: a.Size,
						Path: "attachments/" + a.ID + "/" + pathName(a.Name)}
					var sealed []byte
					if err := t.QueryRowContext(ctx, `SELECT sealed FROM conversation_attachments WHERE id = $1 AND conversation_id = $2`,
						a.ID, c.ID).Scan(&sealed); err != nil {
						return nil, errs.Wrap(errs.Unavailable, err, "read the file")
					}
					content, err := c.key.Open(ctx, valueAt(c, a.ID, "attachment.content"), sealed)
					if errors.Is(err, keys.ErrKeyDestroyed) {
						return nil, errs.E(errs.Conflict, "this participant's data were erased meanwhile")
					}
					if err != nil {
						return nil, err
					}
					if err := put(sm.Attachment.Path, content); err != nil {
						return nil, err
					}
				}
				msgs = append(msgs, sm)
			}
			// Pages come newest first; each page oldest first.
			sc.Messages = append(msgs, sc.Messages...)
			before = page[0].Seq
		}
		out = append(out, sc)
	}
	return out, nil
}

// pathName is a file's name as the last element of a path in an export:
// a name is checked when sent (no slashes, no control characters), and
// one that is only dots becomes "file".
func pathName(name string) string {
	if strings.Trim(name, ".") == "" {
		return "file"
	}
	return name
}

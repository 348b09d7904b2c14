package api

import (
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/errs"
)

// Conversations between a care provider and their client (ACL-05, ACL-06):
// only their members reach them; everyone else is answered 404.

type conversationMemberJSON struct {
	Account string `json:"account"`
	Name    string `json:"name"`
	Kind    string `json:"kind"` // care-provider or participant
	ReadSeq int64  `json:"read_seq"`
}

type conversationJSON struct {
	ID          string                   `json:"id"`
	Participant string                   `json:"participant"`
	StudyID     string                   `json:"study_id"`
	SiteID      string                   `json:"site_id"`
	Members     []conversationMemberJSON `json:"members"`
	LastSeq     int64                    `json:"last_seq"`
	LastAt      string                   `json:"last_at"`
	CreatedBy   string                   `json:"created_by"`
	CreatedAt   string                   `json:"created_at"`
	Unread      int                      `json:"unread"`
	Erased      bool                     `json:"erased"`
}

type attachmentJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
}

type messageJSON struct {
	ID         string          `json:"id"`
	Seq        int64           `json:"seq"`
	Author     string          `json:"author"`
	Body       string          `json:"body"`
	Attachment *attachmentJSON `json:"attachment,omitempty"`
	CreatedAt  string          `json:"created_at"`
}

func conversationOut(c conversations.Conversation) conversationJSON {
	out := conversationJSON{ID: c.ID, Participant: c.Participant, StudyID: c.StudyID, SiteID: c.SiteID,
		Members: []conversationMemberJSON{}, LastSeq: c.LastSeq, LastAt: c.LastAt.UTC().Format(time.RFC3339Nano),
		CreatedBy: c.CreatedBy, CreatedAt: c.CreatedAt.UTC().Format(time.RFC3339Nano), Unread: c.Unread, Erased: c.Erased}
	for _, m := range c.Members {
		out.Members = append(out.Members, conversationMemberJSON{Account: m.AccountID, Name: m.Name, Kind: string(m.Kind), ReadSeq: m.ReadSeq})
	}
	return out
}

func messageOut(m conversations.Message) messageJSON {
	out := messageJSON{ID: m.ID, Seq: m.Seq, Author: m.Author, Body: m.Body, CreatedAt: m.CreatedAt.UTC().Format(time.RFC3339Nano)}
	if a := m.Attachment; a != nil {
		out.Attachment = &attachmentJSON{ID: a.ID, Name: a.Name, MediaType: a.MediaType, Size: a.Size}
	}
	return out
}

// handleListConversations answers the requester's own conversations.
func handleListConversations(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if len(r.URL.Query()) > 0 {
			return errs.E(errs.Invalid, "this list takes no parameters")
		}
		list, err := d.Conversations.List(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		out := make([]conversationJSON, len(list))
		for i, c := range list {
			out[i] = conversationOut(c)
		}
		writeJSON(w, http.StatusOK, map[string]any{"conversations": out})
		return nil
	})
}

// handleListClients answers the participants the requester is assigned to
// as their care provider, with their conversations.
func handleListClients(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if len(r.URL.Query()) > 0 {
			return errs.E(errs.Invalid, "this list takes no parameters")
		}
		list, err := d.Conversations.Clients(r.Context(), actor(d, r), r.PathValue("org"))
		if err != nil {
			return err
		}
		type clientJSON struct {
			Participant   participantJSON `json:"participant"`
			Conversations []string        `json:"conversations"`
			Unread        int             `json:"unread"`
		}
		out := make([]clientJSON, len(list))
		for i, c := range list {
			out[i] = clientJSON{Participant: participantOut(c.Participant), Conversations: c.Conversations, Unread: c.Unread}
		}
		writeJSON(w, http.StatusOK, map[string]any{"clients": out})
		return nil
	})
}

// handleStartConversation begins a conversation about a participant:
// {"participant": pseudonym, "members": [account ids of their other care
// providers]}.
func handleStartConversation(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Participant string   `json:"participant"`
			Members     []string `json:"members"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		c, err := d.Conversations.Start(r.Context(), actor(d, r), r.PathValue("org"), req.Participant, req.Members)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, conversationOut(c))
		return nil
	})
}

// handleGetConversation answers a conversation and a page of its messages
// (?before= a message number, ?limit=).
func handleGetConversation(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		before, limit, err := pageQuery(r.URL.Query(), "before", conversations.MaxMessagesPage)
		if err != nil {
			return err
		}
		var seq int64
		if before != "" {
			if seq, err = strconv.ParseInt(before, 10, 64); err != nil || seq < 1 {
				return errs.E(errs.Invalid, "before must be a message number")
			}
		}
		c, msgs, err := d.Conversations.Get(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("conversation"), seq, limit)
		if err != nil {
			return err
		}
		out := make([]messageJSON, len(msgs))
		for i, m := range msgs {
			out[i] = messageOut(m)
		}
		writeJSON(w, http.StatusOK, map[string]any{"conversation": conversationOut(c), "messages": out})
		return nil
	})
}

// handleSendMessage adds a message: {"body": text}.
func handleSendMessage(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Body string `json:"body"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		m, err := d.Conversations.Send(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("conversation"), req.Body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, messageOut(m))
		return nil
	})
}

// handleSendAttachment sends the body as a file (?name= its name), judged
// by its content.
func handleSendAttachment(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		for k, v := range q {
			if k != "name" || len(v) != 1 {
				return errs.E(errs.Invalid, "an attachment takes one query parameter, name")
			}
		}
		m, err := d.Conversations.Attach(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("conversation"), q.Get("name"), r.Body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, messageOut(m))
		return nil
	})
}

// handleDownloadAttachment answers a file of a conversation, as an
// attachment that the browser does not sniff.
func handleDownloadAttachment(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		a, data, err := d.Conversations.Download(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("conversation"), r.PathValue("attachment"))
		if err != nil {
			return err
		}
		ct := a.MediaType
		if ct == "text/plain" {
			ct += "; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Name}))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data)
		return nil
	})
}

// handleMarkConversationRead marks the conversation read up to a message:
// {"up_to": seq}, or {} for all of it.
func handleMarkConversationRead(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			UpTo int64 `json:"up_to"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		c, err := d.Conversations.MarkRead(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("conversation"), req.UpTo)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, conversationOut(c))
		return nil
	})
}

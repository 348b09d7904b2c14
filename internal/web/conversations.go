package web

// Conversations between a care provider and their client (ACL-05,
// ACL-06): the requester's own conversations, a care provider's clients
// and a conversation begun with one of them, a conversation's messages
// with a form to write and one to send a file. Only the members reach
// them: everyone else is answered "not found" by the service, as over the
// API.

import (
	"bytes"
	"mime"
	"net/http"
	"net/url"
	"strconv"

	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/errs"
)

func conversationsPath(slug string) string { return "/orgs/" + url.PathEscape(slug) + "/conversations" }

func conversationPath(slug, id string) string {
	return conversationsPath(slug) + "/" + url.PathEscape(id)
}

var conversationNotices = map[string]string{
	"started":  "The conversation is begun. Only its members read it.",
	"sent":     "The message is sent.",
	"attached": "The file is sent.",
}

func conversationNotice(r *http.Request) string {
	if n, ok := conversationNotices[r.URL.Query().Get("done")]; ok {
		return n
	}
	return notice(r)
}

func conversationsPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a, slug := r.Context(), actor(d, r), r.PathValue("org")
	list, err := d.Conversations.List(ctx, a, slug)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	// A care provider's clients, to begin a conversation with; a client
	// has none.
	clients, err := d.Conversations.Clients(ctx, a, slug)
	if err != nil && !errs.Is(err, errs.NotFound) && !errs.Is(err, errs.Forbidden) {
		fail(w, r, d, err)
		return
	}
	data["Title"], data["Slug"], data["OrgName"] = "Conversations", slug, membershipIn(d, r, slug).Name
	data["Conversations"], data["Clients"] = list, clients
	data["Self"] = a.AccountID
	if data["Notice"] == nil {
		data["Notice"] = conversationNotice(r)
	}
	render(w, r, d.Log, status, "conversations", data)
}

func handleConversations(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conversationsPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

// handleStartConversation begins a conversation with a client, the
// requester and their care team being its members.
func handleStartConversation(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), conversationsPage, data)
			return
		}
		slug := r.PathValue("org")
		c, err := d.Conversations.Start(r.Context(), actor(d, r), slug, r.PostForm.Get("participant"), r.PostForm["member"])
		if err != nil {
			adminError(w, r, d, err, conversationsPage, data)
			return
		}
		http.Redirect(w, r, withDone(conversationPath(slug, c.ID), "started"), http.StatusSeeOther)
	})
}

// messageView is one message as the page shows it.
type messageView struct {
	conversations.Message
	Author string // the member's name
	Mine   bool
	When   string
}

func conversationPage(w http.ResponseWriter, r *http.Request, d Deps, status int, data map[string]any) {
	ctx, a, slug, id := r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("conversation")
	c, msgs, err := d.Conversations.Get(ctx, a, slug, id, 0, conversations.DefaultMessagesPage)
	if err != nil {
		fail(w, r, d, err)
		return
	}
	names := map[string]string{}
	for _, m := range c.Members {
		names[m.AccountID] = m.Name
	}
	views := make([]messageView, len(msgs))
	var last int64
	for i, m := range msgs {
		views[i] = messageView{Message: m, Author: names[m.Author], Mine: m.Author == a.AccountID,
			When: m.CreatedAt.UTC().Format("2006-01-02 15:04 UTC")}
		last = max(last, m.Seq)
	}
	// Seen on the page, the messages are read.
	if last > 0 && c.Unread > 0 {
		if _, err := d.Conversations.MarkRead(ctx, a, slug, id, last); err != nil {
			fail(w, r, d, err)
			return
		}
	}
	data["Title"], data["Slug"], data["Conversation"], data["Messages"] = "Conversation", slug, c, views
	data["Path"], data["Back"] = conversationPath(slug, id), conversationsPath(slug)
	if data["Notice"] == nil {
		data["Notice"] = conversationNotice(r)
	}
	render(w, r, d.Log, status, "conversation", data)
}

func handleConversation(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conversationPage(w, r, d, http.StatusOK, map[string]any{})
	})
}

func handleSendMessage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), conversationPage, data)
			return
		}
		slug, id := r.PathValue("org"), r.PathValue("conversation")
		if _, err := d.Conversations.Send(r.Context(), actor(d, r), slug, id, r.PostForm.Get("body")); err != nil {
			data["Body"] = r.PostForm.Get("body")
			adminError(w, r, d, err, conversationPage, data)
			return
		}
		http.Redirect(w, r, withDone(conversationPath(slug, id), "sent"), http.StatusSeeOther)
	})
}

// handleAttach sends a file in a conversation (multipart, one file
// "file"), read in memory, judged by its content by the service.
func handleAttach(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug, id := r.PathValue("org"), r.PathValue("conversation")
		_, body, name, err := uploadedFile(r, conversations.MaxAttachmentBytes)
		if err != nil {
			adminError(w, r, d, err, conversationPage, map[string]any{})
			return
		}
		if _, err := d.Conversations.Attach(r.Context(), actor(d, r), slug, id, name, bytes.NewReader(body)); err != nil {
			adminError(w, r, d, err, conversationPage, map[string]any{})
			return
		}
		http.Redirect(w, r, withDone(conversationPath(slug, id), "attached"), http.StatusSeeOther)
	})
}

// handleConversationFile downloads a file of a conversation: as an
// attachment, never shown in the page.
func handleConversationFile(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		att, data, err := d.Conversations.Download(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("conversation"), r.PathValue("attachment"))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		ct := att.MediaType
		if ct == "text/plain" {
			ct += "; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": att.Name}))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data)
	})
}

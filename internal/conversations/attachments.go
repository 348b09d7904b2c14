package conversations

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
)

// AttachmentTypes are the media types an attachment may have, judged by its
// content (forms.SniffFile), never by its name.
var AttachmentTypes = forms.FileTypes

func checkAttachmentName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "file"
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxAttachmentName || strings.ContainsAny(name, "/\\\"") ||
		strings.ContainsFunc(name, unicode.IsControl) {
		return "", errs.E(errs.Invalid, "a file's name is at most %d characters, without control characters, slashes or quotes", maxAttachmentName)
	}
	return name, nil
}

// readAttachment reads an attachment's content from body, at most
// MaxAttachmentBytes, and names its type by its content.
func readAttachment(body io.Reader) ([]byte, string, error) {
	data, err := io.ReadAll(io.LimitReader(body, MaxAttachmentBytes+1))
	if err != nil {
		if strings.Contains(err.Error(), "request body too large") {
			return nil, "", errs.E(errs.Invalid, "a file is at most %d bytes", MaxAttachmentBytes)
		}
		return nil, "", errs.Wrap(errs.Invalid, err, "the file could not be read")
	}
	if len(data) > MaxAttachmentBytes {
		return nil, "", errs.E(errs.Invalid, "a file is at most %d bytes", MaxAttachmentBytes)
	}
	if len(data) == 0 {
		return nil, "", errs.E(errs.Invalid, "the file is empty")
	}
	kind := forms.SniffFile(data)
	if kind == "text/plain" && isMarkup(data) {
		// HTML, SVG or XML passes as text, and is served as text (with
		// nosniff); a conversation has no need of it, so it is refused.
		kind = ""
	}
	if kind == "" {
		return nil, "", errs.E(errs.Invalid, "the file is none of %s (text without markup), by its content", strings.Join(AttachmentTypes, ", "))
	}
	return data, kind, nil
}

// Attach sends a file (name as its sender calls it, content from body) as
// the conversation's next message. Its content is judged by its first
// bytes: a file that is none of AttachmentTypes, or larger than
// MaxAttachmentBytes, is refused whatever its name says, and nothing is
// stored.
func (s *Service) Attach(ctx context.Context, a gate.Actor, slug, id, name string, body io.Reader) (Message, error) {
	name, err := checkAttachmentName(name)
	if err != nil {
		return Message{}, err
	}
	data, kind, err := readAttachment(body)
	if err != nil {
		return Message{}, err
	}
	var out Message
	err = s.Gate.Do(ctx, a, gate.Slug(slug), "conversation.attachment", func(t *gate.Tx) error {
		c, err := open(ctx, t, id)
		if err != nil {
			return err
		}
		if err := unlock(ctx, t, c); err != nil {
			return err
		}
		if c.Erased {
			return errErased
		}
		att := &Attachment{ID: ids.New(), Name: name, MediaType: kind, Size: int64(len(data))}
		sealedName, err := c.key.Seal(valueAt(c, att.ID, "attachment.name"), []byte(name))
		if err != nil {
			return err
		}
		sealed, err := c.key.Seal(valueAt(c, att.ID, "attachment.content"), data)
		if err != nil {
			return err
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO conversation_attachments (id, conversation_id, sealed_name, media_type, size, sealed)
			VALUES ($1, $2, $3, $4, $5, $6)`, att.ID, c.ID, sealedName, kind, att.Size, sealed); err != nil {
			return errs.Wrap(errs.Unavailable, err, "store the file")
		}
		t.Detail("attachment", att.ID)
		t.Detail("media_type", kind)
		t.Detail("size", strconv.FormatInt(att.Size, 10))
		out, err = add(ctx, t, c, "", att)
		return err
	})
	return out, err
}

// Download answers an attachment of a conversation with its content; the
// read is an audit event naming the participant.
func (s *Service) Download(ctx context.Context, a gate.Actor, slug, id, attachmentID string) (Attachment, []byte, error) {
	var (
		out  Attachment
		data []byte
	)
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "conversation.attachment.read", func(t *gate.Tx) error {
		c, err := open(ctx, t, id)
		if err != nil {
			return err
		}
		t.Detail("attachment", attachmentID)
		if !ids.Valid(attachmentID) {
			return errs.E(errs.NotFound, "file not found")
		}
		if err := unlock(ctx, t, c); err != nil {
			return err
		}
		if c.Erased {
			return errs.E(errs.NotFound, "file not found: it was erased with the participant's data")
		}
		var sealedName, sealed []byte
		out.ID = attachmentID
		err = t.QueryRowContext(ctx, `SELECT sealed_name, media_type, size, sealed FROM conversation_attachments
			WHERE id = $1 AND conversation_id = $2`, attachmentID, c.ID).Scan(&sealedName, &out.MediaType, &out.Size, &sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, "file not found")
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the file")
		}
		n, err := c.key.Open(ctx, valueAt(c, attachmentID, "attachment.name"), sealedName)
		if err != nil {
			return err
		}
		out.Name = string(n)
		data, err = c.key.Open(ctx, valueAt(c, attachmentID, "attachment.content"), sealed)
		return err
	})
	return out, data, err
}

// isMarkup reports whether text begins, after white space and a byte-order
// mark, with a tag: HTML, SVG or XML.
func isMarkup(text []byte) bool {
	t := bytes.TrimLeft(bytes.TrimPrefix(bytes.TrimLeft(text, " \t\r\n"), []byte("\xef\xbb\xbf")), " \t\r\n")
	return bytes.HasPrefix(t, []byte("<"))
}

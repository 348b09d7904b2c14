package web

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
)

// upload is a file sent with an entry page for one of its file fields.
type upload struct {
	name string
	data []byte
}

// maxFormValues bounds the text of a multipart entry page, as a plain
// page's body is bounded (the server's request limit).
const maxFormValues = 1 << 20

// readMultipart reads an entry page sent as multipart/form-data: its text
// values into r.PostForm, as ParseForm would, and its files ("upload.<field>")
// in memory, never on disk, each at most forms.MaxFileBytes. The server
// bounds the whole body.
func readMultipart(r *http.Request) (map[string]upload, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, errs.E(errs.Invalid, "the form could not be read")
	}
	values, files := url.Values{}, map[string]upload{}
	text := 0
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, tooLarge(err, "the form could not be read")
		}
		name := part.FormName()
		if field, ok := strings.CutPrefix(name, "upload."); ok && part.FileName() != "" {
			data, err := io.ReadAll(io.LimitReader(part, forms.MaxFileBytes+1))
			if err != nil {
				return nil, tooLarge(err, "the file could not be read")
			}
			if len(data) > forms.MaxFileBytes {
				return nil, errs.E(errs.Invalid, "a file is at most %d bytes", forms.MaxFileBytes)
			}
			if len(data) > 0 {
				files[field] = upload{name: part.FileName(), data: data}
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, int64(maxFormValues-text+1)))
		if err != nil {
			return nil, tooLarge(err, "the form could not be read")
		}
		if text += len(b); text > maxFormValues {
			return nil, errs.E(errs.Invalid, "the form's text is at most %d bytes", maxFormValues)
		}
		values.Add(name, string(b))
	}
	r.PostForm, r.Form = values, values
	return files, nil
}

func tooLarge(err error, msg string) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errs.E(errs.Invalid, "the form with its files is too large")
	}
	return errs.Wrap(errs.Invalid, err, msg)
}

func isMultipart(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "multipart/form-data"
}

// uploadFiles uploads the files of an entry page for its file fields
// (entries.Service.Upload: judged by their content, sealed) and answers
// each file's id by its field's key: "<field>", or "r.<group>.<row>.<field>"
// for a row of a repeating group. A file for anything else is refused.
func uploadFiles(r *http.Request, d Deps, p entries.Place, f *forms.Form, files map[string]upload) (map[string]string, error) {
	ids := map[string]string{}
	for key, up := range files {
		name, group := key, ""
		if rest, ok := strings.CutPrefix(key, "r."); ok {
			parts := strings.SplitN(rest, ".", 3)
			if len(parts) != 3 {
				return nil, errs.E(errs.Invalid, "%s is not a file field of this form", errs.Clip(key, 64))
			}
			if n, err := strconv.Atoi(parts[1]); err != nil || n < 1 {
				return nil, errs.E(errs.Invalid, "%s is not a file field of this form", errs.Clip(key, 64))
			}
			group, name = parts[0], parts[2]
		}
		fd, ok := f.FieldNamed(name)
		if !ok || fd.Type != forms.File || fd.Group != group {
			return nil, errs.E(errs.Invalid, "%s is not a file field of this form", errs.Clip(key, 64))
		}
		saved, err := d.Entries.Upload(r.Context(), actor(d, r), r.PathValue("org"), p, up.name, bytes.NewReader(up.data))
		if err != nil {
			return nil, err
		}
		ids[key] = saved.ID
	}
	return ids, nil
}

// handleEntryFile downloads a file of a participant (entries.Service.Download,
// the API's call): as an attachment, never shown in the page.
func handleEntryFile(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := entries.Place{StudyID: r.PathValue("study"), SiteID: r.PathValue("site"), Participant: r.PathValue("participant")}
		f, data, err := d.Entries.Download(r.Context(), actor(d, r), r.PathValue("org"), p, r.PathValue("file"))
		if err != nil {
			fail(w, r, d, err)
			return
		}
		ct := f.MediaType
		if ct == "text/plain" {
			ct += "; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Name}))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data)
	})
}

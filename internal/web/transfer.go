package web

// Moving a study in and out on its page: its forms from a REDCap data
// dictionary or a CDISC ODM file and back out as a REDCap dictionary, its
// entries imported in bulk (CSV or JSON lines, all or nothing), and a form
// version deleted with its entries (LIFE-01) or restored. The services
// check and store as they do for the API.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
)

// uploadedFile reads a page's multipart form: its "file" (at most limit
// bytes, in memory, with the name it was sent under) and the text fields
// sent before it.
func uploadedFile(r *http.Request, limit int64) (map[string]string, []byte, string, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, nil, "", errs.E(errs.Invalid, "choose a file")
	}
	fields := map[string]string{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, nil, "", errs.E(errs.Invalid, "choose a file")
		}
		if err != nil {
			return nil, nil, "", tooLarge(err, "the file could not be read")
		}
		if part.FormName() != "file" {
			b, err := io.ReadAll(io.LimitReader(part, 1024))
			if err != nil {
				return nil, nil, "", tooLarge(err, "the form could not be read")
			}
			fields[part.FormName()] = string(b)
			continue
		}
		data, err := io.ReadAll(io.LimitReader(part, limit+1))
		if err != nil {
			return nil, nil, "", tooLarge(err, "the file could not be read")
		}
		if int64(len(data)) > limit {
			return nil, nil, "", errs.E(errs.Invalid, "the file is larger than %d bytes", limit)
		}
		return fields, data, part.FileName(), nil
	}
}

// formsImported answers an import of forms on the study's page, with the
// report of what did not map.
func formsImported(w http.ResponseWriter, r *http.Request, d Deps, versions []forms.Version, report []forms.Note) {
	studyPage(w, r, d, http.StatusOK, map[string]any{"Imported": versions, "Report": report,
		"Notice": strconv.Itoa(len(versions)) + " forms are imported as drafts; publish each when it is right."})
}

// problemsOf adds a refusal's problems (each naming its field or line) to
// a page's data.
func problemsOf(err error, data map[string]any) {
	var pr *forms.Problems
	if errors.As(err, &pr) {
		data["Problems"] = pr.Fields
	}
}

func handleImportREDCapPage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		_, body, _, err := uploadedFile(r, forms.MaxDictionary)
		var dict forms.Dictionary
		if err == nil {
			dict, err = forms.ReadREDCap(bytes.NewReader(body))
		}
		var versions []forms.Version
		if err == nil {
			sum := sha256.Sum256(body)
			versions, _, err = d.Forms.Import(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), "redcap", hex.EncodeToString(sum[:]), dict.Forms, nil)
		}
		if err != nil {
			problemsOf(err, data)
			adminError(w, r, d, err, studyPage, data)
			return
		}
		formsImported(w, r, d, versions, dict.Report)
	})
}

func handleImportODMPage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		_, body, _, err := uploadedFile(r, forms.MaxODM)
		var meta forms.ODMImport
		if err == nil {
			meta, err = forms.ReadODM(bytes.NewReader(body))
		}
		var versions []forms.Version
		if err == nil {
			sum := sha256.Sum256(body)
			versions, _, err = d.Forms.Import(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), "odm", hex.EncodeToString(sum[:]), meta.Forms, meta.Visits)
		}
		if err != nil {
			problemsOf(err, data)
			adminError(w, r, d, err, studyPage, data)
			return
		}
		formsImported(w, r, d, versions, meta.Report)
	})
}

func handleExportREDCapPage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		study, err := d.Forms.ExportForms(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), "redcap")
		if err != nil {
			fail(w, r, d, err)
			return
		}
		var b bytes.Buffer
		if err := forms.WriteREDCap(&b, "", study.Forms); err != nil {
			fail(w, r, d, errs.Wrap(errs.Internal, err, "write the dictionary"))
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="data-dictionary.csv"`)
		w.WriteHeader(http.StatusOK)
		w.Write(b.Bytes())
	})
}

// handleImportEntriesPage imports entries in bulk: the format field comes
// before the file, which streams to the service as it arrives.
func handleImportEntriesPage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		mr, err := r.MultipartReader()
		if err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "choose a file"), studyPage, data)
			return
		}
		format := entries.FormatCSV
		for {
			part, err := mr.NextPart()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errs.E(errs.Invalid, "choose a file")
				}
				adminError(w, r, d, tooLarge(err, "the file could not be read"), studyPage, data)
				return
			}
			if part.FormName() == "format" {
				b, _ := io.ReadAll(io.LimitReader(part, 16))
				if string(b) == entries.FormatJSONL {
					format = entries.FormatJSONL
				}
				continue
			}
			if part.FormName() != "file" {
				continue
			}
			got, err := d.Entries.Import(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), format, part)
			if err != nil {
				problemsOf(err, data)
				adminError(w, r, d, err, studyPage, data)
				return
			}
			studyPage(w, r, d, http.StatusOK, map[string]any{"Notice": strconv.Itoa(got.Entries) + " entries (" +
				strconv.Itoa(got.Values) + " values) are imported; the file's SHA-256 is on the audit trail: " + got.SHA256})
			return
		}
	})
}

func versionOf(r *http.Request) (int, error) {
	v, err := strconv.Atoi(r.PathValue("version"))
	if err != nil || v < 1 {
		return 0, errs.E(errs.NotFound, "no such version")
	}
	return v, nil
}

func handleDeleteVersion(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := map[string]any{}
		if err := r.ParseForm(); err != nil {
			adminError(w, r, d, errs.E(errs.Invalid, "the form could not be read"), designerPage, data)
			return
		}
		v, err := versionOf(r)
		if err == nil {
			_, err = d.Entries.DeleteVersion(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"), v, r.PostForm.Get("reason"))
		}
		if err != nil {
			adminError(w, r, d, err, designerPage, data)
			return
		}
		http.Redirect(w, r, withDone(formPath(r.PathValue("org"), r.PathValue("study"), r.PathValue("form")), "version-deleted"), http.StatusSeeOther)
	})
}

func handleRestoreVersion(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := versionOf(r)
		if err == nil {
			_, err = d.Entries.RestoreVersion(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"), v)
		}
		if err != nil {
			adminError(w, r, d, err, designerPage, map[string]any{})
			return
		}
		http.Redirect(w, r, withDone(formPath(r.PathValue("org"), r.PathValue("study"), r.PathValue("form")), "version-restored"), http.StatusSeeOther)
	})
}

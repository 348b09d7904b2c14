package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
)

// The forms of a study (WEB-05): definitions as JSON documents, each
// version with its state and digest. A definition's body may be larger
// than other requests' (forms.MaxDefinition).

type formSummaryJSON struct {
	Key       string `json:"key"`
	Title     string `json:"title"`
	Published int    `json:"published_version,omitempty"`
	Draft     int    `json:"draft_version,omitempty"`
}

type formVersionJSON struct {
	Form        string      `json:"form"`
	Version     int         `json:"version"`
	State       string      `json:"state"`
	Title       string      `json:"title"`
	Digest      string      `json:"digest"`
	SavedBy     string      `json:"saved_by"`
	SavedAt     string      `json:"saved_at"`
	PublishedBy string      `json:"published_by,omitempty"`
	PublishedAt string      `json:"published_at,omitempty"`
	RetiredAt   string      `json:"retired_at,omitempty"`
	Definition  *forms.Form `json:"definition,omitempty"`
}

func micros(t int64) string {
	if t == 0 {
		return ""
	}
	return time.UnixMicro(t).UTC().Format(time.RFC3339)
}

func formVersionOut(v forms.Version) formVersionJSON {
	return formVersionJSON{Form: v.Key, Version: v.Version, State: string(v.State), Title: v.Title, Digest: v.Digest,
		SavedBy: v.SavedBy, SavedAt: micros(v.SavedAt), PublishedBy: v.PublishedBy, PublishedAt: micros(v.PublishedAt),
		RetiredAt: micros(v.RetiredAt), Definition: v.Form}
}

func handleListForms(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Forms.List(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"))
		if err != nil {
			return err
		}
		out := make([]formSummaryJSON, len(list))
		for i, f := range list {
			out[i] = formSummaryJSON{Key: f.Key, Title: f.Title, Published: f.Published, Draft: f.Draft}
		}
		writeJSON(w, http.StatusOK, map[string]any{"forms": out})
		return nil
	})
}

func handleCreateForm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var f forms.Form
		if err := decodeUpTo(r, &f, forms.MaxDefinition); err != nil {
			return err
		}
		v, err := d.Forms.Create(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), &f)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, formVersionOut(v))
		return nil
	})
}

func handleGetForm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		f, err := d.Forms.Form(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"))
		if err != nil {
			return err
		}
		versions := make([]formVersionJSON, len(f.Versions))
		for i, v := range f.Versions {
			versions[i] = formVersionOut(v)
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"form":     formSummaryJSON{Key: f.Summary.Key, Title: f.Summary.Title, Published: f.Summary.Published, Draft: f.Summary.Draft},
			"versions": versions,
		})
		return nil
	})
}

func handleSaveFormDraft(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			BaseDigest string     `json:"base_digest"`
			Form       forms.Form `json:"form"`
		}
		if err := decodeUpTo(r, &req, forms.MaxDefinition); err != nil {
			return err
		}
		v, err := d.Forms.SaveDraft(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"), req.BaseDigest, &req.Form)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, formVersionOut(v))
		return nil
	})
}

func handlePublishForm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Digest string `json:"digest"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if req.Digest == "" {
			return errs.E(errs.Invalid, "name the digest of the draft to publish (digest)")
		}
		v, err := d.Forms.Publish(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"), req.Digest)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, formVersionOut(v))
		return nil
	})
}

// formVersion reads the {version} of a path: a positive whole number.
func formVersion(r *http.Request) (int, error) {
	n, err := strconv.Atoi(r.PathValue("version"))
	if err != nil || n < 1 || n > 1_000_000 {
		return 0, errs.E(errs.NotFound, "form version not found")
	}
	return n, nil
}

func handleGetFormVersion(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		n, err := formVersion(r)
		if err != nil {
			return err
		}
		v, err := d.Forms.Version(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"), n)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, formVersionOut(v))
		return nil
	})
}

func handleRetireFormVersion(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		n, err := formVersion(r)
		if err != nil {
			return err
		}
		if err := d.Forms.Retire(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"), n); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// handleDeleteFormVersion deletes a form version (LIFE-01) for the reason
// in the body: with its entries, hidden and locked until restored or
// purged, or, without data, simply retired. 200 with how many entries went
// with it.
func handleDeleteFormVersion(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		n, err := formVersion(r)
		if err != nil {
			return err
		}
		var req struct {
			Reason string `json:"reason"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		out, err := d.Entries.DeleteVersion(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"), n, req.Reason)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionDeletionOut(out))
		return nil
	})
}

// handleRestoreFormVersion restores a deleted form version's entries
// within the organization's retention period.
func handleRestoreFormVersion(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		n, err := formVersion(r)
		if err != nil {
			return err
		}
		out, err := d.Entries.RestoreVersion(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("form"), n)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionDeletionOut(out))
		return nil
	})
}

func versionDeletionOut(v entries.VersionDeletion) map[string]any {
	return map[string]any{"form": v.Form, "version": v.Version, "entries": v.Entries}
}

func handleGetSchedule(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		visits, err := d.Forms.Schedule(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"visits": visits})
		return nil
	})
}

func handleSetSchedule(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Visits *[]forms.Visit `json:"visits"`
		}
		if err := decodeUpTo(r, &req, forms.MaxDefinition); err != nil {
			return err
		}
		if req.Visits == nil {
			return errs.E(errs.Invalid, "name the schedule's visits (visits; [] for none)")
		}
		visits, err := d.Forms.SetSchedule(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), *req.Visits)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"visits": visits})
		return nil
	})
}

// handleImportREDCap reads a REDCap data dictionary (text/csv) into the
// study's forms, as drafts, and answers them with the report.
func handleImportREDCap(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if ct := strings.ToLower(r.Header.Get("Content-Type")); !strings.HasPrefix(ct, "text/csv") {
			return errs.E(errs.Invalid, "send the dictionary as CSV (Content-Type: text/csv)")
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, forms.MaxDictionary+1))
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "the dictionary could not be read")
		}
		dict, err := forms.ReadREDCap(bytes.NewReader(body))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		versions, _, err := d.Forms.Import(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), "redcap", hex.EncodeToString(sum[:]), dict.Forms, nil)
		if err != nil {
			return err
		}
		writeImport(w, versions, false, dict.Report)
		return nil
	})
}

// writeImport answers an import: the forms' drafts, whether the schedule
// was set, and the report.
func writeImport(w http.ResponseWriter, versions []forms.Version, scheduled bool, report []forms.Note) {
	out := make([]formVersionJSON, len(versions))
	for i, v := range versions {
		out[i] = formVersionOut(v)
		out[i].Definition = nil
	}
	if report == nil {
		report = []forms.Note{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"forms": out, "schedule_set": scheduled, "report": report})
}

// handleImportODM reads the metadata of a CDISC ODM file (application/xml)
// into the study's forms, as drafts, and its visits into the study's
// schedule when it has none.
func handleImportODM(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		ct := strings.ToLower(r.Header.Get("Content-Type"))
		if !strings.HasPrefix(ct, "application/xml") && !strings.HasPrefix(ct, "text/xml") {
			return errs.E(errs.Invalid, "send the ODM file as XML (Content-Type: application/xml)")
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, forms.MaxODM+1))
		if err != nil {
			return errs.Wrap(errs.Invalid, err, "the ODM file could not be read")
		}
		meta, err := forms.ReadODM(bytes.NewReader(body))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		versions, scheduled, err := d.Forms.Import(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), "odm", hex.EncodeToString(sum[:]), meta.Forms, meta.Visits)
		if err != nil {
			return err
		}
		writeImport(w, versions, scheduled, meta.Report)
		return nil
	})
}

// handleExportREDCap answers the study's forms as a REDCap data
// dictionary.
func handleExportREDCap(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		study, err := d.Forms.ExportForms(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), "redcap")
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := forms.WriteREDCap(&b, "", study.Forms); err != nil {
			return errs.Wrap(errs.Internal, err, "write the dictionary")
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="data-dictionary.csv"`)
		w.WriteHeader(http.StatusOK)
		w.Write(b.Bytes())
		return nil
	})
}

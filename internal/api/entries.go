package api

import (
	"bufio"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/router"
)

// Entries (WEB-05): the values recorded about a participant, per visit
// (and the time a repeating visit was held) and form.

type entryJSON struct {
	Visit       string                         `json:"visit"`
	Repeat      int                            `json:"repeat"`
	Form        string                         `json:"form"`
	FormVersion int                            `json:"form_version,omitempty"`
	Status      string                         `json:"status"`
	Revision    int                            `json:"revision"`
	Values      map[string]string              `json:"values"`
	Rows        map[string][]map[string]string `json:"rows"`
	Sealed      []string                       `json:"sealed"`
	SavedBy     string                         `json:"saved_by,omitempty"`
	SavedAt     string                         `json:"saved_at,omitempty"`
}

func entryOut(e entries.Entry) entryJSON {
	return entryJSON{Visit: e.Visit, Repeat: e.Repeat, Form: e.Form, FormVersion: e.FormVersion, Status: string(e.Status),
		Revision: e.Revision, Values: e.Values, Rows: e.Rows, Sealed: e.Sealed, SavedBy: e.SavedBy, SavedAt: micros(e.SavedAt)}
}

// place reads the entry a path names; a repeat that is not a whole number
// from 1 is not found.
func place(r *http.Request) entries.Place {
	repeat, err := strconv.Atoi(r.PathValue("repeat"))
	if err != nil || repeat < 1 || repeat > entries.MaxRepeat {
		repeat = 0
	}
	return entries.Place{StudyID: r.PathValue("study"), SiteID: r.PathValue("site"), Participant: r.PathValue("participant"),
		Visit: r.PathValue("visit"), Repeat: repeat, Form: r.PathValue("form")}
}

func handleEntryGrid(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		grid, err := d.Entries.Grid(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant"))
		if err != nil {
			return err
		}
		type formJSON struct {
			Form     string `json:"form"`
			Status   string `json:"status"`
			Revision int    `json:"revision,omitempty"`
		}
		type visitJSON struct {
			Visit  string     `json:"visit"`
			Label  string     `json:"label"`
			Repeat int        `json:"repeat"`
			Forms  []formJSON `json:"forms"`
		}
		out := make([]visitJSON, len(grid))
		for i, v := range grid {
			out[i] = visitJSON{Visit: v.Visit, Label: v.Label, Repeat: v.Repeat, Forms: make([]formJSON, len(v.Forms))}
			for j, f := range v.Forms {
				out[i].Forms[j] = formJSON{Form: f.Form, Status: string(f.Status), Revision: f.Revision}
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"visits": out})
		return nil
	})
}

func handleGetEntry(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		e, err := d.Entries.Get(r.Context(), actor(d, r), r.PathValue("org"), place(r))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, entryOut(e))
		return nil
	})
}

func handleSaveEntry(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Revision int                            `json:"revision"`
			Values   map[string]string              `json:"values"`
			Rows     map[string][]map[string]string `json:"rows"`
			Complete bool                           `json:"complete"`
			Reason   string                         `json:"reason"`
		}
		if err := decodeUpTo(r, &req, maxEntryBody); err != nil {
			return err
		}
		e, err := d.Entries.Save(r.Context(), actor(d, r), r.PathValue("org"), place(r), entries.Save{
			Revision: req.Revision, Values: req.Values, Rows: req.Rows, Complete: req.Complete, Reason: req.Reason})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, entryOut(e))
		return nil
	})
}

// maxEntryBody bounds the body of a save: a form of 500 long texts fits.
const maxEntryBody = 512 << 10

func handleEntryHistory(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		revs, err := d.Entries.History(r.Context(), actor(d, r), r.PathValue("org"), place(r))
		if err != nil {
			return err
		}
		type changeJSON struct {
			Field   string  `json:"field"`
			Row     int     `json:"row,omitempty"`
			Value   *string `json:"value"`
			Sealed  bool    `json:"sealed,omitempty"`
			Removed bool    `json:"removed,omitempty"`
		}
		type revisionJSON struct {
			Revision    int          `json:"revision"`
			FormVersion int          `json:"form_version"`
			Status      string       `json:"status"`
			SavedBy     string       `json:"saved_by"`
			SavedAt     string       `json:"saved_at"`
			Reason      string       `json:"reason,omitempty"`
			Changes     []changeJSON `json:"changes"`
		}
		out := make([]revisionJSON, len(revs))
		for i, rv := range revs {
			out[i] = revisionJSON{Revision: rv.Revision, FormVersion: rv.FormVersion, Status: string(rv.Status), SavedBy: rv.SavedBy,
				SavedAt: micros(rv.SavedAt), Reason: rv.Reason, Changes: make([]changeJSON, len(rv.Changes))}
			for j, c := range rv.Changes {
				cj := changeJSON{Field: c.Field, Row: c.Row, Sealed: c.Sealed, Removed: c.Removed}
				if !c.Sealed && !c.Removed {
					v := c.Value
					cj.Value = &v
				}
				out[i].Changes[j] = cj
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"revisions": out})
		return nil
	})
}

// handleExportEntries streams the study's entries the requester may read,
// as CSV (one value a line), JSON lines or CDISC ODM (?format=csv|jsonl|odm).
func handleExportEntries(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		for k, v := range q {
			if k != "format" || len(v) != 1 {
				return errs.E(errs.Invalid, "an export takes one query parameter, format (csv, jsonl, odm or redcap)")
			}
		}
		format := q.Get("format")
		if format == "" {
			format = entries.FormatCSV
		}
		var out *bufio.Writer
		err := d.Entries.Export(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), format, func() (io.Writer, error) {
			ct := "text/csv; charset=utf-8"
			switch format {
			case entries.FormatJSONL:
				ct = "application/x-ndjson"
			case entries.FormatODM:
				ct = "application/xml"
			}
			w.Header().Set("Content-Type", ct)
			ext := format
			switch format {
			case entries.FormatODM:
				ext = "odm.xml"
			case entries.FormatREDCap:
				ext = "redcap.csv"
			}
			w.Header().Set("Content-Disposition", `attachment; filename="entries.`+ext+`"`)
			w.WriteHeader(http.StatusOK)
			out = bufio.NewWriterSize(router.Stream(w), 64<<10)
			return out, nil
		})
		if out != nil {
			if err != nil {
				d.Log.ErrorContext(r.Context(), "export interrupted", "err", err)
			}
			return out.Flush()
		}
		return err
	})
}

// handleImportEntries stores the new entries of a file in the export's
// layout: CSV (text/csv) or JSON lines (application/x-ndjson), all or
// nothing.
func handleImportEntries(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		format := ""
		switch ct := strings.ToLower(r.Header.Get("Content-Type")); {
		case strings.HasPrefix(ct, "text/csv"):
			format = entries.FormatCSV
		case strings.HasPrefix(ct, "application/x-ndjson"), strings.HasPrefix(ct, "application/jsonl"):
			format = entries.FormatJSONL
		default:
			return errs.E(errs.Invalid, "send the file as CSV (Content-Type: text/csv) or JSON lines (application/x-ndjson)")
		}
		got, err := d.Entries.Import(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), format, r.Body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"entries": got.Entries, "values": got.Values, "sha256": got.SHA256})
		return nil
	})
}

func handleDeleteEntry(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Reason string `json:"reason"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if err := d.Entries.Delete(r.Context(), actor(d, r), r.PathValue("org"), place(r), req.Reason); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

func handleRestoreEntry(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		e, err := d.Entries.Restore(r.Context(), actor(d, r), r.PathValue("org"), place(r))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, entryOut(e))
		return nil
	})
}

// handleMyRecords lists the signed-in participant's own records, where the
// portal finds their forms.
func handleMyRecords(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		list, err := d.Entries.Records(r.Context(), actor(d, r))
		if err != nil {
			return err
		}
		type recordJSON struct {
			Org         string `json:"org"`
			OrgName     string `json:"org_name"`
			Study       string `json:"study"`
			Site        string `json:"site"`
			Participant string `json:"participant"`
		}
		out := make([]recordJSON, len(list))
		for i, rec := range list {
			out[i] = recordJSON{Org: rec.Org, OrgName: rec.OrgName, Study: rec.StudyID, Site: rec.SiteID, Participant: rec.Participant}
		}
		writeJSON(w, http.StatusOK, map[string]any{"records": out})
		return nil
	})
}

// handleUploadFile stores the body as a file of the participant (?name= the
// file's name), for a file field of their entries.
func handleUploadFile(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		for k, v := range q {
			if k != "name" || len(v) != 1 {
				return errs.E(errs.Invalid, "an upload takes one query parameter, name")
			}
		}
		p := entries.Place{StudyID: r.PathValue("study"), SiteID: r.PathValue("site"), Participant: r.PathValue("participant")}
		f, err := d.Entries.Upload(r.Context(), actor(d, r), r.PathValue("org"), p, q.Get("name"), r.Body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, map[string]any{"file": f.ID, "name": f.Name, "media_type": f.MediaType, "size": f.Size, "sha256": f.SHA256})
		return nil
	})
}

// handleDownloadFile answers a file of the participant, as an attachment.
func handleDownloadFile(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		p := entries.Place{StudyID: r.PathValue("study"), SiteID: r.PathValue("site"), Participant: r.PathValue("participant")}
		f, data, err := d.Entries.Download(r.Context(), actor(d, r), r.PathValue("org"), p, r.PathValue("file"))
		if err != nil {
			return err
		}
		ct := f.MediaType
		if ct == "text/plain" {
			ct += "; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Name}))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data)
		return nil
	})
}

// handleAssignArm assigns a participant to an arm of the study
// (entries.Service.AssignArm), and answers the participant.
func handleAssignArm(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Arm *string `json:"arm"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if req.Arm == nil {
			return errs.E(errs.Invalid, "name the arm (arm; \"\" for none)")
		}
		p, err := d.Entries.AssignArm(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"),
			r.PathValue("participant"), *req.Arm)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, participantOut(p))
		return nil
	})
}

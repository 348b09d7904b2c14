package entries

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// Exports (LIFE-04): every value of a study's entries that the requester
// may read, one a line, streamed from one consistent read in constant
// memory: only the participants of the sites where they may read entries,
// only the fields their role sees there (a field hidden is absent, not
// blank), and a sensitive field's value only where a decrypt grant names
// it. An export needs a fresh confirmation of identity (ACL-09) and is
// audited before its first byte, and again with the count and SHA-256 of
// what was sent.

// Export formats.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
	// FormatODM is a CDISC ODM 1.3.2 file (Transactional): the study's
	// metadata, and every change of every value with its audit record.
	FormatODM = "odm"
)

// ExportColumns are the columns of a CSV export, one value a line.
var ExportColumns = []string{"participant", "site", "visit", "repeat", "form", "form_version", "field", "row", "value"}

// ErrExportRunning refuses a second export of one account while its first
// runs, or one more than a node runs at once.
var ErrExportRunning = errs.E(errs.RateLimited, "an export of yours is running already, or the server runs as many as it may; try again when it is done")

// MaxConcurrentExports is how many exports a node runs at once unless its
// service says otherwise (Service.MaxExports).
const MaxConcurrentExports = 2

// exports are the accounts whose export runs, of one service: a node runs
// one service for its pages and its API.
type exports struct {
	sync.Mutex
	by map[string]bool
}

func (s *Service) startExport(account string) (func(), error) {
	max := s.MaxExports
	if max <= 0 {
		max = MaxConcurrentExports
	}
	x := &s.exports
	x.Lock()
	defer x.Unlock()
	if x.by[account] || len(x.by) >= max {
		return nil, ErrExportRunning
	}
	if x.by == nil {
		x.by = map[string]bool{}
	}
	x.by[account] = true
	return func() {
		x.Lock()
		delete(x.by, account)
		x.Unlock()
	}, nil
}

// exportSite is what a requester may read at one site.
type exportSite struct {
	visible map[string]bool // form.field
	open    map[string]bool // form.field of sensitive values they may open
}

// Export streams the entries of a study the requester may read, in
// format, to the writer begin returns; begin is called once the request
// is authorized and on the trail, before the first byte.
func (s *Service) Export(ctx context.Context, a gate.Actor, slug, studyID, format string, begin func() (io.Writer, error)) error {
	if format != FormatCSV && format != FormatJSONL && format != FormatODM && format != FormatREDCap {
		return errs.E(errs.Invalid, "format must be csv, jsonl, odm or redcap")
	}
	var end func()
	defer func() {
		if end != nil {
			end()
		}
	}()
	return s.Gate.Do(ctx, a, gate.Slug(slug), "entry.export", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		if err := t.AuthorizeList(authz.EntryRead, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		study, err := orgs.StudyByID(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		if end, err = s.startExport(t.Subject.AccountID); err != nil {
			return err
		}
		sites, err := orgs.Sites(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		names, union, sensitive, err := studyForms(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		allowed := map[string]exportSite{}
		for _, site := range sites {
			r := authz.Resource{OrgID: org.ID, StudyID: studyID, SiteID: site.ID}
			if !t.Allowed(authz.EntryRead, r) {
				continue
			}
			visible, err := t.VisibleFields(ctx, authz.EntryRead, r, names)
			if err != nil {
				return err
			}
			granted, err := participants.GrantedFormFields(ctx, t, t.Subject.AccountID, org.ID, studyID, site.ID, s.now())
			if err != nil {
				return errs.Wrap(errs.Unavailable, err, "read decrypt grants")
			}
			es := exportSite{visible: map[string]bool{}, open: map[string]bool{}}
			for _, n := range visible {
				es.visible[n] = true
				if sensitive[n] && granted[n] {
					es.open[n] = true
				}
			}
			allowed[site.ID] = es
		}
		t.Detail("format", format)
		t.Detail("sites", strconv.Itoa(len(allowed)))
		if format == FormatREDCap {
			schedule, err := forms.Schedule(ctx, t, org.ID, studyID)
			if err != nil {
				return err
			}
			repeating := map[string]bool{}
			for _, v := range schedule {
				repeating[v.Key] = v.Repeating
			}
			t.Stream(func(q sqldb.Querier) (map[string]string, error) {
				return exportREDCap(ctx, t.StreamVault(), q, org.ID, studyID, union, repeating, allowed, begin)
			})
			return nil
		}
		if format == FormatODM {
			schedule, err := forms.Schedule(ctx, t, org.ID, studyID)
			if err != nil {
				return err
			}
			meta := forms.ODMStudy{OID: "S." + studyID, Name: study.Name, Visits: schedule, Forms: union}
			names := map[string]string{}
			for _, site := range sites {
				names[site.ID] = site.Name
			}
			t.Stream(func(q sqldb.Querier) (map[string]string, error) {
				return exportODM(ctx, t.StreamVault(), q, org.ID, meta, allowed, names, begin)
			})
			return nil
		}
		t.Stream(func(q sqldb.Querier) (map[string]string, error) {
			return exportFrom(ctx, t.StreamVault(), q, org.ID, studyID, format, allowed, begin)
		})
		return nil
	})
}

// sentHash digests what an export sends.
type sentHash struct{ hash.Hash }

func newSent() (*sentHash, int) { return &sentHash{sha256.New()}, 0 }

// sent is what the audit event records of what was sent.
func (h *sentHash) sent(n int) map[string]string {
	return map[string]string{"values": strconv.Itoa(n), "sha256": hex.EncodeToString(h.Sum(nil))}
}

// countingHash counts and hashes what passes to w.
type countingHash struct {
	w io.Writer
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func (c countingHash) Write(b []byte) (int, error) {
	c.h.Write(b)
	return c.w.Write(b)
}

func exportFrom(ctx context.Context, v *gate.Vault, q sqldb.Querier, orgID, studyID, format string, allowed map[string]exportSite, begin func() (io.Writer, error)) (map[string]string, error) {
	h := sha256.New()
	n := 0
	sent := func() map[string]string {
		return map[string]string{"values": strconv.Itoa(n), "sha256": hex.EncodeToString(h.Sum(nil))}
	}
	w, err := begin()
	if err != nil {
		return sent(), err
	}
	out := countingHash{w: w, h: h}
	var cw *csv.Writer
	var enc *json.Encoder
	if format == FormatCSV {
		cw = csv.NewWriter(out)
		if err := cw.Write(ExportColumns); err != nil {
			return sent(), err
		}
	} else {
		enc = json.NewEncoder(out)
	}
	// The visits' and forms' keys, few, by id; the values in the order of
	// the indexes, so that the read never sorts.
	keysOf := func(query string) (map[string]string, error) {
		rows, err := q.QueryContext(ctx, query, orgID, studyID)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var id, key string
			if err := rows.Scan(&id, &key); err != nil {
				return nil, errs.Wrap(errs.Unavailable, err, "read the entries")
			}
			out[id] = key
		}
		return out, rows.Err()
	}
	visitKeys, err := keysOf(`SELECT id, visit_key FROM visits WHERE org_id = $1 AND study_id = $2`)
	if err != nil {
		return sent(), err
	}
	formKeys, err := keysOf(`SELECT id, form_key FROM forms WHERE org_id = $1 AND study_id = $2`)
	if err != nil {
		return sent(), err
	}
	// One row an entry, its values packed (cells.go) in the order of field
	// and row, in the order of the index: the read never sorts, and a
	// driver steps one row for all the values of an entry.
	rows, err := q.QueryContext(ctx, `SELECT e.id, e.participant_id, e.site_id, e.visit_id, e.visit_repeat, e.form_id, e.form_version, e.cells
		FROM entries e
		WHERE e.org_id = $1 AND e.study_id = $2 AND `+live+`
		ORDER BY e.participant_id, e.visit_id, e.visit_repeat, e.form_id`, orgID, studyID)
	if err != nil {
		return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	defer rows.Close()
	type line struct {
		Participant string `json:"participant"`
		Site        string `json:"site"`
		Visit       string `json:"visit"`
		Repeat      int    `json:"repeat"`
		Form        string `json:"form"`
		FormVersion int    `json:"form_version"`
		Field       string `json:"field"`
		Row         int    `json:"row,omitempty"`
		Value       string `json:"value"`
	}
	// What a site's reader sees of a form, by field: the names of
	// exportSite's maps (form.field) are not built again for each value.
	type seen struct{ visible, open map[string]bool }
	type siteForm struct{ site, form string }
	views := map[siteForm]seen{}
	viewOf := func(site exportSite, k siteForm) seen {
		if sv, ok := views[k]; ok {
			return sv
		}
		sv := seen{visible: map[string]bool{}, open: map[string]bool{}}
		prefix := k.form + "."
		for n := range site.visible {
			if f, ok := strings.CutPrefix(n, prefix); ok {
				sv.visible[f] = true
				sv.open[f] = site.open[n]
			}
		}
		views[k] = sv
		return sv
	}
	var (
		l                        line
		entryID, visitID, formID string
		packed                   string
		repeat, version          string
		cells                    []packedCell
		record                   = make([]string, len(ExportColumns))
		rowNames                 = []string{"0"}
	)
	for rows.Next() {
		if err := rows.Scan(&entryID, &l.Participant, &l.Site, &visitID, &repeat, &formID, &version, &packed); err != nil {
			return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		site, ok := allowed[l.Site]
		if !ok {
			continue
		}
		l.Visit, l.Form = visitKeys[visitID], formKeys[formID]
		l.Repeat, _ = strconv.Atoi(repeat)
		l.FormVersion, _ = strconv.Atoi(version)
		sv := viewOf(site, siteForm{l.Site, l.Form})
		if cells, err = unpackCells(packed, cells); err != nil {
			return sent(), errs.Wrap(errs.Internal, err, "read the entries")
		}
		if !slices.IsSortedFunc(cells, compareCells) {
			slices.SortFunc(cells, compareCells)
		}
		for _, pc := range cells {
			l.Field, l.Row = pc.c.field, pc.c.row
			if !sv.visible[l.Field] {
				continue
			}
			switch {
			case pc.clear:
				l.Value = pc.value
			case pc.removed():
				continue
			case sv.open[l.Field]:
				sealed, err := pc.ciphertext()
				if err != nil {
					return sent(), errs.Wrap(errs.Internal, err, "read the entries")
				}
				b, err := v.Open(ctx, sealedAt(orgID, studyID, entryID, l.Form, pc.c), sealed)
				if err != nil {
					return sent(), err
				}
				l.Value = string(b)
			default:
				continue
			}
			if cw != nil {
				for len(rowNames) <= l.Row {
					rowNames = append(rowNames, strconv.Itoa(len(rowNames)))
				}
				record[0], record[1], record[2], record[3], record[4] = l.Participant, l.Site, l.Visit, repeat, l.Form
				record[5], record[6], record[7], record[8] = version, l.Field, rowNames[l.Row], l.Value
				err = cw.Write(record)
			} else {
				err = enc.Encode(l)
			}
			if err != nil {
				return sent(), fmt.Errorf("send the export: %w", err)
			}
			n++
		}
	}
	if err := rows.Err(); err != nil {
		return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return sent(), fmt.Errorf("send the export: %w", err)
		}
	}
	return sent(), nil
}

// studyForms reads every field of every version of every form of a study
// (form.field), which of them are sensitive, and each form with every
// field its versions had (the newest version's first), for an export.
func studyForms(ctx context.Context, q sqldb.Querier, orgID, studyID string) (names []string, union []*forms.Form, sensitive map[string]bool, err error) {
	list, err := forms.List(ctx, q, orgID, studyID)
	if err != nil {
		return nil, nil, nil, err
	}
	named := map[string]bool{}
	sensitive = map[string]bool{}
	for _, f := range list {
		versions, err := forms.Versions(ctx, q, orgID, studyID, f.Key)
		if err != nil {
			return nil, nil, nil, err
		}
		var merged *forms.Form
		for _, v := range versions {
			if v.State == forms.Draft {
				continue
			}
			full, err := forms.VersionOf(ctx, q, orgID, studyID, f.Key, v.Version)
			if err != nil {
				return nil, nil, nil, err
			}
			if merged == nil {
				merged = full.Form
			} else {
				merged = mergeFields(merged, full.Form)
			}
			for _, fd := range full.Form.Fields {
				name := f.Key + "." + fd.Name
				if !named[name] {
					names, named[name] = append(names, name), true
				}
				if fd.Sensitive {
					sensitive[name] = true
				}
			}
		}
		if merged == nil {
			// Only a draft: no value is saved under it, but the
			// schedule may name the form.
			cur, err := forms.VersionOf(ctx, q, orgID, studyID, f.Key, 0)
			if err != nil {
				return nil, nil, nil, err
			}
			merged = cur.Form
		}
		union = append(union, merged)
	}
	return names, union, sensitive, nil
}

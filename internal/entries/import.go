package entries

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
)

// Bulk import (WEB-05): new entries from a file in the export's layout,
// one value a line (CSV with the export's header, or JSON lines), each
// entry's lines together. The whole file is checked, every entry against
// its form's published version, and stored only if every line is good:
// all or nothing, in one transaction, one audit event naming the file's
// SHA-256 and its counts. A refusal names each bad line, up to
// MaxImportProblems of them. An import adds entries; one that exists
// already is refused (a change needs its reason, entry by entry).

// MaxImportProblems bounds the problems a refused import names.
const MaxImportProblems = 1000

// importLine is one value of a file.
type importLine struct {
	Participant string `json:"participant"`
	Site        string `json:"site"`
	Visit       string `json:"visit"`
	Repeat      int    `json:"repeat"`
	Form        string `json:"form"`
	FormVersion int    `json:"form_version"`
	Field       string `json:"field"`
	Row         int    `json:"row"`
	Value       string `json:"value"`
	// status is a REDCap form's _complete (2 complete, else incomplete);
	// empty, the entry is complete when its required fields hold values.
	status string
}

// lineReader reads a file's values one by one, with their line numbers.
type lineReader interface {
	next() (importLine, int, error) // io.EOF at the end
}

type csvLines struct {
	r    *csv.Reader
	line int
}

func (c *csvLines) next() (importLine, int, error) {
	rec, err := c.r.Read()
	c.line++
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return importLine{}, c.line, fmt.Errorf("not CSV: %s", pe.Err)
		}
		return importLine{}, c.line, err
	}
	if len(rec) != len(ExportColumns) {
		return importLine{}, c.line, fmt.Errorf("a line has %d columns, not %d", len(rec), len(ExportColumns))
	}
	l := importLine{Participant: rec[0], Site: rec[1], Visit: rec[2], Form: rec[4], Field: rec[6], Value: rec[8]}
	var err1, err2 error
	l.Repeat, err1 = strconv.Atoi(rec[3])
	l.Row, err2 = strconv.Atoi(rec[7])
	if err1 != nil || err2 != nil {
		return l, c.line, errors.New("repeat and row are whole numbers")
	}
	return l, c.line, nil
}

type jsonLines struct {
	s    *bufio.Scanner
	line int
}

func (j *jsonLines) next() (importLine, int, error) {
	for {
		if !j.s.Scan() {
			if err := j.s.Err(); err != nil {
				return importLine{}, j.line + 1, fmt.Errorf("not JSON lines: %w", err)
			}
			return importLine{}, j.line, io.EOF
		}
		j.line++
		b := strings.TrimSpace(j.s.Text())
		if b == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(b))
		dec.DisallowUnknownFields()
		var l importLine
		if err := dec.Decode(&l); err != nil {
			return importLine{}, j.line, errors.New("not a value of the export's layout (participant, site, visit, repeat, form, field, row, value)")
		}
		if l.Repeat == 0 {
			l.Repeat = 1
		}
		return l, j.line, nil
	}
}

// Imported is what an import stored.
type Imported struct {
	Entries, Values int
	SHA256          string
}

// Import reads a file of new entries for a study (format csv or jsonl) and
// stores them all, or refuses naming every bad line.
func (s *Service) Import(ctx context.Context, a gate.Actor, slug, studyID, format string, body io.Reader) (Imported, error) {
	var out Imported
	h := sha256.New()
	in := io.TeeReader(body, h)
	var lines lineReader
	var flat *redcapLines
	switch format {
	case FormatCSV:
		r := csv.NewReader(in)
		r.FieldsPerRecord = -1
		header, err := r.Read()
		switch {
		case err == nil && len(header) >= len(redcapLead) && slices.Equal(header[:len(redcapLead)], redcapLead):
			flat = &redcapLines{r: r, header: slices.Clone(header), line: 1}
			lines = flat
		case err != nil || strings.Join(header, ",") != strings.Join(ExportColumns, ","):
			return out, errs.E(errs.Invalid, "the file's first line must be the export's header (%s) or REDCap's flat records' (%s, …)",
				strings.Join(ExportColumns, ","), strings.Join(redcapLead, ","))
		default:
			r.ReuseRecord = true
			lines = &csvLines{r: r, line: 1}
		}
	case FormatJSONL:
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		lines = &jsonLines{s: sc}
	default:
		return out, errs.E(errs.Invalid, "format must be csv or jsonl")
	}
	err := s.Gate.DoAlone(ctx, a, gate.Slug(slug), "entry.import", func(t *gate.Tx) error {
		org := t.Org()
		t.Object("study", studyID)
		if err := t.AuthorizeList(authz.EntryWrite, authz.Resource{OrgID: org.ID, StudyID: studyID}); err != nil {
			return err
		}
		if _, err := orgs.StudyByID(ctx, t, org.ID, studyID); err != nil {
			return err
		}
		im := &importer{s: s, t: t, ctx: ctx, org: org.ID, study: studyID, forms: map[string]*forms.Version{},
			places: map[string]scheduled{}, people: map[string]string{}, existing: map[string]map[string]bool{}, seen: map[string]int{}, sites: map[string]bool{}}
		sites, err := orgs.Sites(ctx, t, org.ID, studyID)
		if err != nil {
			return err
		}
		for _, site := range sites {
			r := authz.Resource{OrgID: org.ID, StudyID: studyID, SiteID: site.ID}
			im.sites[site.ID] = t.Allowed(authz.EntryWrite, r)
		}
		if im.rules, err = fieldRules(ctx, t, org.ID, studyID); err != nil {
			return err
		}
		if flat != nil {
			// Which form each field of REDCap's flat records belongs to:
			// the first published form of the study that has it.
			flat.fieldForm, flat.computed = map[string]string{}, map[string]bool{}
			list, err := forms.List(ctx, t, org.ID, studyID)
			if err != nil {
				return err
			}
			for _, f := range list {
				v, err := im.form(f.Key)
				if err != nil {
					return err
				}
				if v == nil {
					continue
				}
				for _, fd := range v.Form.Fields {
					if _, taken := flat.fieldForm[fd.Name]; !taken {
						flat.fieldForm[fd.Name] = f.Key
						flat.computed[fd.Name] = fd.Type == forms.Calculated
					}
				}
			}
			format = FormatREDCap
		}
		if err := im.run(lines); err != nil {
			return err
		}
		if len(im.problems) > 0 {
			p := &forms.Problems{Fields: im.problems}
			return errs.Wrap(errs.Invalid, p, fmt.Sprintf("the file was not imported: %s", p.Error()))
		}
		// What was read to the end is hashed whole.
		if _, err := io.Copy(io.Discard, in); err != nil {
			return errs.Wrap(errs.Invalid, err, "the file could not be read")
		}
		out = Imported{Entries: im.entries, Values: im.values, SHA256: hex.EncodeToString(h.Sum(nil))}
		t.Detail("format", format)
		t.Detail("sha256", out.SHA256)
		t.Detail("entries", strconv.Itoa(out.Entries))
		t.Detail("values", strconv.Itoa(out.Values))
		return nil
	})
	return out, err
}

type importer struct {
	s        *Service
	t        *gate.Tx
	ctx      context.Context
	org      string
	study    string
	forms    map[string]*forms.Version  // form key -> newest published version
	rules    authz.FieldRules           // the study's field visibility, read once
	places   map[string]scheduled       // visit/form -> its ids
	people   map[string]string          // participant -> site, of those found
	sites    map[string]bool            // site -> may write there
	seen     map[string]int             // entry -> first line
	existing map[string]map[string]bool // participant -> their entries stored before (visit id|repeat|form id)
	batch    []importedEntry            // checked, not yet written
	problems []forms.FieldError
	entries  int
	values   int
}

func (im *importer) bad(line int, field, format string, args ...any) {
	if len(im.problems) < MaxImportProblems {
		im.problems = append(im.problems, forms.FieldError{Row: line, Field: errs.Clip(field, 64), Error: fmt.Sprintf(format, args...)})
	}
}

// pending is one entry being read: its lines' values.
type pending struct {
	key    string
	first  int
	status string // as the file gives it (importLine.status)
	place  Place
	values map[string]string
	rows   map[string][]map[string]string
	lineOf map[string]int // field or group.field#row -> line
}

func (im *importer) run(lines lineReader) error {
	var cur *pending
	for {
		l, line, err := lines.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if strings.Contains(err.Error(), "request body too large") {
				return errs.E(errs.Invalid, "the file is larger than an import takes")
			}
			im.bad(line, "", "%s", err)
			if strings.HasPrefix(err.Error(), "not ") {
				break // the rest cannot be read
			}
			continue
		}
		key := l.Participant + "|" + l.Visit + "|" + strconv.Itoa(l.Repeat) + "|" + l.Form
		if cur == nil || cur.key != key {
			if cur != nil {
				if err := im.store(cur); err != nil {
					return err
				}
			}
			if first, again := im.seen[key]; again {
				im.bad(line, l.Field, "the values of this entry began on line %d: keep an entry's lines together", first)
				cur = nil
				continue
			}
			im.seen[key] = line
			cur = &pending{key: key, first: line, status: l.status, place: Place{StudyID: im.study, SiteID: l.Site, Participant: l.Participant,
				Visit: l.Visit, Repeat: l.Repeat, Form: l.Form}, values: map[string]string{}, rows: map[string][]map[string]string{}, lineOf: map[string]int{}}
		}
		if l.Site != cur.place.SiteID {
			im.bad(line, l.Field, "the entry's lines name two sites")
			continue
		}
		if l.Row < 0 || l.Row > 100 {
			im.bad(line, l.Field, "row is 0 (outside a repeating group) or 1 to 100")
			continue
		}
		v, err := im.form(l.Form)
		if err != nil {
			return err
		}
		if v == nil {
			im.bad(line, l.Field, "the study has no published form %s", errs.Clip(l.Form, 64))
			continue
		}
		fd, ok := v.Form.FieldNamed(l.Field)
		switch {
		case !ok:
			im.bad(line, l.Field, "not a field of form %s", l.Form)
		case (fd.Group == "") != (l.Row == 0):
			im.bad(line, l.Field, "row is 0 for a field outside a repeating group, and from 1 in one")
		case l.Row == 0:
			if _, dup := cur.values[l.Field]; dup {
				im.bad(line, l.Field, "the field is given twice for this entry")
			}
			cur.values[l.Field], cur.lineOf[l.Field] = l.Value, line
		default:
			rows := cur.rows[fd.Group]
			for len(rows) < l.Row {
				rows = append(rows, map[string]string{})
			}
			rows[l.Row-1][l.Field] = l.Value
			cur.rows[fd.Group] = rows
			cur.lineOf[l.Field+"#"+strconv.Itoa(l.Row)] = line
		}
		im.values++
	}
	if cur != nil {
		if err := im.store(cur); err != nil {
			return err
		}
	}
	return im.flush()
}

// form is the newest published version of a form of the study, or nil.
func (im *importer) form(key string) (*forms.Version, error) {
	if v, ok := im.forms[key]; ok {
		return v, nil
	}
	v, err := forms.VersionOf(im.ctx, im.t, im.org, im.study, key, 0)
	switch {
	case errs.Is(err, errs.NotFound):
		im.forms[key] = nil
		return nil, nil
	case err != nil:
		return nil, err
	}
	if v.State != forms.Published {
		im.forms[key] = nil
		return nil, nil
	}
	im.forms[key] = &v
	return &v, nil
}

// store checks one entry whole and, while the file has no problem, writes
// it.
func (im *importer) store(p *pending) error {
	line := p.first
	v, err := im.form(p.place.Form)
	if err != nil || v == nil {
		return err // the form's absence is named on each line
	}
	if allowed, ok := im.sites[p.place.SiteID]; !ok || !allowed {
		im.bad(line, "", "site %s is not a site of this study where you enter data", errs.Clip(p.place.SiteID, 32))
		return nil
	}
	site, ok := im.people[p.place.Participant]
	if !ok {
		pt, err := participants.ByPseudonym(im.ctx, im.t, im.org, p.place.Participant)
		switch {
		case errs.Is(err, errs.NotFound):
			site = ""
		case err != nil:
			return err
		default:
			if pt.StudyID == im.study {
				site = pt.SiteID
			}
		}
		im.people[p.place.Participant] = site
	}
	if site != p.place.SiteID {
		im.bad(line, "", "participant %s is not enrolled at site %s of this study", errs.Clip(p.place.Participant, 32), errs.Clip(p.place.SiteID, 32))
		return nil
	}
	pk := p.place.Visit + "|" + p.place.Form
	sc, ok := im.places[pk]
	if !ok {
		sc, err = find(im.ctx, im.t, im.org, p.place, true)
		if err != nil {
			if errs.Is(err, errs.NotFound) || errs.Is(err, errs.Invalid) {
				im.bad(line, "", "%s", errs.SafeMessage(err))
				return nil
			}
			return err
		}
		im.places[pk] = sc
	}
	if !sc.repeating && p.place.Repeat != 1 {
		im.bad(line, "", "visit %s does not repeat: repeat is 1", p.place.Visit)
		return nil
	}
	stored, ok := im.existing[p.place.Participant]
	if !ok {
		// The participant's entries stored before the import, read
		// once (the file's own are in im.seen).
		stored = map[string]bool{}
		// (Visit and form ids are of this study: no need to name the
		// organization, and the unique key's index serves.)
		rows, err := im.t.QueryContext(im.ctx, `SELECT visit_id, visit_repeat, form_id FROM entries WHERE participant_id = $1`,
			p.place.Participant)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		for rows.Next() {
			var visit, form string
			var repeat int
			if err := rows.Scan(&visit, &repeat, &form); err != nil {
				rows.Close()
				return errs.Wrap(errs.Unavailable, err, "read the entries")
			}
			stored[visit+"|"+strconv.Itoa(repeat)+"|"+form] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		im.existing[p.place.Participant] = stored
	}
	n := 0
	if stored[sc.visitID+"|"+strconv.Itoa(p.place.Repeat)+"|"+sc.formID] {
		n = 1
	}
	if n > 0 {
		im.bad(line, "", "this entry exists already; an import adds new entries")
		return nil
	}
	hidden := hiddenFrom(im.t, im.rules, authz.EntryWrite, p.place.resource(im.org), v.Form)
	save := Save{Values: p.values, Rows: p.rows}
	if len(v.Form.Outside()) > 0 {
		// Its conditions read the visit's other forms, which this file
		// may have given already.
		if err := im.flush(); err != nil {
			return err
		}
	}
	outside, err := outsideValues(im.ctx, im.t, im.org, p.place, sc.visitID, v.Form.Outside())
	if err != nil {
		return err
	}
	next, err := validate(v.Form, save, hidden, nil, outside)
	if err != nil {
		var pr *forms.Problems
		if !errors.As(err, &pr) {
			return err
		}
		for _, fe := range pr.Fields {
			at := p.lineOf[fe.Field]
			if fe.Row > 0 {
				at = p.lineOf[fe.Field+"#"+strconv.Itoa(fe.Row)]
			}
			if at == 0 {
				at = line
			}
			im.bad(at, fe.Field, "%s", fe.Error)
		}
		return nil
	}
	if err := checkFiles(im.ctx, im.t, im.org, p.place, v.Form, next); err != nil {
		var pr *forms.Problems
		if !errors.As(err, &pr) {
			return err
		}
		for _, fe := range pr.Fields {
			im.bad(line, fe.Field, "%s", fe.Error)
		}
		return nil
	}
	if len(im.problems) > 0 {
		return nil // nothing will be kept: no need to write
	}
	status := Complete
	switch p.status {
	case "2":
	case "":
		if _, missing := v.Form.ValidateAs("", p.values, true); len(missing) > 0 {
			status = Incomplete
		}
	default:
		status = Incomplete
	}
	id, now, account := ids.New(), sqldb.Now(), im.t.Subject.AccountID
	// The entry's values, packed: one row for the entry and one for its
	// first revision, whatever its number of values.
	cells := make([]packedCell, 0, len(next))
	for c, val := range next {
		pc := packedCell{c: c, value: val, clear: true}
		if fd, _ := v.Form.FieldNamed(c.field); fd != nil && fd.Sensitive {
			b, err := im.t.Vault().Seal(im.ctx, keys.StudyScope(im.org, im.study), sealedAt(im.org, im.study, id, p.place.Form, c), []byte(val))
			if err != nil {
				return err
			}
			pc = sealedCell(c, b)
		}
		cells = append(cells, pc)
	}
	im.batch = append(im.batch, importedEntry{id: id, place: p.place, sc: sc, version: v.Version, status: status, account: account, now: now, cells: packCells(cells)})
	if len(im.batch) >= importBatch {
		if err := im.flush(); err != nil {
			return err
		}
	}
	im.entries++
	return nil
}

// importedEntry is an entry checked and packed, to be written with others.
type importedEntry struct {
	id      string
	place   Place
	sc      scheduled
	version int
	status  Status
	account string
	now     int64
	cells   string
}

// importBatch is the entries an import writes to a statement (13
// parameters each, within SQLite's and PostgreSQL's bounds): a statement
// a row costs more than the row, on PostgreSQL above all.
const importBatch = 100

// An imported entry is at its first revision, whose reason is the import.
const (
	firstRevision = 1
	importReason  = "bulk import"
)

// flush writes the entries checked so far, each with its first revision
// (its values, as the change), while the file has no problem.
func (im *importer) flush() error {
	batch := im.batch
	im.batch = im.batch[:0]
	if len(batch) == 0 || len(im.problems) > 0 {
		return nil
	}
	var e, r strings.Builder
	e.WriteString(`INSERT INTO entries (id, org_id, study_id, site_id, participant_id, visit_id, visit_repeat,
		form_id, form_version, status, revision, created_by, created_at, saved_by, saved_at, cells) VALUES `)
	r.WriteString(`INSERT INTO entry_revisions (entry_id, revision, form_version, status, saved_by, saved_at, reason, changes) VALUES `)
	// Each parameter appears once, in order, so that SQLite binds them
	// by position (sqldb.Placeholder): the account and the time are given
	// twice, as creator and as saver.
	param := sqldb.Placeholder(im.t.Dialect())
	eargs := make([]any, 0, 16*len(batch))
	rargs := make([]any, 0, 8*len(batch))
	for i, x := range batch {
		if i > 0 {
			e.WriteString(", ")
			r.WriteString(", ")
		}
		eargs = sqldb.AppendRow(&e, param, eargs, x.id, im.org, im.study, x.place.SiteID, x.place.Participant, x.sc.visitID, x.place.Repeat,
			x.sc.formID, x.version, string(x.status), firstRevision, x.account, x.now, x.account, x.now, x.cells)
		rargs = sqldb.AppendRow(&r, param, rargs, x.id, firstRevision, x.version, string(x.status), x.account, x.now, importReason, x.cells)
	}
	if _, err := im.t.ExecContext(im.ctx, e.String(), eargs...); err != nil {
		return errs.Wrap(errs.Unavailable, err, "store the entries")
	}
	if _, err := im.t.ExecContext(im.ctx, r.String(), rargs...); err != nil {
		return errs.Wrap(errs.Unavailable, err, "store the entries' history")
	}
	return nil
}

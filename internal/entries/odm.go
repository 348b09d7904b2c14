package entries

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/forms"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// mergeFields is newer with the fields (and groups) of older that newer
// no longer has, after its own.
func mergeFields(newer, older *forms.Form) *forms.Form {
	out := *newer
	out.Fields = slices.Clone(newer.Fields)
	out.Groups = slices.Clone(newer.Groups)
	for _, g := range older.Groups {
		if !slices.ContainsFunc(out.Groups, func(x forms.Group) bool { return x.Name == g.Name }) {
			out.Groups = append(out.Groups, g)
		}
	}
	for _, fd := range older.Fields {
		if !slices.ContainsFunc(out.Fields, func(x forms.Field) bool { return x.Name == fd.Name }) {
			out.Fields = append(out.Fields, fd)
		}
	}
	return &out
}

// exportODM writes a CDISC ODM 1.3.2 Transactional file: the study's
// metadata, the users and sites its audit records name, and every change
// of every value the requester may read, each with its audit record (who,
// where, when, why).
func exportODM(ctx context.Context, v *gate.Vault, q sqldb.Querier, orgID string, meta forms.ODMStudy, allowed map[string]exportSite,
	siteNames map[string]string, begin func() (io.Writer, error)) (map[string]string, error) {
	studyID := meta.OID[len("S."):]
	h := sha256.New()
	n := 0
	sent := func() map[string]string {
		return map[string]string{"values": strconv.Itoa(n), "sha256": hex.EncodeToString(h.Sum(nil))}
	}
	w, err := begin()
	if err != nil {
		return sent(), err
	}
	x := &forms.XMLWriter{W: countingHash{w: w, h: h}}
	groupOf := map[string]string{} // form.field -> group
	for _, f := range meta.Forms {
		for _, fd := range f.Fields {
			groupOf[f.Key+"."+fd.Name] = fd.Group
		}
	}
	x.Raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.Open("ODM", false, "xmlns", forms.ODMNamespace, "FileType", "Transactional", "FileOID", "F."+ids.New(),
		"CreationDateTime", time.Now().UTC().Format(time.RFC3339), "ODMVersion", "1.3.2", "SourceSystem", "Custodia")
	forms.WriteODMStudy(x, meta)

	// The users who saved what the file holds, and the sites.
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT r.saved_by FROM entry_revisions r JOIN entries e ON e.id = r.entry_id
		WHERE e.org_id = $1 AND e.study_id = $2 AND `+live+` ORDER BY r.saved_by`, orgID, studyID)
	if err != nil {
		return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		users = append(users, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	sites := make([]string, 0, len(allowed))
	for id := range allowed {
		sites = append(sites, id)
	}
	slices.Sort(sites)
	x.Open("AdminData", false, "StudyOID", meta.OID)
	for _, u := range users {
		x.Open("User", true, "OID", "U."+u)
	}
	for _, s := range sites {
		x.Open("Location", false, "OID", "L."+s, "Name", siteNames[s], "LocationType", "Site")
		x.Open("MetaDataVersionRef", true, "StudyOID", meta.OID, "MetaDataVersionOID", forms.ODMMetaDataVersion,
			"EffectiveDate", time.Now().UTC().Format("2006-01-02"))
		x.Close("Location")
	}
	x.Close("AdminData")

	x.Open("ClinicalData", false, "StudyOID", meta.OID, "MetaDataVersionOID", forms.ODMMetaDataVersion)
	changes, err := q.QueryContext(ctx, `SELECT e.participant_id, e.site_id, vi.visit_key, e.visit_repeat, f.form_key, e.id,
		  r.revision, r.saved_by, r.saved_at, coalesce(r.reason, ''), c.field, c.row_no, c.value, c.sealed
		FROM entries e
		JOIN visits vi ON vi.id = e.visit_id
		JOIN forms f ON f.id = e.form_id
		JOIN entry_revisions r ON r.entry_id = e.id
		JOIN entry_changes c ON c.entry_id = r.entry_id AND c.revision = r.revision
		WHERE e.org_id = $1 AND e.study_id = $2 AND `+live+`
		ORDER BY e.participant_id, vi.position, e.visit_repeat, f.position, e.id, r.revision, c.row_no, c.field`, orgID, studyID)
	if err != nil {
		return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	defer changes.Close()
	var (
		subject, event, entry, group string
		revision                     = -1
		open                         = [4]bool{} // SubjectData, StudyEventData, FormData, ItemGroupData
		tags                         = [4]string{"SubjectData", "StudyEventData", "FormData", "ItemGroupData"}
	)
	closeFrom := func(level int) {
		for i := len(open) - 1; i >= level; i-- {
			if open[i] {
				x.Close(tags[i])
				open[i] = false
			}
		}
	}
	for changes.Next() {
		var (
			participant, site, visit, form, entryID, savedBy, reason, field string
			repeat, rev, row                                                int
			savedAt                                                         int64
			value                                                           *string
			sealed                                                          []byte
		)
		if err := changes.Scan(&participant, &site, &visit, &repeat, &form, &entryID, &rev, &savedBy, &savedAt, &reason,
			&field, &row, &value, &sealed); err != nil {
			return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
		}
		s, ok := allowed[site]
		name := form + "." + field
		if !ok || !s.visible[name] {
			continue
		}
		text, removed := "", value == nil && sealed == nil
		switch {
		case removed:
		case value != nil:
			text = *value
		case s.open[name]:
			b, err := v.Open(ctx, sealedAt(orgID, studyID, entryID, form, cell{field, row}), sealed)
			if err != nil {
				return sent(), err
			}
			text = string(b)
		default:
			continue
		}
		if participant != subject {
			closeFrom(0)
			x.Open("SubjectData", false, "SubjectKey", participant)
			x.Open("SiteRef", true, "LocationOID", "L."+site)
			subject, event, entry, open[0] = participant, "", "", true
		}
		if key := visit + "#" + strconv.Itoa(repeat); key != event {
			closeFrom(1)
			x.Open("StudyEventData", false, "StudyEventOID", "SE."+visit, "StudyEventRepeatKey", strconv.Itoa(repeat))
			event, entry, open[1] = key, "", true
		}
		if entryID != entry {
			closeFrom(2)
			x.Open("FormData", false, "FormOID", "F."+form)
			entry, group, revision, open[2] = entryID, "", -1, true
		}
		g := groupOf[name]
		if key := g + "#" + strconv.Itoa(row); key != group || rev != revision {
			closeFrom(3)
			attrs := []string{"ItemGroupOID", forms.ODMGroupOID(form, g)}
			if g != "" {
				attrs = append(attrs, "ItemGroupRepeatKey", strconv.Itoa(row))
			}
			x.Open("ItemGroupData", false, attrs...)
			group, revision, open[3] = key, rev, true
		}
		if removed {
			x.Open("ItemData", false, "ItemOID", forms.ODMItemOID(form, field), "TransactionType", "Remove")
		} else {
			x.Open("ItemData", false, "ItemOID", forms.ODMItemOID(form, field), "TransactionType", "Upsert", "Value", text)
		}
		x.Open("AuditRecord", false)
		x.Open("UserRef", true, "UserOID", "U."+savedBy)
		x.Open("LocationRef", true, "LocationOID", "L."+site)
		x.Element("DateTimeStamp", time.UnixMicro(savedAt).UTC().Format(time.RFC3339))
		if reason != "" {
			x.Element("ReasonForChange", reason)
		}
		x.Close("AuditRecord")
		x.Close("ItemData")
		n++
		if x.Err != nil {
			return sent(), fmt.Errorf("send the export: %w", x.Err)
		}
	}
	if err := changes.Err(); err != nil {
		return sent(), errs.Wrap(errs.Unavailable, err, "read the entries")
	}
	closeFrom(0)
	x.Close("ClinicalData")
	x.Close("ODM")
	x.Raw("\n")
	if x.Err != nil {
		return sent(), fmt.Errorf("send the export: %w", x.Err)
	}
	return sent(), nil
}

package retention

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/consent"
	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sessions"
	"github.com/custodia/custodia/internal/sso"
)

// A data subject's bundle (LIFE-02): everything the instance holds about
// one participant, and their own account if they have one, as one zip:
//
//	subject.json                 the document below
//	consents/<kind>-<id>.pdf     each signed consent or withdrawal, as signed
//	files/<id>/<name>            each file of their entries
//	attachments/<id>/<name>      each file of their conversations
//
// It is built in the export's transaction, where its sealed values open,
// in memory (at most MaxBundleBytes, a person's data), so that its digest
// is on the audit event before its first byte is sent; the shell then
// streams it to the requester.

// BundleFormat names the layout of subject.json.
const BundleFormat = "custodia.subject-export/1"

// MaxBundleBytes bounds a bundle; a larger one is refused, and the
// operator exports it from a copy of the data.
var MaxBundleBytes int64 = 512 << 20

// MaxConcurrentBundles bounds the bundles a server builds at once: each is
// held in memory until it is sent.
var MaxConcurrentBundles int32 = 2

var building atomic.Int32

// Bundle is a data subject's export, ready to send.
type Bundle struct {
	// Name is the file name to offer: subject-<pseudonym>.zip.
	Name string
	// SHA256 is the digest of the whole zip, as the audit event names it.
	SHA256 string
	// Counts says how many of each kind of data it holds.
	Counts map[string]int
	data   []byte
}

// Size is the zip's length in bytes.
func (b *Bundle) Size() int64 { return int64(len(b.data)) }

// WriteTo writes the zip to w.
func (b *Bundle) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b.data)
	return int64(n), err
}

// subjectDocument is subject.json.
type subjectDocument struct {
	Format        string                              `json:"format"`
	ExportedAt    time.Time                           `json:"exported_at"`
	ExportedBy    string                              `json:"exported_by"`
	Organization  organizationPart                    `json:"organization"`
	Participant   participantPart                     `json:"participant"`
	Identity      participants.SubjectIdentity        `json:"identity"`
	Account       *accountPart                        `json:"account"`
	Entries       []entries.SubjectEntry              `json:"entries"`
	Files         []entries.SubjectFile               `json:"files"`
	Consents      []consent.SubjectConsent            `json:"consents"`
	Conversations []conversations.SubjectConversation `json:"conversations"`
	AccessLog     []accessPart                        `json:"access_log"`
	Retention     retentionPart                       `json:"retention"`
}

type organizationPart struct {
	ID   string `json:"id"`
	Slug string `json:"slug"`
	Name string `json:"name"`
}

type participantPart struct {
	Pseudonym  string     `json:"pseudonym"`
	StudyID    string     `json:"study_id"`
	Study      string     `json:"study"`
	SiteID     string     `json:"site_id"`
	Site       string     `json:"site"`
	Status     string     `json:"status"`
	Arm        string     `json:"arm,omitempty"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	ErasedAt   *time.Time `json:"erased_at,omitempty"`
}

type accountPart struct {
	accounts.SubjectAccount
	Roles         []rolePart                `json:"roles"`
	SecondFactors map[string]int            `json:"second_factors"`
	Sessions      []sessions.SubjectSession `json:"sessions"`
	AccessTokens  []sessions.SubjectToken   `json:"access_tokens"`
	SingleSignOn  []sso.Link                `json:"single_sign_on"`
}

type rolePart struct {
	Role    string    `json:"role"`
	StudyID string    `json:"study_id,omitempty"`
	SiteID  string    `json:"site_id,omitempty"`
	GivenAt time.Time `json:"given_at"`
}

type accessPart struct {
	Time         time.Time `json:"time"`
	Organization string    `json:"organization"`
	Who          string    `json:"who"`
	Roles        []string  `json:"roles,omitempty"`
	Action       string    `json:"action"`
	What         string    `json:"what"`
	Refused      bool      `json:"refused,omitempty"`
}

type retentionPart struct {
	Notice *Notice `json:"notice,omitempty"`
	Hold   *Hold   `json:"hold,omitempty"`
}

// zipSink writes a bundle's files, bounded by MaxBundleBytes.
type zipSink struct {
	zw   *zip.Writer
	out  *bytes.Buffer
	at   time.Time
	seen map[string]bool
}

// put adds a file to the zip. Its path is made by the domain packages
// from ids and names checked when stored; one that could leave the zip's
// folder is refused all the same.
func (z *zipSink) put(name string, content []byte) error {
	if name == "" || path.Clean(name) != name || strings.HasPrefix(name, "/") || strings.HasPrefix(name, "../") || strings.Contains(name, "\\") {
		return errs.E(errs.Internal, "a bundle's file has an unsafe name")
	}
	if z.seen[name] {
		return errs.E(errs.Internal, "a bundle names a file twice")
	}
	z.seen[name] = true
	if int64(z.out.Len())+int64(len(content)) > MaxBundleBytes {
		return errs.E(errs.Invalid, "everything about this person is more than %d MiB, too much to export at once; ask the instance's operator", MaxBundleBytes>>20)
	}
	w, err := z.zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: z.at})
	if err != nil {
		return errs.Wrap(errs.Internal, err, "write the bundle")
	}
	if _, err := w.Write(content); err != nil {
		return errs.Wrap(errs.Internal, err, "write the bundle")
	}
	return nil
}

// Export builds the bundle of everything the instance holds about one
// participant of a site (named as a request names them) and about their
// own account (LIFE-02). It needs subject.export (organization admins)
// and a fresh confirmation (ACL-09); those who read the participant but
// may not export are told so (403), anyone else finds nothing. It is a
// security event naming the participant (in their access log) with the
// counts of what it holds and the zip's SHA-256 and size. Reading it
// leaves the data as they are: erasing them afterwards is
// participants.Service.Erase (LIFE-03).
func (s *Service) Export(ctx context.Context, a gate.Actor, slug, studyID, siteID, pseudonym string) (*Bundle, error) {
	var out *Bundle
	counted := false
	defer func() {
		if counted {
			building.Add(-1)
		}
	}()
	err := s.Gate.Do(ctx, a, gate.Slug(slug), "subject.export", func(t *gate.Tx) error {
		out = nil
		p, err := participants.AuthorizeSubject(ctx, t, studyID, siteID, pseudonym)
		if err != nil {
			return err
		}
		if err := t.RequireStepUp(); err != nil {
			return err
		}
		t.Security()
		// Counted once allowed, so that refused requests take no one's
		// turn.
		counted = true
		if building.Add(1) > MaxConcurrentBundles {
			return errs.E(errs.RateLimited, "other exports of a person's data are being built on this server; try again in a minute")
		}
		b, err := s.build(ctx, t, p)
		if err != nil {
			return err
		}
		for _, k := range []string{"entries", "files", "consents", "conversations", "messages", "access_log", "account"} {
			t.Detail(k+"_count", strconv.Itoa(b.Counts[k]))
		}
		t.Detail("bytes", strconv.FormatInt(b.Size(), 10))
		t.Detail("sha256", b.SHA256)
		out = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// build reads everything about p in t and makes the zip.
func (s *Service) build(ctx context.Context, t *gate.Tx, p participants.Participant) (*Bundle, error) {
	now := s.now().UTC()
	var buf bytes.Buffer
	z := &zipSink{zw: zip.NewWriter(&buf), out: &buf, at: now, seen: map[string]bool{}}
	org := t.Org()
	doc := subjectDocument{Format: BundleFormat, ExportedAt: now, ExportedBy: t.Subject.AccountID,
		Organization: organizationPart{ID: org.ID, Slug: org.Slug, Name: org.Name},
		Participant: participantPart{Pseudonym: p.Pseudonym, StudyID: p.StudyID, SiteID: p.SiteID, Status: p.Status, Arm: p.Arm,
			EnrolledAt: p.CreatedAt.UTC()}}
	if !p.ErasedAt.IsZero() {
		at := p.ErasedAt.UTC()
		doc.Participant.ErasedAt = &at
	}
	st, err := orgs.StudyByID(ctx, t, org.ID, p.StudyID)
	if err != nil {
		return nil, err
	}
	site, err := orgs.SiteByID(ctx, t, org.ID, p.SiteID)
	if err != nil {
		return nil, err
	}
	doc.Participant.Study, doc.Participant.Site = st.Name, site.Name
	if doc.Identity, err = participants.ReadSubjectIdentity(ctx, t, p); err != nil {
		return nil, err
	}
	self := ""
	rels, err := authz.RelationsOfParticipant(ctx, t, org.ID, p.Pseudonym)
	if err != nil {
		return nil, err
	}
	for _, r := range rels {
		if r.Kind == authz.RelationSelf {
			self = r.AccountID
		}
	}
	if self != "" {
		if doc.Account, err = accountOf(ctx, t, org.ID, self); err != nil {
			return nil, err
		}
	}
	if doc.Entries, doc.Files, err = entries.ReadSubjectEntries(ctx, t, p, z.put); err != nil {
		return nil, err
	}
	if doc.Files == nil {
		doc.Files = []entries.SubjectFile{}
	}
	if doc.Consents, err = consent.ReadSubjectConsents(ctx, t, p, z.put); err != nil {
		return nil, err
	}
	if doc.Conversations, err = conversations.ReadSubjectConversations(ctx, t, p, z.put); err != nil {
		return nil, err
	}
	log, err := auditadmin.SubjectAccessLog(ctx, t, p, self)
	if err != nil {
		return nil, err
	}
	doc.AccessLog = make([]accessPart, 0, len(log))
	for _, a := range log {
		doc.AccessLog = append(doc.AccessLog, accessPart{Time: a.Time.UTC(), Organization: a.Organization, Who: a.Who,
			Roles: a.Roles, Action: a.Action, What: a.What, Refused: a.Refused})
	}
	if n, found, err := noticeOf(ctx, t, org.ID, Participant, p.Pseudonym); err != nil {
		return nil, err
	} else if found {
		doc.Retention.Notice = &Notice{Kind: Participant, Subject: p.Pseudonym, StudyID: p.StudyID, SiteID: p.SiteID,
			LastActiveAt: time.UnixMicro(n.last).UTC(), NoticedAt: time.UnixMicro(n.noticed).UTC(), DueAt: time.UnixMicro(n.due).UTC()}
	}
	if hs, err := holds(ctx, t, org.ID); err != nil {
		return nil, err
	} else {
		for _, h := range hs {
			if h.Kind == Participant && h.Subject == p.Pseudonym {
				doc.Retention.Hold = &h
			}
		}
	}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "write the bundle")
	}
	if err := z.put("subject.json", append(js, '\n')); err != nil {
		return nil, err
	}
	if err := z.zw.Close(); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "write the bundle")
	}
	messages := 0
	for _, c := range doc.Conversations {
		messages += len(c.Messages)
	}
	sum := sha256.Sum256(buf.Bytes())
	b := &Bundle{Name: "subject-" + p.Pseudonym + ".zip", SHA256: hex.EncodeToString(sum[:]), data: buf.Bytes(),
		Counts: map[string]int{"entries": len(doc.Entries), "files": len(doc.Files), "consents": len(doc.Consents),
			"conversations": len(doc.Conversations), "messages": messages, "access_log": len(doc.AccessLog)}}
	if doc.Account != nil {
		b.Counts["account"] = 1
	}
	return b, nil
}

// accountOf reads what the participant's own account holds about them:
// the account, its roles here, its second factors (kinds and counts,
// never a secret), its sessions and access tokens.
func accountOf(ctx context.Context, t *gate.Tx, orgID, accountID string) (*accountPart, error) {
	acc, err := accounts.ReadSubject(ctx, t, accountID)
	if err != nil {
		return nil, err
	}
	out := &accountPart{SubjectAccount: acc, Roles: []rolePart{}}
	as, err := authz.AssignmentsOf(ctx, t, orgID, accountID)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		out.Roles = append(out.Roles, rolePart{Role: string(a.Role), StudyID: a.StudyID, SiteID: a.SiteID,
			GivenAt: time.UnixMicro(a.CreatedAt).UTC()})
	}
	m, err := mfa.SummaryOf(ctx, t, accountID)
	if err != nil {
		return nil, err
	}
	out.SecondFactors = map[string]int{"totp": b2i(m.TOTP), "sms": b2i(m.SMS), "passkeys": m.Passkeys,
		"recovery_codes_left": m.RecoveryCodesLeft}
	if out.Sessions, out.AccessTokens, err = sessions.ReadSubject(ctx, t, accountID); err != nil {
		return nil, err
	}
	if out.SingleSignOn, err = sso.Links(ctx, t, accountID); err != nil {
		return nil, err
	}
	if out.SingleSignOn == nil {
		out.SingleSignOn = []sso.Link{}
	}
	return out, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

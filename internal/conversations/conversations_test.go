package conversations_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit/auditadmin"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/conversations"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// fixture is an organization with a care program of two sites, its people,
// two participants of the first site with accounts of their own, and a
// second organization, over a clinical and an identity database of one
// dialect.
//
//	carer, carer2  care providers of P (carer also of Q)
//	carer3         a care provider of the same site, of no one
//	client         P's own account; client2 Q's
type fixture struct {
	clinical, identity *sqldb.DB
	g                  *gate.Gate
	svc                *conversations.Service
	org, other         orgs.Organization
	care               orgs.Study
	siteA, siteB       orgs.Site
	p, q               participants.Participant

	admin, manager, studyAdmin, carer, carer2, carer3, client, client2, otherAdmin gate.Actor
}

func setup(t *testing.T, d sqldb.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{clinical: sqldbtest.Open(t, d, sqldb.Clinical), identity: sqldbtest.Open(t, d, sqldb.Identity)}
	kek, err := keys.OpenLocalKEK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.g = gate.New(gate.Config{
		Clinical: f.clinical, Keys: &keys.Keyring{DB: f.clinical, KEK: kek},
		Identity: f.identity, IdentityKeys: &keys.Keyring{DB: f.identity, KEK: kek},
	})
	f.svc = &conversations.Service{Gate: f.g}
	err = f.clinical.InTx(ctx, func(tx *sql.Tx) error {
		n := 0
		enrol := func(org orgs.Organization, role authz.Role, studyID, siteID string) gate.Actor {
			n++
			if err != nil {
				return gate.Actor{}
			}
			var acc accounts.Account
			acc, _, err = accounts.Enrol(ctx, tx, string(role)+"-"+string(rune('a'+n))+"@care.example", "Person "+string(rune('A'+n)),
				authz.Assignment{OrgID: org.ID, Role: role, StudyID: studyID, SiteID: siteID})
			return gate.Actor{AccountID: acc.ID, SessionID: "s-" + acc.ID, RemoteAddr: "192.0.2.7"}
		}
		if f.org, err = orgs.CreateOrganization(ctx, tx, "Care Org", "careorg"); err != nil {
			return err
		}
		if f.care, err = orgs.CreateStudy(ctx, tx, f.org.ID, orgs.KindCareProgram, "Coaching"); err != nil {
			return err
		}
		if f.siteA, err = orgs.CreateSite(ctx, tx, f.org.ID, f.care.ID, "Team A"); err != nil {
			return err
		}
		if f.siteB, err = orgs.CreateSite(ctx, tx, f.org.ID, f.care.ID, "Team B"); err != nil {
			return err
		}
		if f.other, err = orgs.CreateOrganization(ctx, tx, "Other Org", "otherorg"); err != nil {
			return err
		}
		f.admin = enrol(f.org, authz.OrgAdmin, "", "")
		f.manager = enrol(f.org, authz.OrgManager, "", "")
		f.studyAdmin = enrol(f.org, authz.StudyAdmin, f.care.ID, "")
		f.carer = enrol(f.org, authz.CareProvider, "", f.siteA.ID)
		f.carer2 = enrol(f.org, authz.CareProvider, "", f.siteA.ID)
		f.carer3 = enrol(f.org, authz.CareProvider, "", f.siteA.ID)
		f.client = enrol(f.org, authz.Participant, "", f.siteA.ID)
		f.client2 = enrol(f.org, authz.Participant, "", f.siteA.ID)
		f.otherAdmin = enrol(f.other, authz.OrgAdmin, "", "")
		if err != nil {
			return err
		}
		if f.p, err = participants.Create(ctx, tx, f.org.ID, f.care.ID, f.siteA.ID); err != nil {
			return err
		}
		if f.q, err = participants.Create(ctx, tx, f.org.ID, f.care.ID, f.siteA.ID); err != nil {
			return err
		}
		for _, r := range []struct {
			p    participants.Participant
			a    gate.Actor
			kind authz.RelationKind
		}{
			{f.p, f.carer, authz.RelationCare}, {f.p, f.carer2, authz.RelationCare}, {f.q, f.carer, authz.RelationCare},
			{f.p, f.client, authz.RelationSelf}, {f.q, f.client2, authz.RelationSelf},
		} {
			if _, err := authz.Relate(ctx, tx, authz.Relation{OrgID: f.org.ID, ParticipantID: r.p.Pseudonym, AccountID: r.a.AccountID, Kind: r.kind}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func count(t *testing.T, db *sqldb.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// start begins a conversation of carer with P, with a message and a file.
func (f *fixture) start(t *testing.T) (conversations.Conversation, conversations.Message) {
	t.Helper()
	ctx := context.Background()
	c, err := f.svc.Start(ctx, f.carer, f.org.Slug, f.p.Pseudonym, nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, err := f.svc.Send(ctx, f.carer, f.org.Slug, c.ID, "How did the week go?"); err != nil {
		t.Fatalf("send: %v", err)
	}
	m, err := f.svc.Attach(ctx, f.carer, f.org.Slug, c.ID, "plan.pdf", strings.NewReader("%PDF-1.7\nweekly plan\n"))
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	return c, m
}

func TestACL06_OnlyMembersReadOrWriteAConversation(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		c, att := f.start(t)
		if len(c.Members) != 2 || c.Members[0].AccountID != f.carer.AccountID || c.Members[1].AccountID != f.client.AccountID ||
			c.Members[1].Kind != conversations.Client {
			t.Fatalf("members: %+v; want the care provider and the participant's own account", c.Members)
		}
		// The members read and write it.
		for _, a := range []gate.Actor{f.carer, f.client} {
			got, msgs, err := f.svc.Get(ctx, a, f.org.Slug, c.ID, 0, 0)
			if err != nil || got.Participant != f.p.Pseudonym || len(msgs) != 2 || msgs[0].Body != "How did the week go?" ||
				msgs[1].Attachment == nil || msgs[1].Attachment.Name != "plan.pdf" {
				t.Fatalf("a member reads: %+v %+v, %v", got, msgs, err)
			}
		}
		if _, err := f.svc.Send(ctx, f.client, f.org.Slug, c.ID, "Better, thank you."); err != nil {
			t.Fatalf("the participant answers: %v", err)
		}
		messages := count(t, f.clinical, `SELECT count(*) FROM conversation_messages`)

		// Everyone else: not found, on every route, and nothing stored.
		outsiders := map[string]struct {
			a    gate.Actor
			slug string
		}{
			"organization admin":                     {f.admin, f.org.Slug},
			"organization manager":                   {f.manager, f.org.Slug},
			"study admin (assigns care providers)":   {f.studyAdmin, f.org.Slug},
			"care provider of P, not a member":       {f.carer2, f.org.Slug},
			"care provider of no one":                {f.carer3, f.org.Slug},
			"participant of another record":          {f.client2, f.org.Slug},
			"admin of another organization":          {f.otherAdmin, f.other.Slug},
			"admin of another organization, by slug": {f.otherAdmin, f.org.Slug},
			"the member, by another organization":    {f.carer, f.other.Slug},
		}
		for name, o := range outsiders {
			notFound := func(what string, err error) {
				t.Helper()
				if !errs.Is(err, errs.NotFound) {
					t.Errorf("%s: %s: %v, want not found", name, what, err)
				}
			}
			_, _, err := f.svc.Get(ctx, o.a, o.slug, c.ID, 0, 0)
			notFound("read", err)
			_, err = f.svc.Send(ctx, o.a, o.slug, c.ID, "let me in")
			notFound("send", err)
			_, err = f.svc.Attach(ctx, o.a, o.slug, c.ID, "x.png", bytes.NewReader(pngHeader))
			notFound("attach", err)
			_, _, err = f.svc.Download(ctx, o.a, o.slug, c.ID, att.Attachment.ID)
			notFound("download", err)
			_, err = f.svc.MarkRead(ctx, o.a, o.slug, c.ID, 0)
			notFound("mark read", err)
			if o.a != f.carer2 { // one of P's care providers may begin one of their own
				_, err = f.svc.Start(ctx, o.a, o.slug, f.p.Pseudonym, nil)
				notFound("start", err)
			}
			if list, err := f.svc.List(ctx, o.a, o.slug); err == nil && len(list) > 0 {
				t.Errorf("%s lists %d conversations", name, len(list))
			}
		}
		for _, a := range []gate.Actor{f.admin, f.manager, f.studyAdmin} {
			if _, err := f.svc.List(ctx, a, f.org.Slug); !errs.Is(err, errs.NotFound) {
				t.Errorf("list as a role that reads no conversation: %v, want refused", err)
			}
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM conversation_messages`); n != messages {
			t.Errorf("%d messages after the refusals, want %d", n, messages)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM conversations`); n != 1 {
			t.Errorf("%d conversations after the refusals, want 1", n)
		}
		// The refusals are on the trail, as refusals about the conversation.
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'conversation.read' AND outcome = 'denied'
			AND actor_account = $1 AND object_id = $2`, f.admin.AccountID, c.ID); n != 1 {
			t.Errorf("%d denied reads by the admin on the trail, want 1", n)
		}
		// A care provider whose assignment ends loses the conversation.
		err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
			_, err := authz.Unrelate(ctx, tx, f.org.ID, f.p.Pseudonym, f.carer.AccountID, authz.RelationCare)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 0); !errs.Is(err, errs.NotFound) {
			t.Errorf("read after the care assignment ended: %v, want not found", err)
		}
		if list, err := f.svc.List(ctx, f.carer, f.org.Slug); err != nil || len(list) != 0 {
			t.Errorf("list after the care assignment ended: %+v, %v", list, err)
		}
	})
}

var pngHeader = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

func TestACL05_AConversationIsWithTheCareTeamOnly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		// A member outside the participant's care team: refused, nothing
		// stored (nor a key made).
		keysBefore := count(t, f.identity, `SELECT count(*) FROM data_keys`)
		for name, team := range map[string][]string{
			"care provider of no one":       {f.carer3.AccountID},
			"participant of another record": {f.client2.AccountID},
			"organization admin":            {f.admin.AccountID},
		} {
			if _, err := f.svc.Start(ctx, f.carer, f.org.Slug, f.p.Pseudonym, team); !errs.Is(err, errs.Invalid) {
				t.Errorf("with the %s: %v, want invalid", name, err)
			}
		}
		// A care provider of someone else, about P; a participant about
		// another's record; the participant alone.
		if _, err := f.svc.Start(ctx, f.carer3, f.org.Slug, f.p.Pseudonym, []string{f.carer.AccountID}); !errs.Is(err, errs.NotFound) {
			t.Errorf("start by a care provider of no one: %v, want not found", err)
		}
		if _, err := f.svc.Start(ctx, f.client2, f.org.Slug, f.p.Pseudonym, []string{f.carer.AccountID}); !errs.Is(err, errs.NotFound) {
			t.Errorf("start by another participant: %v, want not found", err)
		}
		if _, err := f.svc.Start(ctx, f.client, f.org.Slug, f.p.Pseudonym, nil); !errs.Is(err, errs.Invalid) {
			t.Errorf("start by the participant with no care provider: %v, want invalid", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM conversations`) + count(t, f.clinical, `SELECT count(*) FROM conversation_members`); n != 0 {
			t.Errorf("%d rows stored by refused starts", n)
		}
		if n := count(t, f.identity, `SELECT count(*) FROM data_keys`); n != keysBefore {
			t.Errorf("%d keys after refused starts, want %d", n, keysBefore)
		}
		// The participant begins one with two of their care providers.
		c, err := f.svc.Start(ctx, f.client, f.org.Slug, f.p.Pseudonym, []string{f.carer.AccountID, f.carer2.AccountID})
		if err != nil || len(c.Members) != 3 {
			t.Fatalf("start by the participant: %+v, %v", c, err)
		}
		for _, a := range []gate.Actor{f.carer, f.carer2} {
			if _, err := f.svc.Send(ctx, a, f.org.Slug, c.ID, "Noted."); err != nil {
				t.Errorf("a member of the care team writes: %v", err)
			}
		}
	})
}

func TestACL05_UnreadCountsAndACareProvidersClients(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		c, _ := f.start(t)
		got, _, err := f.svc.Get(ctx, f.client, f.org.Slug, c.ID, 0, 0)
		if err != nil || got.Unread != 2 {
			t.Fatalf("the participant's unread count: %d, %v; want 2", got.Unread, err)
		}
		if got, _, _ := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 0); got.Unread != 0 {
			t.Errorf("the sender's unread count: %d, want 0", got.Unread)
		}
		if got, err := f.svc.MarkRead(ctx, f.client, f.org.Slug, c.ID, 1); err != nil || got.Unread != 1 {
			t.Errorf("after marking the first read: %d, %v; want 1", got.Unread, err)
		}
		if got, err := f.svc.MarkRead(ctx, f.client, f.org.Slug, c.ID, 0); err != nil || got.Unread != 0 {
			t.Errorf("after marking all read: %d, %v; want 0", got.Unread, err)
		}
		if got, err := f.svc.MarkRead(ctx, f.client, f.org.Slug, c.ID, 1); err != nil || got.Unread != 0 {
			t.Errorf("a mark does not move back: %d, %v", got.Unread, err)
		}
		if _, err := f.svc.Send(ctx, f.client, f.org.Slug, c.ID, "Fine."); err != nil {
			t.Fatal(err)
		}
		list, err := f.svc.List(ctx, f.carer, f.org.Slug)
		if err != nil || len(list) != 1 || list[0].ID != c.ID || list[0].Unread != 1 || list[0].LastSeq != 3 {
			t.Fatalf("the care provider's list: %+v, %v", list, err)
		}
		if list, err := f.svc.List(ctx, f.client, f.org.Slug); err != nil || len(list) != 1 || list[0].Unread != 0 {
			t.Errorf("the participant's list: %+v, %v", list, err)
		}
		clients, err := f.svc.Clients(ctx, f.carer, f.org.Slug)
		if err != nil || len(clients) != 2 {
			t.Fatalf("the care provider's clients: %+v, %v; want P and Q", clients, err)
		}
		for _, cl := range clients {
			switch cl.Participant.Pseudonym {
			case f.p.Pseudonym:
				if len(cl.Conversations) != 1 || cl.Conversations[0] != c.ID || cl.Unread != 1 {
					t.Errorf("client P: %+v", cl)
				}
			case f.q.Pseudonym:
				if len(cl.Conversations) != 0 {
					t.Errorf("client Q: %+v", cl)
				}
			default:
				t.Errorf("a client the care provider is not assigned to: %+v", cl)
			}
		}
		if clients, err := f.svc.Clients(ctx, f.carer3, f.org.Slug); err != nil || len(clients) != 0 {
			t.Errorf("clients of a care provider of no one: %+v, %v", clients, err)
		}
		if _, err := f.svc.Clients(ctx, f.manager, f.org.Slug); !errs.Is(err, errs.NotFound) {
			t.Errorf("clients as organization manager: %v, want refused", err)
		}
		// Pages: the newest first page, then the one before.
		page, msgs, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 2)
		if err != nil || len(msgs) != 2 || msgs[0].Seq != 2 || msgs[1].Seq != 3 || page.LastSeq != 3 {
			t.Fatalf("newest page: %+v, %v", msgs, err)
		}
		if _, msgs, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 2, 2); err != nil || len(msgs) != 1 || msgs[0].Seq != 1 {
			t.Errorf("page before 2: %+v, %v", msgs, err)
		}
	})
}

func TestAUD01_EveryConversationReadIsInTheParticipantsAccessLog(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		c, att := f.start(t)
		if _, _, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 0); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.Download(ctx, f.carer, f.org.Slug, c.ID, att.Attachment.ID); err != nil {
			t.Fatal(err)
		}
		// An outsider's attempt is there too, as refused.
		if _, _, err := f.svc.Get(ctx, f.carer2, f.org.Slug, c.ID, 0, 0); !errs.Is(err, errs.NotFound) {
			t.Fatal(err)
		}
		log, _, err := (&auditadmin.Service{Gate: f.g}).AccessLog(ctx, f.client, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, e := range log {
			if strings.Contains(strings.Join(e.Roles, ","), "care provider") {
				key := e.Action
				if e.Refused {
					key += " refused"
				}
				seen[key]++
			}
		}
		for _, want := range []string{"conversation.start", "conversation.message", "conversation.attachment",
			"conversation.read", "conversation.attachment.read", "conversation.read refused"} {
			if seen[want] == 0 {
				t.Errorf("the participant's access log has no %s by a care provider: %v", want, seen)
			}
		}
		// Each read names the participant on the trail.
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'conversation.read' AND outcome = 'success'
			AND participant_id = $1 AND actor_account = $2`, f.p.Pseudonym, f.carer.AccountID); n != 1 {
			t.Errorf("%d reads by the care provider naming the participant, want 1", n)
		}
	})
}

// dump is everything a database holds in the given tables, as text, and
// the bytes of a SQLite database's files.
func dump(t *testing.T, db *sqldb.DB, tables ...string) string {
	t.Helper()
	var b strings.Builder
	if db.Dialect == sqldb.SQLite {
		for _, suffix := range []string{"", "-wal"} {
			raw, err := os.ReadFile(db.Location + suffix)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			b.Write(raw)
		}
		return b.String()
	}
	for _, table := range tables {
		rows, err := db.QueryContext(context.Background(), `SELECT t::text FROM `+table+` t`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			b.WriteString(s)
		}
		rows.Close()
	}
	return b.String()
}

func TestCRY03_MessagesAndAttachmentsAreNeverInClearInEitherDatabase(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		c, err := f.svc.Start(ctx, f.carer, f.org.Slug, f.p.Pseudonym, nil)
		if err != nil {
			t.Fatal(err)
		}
		const (
			body    = "Zephyrine thistlewaite relapse diary"
			name    = "quorbantic-scan.pdf"
			content = "%PDF-1.4 marbleflux osteo result"
		)
		if _, err := f.svc.Send(ctx, f.carer, f.org.Slug, c.ID, body); err != nil {
			t.Fatal(err)
		}
		m, err := f.svc.Attach(ctx, f.client, f.org.Slug, c.ID, name, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		_, msgs, err := f.svc.Get(ctx, f.client, f.org.Slug, c.ID, 0, 0)
		if err != nil || msgs[0].Body != body {
			t.Fatalf("read back: %+v, %v", msgs, err)
		}
		if _, got, err := f.svc.Download(ctx, f.carer, f.org.Slug, c.ID, m.Attachment.ID); err != nil || string(got) != content {
			t.Fatalf("download: %q, %v", got, err)
		}
		text := dump(t, f.clinical, "conversations", "conversation_messages", "conversation_attachments", "conversation_members", "audit_events") +
			dump(t, f.identity, "data_keys")
		for _, secret := range []string{body, name, content[9:]} {
			if strings.Contains(text, secret) || strings.Contains(text, hex.EncodeToString([]byte(secret))) {
				t.Errorf("%q is in clear in a database", secret)
			}
		}
	})
}

func TestCRY05_ATamperedOrMovedMessageIsRefused(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		c, _ := f.start(t)
		other, err := f.svc.Start(ctx, f.carer, f.org.Slug, f.q.Pseudonym, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Send(ctx, f.carer, f.org.Slug, other.ID, "For Q only"); err != nil {
			t.Fatal(err)
		}
		sealedOf := func(conv string, seq int) []byte {
			var b []byte
			if err := f.clinical.QueryRowContext(ctx, `SELECT sealed_body FROM conversation_messages WHERE conversation_id = $1 AND seq = $2`,
				conv, seq).Scan(&b); err != nil {
				t.Fatal(err)
			}
			return b
		}
		set := func(conv string, seq int, b []byte) {
			if _, err := f.clinical.ExecContext(ctx, `UPDATE conversation_messages SET sealed_body = $1 WHERE conversation_id = $2 AND seq = $3`,
				b, conv, seq); err != nil {
				t.Fatal(err)
			}
		}
		original := sealedOf(c.ID, 1)
		flipped := bytes.Clone(original)
		flipped[len(flipped)-1] ^= 1
		for name, b := range map[string][]byte{
			"a flipped bit":                          flipped,
			"another message of the conversation":    sealedOf(c.ID, 2),
			"a message of another participant's one": sealedOf(other.ID, 1),
		} {
			set(c.ID, 1, b)
			_, msgs, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 0)
			if !errs.Is(err, errs.Unavailable) || len(msgs) != 0 {
				t.Errorf("%s: %d messages, %v; want the read refused", name, len(msgs), err)
			}
		}
		set(c.ID, 1, original)
		if _, _, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 0); err != nil {
			t.Fatalf("restored: %v", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM audit_events WHERE action = 'conversation.read' AND outcome = 'failure'
			AND security = $1 AND object_id = $2`, true, c.ID); n != 3 {
			t.Errorf("%d failed security events, want 3", n)
		}
		// A conversation's key moved to another conversation opens nothing.
		var key []byte
		if err := f.clinical.QueryRowContext(ctx, `SELECT sealed_key FROM conversations WHERE id = $1`, other.ID).Scan(&key); err != nil {
			t.Fatal(err)
		}
		if _, err := f.clinical.ExecContext(ctx, `UPDATE conversations SET sealed_key = $1 WHERE id = $2`, key, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 0); !errs.Is(err, errs.Unavailable) {
			t.Errorf("with another conversation's key: %v, want refused", err)
		}
	})
}

func TestLIFE03_ErasingTheParticipantErasesTheirConversations(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		c, att := f.start(t)
		var sealedKey []byte
		if err := f.clinical.QueryRowContext(ctx, `SELECT sealed_key FROM conversations WHERE id = $1`, c.ID).Scan(&sealedKey); err != nil {
			t.Fatal(err)
		}
		keyAt := keys.Context{OrgID: f.org.ID, StudyID: f.care.ID, RecordID: c.ID, Field: "conversation.key"}
		if _, err := keys.Open(ctx, f.g.IdentityKeys(), sealedKey, keyAt); err != nil {
			t.Fatalf("before erasure the conversation's key opens: %v", err)
		}
		admin := f.admin
		admin.ConfirmedAt = time.Now()
		if _, err := (&participants.Service{Gate: f.g}).Erase(ctx, admin, f.org.Slug, f.care.ID, f.siteA.ID, f.p.Pseudonym); err != nil {
			t.Fatalf("erase: %v", err)
		}
		// The key is gone, on this node and on a fresh one.
		if _, err := keys.Open(ctx, f.g.IdentityKeys(), sealedKey, keyAt); !errors.Is(err, keys.ErrKeyDestroyed) {
			t.Errorf("the conversation's key after erasure: %v, want ErrKeyDestroyed", err)
		}
		got, msgs, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 0)
		if err != nil || !got.Erased || len(msgs) != 0 {
			t.Errorf("read after erasure: %+v %+v, %v; want erased, no messages", got, msgs, err)
		}
		if _, err := f.svc.Send(ctx, f.carer, f.org.Slug, c.ID, "still there?"); !errs.Is(err, errs.Conflict) {
			t.Errorf("send after erasure: %v, want refused", err)
		}
		if _, _, err := f.svc.Download(ctx, f.carer, f.org.Slug, c.ID, att.Attachment.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("download after erasure: %v, want not found", err)
		}
		if _, err := f.svc.Start(ctx, f.carer, f.org.Slug, f.p.Pseudonym, nil); !errs.Is(err, errs.Conflict) {
			t.Errorf("a new conversation after erasure: %v, want refused", err)
		}
		// The sealed key no longer opens, even with the erasure marker
		// taken away (as in a database restored from an older copy).
		if _, err := f.clinical.ExecContext(ctx, `UPDATE participants SET identity = 'none', erased_at = NULL WHERE id = $1`, f.p.Pseudonym); err != nil {
			t.Fatal(err)
		}
		if got, msgs, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, 0); err != nil || !got.Erased || len(msgs) != 0 {
			t.Errorf("read with the marker taken away: %+v %+v, %v; want erased", got, msgs, err)
		}
	})
}

func TestWEB05_ConversationInputIsCheckedAndNothingHalfWritten(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		c, err := f.svc.Start(ctx, f.carer, f.org.Slug, f.p.Pseudonym, nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]string{
			"blank":     " \n\t",
			"too long":  strings.Repeat("x", conversations.MaxBodyRunes+1),
			"a control": "hello\x1b[2J",
			"not UTF-8": "caf\xe9",
			"a NUL":     "a\x00b",
		} {
			if _, err := f.svc.Send(ctx, f.carer, f.org.Slug, c.ID, body); !errs.Is(err, errs.Invalid) {
				t.Errorf("a message %s: %v, want invalid", name, err)
			}
		}
		if _, err := f.svc.Send(ctx, f.carer, f.org.Slug, c.ID, strings.Repeat("é", conversations.MaxBodyRunes)); err != nil {
			t.Errorf("a message of the largest size: %v", err)
		}
		for name, file := range map[string]struct{ name, content string }{
			"HTML named as a PDF":    {"report.pdf", "<html><script>alert(1)</script></html>"},
			"an executable as a PNG": {"photo.png", "MZ\x90\x00\x03\x00\x00\x00"},
			"empty":                  {"empty.txt", ""},
			"too large":              {"big.pdf", "%PDF-" + strings.Repeat("x", conversations.MaxAttachmentBytes)},
			"a name with a slash":    {"../etc/passwd.pdf", "%PDF-1.4"},
		} {
			if _, err := f.svc.Attach(ctx, f.carer, f.org.Slug, c.ID, file.name, strings.NewReader(file.content)); !errs.Is(err, errs.Invalid) {
				t.Errorf("an attachment that is %s: %v, want invalid", name, err)
			}
		}
		if _, err := f.svc.Start(ctx, f.carer, f.org.Slug, f.p.Pseudonym, []string{"not-an-id"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("a member that is no id: %v", err)
		}
		if _, _, err := f.svc.Get(ctx, f.carer, f.org.Slug, c.ID, 0, conversations.MaxMessagesPage+1); !errs.Is(err, errs.Invalid) {
			t.Errorf("a page too large: %v", err)
		}
		if n := count(t, f.clinical, `SELECT count(*) FROM conversation_messages`) + count(t, f.clinical, `SELECT count(*) FROM conversation_attachments`); n != 1 {
			t.Errorf("%d rows after the bad input, want the one good message", n)
		}
	})
}

// TestLIFE01_PurgingAParticipantTakesTheirConversations runs the purge's
// removal of a participant's record (participants.Service.Purge) and finds
// their conversations, members, messages and attachments gone with it.
func TestLIFE01_PurgingAParticipantTakesTheirConversations(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		f := setup(t, d)
		ctx := context.Background()
		f.start(t)
		err := f.clinical.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := authz.UnrelateParticipant(ctx, tx, f.org.ID, f.p.Pseudonym); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM participants WHERE org_id = $1 AND id = $2`, f.org.ID, f.p.Pseudonym)
			return err
		})
		if err != nil {
			t.Fatalf("purge the participant's record: %v", err)
		}
		for _, table := range []string{"conversations", "conversation_members", "conversation_messages", "conversation_attachments"} {
			if n := count(t, f.clinical, `SELECT count(*) FROM `+table); n != 0 {
				t.Errorf("%d rows left in %s", n, table)
			}
		}
	})
}

package notify_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/notify"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type recorder struct {
	mu   sync.Mutex
	sent []mail.Message
}

func (r *recorder) Send(_ context.Context, m mail.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, m)
	return nil
}

func (r *recorder) take() []mail.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sent
	r.sent = nil
	return out
}

// Notices say that something waits, how much of each kind, and where to
// sign in; never what (WEB-07): nothing of the reference a notice was
// queued with reaches the e-mail. A person told at once gets one e-mail
// for what a batch holds, and each thing once ever; one told daily gets a
// digest at most once a day; one who turned notices off gets none, not
// even what was queued before.
func TestWEB07_NoticesSayOnlyThatSomethingWaits(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		var org orgs.Organization
		var now, daily, quiet accounts.Account
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if org, err = orgs.CreateOrganization(ctx, tx, "Clinic", "clinic"); err != nil {
				return err
			}
			if now, err = accounts.Create(ctx, tx, "now@clinic.example", "Now"); err != nil {
				return err
			}
			if daily, err = accounts.Create(ctx, tx, "daily@clinic.example", "Daily"); err != nil {
				return err
			}
			quiet, err = accounts.Create(ctx, tx, "quiet@clinic.example", "Quiet")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		clock := time.Now()
		rec := &recorder{}
		svc := &notify.Service{Gate: gate.New(gate.Config{Clinical: db}), Mail: rec, BaseURL: "https://custodia.example/",
			Now: func() time.Time { return clock }}
		as := func(a accounts.Account) gate.Actor { return gate.Actor{AccountID: a.ID, SessionID: "s-" + a.ID} }
		queue := func(a accounts.Account, kind notify.Kind, ref string) {
			t.Helper()
			if err := db.InTx(ctx, func(tx *sql.Tx) error { _, err := notify.Queue(ctx, tx, a.ID, org.ID, kind, ref); return err }); err != nil {
				t.Fatal(err)
			}
		}
		send := func(want int) []mail.Message {
			t.Helper()
			n, err := svc.Send(ctx)
			if err != nil || n != want {
				t.Fatalf("sent %d (%v), want %d", n, err, want)
			}
			return rec.take()
		}
		if m, err := svc.Mode(ctx, as(now)); err != nil || m != notify.Immediate {
			t.Fatalf("the default: %s %v", m, err)
		}
		if err := svc.SetMode(ctx, as(daily), notify.Daily); err != nil {
			t.Fatal(err)
		}
		if err := svc.SetMode(ctx, as(daily), "weekly"); err == nil {
			t.Error("a mode that is none")
		}
		queue(quiet, notify.Message, "secret-ref-0")
		if err := svc.SetMode(ctx, as(quiet), notify.Off); err != nil {
			t.Fatal(err)
		}

		// At once: one e-mail for what waits, counts only.
		refs := []string{"secret-ref-1", "secret-ref-2", "secret-ref-3"}
		queue(now, notify.Message, refs[0])
		queue(now, notify.Message, refs[1])
		queue(now, notify.Consent, refs[2])
		queue(now, notify.Message, refs[0]) // the same message again
		queue(quiet, notify.Message, "secret-ref-4")
		mails := send(1)
		if len(mails) != 1 || mails[0].To != now.Email || !strings.Contains(mails[0].Text, "2 new messages, a consent to sign") ||
			!strings.Contains(mails[0].Text, "https://custodia.example/") {
			t.Fatalf("the notice: %+v", mails)
		}
		for _, m := range mails {
			if strings.Contains(m.Subject+m.Text, "secret-ref") || strings.Contains(m.Text, org.Name) || strings.Contains(m.Text, org.Slug) {
				t.Errorf("a notice names what waits:\n%s", m.Text)
			}
		}
		queue(now, notify.Message, refs[1]) // noticed already
		send(0)

		// Daily: a digest, then nothing until a day has passed.
		queue(daily, notify.Form, "visit-1")
		if m := send(1); m[0].To != daily.Email || !strings.Contains(m[0].Text, "a form to fill in") || !strings.Contains(m[0].Text, "/me/records") {
			t.Fatalf("the first digest: %+v", m)
		}
		queue(daily, notify.Form, "visit-2")
		queue(daily, notify.Message, "m-9")
		clock = clock.Add(time.Hour)
		send(0)
		clock = clock.Add(24 * time.Hour)
		if m := send(1); !strings.Contains(m[0].Text, "a new message, a form to fill in") {
			t.Fatalf("the next digest: %+v", m)
		}
		if m, err := svc.Mode(ctx, as(quiet)); err != nil || m != notify.Off {
			t.Errorf("the quiet account's mode: %s %v", m, err)
		}
	})
}

// A person may be told by text message instead (WEB-07), at the phone of
// their SMS factor, and the text says no more than the e-mail would; one
// without an SMS factor may not choose it.
func TestWEB07_NoticesByTextMessageSayOnlyThatSomethingWaits(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		kek, err := keys.OpenLocalKEK(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		g := gate.New(gate.Config{Clinical: db, Keys: &keys.Keyring{DB: db, KEK: kek}})
		var org orgs.Organization
		var texted, plain accounts.Account
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if org, err = orgs.CreateOrganization(ctx, tx, "Clinic", "clinic"); err != nil {
				return err
			}
			if texted, err = accounts.Create(ctx, tx, "texted@clinic.example", "Texted"); err != nil {
				return err
			}
			plain, err = accounts.Create(ctx, tx, "plain@clinic.example", "Plain")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		as := func(a accounts.Account) gate.Actor { return gate.Actor{AccountID: a.ID, SessionID: "s-" + a.ID} }
		texts := &sms.Recorder{}
		factors := &mfa.Service{Gate: g, SMS: texts}
		const phone = "+31612345678"
		confirmed := as(texted)
		confirmed.ConfirmedAt = time.Now()
		if _, err := factors.BeginSMS(ctx, confirmed, phone); err != nil {
			t.Fatal(err)
		}
		m, ok := texts.Last(phone)
		if !ok {
			t.Fatal("no code texted")
		}
		code := ""
		for _, w := range strings.Fields(m.Text) {
			if w = strings.TrimSuffix(w, "."); len(w) == 6 && strings.Trim(w, "0123456789") == "" {
				code = w
			}
		}
		if _, err := factors.ConfirmSMS(ctx, confirmed, code); err != nil {
			t.Fatalf("confirm the SMS factor with %q: %v", m.Text, err)
		}
		rec := &recorder{}
		svc := &notify.Service{Gate: g, Mail: rec, SMS: texts, BaseURL: "https://custodia.example"}
		if err := svc.SetChannel(ctx, as(plain), notify.SMS); errs.KindOf(err) != errs.Invalid {
			t.Errorf("text messages without an SMS factor: %v", err)
		}
		if err := svc.SetChannel(ctx, as(texted), notify.SMS); err != nil {
			t.Fatal(err)
		}
		if ch, err := svc.Channel(ctx, as(texted)); err != nil || ch != notify.SMS {
			t.Fatalf("the channel: %s %v", ch, err)
		}
		for _, a := range []accounts.Account{texted, plain} {
			if err := db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := notify.Queue(ctx, tx, a.ID, org.ID, notify.Message, "secret-ref-"+a.ID)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		before := texts.Count(phone)
		if n, err := svc.Send(ctx); err != nil || n != 2 {
			t.Fatalf("sent %d %v, want one text and one e-mail", n, err)
		}
		msg, _ := texts.Last(phone)
		if texts.Count(phone) != before+1 || !strings.Contains(msg.Text, "a new message") || !strings.Contains(msg.Text, "https://custodia.example/") ||
			strings.Contains(msg.Text, "secret-ref") || strings.Contains(msg.Text, org.Name) {
			t.Errorf("the text: %q", msg.Text)
		}
		if mails := rec.take(); len(mails) != 1 || mails[0].To != plain.Email {
			t.Errorf("the e-mails: %+v, want one to the account without texts", mails)
		}
	})
}

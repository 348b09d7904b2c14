// Package notify tells people that something waits for them in Custodia
// (a new message, a consent to sign, a form to fill) by e-mail that says
// only that something is waiting, with a link to sign in, never what it is
// (WEB-07): no sender, no name, no text of a message, no form or study.
// Each person chooses how they are told: not at all, at once (the
// default), or in a daily digest. What waits is queued in the transaction
// of the work that made it (Queue); the sender, which every server runs,
// claims a batch in one transaction and mails it after that commits, so a
// notice goes out once whichever server claims it.
package notify

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/sms"
	"github.com/custodia/custodia/internal/sqldb"
)

// Kind is what waits.
type Kind string

const (
	Message Kind = "message" // a new message in a conversation
	Consent Kind = "consent" // a consent to sign
	Form    Kind = "form"    // a form to fill in
	// Retention: accounts or participants of an organization the person
	// administers were noticed for the purge of inactive data (LIFE-02).
	Retention Kind = "retention"
)

// Mode is how a person is told.
type Mode string

const (
	Off       Mode = "off"
	Immediate Mode = "immediate"
	Daily     Mode = "daily"
)

// Channel is how a notice reaches a person: by e-mail (the default), or
// by text message to the phone of their SMS factor.
type Channel string

const (
	Email Channel = "email"
	SMS   Channel = "sms"
)

// ParseChannel reads a channel.
func ParseChannel(s string) (Channel, error) {
	switch c := Channel(s); c {
	case Email, SMS:
		return c, nil
	}
	return "", errs.E(errs.Invalid, "a notice comes by email or sms")
}

// ParseMode reads a mode.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Off, Immediate, Daily:
		return m, nil
	}
	return "", errs.E(errs.Invalid, "how to be told is off, immediate or daily")
}

// paths are the pages a notice links to, one for each kind: the person's
// own pages, which name nothing of what waits.
var paths = map[Kind]string{Message: "/", Consent: "/", Form: "/me/records", Retention: "/"}

// Queue records, in the caller's transaction, that something of kind
// waits for an account in an organization, and reports whether it was
// queued. ref keeps one thing from being queued twice, ever (a message's
// id, say); it is never sent. A person who turned notices off is not
// queued for.
func Queue(ctx context.Context, q sqldb.Querier, accountID, orgID string, kind Kind, ref string) (bool, error) {
	if _, ok := paths[kind]; !ok {
		return false, errs.E(errs.Internal, "no such kind of notice: %s", kind)
	}
	var mode string
	err := q.QueryRowContext(ctx, `SELECT mode FROM notification_settings WHERE account_id = $1`, accountID).Scan(&mode)
	switch {
	case err == nil && Mode(mode) == Off:
		return false, nil
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return false, errs.Wrap(errs.Unavailable, err, "read the notice settings")
	}
	res, err := q.ExecContext(ctx, `INSERT INTO notifications (id, account_id, org_id, kind, ref, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, ids.New(), accountID, orgID, string(kind), ref, sqldb.Now())
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "queue a notice")
	}
	n, err := res.RowsAffected()
	return err == nil && n == 1, nil
}

// Service keeps people's notice settings and sends the notices.
type Service struct {
	Gate *gate.Gate
	Mail mail.Sender
	// SMS sends the notices of those who chose text messages; without
	// one, they get e-mail.
	SMS     sms.Sender
	BaseURL string
	Log     *slog.Logger
	// Now is the clock of digests; time.Now if nil.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Mode answers how the requester is told of what waits for them.
func (s *Service) Mode(ctx context.Context, a gate.Actor) (Mode, error) {
	mode := Immediate
	err := s.Gate.Own(ctx, a, "notify.settings.read", func(o *gate.OpTx) error {
		o.Nothing() // one's own setting
		var m string
		err := o.QueryRowContext(ctx, `SELECT mode FROM notification_settings WHERE account_id = $1`, a.AccountID).Scan(&m)
		if err == nil {
			mode = Mode(m)
			return nil
		}
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return errs.Wrap(errs.Unavailable, err, "read the notice settings")
	})
	return mode, err
}

// SetMode sets how the requester is told of what waits for them, on the
// trail of each of their organizations.
func (s *Service) SetMode(ctx context.Context, a gate.Actor, mode Mode) error {
	if _, err := ParseMode(string(mode)); err != nil {
		return err
	}
	return s.Gate.Own(ctx, a, "notify.settings", func(o *gate.OpTx) error {
		o.Object("account", a.AccountID)
		o.Detail("mode", string(mode))
		now := sqldb.Now()
		if _, err := o.ExecContext(ctx, `INSERT INTO notification_settings (account_id, mode, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (account_id) DO UPDATE SET mode = excluded.mode, updated_at = excluded.updated_at`,
			a.AccountID, string(mode), now); err != nil {
			return errs.Wrap(errs.Unavailable, err, "store the notice settings")
		}
		if mode == Off {
			// What was queued is not sent either.
			if _, err := o.ExecContext(ctx, `UPDATE notifications SET sent_at = $1 WHERE account_id = $2 AND sent_at IS NULL`,
				now, a.AccountID); err != nil {
				return errs.Wrap(errs.Unavailable, err, "store the notice settings")
			}
		}
		orgIDs, err := accounts.Organizations(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		o.InEach(orgIDs)
		return nil
	})
}

// Channel answers how notices reach the requester.
func (s *Service) Channel(ctx context.Context, a gate.Actor) (Channel, error) {
	ch := Email
	err := s.Gate.Own(ctx, a, "notify.settings.read", func(o *gate.OpTx) error {
		o.Nothing() // one's own setting
		var c string
		err := o.QueryRowContext(ctx, `SELECT channel FROM notification_settings WHERE account_id = $1`, a.AccountID).Scan(&c)
		switch {
		case err == nil:
			ch = Channel(c)
		case !errors.Is(err, sql.ErrNoRows):
			return errs.Wrap(errs.Unavailable, err, "read the notice settings")
		}
		return nil
	})
	return ch, err
}

// SetChannel sets how notices reach the requester; text messages need an
// SMS factor, whose phone they go to.
func (s *Service) SetChannel(ctx context.Context, a gate.Actor, ch Channel) error {
	if _, err := ParseChannel(string(ch)); err != nil {
		return err
	}
	return s.Gate.Own(ctx, a, "notify.settings", func(o *gate.OpTx) error {
		o.Object("account", a.AccountID)
		o.Detail("channel", string(ch))
		if ch == SMS {
			if _, found, err := mfa.Phone(ctx, o, a.AccountID); err != nil {
				return err
			} else if !found {
				return errs.E(errs.Invalid, "notices by text message go to the phone of an SMS second factor; set one up first")
			}
		}
		if _, err := o.ExecContext(ctx, `INSERT INTO notification_settings (account_id, mode, channel, updated_at) VALUES ($1, 'immediate', $2, $3)
			ON CONFLICT (account_id) DO UPDATE SET channel = excluded.channel, updated_at = excluded.updated_at`,
			a.AccountID, string(ch), sqldb.Now()); err != nil {
			return errs.Wrap(errs.Unavailable, err, "store the notice settings")
		}
		orgIDs, err := accounts.Organizations(ctx, o, a.AccountID)
		if err != nil {
			return err
		}
		o.InEach(orgIDs)
		return nil
	})
}

// sendPage bounds the notices one transaction claims.
const sendPage = 1000

// notice is one e-mail to send: an account's waiting things, by kind.
type notice struct {
	to     string
	phone  string // set: by text message to this number
	counts map[Kind]int
}

// Send sends the notices due: those of people told at once, and the
// digest of those told daily whose last digest is a day old. Each batch is
// claimed in one operator transaction (notify.send, on the trail of the
// organizations it names, with counts only), mailed after it commits. It
// answers how many e-mails it handed over.
func (s *Service) Send(ctx context.Context) (int, error) {
	sent := 0
	for {
		var out []notice
		claimed := 0
		err := s.Gate.Operate(ctx, "notify.send", func(o *gate.OpTx) error {
			now := s.now().UnixMicro()
			rows, err := o.QueryContext(ctx, `SELECT n.id, n.account_id, n.org_id, n.kind, a.email, a.disabled_at IS NOT NULL,
				  coalesce(st.mode, 'immediate'), coalesce(st.last_digest_at, 0), coalesce(st.channel, 'email')
				FROM notifications n JOIN accounts a ON a.id = n.account_id
				LEFT JOIN notification_settings st ON st.account_id = n.account_id
				WHERE n.sent_at IS NULL ORDER BY n.account_id, n.created_at LIMIT $1`, sendPage)
			if err != nil {
				return err
			}
			type row struct {
				id, account, org, kind, email, mode, channel string
				disabled                                     bool
				lastDigest                                   int64
			}
			var page []row
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.id, &r.account, &r.org, &r.kind, &r.email, &r.disabled, &r.mode, &r.lastDigest, &r.channel); err != nil {
					rows.Close()
					return err
				}
				page = append(page, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			byAccount := map[string]*notice{}
			var order []string
			var orgs []string
			digests := map[string]bool{}
			for _, r := range page {
				due := r.mode == string(Immediate) || r.mode == string(Daily) && r.lastDigest <= now-(24*time.Hour).Microseconds()
				dropped := r.mode == string(Off) || r.disabled
				if !due && !dropped {
					continue // a digest not due yet
				}
				if _, err := o.ExecContext(ctx, `UPDATE notifications SET sent_at = $1 WHERE id = $2 AND sent_at IS NULL`, now, r.id); err != nil {
					return err
				}
				claimed++
				if dropped {
					continue
				}
				n := byAccount[r.account]
				if n == nil {
					n = &notice{to: r.email, counts: map[Kind]int{}}
					if r.channel == string(SMS) && s.SMS != nil {
						// The phone of their SMS factor; without one, e-mail.
						phone, found, err := mfa.Phone(ctx, o, r.account)
						if err != nil {
							return err
						}
						if found {
							n.phone = phone
						}
					}
					byAccount[r.account] = n
					order = append(order, r.account)
				}
				n.counts[Kind(r.kind)]++
				if !slices.Contains(orgs, r.org) {
					orgs = append(orgs, r.org)
				}
				if r.mode == string(Daily) {
					digests[r.account] = true
				}
			}
			for account := range digests {
				if _, err := o.ExecContext(ctx, `UPDATE notification_settings SET last_digest_at = $1 WHERE account_id = $2`, now, account); err != nil {
					return err
				}
			}
			for _, account := range order {
				out = append(out, *byAccount[account])
			}
			if claimed == 0 {
				o.Nothing()
				return nil
			}
			o.InEach(orgs)
			o.Detail("notices_count", strconv.Itoa(len(out)))
			return nil
		})
		if err != nil {
			return sent, errs.Wrap(errs.Unavailable, err, "claim the notices")
		}
		for _, n := range out {
			mctx, cancel := context.WithTimeout(ctx, time.Minute)
			var err error
			if n.phone != "" {
				m := s.message(n)
				err = s.SMS.Send(mctx, sms.Message{To: n.phone, Text: "Custodia: " + m.summary +
					" waiting for you. Sign in to see it: " + m.link})
			} else {
				err = s.Mail.Send(mctx, s.message(n).Message)
			}
			cancel()
			if err != nil {
				if s.Log != nil {
					s.Log.Error("send a notice", "err", err)
				}
				continue
			}
			sent++
		}
		if claimed < sendPage {
			return sent, nil
		}
	}
}

// noticeText is a notice's e-mail, with its summary and link for a text
// message.
type noticeText struct {
	mail.Message
	summary, link string
}

// message is a notice's e-mail: that something waits, how much of each
// kind, and where to sign in; nothing of what it is.
func (s *Service) message(n notice) noticeText {
	var what []string
	path := "/"
	for _, k := range []Kind{Message, Consent, Form, Retention} {
		c := n.counts[k]
		if c == 0 {
			continue
		}
		path = paths[k]
		switch k {
		case Message:
			what = append(what, plural(c, "a new message", "new messages"))
		case Consent:
			what = append(what, plural(c, "a consent to sign", "consents to sign"))
		case Form:
			what = append(what, plural(c, "a form to fill in", "forms to fill in"))
		case Retention:
			what = append(what, plural(c, "a retention notice to review", "retention notices to review"))
		}
	}
	if len(n.counts) > 1 {
		path = "/"
	}
	link := strings.TrimRight(s.BaseURL, "/") + path
	summary := strings.Join(what, ", ")
	return noticeText{Message: mail.Message{To: n.to, Subject: "Something is waiting for you in Custodia", Text: fmt.Sprintf(
		"Hello,\n\nSomething is waiting for you in Custodia: %s.\n\nSign in to see it: %s\n\n"+
			"This e-mail says only that something is waiting; what it is stays in Custodia. "+
			"How you are told (at once, once a day, or not at all) is on the page Your account.\n",
		summary, link)}, summary: summary, link: link}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return strconv.Itoa(n) + " " + many
}

// Package audit owns the audit trail: events appended in the same
// transaction as the data they describe, integrated by one sequencer into an
// RFC 6962 Merkle tree with Ed25519-signed checkpoints, and verifiable end to
// end.
//
// It promises (AUD-02) that no code path updates or deletes an entry: the
// tables refuse it by trigger, and Verify finds a change made behind the
// application's back, by a database administrator or an attacker with write
// access. A rewrite thorough enough to remove or re-sign the stored
// checkpoints as well is found against a checkpoint kept outside the
// database, which is why operators keep one. Events never hold secrets
// (AUD-03): Append refuses detail keys named like one.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
)

// Event is one entry of the audit trail. Its JSON encoding, exactly as
// encoding/json writes this struct, is the leaf data of the tree, so the
// field order and tags are part of the trail's format: never reorder,
// rename or remove a field, only add new ones with omitempty.
type Event struct {
	ID            string            `json:"id"`                // ids.Timed(Time) if empty
	Time          time.Time         `json:"time"`              // UTC, microsecond precision; now if zero
	OrgID         string            `json:"org,omitempty"`     // empty for events outside any organization
	ActorAccount  string            `json:"actor,omitempty"`   // account id
	ActorSession  string            `json:"session,omitempty"` // session id, never a token
	ActorRole     string            `json:"role,omitempty"`
	RemoteAddr    string            `json:"addr,omitempty"`
	UserAgent     string            `json:"ua,omitempty"`
	Action        string            `json:"action"` // e.g. "auth.login", "study.create", "site.read"
	Outcome       Outcome           `json:"outcome"`
	StudyID       string            `json:"study,omitempty"`
	SiteID        string            `json:"site,omitempty"`
	ParticipantID string            `json:"participant,omitempty"`
	ObjectType    string            `json:"object_type,omitempty"`
	ObjectID      string            `json:"object,omitempty"`
	Security      bool              `json:"security,omitempty"` // AUD-05: lockouts, factor, role, key and policy changes
	Details       map[string]string `json:"details,omitempty"`  // references, reasons, ciphertext digests; never clear text or secrets
}

// Outcome says how the audited attempt ended.
type Outcome string

const (
	Success Outcome = "success"
	Failure Outcome = "failure" // the attempt failed, e.g. a wrong password
	Denied  Outcome = "denied"  // authorization refused the attempt
)

// Limits of an event, checked by Append.
const (
	maxString     = 512 // bytes, any string field or detail value
	maxDetails    = 32
	maxDetailKey  = 64
	maxIDLength   = 64
	insertParams  = 256 // parameters per multi-row INSERT: SQLite looks "$n" names up linearly
	deleteChunk   = 500 // keys per DELETE … IN
	maxYearInJSON = 9999
)

var (
	actionPattern = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)
	namePattern   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// Append validates ev, signs it with key, and inserts it, in tx, into the
// event table and the sequencing queue, and returns the event as stored (ID
// and Time filled). tx must be the transaction that writes the data the
// event describes: when Append fails, the caller must fail that transaction
// too, so that no change is ever committed without its event.
//
// key is the instance's audit key (LoadOrCreateKey), which the data folder
// holds and the database never does: the sequencer adopts only events it
// signed, so a row that SQL alone put in the tables is never integrated,
// and the verifier finds it wherever it sits (AUD-02). A nil key writes an
// unsigned event, as before event signing; that is for tests that write a
// trail nobody sequences with a key, since the sequencer refuses unsigned
// events once the trail holds a signed one.
func Append(ctx context.Context, tx sqldb.Tx, key note.Signer, ev Event) (Event, error) {
	out, err := appendEvents(ctx, tx, key, []Event{ev})
	if err != nil {
		return Event{}, err
	}
	return out[0], nil
}

// appendEvents is Append for several events, with multi-row inserts.
func appendEvents(ctx context.Context, tx sqldb.Tx, key note.Signer, evs []Event) ([]Event, error) {
	signed, err := Sign(key, evs...)
	if err != nil {
		return nil, err
	}
	return AppendSigned(ctx, tx, signed)
}

// Signed is an event validated and signed with the audit key, ready to be
// inserted by AppendSigned.
type Signed struct {
	ev  Event
	row []any
	// leaf is the event's record hash in the tree, as the sequencer will
	// compute it (Issued); zero without a signature.
	leaf tlog.Hash
}

// Sign validates and signs evs (see Append) for AppendSigned, so that a
// caller can do this work before it takes its turn in the transaction that
// inserts them.
func Sign(key note.Signer, evs ...Event) ([]Signed, error) {
	u, err := Prepare(evs...)
	if err != nil {
		return nil, err
	}
	return u.Sign(key)
}

// Unsigned are events validated and encoded by Prepare, to be signed.
type Unsigned struct {
	evs    []Event
	bodies [][]byte
}

// Prepare validates evs and fixes what their signature covers (their ids,
// times and encoding), so that a caller can refuse an invalid event at once
// and sign it later, e.g. outside its turn in a shared transaction.
func Prepare(evs ...Event) (Unsigned, error) {
	u := Unsigned{evs: make([]Event, len(evs)), bodies: make([][]byte, len(evs))}
	for i, ev := range evs {
		ev, err := normalize(ev)
		if err != nil {
			return Unsigned{}, err
		}
		body, err := json.Marshal(ev)
		if err != nil {
			return Unsigned{}, errs.Wrap(errs.Invalid, err, "audit event cannot be encoded")
		}
		u.evs[i], u.bodies[i] = ev, body
	}
	return u, nil
}

// Sign signs the events for AppendSigned.
func (u Unsigned) Sign(key note.Signer) ([]Signed, error) {
	out := make([]Signed, len(u.evs))
	for i, ev := range u.evs {
		sig, err := signEvent(u.bodies[i], key)
		if err != nil {
			return nil, err
		}
		out[i] = Signed{ev: ev, row: []any{ev.ID, nullable(ev.OrgID), ev.Time.UnixMicro(), nullable(ev.ActorAccount),
			ev.Action, string(ev.Outcome), nullable(ev.StudyID), nullable(ev.SiteID),
			nullable(ev.ParticipantID), nullable(ev.ObjectType), nullable(ev.ObjectID), ev.Security,
			string(u.bodies[i]), nullable(sig)}}
		if sig != "" {
			out[i].leaf = tlog.RecordHash(leafData(string(u.bodies[i]), sig))
		}
	}
	return out, nil
}

// AppendSigned inserts events that Sign signed into the event table and
// the sequencing queue, in tx, as Append does, and returns them as stored.
func AppendSigned(ctx context.Context, tx sqldb.Tx, evs []Signed) ([]Event, error) {
	out := make([]Event, len(evs))
	events := make([][]any, len(evs))
	queuedAt := sqldb.Now()
	for i, s := range evs {
		if s.row == nil {
			return nil, errs.E(errs.Internal, "an audit event to append was not signed (audit.Sign)")
		}
		out[i], events[i] = s.ev, s.row
	}
	const insertEvents = `INSERT INTO audit_events (id, org_id, at, actor_account, action, outcome,
		study_id, site_id, participant_id, object_type, object_id, security, body, sig) VALUES `
	if sqldb.DialectOf(tx) == sqldb.Postgres {
		// One statement, one round trip: the events, and their ids queued
		// by the same statement.
		queued := func(n int) (string, []any) {
			return fmt.Sprintf(` RETURNING id) INSERT INTO audit_queue (event_id, queued_at) SELECT id, $%d FROM e`, n), []any{queuedAt}
		}
		if err := insertRows(ctx, tx, `WITH e AS (`+insertEvents, events, queued); err != nil {
			return nil, appendFailed(err)
		}
		return out, nil
	}
	if err := insertRows(ctx, tx, insertEvents, events, nil); err != nil {
		return nil, appendFailed(err)
	}
	queue := make([][]any, len(evs))
	for i, s := range evs {
		queue[i] = []any{s.ev.ID, queuedAt}
	}
	if err := insertRows(ctx, tx, `INSERT INTO audit_queue (event_id, queued_at) VALUES `, queue, nil); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "queue audit event")
	}
	return out, nil
}

// appendFailed tells why events could not be inserted, or is nil.
func appendFailed(err error) error {
	switch {
	case err == nil:
		return nil
	case sqldb.IsUniqueViolation(err):
		return errs.Wrap(errs.Conflict, err, "an audit event with this id exists already")
	}
	return errs.Wrap(errs.Unavailable, err, "write audit event")
}

// signEvent returns the signature line of the note whose text is body
// ("— <key name> <base64>\n"), or "" without a key.
func signEvent(body []byte, key note.Signer) (string, error) {
	if key == nil {
		return "", nil
	}
	text := string(body) + "\n"
	signed, err := note.Sign(&note.Note{Text: text}, key)
	if errs.KindOf(err) == errs.Unavailable {
		return "", err // a sealed key not opened (package instance)
	}
	if err != nil || len(signed) <= len(text)+1 {
		return "", errs.E(errs.Internal, "the audit event could not be signed with the audit key")
	}
	return string(signed[len(text)+1:]), nil
}

// leafData is what the tree's leaf of an event hashes: its body alone for
// an event from before event signing, or the signed note of its body. An
// encoded event holds no newline, so the two never look alike.
func leafData(body, sig string) []byte {
	if sig == "" {
		return []byte(body)
	}
	return []byte(body + "\n\n" + sig)
}

// eventSignature reports whether the signed note of body and sig carries
// a valid signature by v. It is the check that tells the instance's events
// from rows that SQL alone wrote.
func eventSignature(body, sig string, v note.Verifier) bool {
	if v == nil || sig == "" {
		return false
	}
	n, err := note.Open(leafData(body, sig), note.VerifierList(v))
	return err == nil && n.Text == body+"\n" && len(n.Sigs) == 1
}

// signedEvent is an event's body and signature line, to check.
type signedEvent struct{ body, sig string }

// checkSignatures checks the signatures of evs by v on every core, as a
// check costs some 40 µs, and reports which verify.
func checkSignatures(evs []signedEvent, v note.Verifier) []bool {
	ok := make([]bool, len(evs))
	workers := min(runtime.GOMAXPROCS(0), (len(evs)+63)/64)
	if workers <= 1 {
		for i, e := range evs {
			ok[i] = eventSignature(e.body, e.sig, v)
		}
		return ok
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(evs); i += workers {
				ok[i] = eventSignature(evs[i].body, evs[i].sig, v)
			}
		})
	}
	wg.Wait()
	return ok
}

// normalize fills an event's defaults and checks it.
func normalize(ev Event) (Event, error) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC().Truncate(time.Microsecond)
	if ev.ID == "" {
		// Events are written in time order, so their index grows at its
		// end: a random id would cost a page of it for every event.
		ev.ID = ids.Timed(ev.Time)
	}
	if y := ev.Time.Year(); y < 1 || y > maxYearInJSON {
		return Event{}, invalid("time %s is out of range", ev.Time.Format(time.RFC3339))
	}
	if !namePattern.MatchString(ev.ID) {
		return Event{}, invalid("id must be 1 to %d letters, digits, '.', '_' or '-'", maxIDLength)
	}
	if !actionPattern.MatchString(ev.Action) {
		return Event{}, invalid("action must be 1 to 64 of a-z, 0-9, '.', '_', '-' (e.g. \"study.create\")")
	}
	switch ev.Outcome {
	case Success, Failure, Denied:
	default:
		return Event{}, invalid("outcome must be %q, %q or %q", Success, Failure, Denied)
	}
	ev.UserAgent = CleanUserAgent(ev.UserAgent)
	for _, f := range []struct{ name, value string }{
		{"org", ev.OrgID}, {"actor", ev.ActorAccount}, {"session", ev.ActorSession},
		{"role", ev.ActorRole}, {"addr", ev.RemoteAddr}, {"ua", ev.UserAgent},
		{"study", ev.StudyID}, {"site", ev.SiteID}, {"participant", ev.ParticipantID},
		{"object_type", ev.ObjectType}, {"object", ev.ObjectID},
	} {
		if err := checkString(f.name, f.value); err != nil {
			return Event{}, err
		}
	}
	if len(ev.Details) > maxDetails {
		return Event{}, invalid("at most %d details are allowed, got %d", maxDetails, len(ev.Details))
	}
	for k, v := range ev.Details {
		if !namePattern.MatchString(k) {
			return Event{}, invalid("detail keys must be 1 to %d letters, digits, '.', '_' or '-'", maxDetailKey)
		}
		if secretName(k) {
			return Event{}, invalid("detail %q is named like a secret; the audit trail never holds passwords, tokens, keys or codes", k)
		}
		if err := checkString("detail "+k, v); err != nil {
			return Event{}, err
		}
	}
	if len(ev.Details) == 0 {
		ev.Details = nil // one encoding for "no details"
	}
	return ev, nil
}

// MaxUserAgent bounds a user agent as the trail and the sessions keep it.
const MaxUserAgent = 256

// CleanUserAgent makes a client's User-Agent header fit for the trail: the
// sender chooses it, so it is made valid UTF-8 (a bad byte becomes U+FFFD),
// its control characters are dropped and it is cut to MaxUserAgent bytes on
// a character's boundary. Refusing it instead would refuse the event, and
// with it the request it records: a sign-in that goes unrecorded and
// uncounted.
func CleanUserAgent(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	for len(s) > MaxUserAgent {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// checkString refuses what would not survive the trip through JSON and both
// databases unchanged. The value itself never appears in the message.
func checkString(field, v string) error {
	if len(v) > maxString {
		return invalid("%s is longer than %d bytes", field, maxString)
	}
	if !utf8.ValidString(v) {
		return invalid("%s is not valid UTF-8", field)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return invalid("%s contains a NUL character", field)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return errs.E(errs.Invalid, "audit event: "+format, args...)
}

// Words that make a detail key name a secret (AUD-03): a word of the key
// that contains one of secretStems, or equals or ends with one of
// secretWords ("apiKey", "recovery_code", "newPassword", "totp").
var (
	secretStems = []string{"password", "passwd", "passphrase", "secret", "token", "credential", "cookie"}
	secretWords = []string{"key", "code", "otp", "pin", "pwd", "seed"}
	// A key whose last word is one of these names a reference to a secret,
	// not the secret: "key_id", "token_expires", "password_changed_at".
	referenceWords = map[string]bool{
		"id": true, "ids": true, "ref": true, "version": true, "kind": true, "type": true,
		"name": true, "count": true, "at": true, "expires": true, "fingerprint": true, "alg": true,
	}
)

// secretName reports whether a detail key is named like a secret.
func secretName(key string) bool {
	words := splitWords(key)
	for i, w := range words {
		if !secretWord(w) {
			continue
		}
		last := words[len(words)-1]
		if i < len(words)-1 && referenceWords[last] {
			continue
		}
		return true
	}
	return false
}

func secretWord(w string) bool {
	for _, s := range secretStems {
		if strings.Contains(w, s) {
			return true
		}
	}
	for _, s := range secretWords {
		if strings.HasSuffix(w, s) {
			return true
		}
	}
	return false
}

// splitWords splits "newPassword_hash" into "new", "password", "hash".
func splitWords(s string) []string {
	var words []string
	var cur []rune
	prevLower := false
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for _, r := range s {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			flush()
		}
		cur = append(cur, r)
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	flush()
	return words
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// insertRows inserts rows with multi-row INSERT statements; prefix ends in
// "VALUES ". A statement's text ends, after the rows, with what suffix
// (when not nil) gives for the number of the next placeholder, with the
// parameters it numbers so. Only placeholders are generated; values travel
// as parameters.
func insertRows(ctx context.Context, q sqldb.Querier, prefix string, rows [][]any, suffix func(next int) (string, []any)) error {
	param := sqldb.Placeholder(sqldb.DialectOf(q))
	for len(rows) > 0 {
		n := min(len(rows), max(1, insertParams/len(rows[0])))
		var b strings.Builder
		b.WriteString(prefix)
		args := make([]any, 0, n*len(rows[0]))
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			args = sqldb.AppendRow(&b, param, args, r...)
		}
		if suffix != nil {
			text, more := suffix(len(args) + 1)
			b.WriteString(text)
			args = append(args, more...)
		}
		if _, err := q.ExecContext(ctx, b.String(), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

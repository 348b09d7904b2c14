package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

const testOrigin = "custodia.audit/test"

// The tests' audit key: one for the package, as an instance has one.
var testSigner, testVerify = func() (note.Signer, note.Verifier) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "custodia-audit-test")
	if err != nil {
		panic(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		panic(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		panic(err)
	}
	return s, v
}()

func newLog(t testing.TB, db *sqldb.DB) *Log {
	t.Helper()
	return &Log{DB: db, Signer: testSigner, Verifier: testVerify, Origin: testOrigin}
}

func sampleEvent(i int) Event {
	return Event{
		OrgID:         "org1",
		ActorAccount:  fmt.Sprintf("acct%d", i%3),
		ActorSession:  "sess1",
		ActorRole:     "data-manager",
		RemoteAddr:    "192.0.2.7",
		UserAgent:     "test/1.0",
		Action:        "participant.read",
		Outcome:       Success,
		StudyID:       "study1",
		SiteID:        "site1",
		ParticipantID: fmt.Sprintf("part%d", i),
		ObjectType:    "form",
		ObjectID:      fmt.Sprintf("form%d", i),
		Details:       map[string]string{"reason": "monitoring", "n": fmt.Sprint(i)},
	}
}

// appendEach appends each event in its own transaction.
func appendEach(t testing.TB, db *sqldb.DB, evs ...Event) []Event {
	t.Helper()
	ctx := context.Background()
	out := make([]Event, len(evs))
	for i, ev := range evs {
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			out[i], err = Append(ctx, tx, testSigner, ev)
			return err
		})
		if err != nil {
			t.Fatalf("append event %d: %v", i, err)
		}
	}
	return out
}

func count(t testing.TB, db *sqldb.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func verify(t testing.TB, db *sqldb.DB, l *Log, kept []byte) Report {
	t.Helper()
	rep, err := Verify(context.Background(), db, VerifyOptions{Verifier: l.Verifier, Checkpoint: kept})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func TestAUD02_AppendSequenceCheckpointVerify(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		l := newLog(t, db)

		if _, err := l.Latest(ctx); !errs.Is(err, errs.NotFound) {
			t.Fatalf("Latest on an empty trail: %v, want NotFound", err)
		}
		var evs []Event
		for i := range 25 {
			evs = append(evs, sampleEvent(i))
		}
		evs[3].Time = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CET", 3600))
		stored := appendEach(t, db, evs...)
		if want := time.Date(2026, 1, 2, 2, 4, 5, 123456000, time.UTC); !stored[3].Time.Equal(want) || stored[3].Time.Location() != time.UTC {
			t.Errorf("stored time %v, want %v in UTC at microsecond precision", stored[3].Time, want)
		}
		for _, ev := range stored {
			if ev.ID == "" || ev.Time.IsZero() {
				t.Fatalf("Append did not fill id and time: %+v", ev)
			}
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_queue`); n != 25 {
			t.Fatalf("queue holds %d events, want 25", n)
		}

		for _, want := range []int{10, 10, 5, 0} {
			n, err := l.Sequence(ctx, 10)
			if err != nil || n != want {
				t.Fatalf("Sequence(10) = %d, %v; want %d", n, err, want)
			}
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_queue`); n != 0 {
			t.Fatalf("queue holds %d events after sequencing, want 0", n)
		}

		cp, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != 25 || cp.Origin != testOrigin || cp.Time.IsZero() {
			t.Fatalf("checkpoint %+v, want size 25 of %s", cp, testOrigin)
		}
		if !strings.HasPrefix(string(cp.Note), testOrigin+"\n25\n") {
			t.Errorf("checkpoint note %q is not a C2SP checkpoint", cp.Note)
		}
		again, err := l.Checkpoint(ctx)
		if err != nil || again.Size != 25 || string(again.Note) != string(cp.Note) {
			t.Fatalf("second Checkpoint without new events = %+v, %v; want the same checkpoint", again, err)
		}
		latest, err := l.Latest(ctx)
		if err != nil || latest.Root != cp.Root || latest.Size != 25 {
			t.Fatalf("Latest = %+v, %v", latest, err)
		}
		// Every batch was signed as it was integrated (AUD-02).
		if n := count(t, db, `SELECT COUNT(*) FROM audit_checkpoints`); n != 3 {
			t.Errorf("%d checkpoints stored, want 3 (one per batch)", n)
		}

		for i, want := range stored {
			got, err := l.EventAt(ctx, int64(i))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("EventAt(%d) = %+v\nwant %+v", i, got, want)
			}
		}
		if _, err := l.EventAt(ctx, 25); !errs.Is(err, errs.NotFound) {
			t.Errorf("EventAt beyond the log: %v, want NotFound", err)
		}

		var progress [][2]int64
		rep, err := Verify(ctx, db, VerifyOptions{
			Verifier:   l.Verifier,
			Checkpoint: cp.Note,
			Progress:   func(done, total int64) { progress = append(progress, [2]int64{done, total}) },
		})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Size != 25 || rep.Checkpoints != 3 || rep.FirstBad != -1 || rep.Unsigned != 0 {
			t.Fatalf("Verify = %+v, want OK with 25 signed events and 3 checkpoints", rep)
		}
		if len(progress) == 0 || progress[len(progress)-1] != [2]int64{25, 25} {
			t.Errorf("progress calls %v, want a final (25, 25)", progress)
		}

		// Events appended later extend the same tree.
		appendEach(t, db, sampleEvent(25), sampleEvent(26))
		cp2, err := l.Checkpoint(ctx)
		if err != nil || cp2.Size != 27 {
			t.Fatalf("Checkpoint after more events = %+v, %v; want size 27", cp2, err)
		}
		if rep := verify(t, db, l, cp.Note); !rep.OK() || rep.Checkpoints != 4 {
			t.Fatalf("Verify after growth = %+v", rep)
		}
	})
}

func TestAUD02_EmptyTrailVerifies(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		l := newLog(t, db)
		cp, err := l.Checkpoint(context.Background())
		if err != nil || cp.Size != 0 {
			t.Fatalf("Checkpoint of the empty tree = %+v, %v", cp, err)
		}
		if rep := verify(t, db, l, cp.Note); !rep.OK() || rep.Size != 0 || rep.Checkpoints != 1 {
			t.Fatalf("Verify of the empty trail = %+v", rep)
		}
	})
}

// An event without an id takes one that begins with its time, so the
// trail's index of ids grows at its end (BenchmarkAppendToALargeTrail).
func TestEventIDsBeginWithTheirTime(t *testing.T) {
	at := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	signed, err := Sign(testSigner, Event{Action: "auth.login", Outcome: Success, Time: at},
		Event{Action: "auth.login", Outcome: Success, Time: at.Add(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	first, second := signed[0].ev.ID, signed[1].ev.ID
	if want := ids.Timed(at); first[:10] != want[:10] || !ids.Valid(first) {
		t.Errorf("event of %v has id %q, want one beginning %q", at, first, want[:10])
	}
	if second <= first {
		t.Errorf("the later event's id %q does not sort after %q", second, first)
	}
}

func TestAUD01_AppendRefusesInvalidEvents(t *testing.T) {
	long := strings.Repeat("x", 513)
	many := map[string]string{}
	for i := range 33 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		name string
		edit func(*Event)
	}{
		{"no action", func(e *Event) { e.Action = "" }},
		{"upper-case action", func(e *Event) { e.Action = "Auth.Login" }},
		{"action with space", func(e *Event) { e.Action = "auth login" }},
		{"action too long", func(e *Event) { e.Action = strings.Repeat("a", 65) }},
		{"no outcome", func(e *Event) { e.Outcome = "" }},
		{"unknown outcome", func(e *Event) { e.Outcome = "ok" }},
		{"long actor", func(e *Event) { e.ActorAccount = long }},
		{"long detail value", func(e *Event) { e.Details = map[string]string{"reason": long} }},
		{"33 details", func(e *Event) { e.Details = many }},
		{"bad detail key", func(e *Event) { e.Details = map[string]string{"a b": "v"} }},
		{"invalid UTF-8", func(e *Event) { e.ObjectID = "\xff\xfe" }},
		{"NUL", func(e *Event) { e.StudyID = "a\x00b" }},
		{"bad id", func(e *Event) { e.ID = "no spaces allowed" }},
		{"year 10000", func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		for _, c := range cases {
			ev := sampleEvent(1)
			c.edit(&ev)
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := Append(ctx, tx, testSigner, ev)
				return err
			})
			if !errs.Is(err, errs.Invalid) {
				t.Errorf("%s: Append = %v, want an Invalid error", c.name, err)
			}
			if err != nil && strings.Contains(err.Error(), long) {
				t.Errorf("%s: error echoes the value", c.name)
			}
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_events`) + count(t, db, `SELECT COUNT(*) FROM audit_queue`); n != 0 {
			t.Fatalf("%d rows remain after refused appends", n)
		}
		ok := sampleEvent(1)
		ok.Action = "a0._-z"
		ok.Outcome = Denied
		appendEach(t, db, ok)
	})
}

func TestAUD01_FailedAppendFailsTheCallersTransaction(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		if _, err := db.ExecContext(ctx, `CREATE TABLE scratch (id TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		// A rolled-back transaction leaves neither the event nor its queue row.
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := Append(ctx, tx, testSigner, sampleEvent(1)); err != nil {
				return err
			}
			return errs.E(errs.Conflict, "the caller's change failed")
		})
		if !errs.Is(err, errs.Conflict) {
			t.Fatalf("InTx = %v", err)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_events`) + count(t, db, `SELECT COUNT(*) FROM audit_queue`); n != 0 {
			t.Fatalf("%d audit rows remain after rollback", n)
		}

		// An Append that fails (here: a duplicate id) fails the data write.
		first := appendEach(t, db, sampleEvent(1))[0]
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO scratch (id) VALUES ('row1')`); err != nil {
				return err
			}
			dup := sampleEvent(2)
			dup.ID = first.ID
			_, err := Append(ctx, tx, testSigner, dup)
			return err
		})
		if !errs.Is(err, errs.Conflict) {
			t.Fatalf("Append of a duplicate id = %v, want Conflict", err)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM scratch`); n != 0 {
			t.Fatalf("the data write was committed without its audit event")
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_events`); n != 1 {
			t.Fatalf("%d events, want 1", n)
		}
	})
}

func TestAUD03_NoSecretInEvents(t *testing.T) {
	refused := []string{
		"password", "Password", "new_password", "newPassword", "PASSWORD_HASH", "passwd",
		"token", "sessionToken", "reset-token", "access_token", "API_TOKEN",
		"secret", "clientSecret", "client_secret",
		"key", "KEY", "apiKey", "api_key", "private.key", "signingkey",
		"code", "recovery_code", "recoveryCode", "totp", "otp", "pin", "credentials",
	}
	allowed := []string{"reason", "key_id", "keyVersion", "token_id", "password_changed_at", "role", "ciphertext_sha256", "field"}
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		for _, k := range refused {
			ev := sampleEvent(1)
			ev.Details = map[string]string{"reason": "x", k: "hunter2-value"}
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := Append(ctx, tx, testSigner, ev)
				return err
			})
			if !errs.Is(err, errs.Invalid) {
				t.Errorf("detail %q: Append = %v, want refusal", k, err)
				continue
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("detail %q: the error echoes the secret value: %v", k, err)
			}
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_events`); n != 0 {
			t.Fatalf("%d events with secret-named details were stored", n)
		}
		for _, k := range allowed {
			ev := sampleEvent(1)
			ev.Details = map[string]string{k: "ref-123"}
			appendEach(t, db, ev)
		}
	})
}

func TestAUD05_SecurityEventsAreFlagged(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		lock := sampleEvent(1)
		lock.Action = "auth.lockout"
		lock.Security = true
		appendEach(t, db, lock, sampleEvent(2), sampleEvent(3))
		if n := count(t, db, `SELECT COUNT(*) FROM audit_events WHERE security = $1`, true); n != 1 {
			t.Fatalf("%d security events found, want 1", n)
		}
		var body string
		if err := db.QueryRowContext(ctx, `SELECT body FROM audit_events WHERE security = $1`, true).Scan(&body); err != nil {
			t.Fatal(err)
		}
		var ev Event
		if err := json.Unmarshal([]byte(body), &ev); err != nil || !ev.Security || ev.Action != "auth.lockout" {
			t.Fatalf("security event body %s", body)
		}
		l := newLog(t, db)
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if rep := verify(t, db, l, nil); !rep.OK() {
			t.Fatalf("Verify = %+v", rep)
		}
	})
}

func TestAUD02_AppendOnlyTriggersRefuseUpdateAndDelete(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		l := newLog(t, db)
		appendEach(t, db, sampleEvent(1), sampleEvent(2))
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		tables := map[string]string{
			"audit_events":      "body",
			"audit_log":         "leaf",
			"audit_hashes":      "hash",
			"audit_checkpoints": "note",
		}
		for table, col := range tables {
			before := count(t, db, `SELECT COUNT(*) FROM `+table)
			if before == 0 {
				t.Fatalf("%s is empty", table)
			}
			stmts := []string{
				`UPDATE ` + table + ` SET ` + col + ` = 'x'`,
				`DELETE FROM ` + table,
			}
			if d == sqldb.Postgres {
				stmts = append(stmts, `TRUNCATE `+table)
			}
			for _, s := range stmts {
				_, err := db.ExecContext(ctx, s)
				if err == nil || !strings.Contains(err.Error(), "append-only") {
					t.Errorf("%s: err = %v, want refusal", s, err)
				}
			}
			if after := count(t, db, `SELECT COUNT(*) FROM `+table); after != before {
				t.Errorf("%s: %d rows, had %d", table, after, before)
			}
		}
		if rep := verify(t, db, l, nil); !rep.OK() {
			t.Fatalf("Verify = %+v", rep)
		}
	})
}

func TestAUD02_VerifyStreamsLargeTrails(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		l := newLog(t, db)
		const n = 2*verifyPage + 321 // several pages of events and of hashes
		for start := 0; start < n; start += 700 {
			var evs []Event
			for i := start; i < min(start+700, n); i++ {
				evs = append(evs, sampleEvent(i))
			}
			if err := db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := appendEvents(ctx, tx, l.Signer, evs)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
		rep := verify(t, db, l, nil)
		if !rep.OK() || rep.Size != n || rep.Checkpoints != 7 {
			t.Fatalf("Verify = %+v, want OK with %d events and 7 checkpoints", rep, n)
		}
	})
}

// TestAUD02_EmptyTrailOfAnInstanceWithRecordsFails: a trail that must hold
// events (the caller says why) fails verification when it holds none, and
// events waiting to be sequenced are counted, not taken for an empty trail.
func TestAUD02_EmptyTrailOfAnInstanceWithRecordsFails(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		l := newLog(t, db)
		o := VerifyOptions{Verifier: l.Verifier, NotEmpty: "organizations exist"}
		rep, err := Verify(ctx, db, o)
		if err != nil {
			t.Fatal(err)
		}
		expectBad(t, rep, 0, "the trail holds no event, but organizations exist")
		appendEach(t, db, sampleEvent(1), sampleEvent(2))
		if rep, err = Verify(ctx, db, o); err != nil || !rep.OK() || rep.Queued != 2 || rep.Size != 0 {
			t.Errorf("two events waiting: %+v, %v; want OK with 2 queued", rep, err)
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if rep, err = Verify(ctx, db, o); err != nil || !rep.OK() || rep.Queued != 0 || rep.Size != 2 {
			t.Errorf("sequenced: %+v, %v; want OK with 2 events", rep, err)
		}
	})
}

// A user agent is the client's: it is cleaned (valid UTF-8, no control
// characters, at most MaxUserAgent bytes cut on a character), never a
// reason to refuse the event and with it the request (AUTH-11).
func TestAUD01_UserAgentIsCleanedNotRefused(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	ctx := context.Background()
	for _, ua := range []string{strings.Repeat("x", 600), "bad \xff\xfe bytes", "tab\tand\x00nul", strings.Repeat("é", 300)} {
		ev := sampleEvent(2)
		ev.UserAgent = ua
		var got Event
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			got, err = Append(ctx, tx, testSigner, ev)
			return err
		})
		if err != nil || got.UserAgent == "" || len(got.UserAgent) > MaxUserAgent || !utf8.ValidString(got.UserAgent) || strings.ContainsAny(got.UserAgent, "\t\x00") {
			t.Errorf("user agent %.20q: %q, %v", ua, got.UserAgent, err)
		}
	}
}

package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// countingVerifier is the test's audit verifier, counting the events
// (bodies, which begin with "{") whose signatures it checks.
type countingVerifier struct {
	note.Verifier
	events atomic.Int64
}

func (v *countingVerifier) Verify(msg, sig []byte) bool {
	if strings.HasPrefix(string(msg), "{") {
		v.events.Add(1)
	}
	return v.Verifier.Verify(msg, sig)
}

// issuingLog is a trail's log told of the events this process writes,
// with a verifier that counts its checks.
func issuingLog(t *testing.T, d sqldb.Dialect) (*sqldb.DB, *Log, *countingVerifier) {
	t.Helper()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	v := &countingVerifier{Verifier: testVerify}
	l := newLog(t, db)
	l.Verifier, l.Issued = v, &Issued{}
	return db, l, v
}

// appendIssued signs evs, appends them in one transaction and tells
// issued, as the gate's batches do.
func appendIssued(t *testing.T, db *sqldb.DB, issued *Issued, evs ...Event) []Signed {
	t.Helper()
	ctx := context.Background()
	signed, err := Sign(testSigner, evs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := AppendSigned(ctx, tx, signed)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	issued.Add(signed)
	return signed
}

// (c) The sequencer adopts the events this process wrote without checking
// their signatures again, and checks every other one: the trail it builds
// verifies whole.
func TestAUD02_SequencerTakesTheVerdictOnEventsThisProcessWrote(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, l, v := issuingLog(t, d)
		appendIssued(t, db, l.Issued, sampleEvent(1), sampleEvent(2), sampleEvent(3))
		other := appendEach(t, db, sampleEvent(4)) // written elsewhere: not issued here
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_log`); n != 4 {
			t.Fatalf("%d events sequenced, want 4", n)
		}
		if got := v.events.Load(); got != 1 {
			t.Errorf("the sequencer checked %d event signatures, want 1 (the event %s this process did not write)", got, other[0].ID)
		}
		if rep := verify(t, db, l, nil); !rep.OK() || rep.Size != 4 {
			t.Fatalf("trail: %+v", rep)
		}
	})
}

// (c) An event this process wrote, then changed in the database (its body,
// or its signature line for another key's), is not the event it wrote: the
// sequencer checks it, refuses it and adopts the untouched one beside it.
func TestAUD02_AnIssuedEventChangedInTheDatabaseIsCheckedAndRefused(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, l, v := issuingLog(t, d)
		var logged []string
		l.Logf = func(format string, args ...any) { logged = append(logged, format) }
		signed := appendIssued(t, db, l.Issued, sampleEvent(10), sampleEvent(11), sampleEvent(12))
		edited, resigned, untouched := signed[0].ev, signed[1].ev, signed[2].ev
		dropTriggers(t, db)
		var body string
		if err := db.QueryRowContext(ctx, `SELECT body FROM audit_events WHERE id = $1`, edited.ID).Scan(&body); err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(body, `"monitoring"`, `"monitorinh"`, 1)
		if changed == body {
			t.Fatalf("the test's edit found nothing to change in %s", body)
		}
		exec(t, db, `UPDATE audit_events SET body = $1 WHERE id = $2`, changed, edited.ID)
		exec(t, db, `UPDATE audit_events SET sig = $1 WHERE id = $2`, strangerSig(t, resigned), resigned.ID)
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		for _, ev := range []Event{edited, resigned} {
			if n := count(t, db, `SELECT COUNT(*) FROM audit_log WHERE event_id = $1`, ev.ID); n != 0 {
				t.Errorf("the changed event %s was adopted", ev.ID)
			}
		}
		if n := count(t, db, `SELECT COUNT(*) FROM audit_log WHERE event_id = $1`, untouched.ID); n != 1 {
			t.Errorf("the untouched event was not adopted")
		}
		// The edited body's signature is checked (and fails); the line
		// of another key is refused by its key hash before any check.
		if got := v.events.Load(); got != 1 {
			t.Errorf("the sequencer checked %d signatures, want the edited event's", got)
		}
		if len(logged) != 2 {
			t.Errorf("logged %q, want one line per refused event", logged)
		}
	})
}

// Issued holds two generations: the events of the one before last are
// forgotten, and checked again if they come.
func TestIssuedForgetsTheGenerationBeforeLast(t *testing.T) {
	s := &Issued{}
	leaf := func(i int) tlog.Hash { return tlog.RecordHash([]byte{byte(i), byte(i >> 8), byte(i >> 16)}) }
	var evs []Signed
	for i := range 2*issuedGeneration + 1 {
		evs = append(evs, Signed{leaf: leaf(i)})
	}
	s.Add(evs)
	s.Add([]Signed{{}}) // unsigned: nothing to remember
	held := func(i int) bool {
		_, a := s.cur[leaf(i)]
		_, b := s.old[leaf(i)]
		return a || b
	}
	if held(0) || held(issuedGeneration-1) {
		t.Error("the first generation is still held after two more began")
	}
	if !held(issuedGeneration) || !held(2*issuedGeneration) {
		t.Error("the last two generations are not held")
	}
	if len(s.cur)+len(s.old) > 2*issuedGeneration {
		t.Errorf("holds %d events, more than two generations", len(s.cur)+len(s.old))
	}
	var none *Issued
	none.Add(evs) // a nil Issued remembers nothing, and does not fail
	if none.has(signedEvent{"{}", "— x AAAA\n"}, testVerify) {
		t.Error("a nil Issued has an event")
	}
}

// signedWith takes one signature line of the verifier's key, by name and
// key hash, and nothing else.
func TestSignedWithNamesTheVerifiersKeyOnly(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	sig, err := signEvent(body, testSigner)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := note.GenerateKey(rand.Reader, testSigner.Name())
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	other, err := signEvent(body, stranger)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sig string
		want      bool
	}{
		{"the key's line", sig, true},
		{"another key of the same name", other, false},
		{"two lines", sig + sig, false},
		{"no newline", strings.TrimSuffix(sig, "\n"), false},
		{"another name", strings.Replace(sig, testSigner.Name(), "someone-else", 1), false},
		{"not base64", strings.Replace(sig, " ", " !", 2), false},
		{"no dash", strings.TrimPrefix(sig, "— "), false},
		{"empty", "", false},
	} {
		if got := signedWith(tc.sig, testVerify); got != tc.want {
			t.Errorf("%s: signedWith(%q) = %v, want %v", tc.name, tc.sig, got, tc.want)
		}
	}
}

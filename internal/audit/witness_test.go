package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// cutTail removes the events from index k on from every audit table, as
// an intruder who wants them gone unseen would, checkpoints included.
func cutTail(t *testing.T, db *sqldb.DB, evs []Event, k int) {
	t.Helper()
	dropTriggers(t, db)
	for _, ev := range evs[k:] {
		exec(t, db, `DELETE FROM audit_events WHERE id = $1`, ev.ID)
	}
	exec(t, db, `DELETE FROM audit_log WHERE seq >= $1`, int64(k))
	exec(t, db, `DELETE FROM audit_hashes WHERE idx >= $1`, tlog.StoredHashCount(int64(k)))
	exec(t, db, `DELETE FROM audit_checkpoints WHERE size > $1`, int64(k))
}

// witnessedTrail is trail with a file witness that saw every checkpoint.
func witnessedTrail(t *testing.T, d sqldb.Dialect) (*sqldb.DB, *Log, []Event, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "witness.log")
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	l := newLog(t, db)
	l.Witnesses = []Witness{&FileWitness{Path: path, Verifier: l.Verifier}}
	var evs []Event
	for i := range trailLen {
		evs = append(evs, appendEach(t, db, sampleEvent(i))...)
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.WitnessLatest(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return db, l, evs, path
}

func TestAUD02_FileWitnessKeepsEveryCheckpoint(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		_, l, _, path := witnessedTrail(t, d)
		cps, err := ReadWitnessFile(path, l.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) != trailLen || cps[trailLen-1].Size != trailLen {
			t.Fatalf("witness file holds %d checkpoints, the last of size %d; want %d up to %d", len(cps), cps[len(cps)-1].Size, trailLen, trailLen)
		}
		st := l.WitnessStatus()
		if len(st) != 1 || st[0].Size != trailLen || st[0].Behind != 0 || st[0].Error != "" {
			t.Errorf("WitnessStatus = %+v", st)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("witness file mode: %v, %v; want 0600", fi.Mode(), err)
		}
	})
}

// (a) The last events removed from every table consistently: the witness
// has seen more, so the instance refuses to sign or present the trail.
func TestAUD02_InstanceRefusesATrailAWitnessSawLonger(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, l, evs, path := witnessedTrail(t, d)
		cutTail(t, db, evs, 9)
		// A new process, as after a restart, knows nothing but the witness.
		fresh := newLog(t, db)
		fresh.Witnesses = []Witness{&FileWitness{Path: path, Verifier: l.Verifier}}
		err := fresh.WitnessLatest(ctx)
		if !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "has seen 12 audit events but this trail holds 9") {
			t.Fatalf("WitnessLatest on a cut trail = %v, want a refusal naming 12 and 9", err)
		}
		appendEach(t, db, sampleEvent(40))
		if _, err := fresh.Checkpoint(ctx); !errs.Is(err, errs.Conflict) {
			t.Errorf("Checkpoint after the refusal = %v, want the refusal", err)
		}
		if fresh.Refused() == nil {
			t.Errorf("Refused() = nil after a witness saw a longer trail")
		}
	})
}

// (b) A middle event removed and the tree rebuilt: the witness's tree is
// not extended by it, and the instance refuses.
func TestAUD02_InstanceRefusesATrailAWitnessSawDifferent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db, l, evs, path := witnessedTrail(t, d)
		dropTriggers(t, db)
		exec(t, db, `DELETE FROM audit_events WHERE id = $1`, evs[5].ID)
		rebuild(t, db, append(eventIDs(evs[:5]), eventIDs(evs[6:])...), 5)
		// Fill the gap so that the trail is as long as the witness's.
		appendEach(t, db, sampleEvent(50), sampleEvent(51))
		fresh := newLog(t, db)
		fresh.Witnesses = []Witness{&FileWitness{Path: path, Verifier: l.Verifier}}
		if _, err := fresh.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		err := fresh.WitnessLatest(ctx)
		if !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "does not extend") {
			t.Fatalf("WitnessLatest on a rewritten trail = %v, want a refusal", err)
		}
	})
}

func TestAUD02_WitnessFileOutsideTheDataFolder(t *testing.T) {
	data := t.TempDir()
	for _, p := range []string{filepath.Join(data, "w.log"), filepath.Join(data, "audit", "w.log"), data + "/./sub/../w.log"} {
		if err := CheckWitnessPath(p, data); !errs.Is(err, errs.Invalid) {
			t.Errorf("CheckWitnessPath(%s) = %v, want Invalid", p, err)
		}
	}
	if err := CheckWitnessPath(filepath.Join(t.TempDir(), "w.log"), data); err != nil {
		t.Errorf("a file elsewhere: %v", err)
	}
	if err := CheckWitnessPath(data+"-witness.log", data); err != nil {
		t.Errorf("a sibling file whose name starts like the folder's: %v", err)
	}
}

func outside(t *testing.T, l *Log, path string) []OutsideCheckpoint {
	t.Helper()
	cps, err := ReadWitnessFile(path, l.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	var out []OutsideCheckpoint
	for _, cp := range cps {
		out = append(out, OutsideCheckpoint{Source: "witness file", Checkpoint: cp})
	}
	return out
}

func verifyOutside(t *testing.T, db *sqldb.DB, l *Log, o []OutsideCheckpoint) Report {
	t.Helper()
	rep, err := Verify(context.Background(), db, VerifyOptions{Verifier: l.Verifier, Outside: o})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// (a) The last events removed from every audit table consistently, their
// checkpoints too: the database alone cannot tell, the witness file can.
func TestAUD02_VerifyCatchesACutTailAgainstTheWitness(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs, path := witnessedTrail(t, d)
		cutTail(t, db, evs, 9)
		if rep := verify(t, db, l, nil); !rep.OK() {
			t.Fatalf("a consistent cut without a witness: %+v (only a copy outside can tell)", rep)
		}
		rep := verifyOutside(t, db, l, outside(t, l, path))
		expectBad(t, rep, 9, "witness file at size 12: the log holds only 9 events (events removed)")
	})
}

// (b) A middle event removed, later ones renumbered, the tree rebuilt and
// the checkpoints after it removed: the witness file's checkpoints pin the
// change to the index of the removed event.
func TestAUD02_VerifyNamesTheRemovedEventAgainstTheWitness(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, evs, path := witnessedTrail(t, d)
		dropTriggers(t, db)
		exec(t, db, `DELETE FROM audit_events WHERE id = $1`, evs[5].ID)
		rebuild(t, db, append(eventIDs(evs[:5]), eventIDs(evs[6:])...), 5)
		rep := verifyOutside(t, db, l, outside(t, l, path))
		expectBad(t, rep, 5, "witness file at size 6: root differs (history rewritten at an index from 5 to 5)")
		expectBad(t, rep, 5, "witness file at size 12: the log holds only 11 events (events removed)")
	})
}

// Equivocation: two checkpoints of one size, both signed by the audit key,
// with different roots, are a finding of their own, whichever is true.
func TestAUD02_VerifyReportsEquivocation(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		db, l, _, path := witnessedTrail(t, d)
		other := tlog.RecordHash([]byte("another history"))
		signed, err := note.Sign(&note.Note{Text: checkpointBody(testOrigin, 7, other)}, l.Signer)
		if err != nil {
			t.Fatal(err)
		}
		split, err := ParseCheckpoint(signed, l.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		o := append(outside(t, l, path), OutsideCheckpoint{Source: "a checkpoint handed to an auditor", Checkpoint: split})
		rep := verifyOutside(t, db, l, o)
		if rep.Equivocations != 1 {
			t.Errorf("Equivocations = %d, want 1", rep.Equivocations)
		}
		expectBad(t, rep, -1, "equivocation: the audit key signed two checkpoints of size 7 with different roots (a stored checkpoint and a checkpoint handed to an auditor)")
		if len(rep.Problems) != 1 {
			t.Errorf("problems %q, want the equivocation alone: the trail matches one of the two", rep.Problems)
		}
		// The same size twice with one root is no finding.
		rep = verifyOutside(t, db, l, append(outside(t, l, path), outside(t, l, path)...))
		if !rep.OK() || rep.Equivocations != 0 {
			t.Errorf("the witness file given twice: %+v", rep)
		}
	})
}

// The file witness reads only the end of its file, however long it grows,
// and refuses to go on from an end that is not a checkpoint of the key.
func TestAUD02_FileWitnessGoesOnFromTheEndOfALongFile(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	l := newLog(t, db)
	path := filepath.Join(t.TempDir(), "witness.log")
	l.Witnesses = []Witness{&FileWitness{Path: path, Verifier: l.Verifier}}
	for i := range 60 {
		appendEach(t, db, sampleEvent(i))
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.WitnessLatest(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() < 8<<10 {
		t.Fatalf("witness file of %v bytes (%v); want one longer than the first read of its end", fi.Size(), err)
	}
	if cps, err := ReadWitnessFile(path, l.Verifier); err != nil || len(cps) != 60 {
		t.Fatalf("ReadWitnessFile: %d checkpoints, %v", len(cps), err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("not a checkpoint\n\n")
	f.Close()
	appendEach(t, db, sampleEvent(99))
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := newLog(t, db)
	fresh.Witnesses = l.Witnesses
	if err := fresh.WitnessLatest(ctx); err != nil {
		t.Fatalf("a witness file that cannot be read is a witness down, not a split: %v", err)
	}
	if st := fresh.WitnessStatus(); st[0].Error == "" || st[0].Behind != 61 {
		t.Errorf("status of a witness file with a bad end: %+v", st)
	}
}

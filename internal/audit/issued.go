package audit

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Issued remembers the events this process signed and wrote (Add), so
// that the sequencer, reading them back from the queue, need not check
// their signatures again: a body and signature line this process made with
// the audit key are the audit key's, and a signature check costs more than
// all the rest of an event's sequencing. Only the exact body and signature
// line count: a row changed in the database, by one byte, is not one of
// them and is checked as any other (Log.checkSignatures). It is a cache of
// verdicts, never a reason to adopt what would not verify.
//
// It holds the events of the last two generations of issuedGeneration
// each, so that it stays small on a node that does not sequence; an event
// sequenced after it was forgotten is checked. The zero value is ready;
// a nil *Issued remembers nothing.
type Issued struct {
	mu       sync.Mutex
	cur, old map[tlog.Hash]struct{}
}

// issuedGeneration is how many events a generation of Issued holds: some
// seconds of events under load, at about 70 bytes each.
const issuedGeneration = 1 << 14

// Add remembers evs, once they are written.
func (s *Issued) Add(evs []Signed) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		if ev.leaf == (tlog.Hash{}) {
			continue // not signed (no audit key)
		}
		if len(s.cur) >= issuedGeneration || s.cur == nil {
			s.old, s.cur = s.cur, make(map[tlog.Hash]struct{}, issuedGeneration)
		}
		s.cur[ev.leaf] = struct{}{}
	}
}

// Len is how many events s remembers.
func (s *Issued) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cur) + len(s.old)
}

// has reports whether e is an event this process issued, signed by the
// key v verifies.
func (s *Issued) has(e signedEvent, v note.Verifier) bool {
	if s == nil || v == nil || !signedWith(e.sig, v) {
		return false
	}
	leaf := tlog.RecordHash(leafData(e.body, e.sig))
	s.mu.Lock()
	defer s.mu.Unlock()
	_, inCur := s.cur[leaf]
	_, inOld := s.old[leaf]
	return inCur || inOld
}

// signedWith reports whether sig is one signature line ("— name
// base64\n") naming the key v verifies: its name and key hash.
func signedWith(sig string, v note.Verifier) bool {
	line, ok := strings.CutPrefix(sig, "— ")
	if !ok {
		return false
	}
	line, ok = strings.CutSuffix(line, "\n")
	if !ok || strings.Contains(line, "\n") {
		return false
	}
	name, b64, ok := strings.Cut(line, " ")
	if !ok || name != v.Name() {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < 5 {
		return false
	}
	return binary.BigEndian.Uint32(raw) == v.KeyHash()
}

// checkSignatures checks the signatures of evs by the log's verifier,
// taking the verdict on the events this process issued from l.Issued, and
// reports which verify.
func (l *Log) checkSignatures(evs []signedEvent) []bool {
	ok := make([]bool, len(evs))
	var rest []signedEvent
	var at []int
	for i, e := range evs {
		if l.Issued.has(e, l.Verifier) {
			ok[i] = true
			continue
		}
		rest, at = append(rest, e), append(at, i)
	}
	for j, good := range checkSignatures(rest, l.Verifier) {
		ok[at[j]] = good
	}
	return ok
}

package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/errs"
)

// A Witness keeps a copy of the trail's head outside the instance and its
// database (AUD-02): each signed checkpoint is handed to it as it is made,
// with a proof that it extends the tree the witness saw last. A witness
// that has seen a larger tree, or a different one, refuses it, so a trail
// rolled back or rewritten in the database is found by the instance (which
// then refuses to sign it) and by the verifier, whatever the database
// holds. FileWitness is an append-only file; internal/audit/witness speaks
// the C2SP tlog-witness protocol to a witness over HTTP.
type Witness interface {
	// Name names the witness in messages and in /readyz.
	Name() string
	// AddCheckpoint hands the witness the signed checkpoint note cp with a
	// consistency proof from oldSize, the size the witness saw last, and
	// returns the witness's cosignature lines (none for a file). It fails
	// with *WitnessConflict when the witness's size is not oldSize and
	// with ErrWitnessInconsistent when the proof does not lead from the
	// tree it saw to cp's.
	AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, cp []byte) ([]byte, error)
}

// WitnessConflict is a witness's answer that it saw a tree of Known events
// last, not of the size the log said.
type WitnessConflict struct{ Known int64 }

func (c *WitnessConflict) Error() string {
	return fmt.Sprintf("the witness saw a tree of %d events last", c.Known)
}

// ErrWitnessInconsistent is a witness's answer that the checkpoint does not
// extend the tree it saw: this trail is not the one it witnessed.
var ErrWitnessInconsistent = errors.New("the checkpoint does not extend the tree the witness saw")

// FileWitness appends each checkpoint it accepts to a file, which should
// live outside the data folder and, better, on another machine's storage or
// an append-only (chattr +a) file. It accepts a checkpoint only if the
// instance's key signed it and it extends the last one in the file, as a
// C2SP witness would. The file is a series of signed notes, each followed
// by a blank line; ReadWitnessFile reads it back.
type FileWitness struct {
	Path     string
	Verifier note.Verifier // the instance's audit key
	mu       sync.Mutex
}

// Name is the file's path.
func (f *FileWitness) Name() string { return "file:" + f.Path }

// AddCheckpoint checks cp against the file's last checkpoint and appends it.
func (f *FileWitness) AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, cpNote []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp, err := ParseCheckpoint(cpNote, f.Verifier)
	if err != nil {
		return nil, err
	}
	file, err := os.OpenFile(f.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "open witness file "+f.Path)
	}
	defer file.Close()
	// Another process (a second node, the CLI) may append at once.
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "lock witness file "+f.Path)
	}
	last, err := lastWitnessNote(file, f.Verifier)
	if err != nil {
		return nil, errs.E(errs.Unavailable, "witness file %s: %s", f.Path, errs.SafeMessage(err))
	}
	if last.Origin != "" && last.Origin != cp.Origin {
		return nil, errs.E(errs.Invalid, "witness file %s keeps the checkpoints of log %q, not %q", f.Path, last.Origin, cp.Origin)
	}
	if oldSize != last.Size {
		return nil, &WitnessConflict{Known: last.Size}
	}
	switch {
	case last.Size == cp.Size:
		if last.Root != cp.Root {
			return nil, ErrWitnessInconsistent
		}
		return nil, nil // seen already
	case last.Size > 0:
		if err := tlog.CheckTree(proof, cp.Size, cp.Root, last.Size, last.Root); err != nil {
			return nil, ErrWitnessInconsistent
		}
	}
	if _, err := file.Write(append(append([]byte(nil), cpNote...), '\n')); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "append to witness file "+f.Path)
	}
	if err := file.Sync(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "sync witness file "+f.Path)
	}
	return nil, nil
}

// lastWitnessNote reads the last checkpoint of a witness file from its
// end, so that handing over a checkpoint does not read a file that grows
// for years; a file without any holds the empty tree's zero size.
func lastWitnessNote(file *os.File, v note.Verifier) (Checkpoint, error) {
	fi, err := file.Stat()
	if err != nil {
		return Checkpoint{}, err
	}
	for tail := int64(4 << 10); ; tail *= 4 {
		n := min(tail, fi.Size())
		buf := make([]byte, n)
		if _, err := file.ReadAt(buf, fi.Size()-n); err != nil && !errors.Is(err, io.EOF) {
			return Checkpoint{}, err
		}
		// A note, its signature lines, then a blank line: the last note
		// starts after the blank line that ends the one before it.
		text := bytes.TrimRight(buf, "\n")
		if len(text) == 0 {
			return Checkpoint{}, nil
		}
		split := bytes.LastIndex(text, []byte("\n\n"))
		start := -1
		if split >= 0 {
			if prev := bytes.LastIndex(text[:split], []byte("\n\n")); prev >= 0 {
				start = prev + 2
			}
		}
		if start < 0 && n == fi.Size() {
			start = 0
		}
		if start >= 0 {
			cp, err := ParseCheckpoint(append(text[start:], '\n'), v)
			if err != nil {
				return Checkpoint{}, errs.E(errs.Invalid, "its last checkpoint: %s", strings.TrimPrefix(errs.SafeMessage(err), "checkpoint: "))
			}
			return cp, nil
		}
		if n == fi.Size() || tail > 1<<20 {
			return Checkpoint{}, errs.E(errs.Invalid, "its end is not a checkpoint")
		}
	}
}

// ReadWitnessFile reads the checkpoints a FileWitness kept, checking each
// signature with v. A missing file holds none.
func ReadWitnessFile(path string, v note.Verifier) ([]Checkpoint, error) {
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read witness file "+path)
	}
	defer file.Close()
	cps, err := readWitnessNotes(file, v)
	if err != nil {
		return nil, errs.E(errs.Invalid, "witness file %s: %s", path, errs.SafeMessage(err))
	}
	return cps, nil
}

// readWitnessNotes splits a witness file into its notes: body lines up to
// a blank line, signature lines ("— …"), and a blank line after each note.
// A note whose signature does not verify is an error, not skipped: the
// file is the operator's evidence.
func readWitnessNotes(r io.Reader, v note.Verifier) ([]Checkpoint, error) {
	var out []Checkpoint
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur bytes.Buffer
	inSigs := false
	flush := func() error {
		if cur.Len() == 0 {
			return nil
		}
		cp, err := ParseCheckpoint(cur.Bytes(), v)
		if err != nil {
			return errs.E(errs.Invalid, "checkpoint %d: %s", len(out)+1, strings.TrimPrefix(errs.SafeMessage(err), "checkpoint: "))
		}
		out = append(out, cp)
		cur.Reset()
		inSigs = false
		return nil
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" && inSigs:
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		case line == "" && cur.Len() > 0:
			inSigs = true
		case line == "":
			continue
		}
		cur.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read witness notes")
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckWitnessPath refuses a witness file inside the data folder: whoever
// can rewrite the data folder could rewrite it too.
func CheckWitnessPath(path, dataDir string) error {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dataDir)
	if err1 != nil || err2 != nil {
		return errs.E(errs.Invalid, "witness file %s: cannot resolve its path", path)
	}
	if rp, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		p = filepath.Join(rp, filepath.Base(p))
	}
	if rd, err := filepath.EvalSymlinks(d); err == nil {
		d = rd
	}
	if rel, err := filepath.Rel(d, p); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return errs.E(errs.Invalid, "witness file %s is inside the data folder %s; keep it where the data folder's owner cannot rewrite it", path, dataDir)
	}
	return nil
}

// WitnessStatus is what the instance knows of one witness, for /readyz.
type WitnessStatus struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`            // events in the last checkpoint it accepted; -1 if none yet
	Behind int64  `json:"behind"`          // events of the latest checkpoint it has not accepted
	Error  string `json:"error,omitempty"` // why the last hand-over failed
}

// witnessState is the Log's view of one witness.
type witnessState struct {
	known    int64 // the witness's size, as last learnt; -1 unknown
	accepted int64 // size of the last checkpoint it accepted here; -1 none
	err      error
	failedAt time.Time
}

// witnessRetry is how long a witness that failed is left alone.
const witnessRetry = 15 * time.Second

// refusal is set once a witness has seen a larger or different tree.
type refusal struct {
	mu  sync.Mutex
	err error
}

func (l *Log) refused() error {
	l.split.mu.Lock()
	defer l.split.mu.Unlock()
	return l.split.err
}

func (l *Log) refuse(err error) {
	l.split.mu.Lock()
	defer l.split.mu.Unlock()
	if l.split.err == nil {
		l.split.err = err
	}
}

// WitnessLatest hands the latest stored checkpoint to every witness that
// has not accepted it, and returns the first refusal: a witness that saw
// a larger tree, or one this trail does not extend. From then on the Log
// refuses to sign or present checkpoints: the database was rolled back
// or rewritten, and an operator must find out how (audit verify). A
// witness that cannot be reached is reported in Status and tried again.
func (l *Log) WitnessLatest(ctx context.Context) error {
	if len(l.Witnesses) == 0 {
		return nil
	}
	if err := l.refused(); err != nil {
		return err
	}
	cp, err := l.Latest(ctx)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l.witnessMu.Lock()
	defer l.witnessMu.Unlock()
	if l.witnesses == nil {
		l.witnesses = make(map[string]*witnessState)
	}
	l.witnessed = cp.Size
	for _, w := range l.Witnesses {
		st := l.witnesses[w.Name()]
		if st == nil {
			st = &witnessState{known: -1, accepted: -1}
			l.witnesses[w.Name()] = st
		}
		if st.accepted == cp.Size || (st.err != nil && time.Since(st.failedAt) < witnessRetry) {
			continue
		}
		if err := l.witnessOne(ctx, w, st, cp); err != nil {
			l.refuse(err)
			return err
		}
	}
	return nil
}

// witnessOne hands cp to w, learning w's size from its answer when it is
// not the one expected. It returns only a refusal; other failures stay in
// st.
func (l *Log) witnessOne(ctx context.Context, w Witness, st *witnessState, cp Checkpoint) error {
	old := max(st.known, 0)
	for range 3 {
		if old > cp.Size {
			return errs.E(errs.Conflict, "witness %s has seen %d audit events but this trail holds %d: the trail was rolled back or cut; run custodia audit verify", w.Name(), old, cp.Size)
		}
		var proof tlog.TreeProof
		if old > 0 && old < cp.Size {
			p, err := tlog.ProveTree(cp.Size, old, newHashReader(ctx, l.DB))
			if err != nil {
				st.err, st.failedAt = asUnavailable(err, "prove audit tree consistency"), time.Now()
				return nil
			}
			proof = p
		}
		cosig, err := w.AddCheckpoint(ctx, old, proof, cp.Note)
		var conflict *WitnessConflict
		switch {
		case errors.As(err, &conflict):
			st.known, old = conflict.Known, conflict.Known
			continue
		case errors.Is(err, ErrWitnessInconsistent):
			return errs.E(errs.Conflict, "witness %s saw a tree of %d events that this trail does not extend: the trail was rewritten; run custodia audit verify", w.Name(), old)
		case err != nil:
			st.err, st.failedAt = err, time.Now()
			l.logf("audit witness %s: %v", w.Name(), err)
			return nil
		}
		st.known, st.accepted, st.err = cp.Size, cp.Size, nil
		if len(cosig) > 0 {
			l.logf("audit witness %s cosigned the checkpoint of %d events", w.Name(), cp.Size)
		}
		return nil
	}
	st.err, st.failedAt = errs.E(errs.Unavailable, "witness %s keeps changing its size", w.Name()), time.Now()
	return nil
}

// WitnessStatus reports each witness: the size it accepted last, how far
// it is behind the latest checkpoint handed out, and its last failure.
func (l *Log) WitnessStatus() []WitnessStatus {
	l.witnessMu.Lock()
	defer l.witnessMu.Unlock()
	out := make([]WitnessStatus, 0, len(l.Witnesses))
	for _, w := range l.Witnesses {
		s := WitnessStatus{Name: w.Name(), Size: -1, Behind: l.witnessed}
		if st := l.witnesses[w.Name()]; st != nil {
			s.Size = st.accepted
			s.Behind = l.witnessed - max(st.accepted, 0)
			if st.err != nil {
				s.Error = errs.SafeMessage(st.err)
			}
		}
		out = append(out, s)
	}
	return out
}

// Refused reports why the Log refuses to present its tree, or nil.
func (l *Log) Refused() error { return l.refused() }

package audit

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Verifier note.Verifier // the checkpoint verifier key, from a copy kept away from the database
	// Checkpoint is an optional signed checkpoint kept outside the database
	// (e.g. by the operator or a witness); the trail must still contain the
	// tree it describes.
	Checkpoint []byte
	// NotEmpty, when set, says why this trail cannot be empty (records
	// whose creation is on the trail exist): a trail with no event, neither
	// sequenced nor waiting, is then a problem, not a success.
	NotEmpty string
	// Outside are more checkpoints kept outside the database, such as a
	// witness file's (ReadWitnessFile); each must be signed by Verifier, and
	// the trail must contain every tree they describe.
	Outside []OutsideCheckpoint
	// Witnesses are asked what they saw: each is handed the newest
	// checkpoint that verified, as the instance would hand it over, and
	// must find that it extends the tree it saw last.
	Witnesses []Witness
	Progress  func(done, total int64) // called every 10000 events and at the end
}

// OutsideCheckpoint is a checkpoint kept outside the database and where it
// was kept, for the report ("witness file /backup/audit.log").
type OutsideCheckpoint struct {
	Source     string
	Checkpoint Checkpoint
}

// Report is the outcome of Verify: one line per problem found, for people.
type Report struct {
	Size        int64 // events in the log
	Queued      int64 // events waiting to be sequenced, not verified yet
	Checkpoints int   // stored checkpoints checked
	// Unsigned is how many events, from index 0, were written before
	// events were signed (an upgraded trail's unsigned prefix): signed
	// checkpoints and witnesses protect them, their own signature does not.
	Unsigned int64
	// Equivocations counts pairs of checkpoints of one size, both signed
	// by the audit key, whose roots differ.
	Equivocations int
	FirstBad      int64    // lowest index that is, or may be, altered; -1 if none
	Problems      []string // one human line per problem
	// Witnessed says, one line per witness asked, what it saw.
	Witnessed []string
}

// OK reports whether the trail verified without any problem.
func (r Report) OK() bool { return r.FirstBad < 0 && len(r.Problems) == 0 }

const (
	verifyPage    = 2000 // events per query
	hashPage      = 8000 // stored hashes per query
	progressEvery = 10000
	maxProblems   = 1000
)

// Verify checks the whole audit trail against itself and its signed
// checkpoints, streaming it in pages so that memory does not grow with the
// trail:
//
//   - the log's indexes are gap-free, every event is present, its body has
//     the log's leaf hash, names the event's own id, and agrees with the
//     event's searchable columns;
//   - the tree recomputed from the events equals the stored tree hashes and
//     the root of every stored checkpoint, whose signatures are checked;
//   - no event exists outside both the log and the queue;
//   - the tree still contains the optional externally kept checkpoint.
//
// It returns an error only when it cannot do its work (database down,
// unusable options); what it finds goes in the Report. Verify may run while
// the trail grows: it checks the trail as of its start.
func Verify(ctx context.Context, db *sqldb.DB, o VerifyOptions) (Report, error) {
	if o.Verifier == nil {
		return Report{FirstBad: -1}, errs.E(errs.Invalid, "verify needs the audit verifier key")
	}
	v := &verification{ctx: ctx, db: db, o: o, rep: Report{FirstBad: -1}, signedRoots: make(map[int64]signedRoot)}
	if len(o.Checkpoint) > 0 {
		cp, err := ParseCheckpoint(o.Checkpoint, o.Verifier)
		if err != nil {
			return Report{FirstBad: -1}, errs.E(errs.Invalid, "kept %s", errs.SafeMessage(err))
		}
		v.outside = append(v.outside, OutsideCheckpoint{Source: "kept checkpoint", Checkpoint: cp})
	}
	for _, c := range o.Outside {
		if _, err := ParseCheckpoint(c.Checkpoint.Note, o.Verifier); err != nil {
			return Report{FirstBad: -1}, errs.E(errs.Invalid, "%s: %s", c.Source, errs.SafeMessage(err))
		}
		v.outside = append(v.outside, c)
	}
	slices.SortStableFunc(v.outside, func(a, b OutsideCheckpoint) int { return cmp.Compare(a.Checkpoint.Size, b.Checkpoint.Size) })
	if err := v.run(); err != nil {
		return Report{FirstBad: -1}, errs.Wrap(errs.Unavailable, err, "verify audit trail")
	}
	if v.dropped > 0 {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("… and %d more problems", v.dropped))
	}
	return v.rep, nil
}

type verification struct {
	ctx     context.Context
	db      *sqldb.DB
	o       VerifyOptions
	rep     Report
	outside []OutsideCheckpoint // sorted by size
	next    int                 // first of outside not yet compared

	// signedRoots holds, by size, the first root seen signed by the audit
	// key, to find two signed checkpoints of one size that differ.
	signedRoots map[int64]signedRoot
	best        *Checkpoint // the largest checkpoint whose root matched

	dropped int // problems beyond maxProblems

	// The tree recomputed from the events: the roots of its perfect
	// subtrees, largest first (RFC 6962 compact range).
	stack  []tlog.Hash
	broken bool  // a leaf could not be recovered: no roots from here on
	taint  int64 // highest index whose recomputed leaf differs from the stored one

	origin           string // of the stored checkpoints
	lastGood         int64  // largest size at which a checkpoint root matched
	firstSigned      int64  // index of the first signed event; -1 before it
	covered          int64  // largest size of a stored checkpoint that parsed
	rootMismatches   int    // explained checkpoint mismatches after the first
	reportedMismatch bool

	log    *cursor[logRow]
	hashes *cursor[storedHash]
	cps    *cursor[cpRow]
}

func (v *verification) problem(index int64, format string, args ...any) {
	if index >= 0 && (v.rep.FirstBad < 0 || index < v.rep.FirstBad) {
		v.rep.FirstBad = index
	}
	if len(v.rep.Problems) >= maxProblems {
		v.dropped++
		return
	}
	v.rep.Problems = append(v.rep.Problems, fmt.Sprintf(format, args...))
}

type logRow struct {
	seq                                   int64
	leaf                                  string
	id, org, actor, action, outcome       sql.NullString
	study, site, participant, objType, ob sql.NullString
	body, sig                             sql.NullString
	at                                    sql.NullInt64
	sigOK                                 bool // sig is the audit key's signature of body
	security                              sql.NullBool
}

type storedHash struct {
	idx  int64
	hash string
}

type cpRow struct {
	size int64
	root string
	note string
}

func (v *verification) run() error {
	ctx := v.ctx
	// One statement, so one snapshot: sequencing commits a batch's log rows
	// and hashes together, and checkpoints only cover sequenced events.
	var maxSeq, maxIdx, maxCP sql.NullInt64
	if err := v.db.QueryRowContext(ctx, `SELECT (SELECT MAX(seq) FROM audit_log),
		(SELECT MAX(idx) FROM audit_hashes), (SELECT MAX(size) FROM audit_checkpoints),
		(SELECT COUNT(*) FROM audit_queue)`).
		Scan(&maxSeq, &maxIdx, &maxCP, &v.rep.Queued); err != nil {
		return err
	}
	size := int64(0)
	if maxSeq.Valid {
		size = maxSeq.Int64 + 1
	}
	v.rep.Size = size
	if size == 0 && v.rep.Queued == 0 && v.o.NotEmpty != "" {
		v.problem(0, "the trail holds no event, but %s: its events were removed", v.o.NotEmpty)
	}
	hashCount := tlog.StoredHashCount(size)
	if maxIdx.Valid && maxIdx.Int64 >= hashCount {
		v.problem(size, "the tree holds hashes for more than the log's %d events (events removed from the end)", size)
	}
	cpLimit := int64(-1)
	if maxCP.Valid {
		cpLimit = maxCP.Int64
	}
	v.log = &cursor[logRow]{fetch: func(from int64) ([]logRow, int64, error) { return v.fetchLog(from, size) }}
	v.hashes = &cursor[storedHash]{fetch: func(from int64) ([]storedHash, int64, error) { return v.fetchHashes(from, hashCount) }}
	v.cps = &cursor[cpRow]{fetch: func(from int64) ([]cpRow, int64, error) { return v.fetchCheckpoints(from, cpLimit) }}
	v.taint = -1
	v.firstSigned = -1

	if err := v.checkpointsAt(0); err != nil {
		return err
	}
	for n := int64(0); n < size; n++ {
		if err := v.entry(n); err != nil {
			return err
		}
		if err := v.checkpointsAt(n + 1); err != nil {
			return err
		}
		if v.o.Progress != nil && (n+1)%progressEvery == 0 && n+1 < size {
			v.o.Progress(n+1, size)
		}
	}
	if v.rootMismatches > 0 {
		v.problem(-1, "%d later checkpoints differ as well", v.rootMismatches)
	}
	// The sequencer signs a checkpoint with every batch of signed events it
	// integrates, so signed events beyond the last stored checkpoint were
	// added outside it, or their checkpoints removed.
	if v.firstSigned >= 0 && v.covered < size {
		from := max(v.covered, v.firstSigned)
		v.problem(from, "events %d to %d are covered by no signed checkpoint (added outside the sequencer, or their checkpoints removed)", from, size-1)
	}
	// Checkpoints beyond the log prove that entries were removed.
	for {
		r, err := v.cps.peek()
		if err != nil {
			return err
		}
		if r == nil {
			break
		}
		v.cps.next()
		if cp, ok := v.parseStored(*r); ok {
			v.signed(cp, "a stored checkpoint")
			v.problem(size, "checkpoint at size %d: the log holds only %d events (events removed)", cp.Size, size)
		}
	}
	for _, c := range v.outside[v.next:] {
		v.signed(c.Checkpoint, c.Source)
		v.problem(size, "%s at size %d: the log holds only %d events (events removed)", c.Source, c.Checkpoint.Size, size)
	}
	for _, c := range v.outside {
		if v.origin != "" && c.Checkpoint.Origin != v.origin {
			v.problem(-1, "%s is for log %q, but this trail's checkpoints are for %q", c.Source, c.Checkpoint.Origin, v.origin)
			break
		}
	}
	for _, w := range v.o.Witnesses {
		if err := v.askWitness(w, size); err != nil {
			return err
		}
	}
	if err := v.storedRoot(size); err != nil {
		return err
	}
	if err := v.strays(); err != nil {
		return err
	}
	if v.o.Progress != nil {
		v.o.Progress(size, size)
	}
	return nil
}

// entry checks the log entry at index n and adds its leaf to the tree.
func (v *verification) entry(n int64) error {
	r, err := v.log.peek()
	if err != nil {
		return err
	}
	var reasons []string
	var leaf tlog.Hash
	haveLeaf := false
	if r == nil || r.seq != n {
		reasons = append(reasons, "log entry missing")
	} else {
		v.log.next()
		logLeaf, err := decodeHash(r.leaf)
		if err != nil {
			reasons = append(reasons, "stored leaf hash is malformed")
		}
		if !r.id.Valid {
			reasons = append(reasons, "event missing")
			leaf, haveLeaf = logLeaf, err == nil
		} else {
			leaf, haveLeaf = tlog.RecordHash(leafData(r.body.String, r.sig.String)), true
			if err == nil && leaf != logLeaf {
				reasons = append(reasons, "event body does not match its leaf hash")
			}
			reasons = append(reasons, bodyProblems(r)...)
			reasons = append(reasons, v.signatureProblems(n, r)...)
		}
	}
	idx := tlog.StoredHashIndex(0, n)
	stored, found, err := v.storedHash(idx)
	if err != nil {
		return err
	}
	switch {
	case !found:
		reasons = append(reasons, "stored tree hash missing")
	case !haveLeaf:
		leaf, haveLeaf = stored, true
	case leaf != stored:
		v.taint = n
		if len(reasons) == 0 {
			reasons = append(reasons, "leaf differs from the tree's stored hash (log reordered or tree altered)")
		}
	}
	if !haveLeaf && !v.broken {
		v.broken = true
		reasons = append(reasons, "no leaf hash left, so the tree cannot be recomputed from here")
	}
	if len(reasons) > 0 {
		v.problem(n, "index %d: %s", n, strings.Join(reasons, "; "))
	}
	if v.broken {
		return nil
	}
	v.stack = append(v.stack, leaf)
	for level := 1; level <= bits.TrailingZeros64(uint64(n+1)); level++ {
		k := len(v.stack)
		h := tlog.NodeHash(v.stack[k-2], v.stack[k-1])
		v.stack = append(v.stack[:k-2], h)
		idx++
		stored, found, err := v.storedHash(idx)
		if err != nil {
			return err
		}
		first := n + 1 - int64(1)<<level // first leaf under this node
		switch {
		case !found:
			v.problem(n, "index %d: stored tree hash %d (level %d) missing", n, idx, level)
		case stored != h && v.taint < first:
			v.problem(n, "index %d: stored tree hash %d (level %d) differs from the recomputed one (tree altered)", n, idx, level)
		}
	}
	return nil
}

// signatureProblems checks an event's signature by the audit key. Unsigned
// events are accepted only before the first signed one: the unsigned
// prefix of a trail written before events were signed.
func (v *verification) signatureProblems(n int64, r *logRow) []string {
	if r.sig.String == "" {
		if v.firstSigned >= 0 {
			return []string{"event is not signed by the audit key (written outside the application)"}
		}
		v.rep.Unsigned = n + 1
		return nil
	}
	if v.firstSigned < 0 {
		v.firstSigned = n
	}
	if !r.sigOK {
		return []string{"event signature is not the audit key's (forged or altered outside the application)"}
	}
	return nil
}

// bodyProblems compares an event's body with its row.
func bodyProblems(r *logRow) []string {
	var ev Event
	if err := json.Unmarshal([]byte(r.body.String), &ev); err != nil {
		return []string{"event body is not valid JSON"}
	}
	var out []string
	if ev.ID != r.id.String {
		out = append(out, fmt.Sprintf("event body names id %s but sits in the row of %s (bodies swapped or moved)", ev.ID, r.id.String))
	}
	var cols []string
	for _, c := range []struct {
		name      string
		col, want string
	}{
		{"org_id", r.org.String, ev.OrgID},
		{"actor_account", r.actor.String, ev.ActorAccount},
		{"action", r.action.String, ev.Action},
		{"outcome", r.outcome.String, string(ev.Outcome)},
		{"study_id", r.study.String, ev.StudyID},
		{"site_id", r.site.String, ev.SiteID},
		{"participant_id", r.participant.String, ev.ParticipantID},
		{"object_type", r.objType.String, ev.ObjectType},
		{"object_id", r.ob.String, ev.ObjectID},
	} {
		if c.col != c.want {
			cols = append(cols, c.name)
		}
	}
	if !r.at.Valid || r.at.Int64 != ev.Time.UnixMicro() {
		cols = append(cols, "at")
	}
	if r.security.Bool != ev.Security {
		cols = append(cols, "security")
	}
	switch len(cols) {
	case 0:
	case 1:
		out = append(out, "column "+cols[0]+" differs from the event body")
	default:
		out = append(out, "columns "+strings.Join(cols, ", ")+" differ from the event body")
	}
	return out
}

// root is the recomputed root of the tree so far; the empty tree's root is
// the hash of nothing, as in RFC 6962 and tlog.
func (v *verification) root() tlog.Hash {
	if len(v.stack) == 0 {
		h, _ := tlog.TreeHash(0, nil)
		return h
	}
	h := v.stack[len(v.stack)-1]
	for i := len(v.stack) - 2; i >= 0; i-- {
		h = tlog.NodeHash(v.stack[i], h)
	}
	return h
}

// checkpointsAt checks the stored checkpoints, and those kept outside, of
// the given size against the tree recomputed up to it. When one of them
// matches, others of that size that do not are an equivocation, reported
// as such, not a rewrite of this trail.
func (v *verification) checkpointsAt(size int64) error {
	type labelled struct {
		label string
		cp    Checkpoint
	}
	var at []labelled
	for {
		r, err := v.cps.peek()
		if err != nil {
			return err
		}
		if r == nil || r.size > size {
			break
		}
		v.cps.next()
		cp, ok := v.parseStored(*r)
		if ok {
			v.covered = max(v.covered, size)
			v.signed(cp, "a stored checkpoint")
			at = append(at, labelled{fmt.Sprintf("checkpoint at size %d", size), cp})
		}
	}
	for ; v.next < len(v.outside) && v.outside[v.next].Checkpoint.Size <= size; v.next++ {
		c := v.outside[v.next]
		v.signed(c.Checkpoint, c.Source)
		at = append(at, labelled{fmt.Sprintf("%s at size %d", c.Source, size), c.Checkpoint})
	}
	if v.broken {
		return nil
	}
	root := v.root()
	for _, c := range at {
		if c.cp.Root == root {
			v.compareRoot(c.label, c.cp)
			return nil
		}
	}
	if len(at) > 0 {
		v.compareRoot(at[0].label, at[0].cp)
	}
	return nil
}

type signedRoot struct {
	root   tlog.Hash
	source string
}

// signed records a checkpoint signed by the audit key and reports
// equivocation: two signed checkpoints of one size with different roots.
// However the trail stands, the key signed two histories.
func (v *verification) signed(cp Checkpoint, source string) {
	first, ok := v.signedRoots[cp.Size]
	switch {
	case !ok:
		v.signedRoots[cp.Size] = signedRoot{cp.Root, source}
	case first.root != cp.Root:
		v.rep.Equivocations++
		v.problem(-1, "equivocation: the audit key signed two checkpoints of size %d with different roots (%s and %s): two histories were presented", cp.Size, first.source, source)
	}
}

// parseStored checks a stored checkpoint's signature and its columns.
func (v *verification) parseStored(r cpRow) (Checkpoint, bool) {
	v.rep.Checkpoints++
	cp, err := ParseCheckpoint([]byte(r.note), v.o.Verifier)
	if err != nil {
		v.problem(-1, "checkpoint at size %d: %s", r.size, strings.TrimPrefix(errs.SafeMessage(err), "checkpoint: "))
		return Checkpoint{}, false
	}
	if cp.Size != r.size {
		v.problem(-1, "checkpoint at size %d: its signed note says size %d", r.size, cp.Size)
		return Checkpoint{}, false
	}
	if r.root != encodeHash(cp.Root) {
		v.problem(-1, "checkpoint at size %d: root column differs from its signed note", r.size)
	}
	switch {
	case v.origin == "":
		v.origin = cp.Origin
	case cp.Origin != v.origin:
		v.problem(-1, "checkpoint at size %d: origin %q differs from %q", r.size, cp.Origin, v.origin)
	}
	return cp, true
}

// compareRoot checks a signed root. A mismatch not explained by an index
// already found bad narrows the rewrite to the indexes since the last
// matching checkpoint.
func (v *verification) compareRoot(label string, cp Checkpoint) {
	size, signed := cp.Size, cp.Root
	if v.broken {
		return
	}
	if v.root() == signed {
		v.lastGood = max(v.lastGood, size)
		if v.best == nil || v.best.Size <= size {
			v.best = &cp
		}
		return
	}
	if v.rep.FirstBad >= 0 && v.rep.FirstBad < size {
		if v.reportedMismatch {
			v.rootMismatches++
			return
		}
		v.reportedMismatch = true
		v.problem(-1, "%s: root differs (history rewritten)", label)
		return
	}
	v.reportedMismatch = true
	v.problem(v.lastGood, "%s: root differs (history rewritten at an index from %d to %d)", label, v.lastGood, size-1)
}

// storedRoot compares the recomputed root with the one the stored hashes
// give, as proofs are built from them.
func (v *verification) storedRoot(size int64) error {
	if v.broken {
		return nil
	}
	h, err := tlog.TreeHash(size, newHashReader(v.ctx, v.db))
	switch {
	case errs.Is(err, errs.Internal):
		v.problem(-1, "the tree's stored hashes give no root at size %d: %s", size, errs.SafeMessage(err))
	case err != nil:
		return err
	case h != v.root() && len(v.rep.Problems) == 0:
		v.problem(-1, "the root from the tree's stored hashes differs from the one recomputed from the events")
	}
	return nil
}

// strays finds events outside both the log and the queue, and queue rows
// without an event or for an event already in the log.
func (v *verification) strays() error {
	checks := []struct {
		query  string
		format string
	}{
		{`SELECT e.id FROM audit_events e
			WHERE NOT EXISTS (SELECT 1 FROM audit_log l WHERE l.event_id = e.id)
			AND NOT EXISTS (SELECT 1 FROM audit_queue q WHERE q.event_id = e.id)
			ORDER BY e.id LIMIT $1`, "event %s is not in the log (inserted outside the sequencer)"},
		{`SELECT q.event_id FROM audit_queue q
			WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.id = q.event_id)
			ORDER BY q.event_id LIMIT $1`, "queued event %s has no event row (deleted before sequencing)"},
		{`SELECT q.event_id FROM audit_queue q
			WHERE EXISTS (SELECT 1 FROM audit_log l WHERE l.event_id = q.event_id)
			ORDER BY q.event_id LIMIT $1`, "event %s is queued again although it is in the log"},
	}
	for _, c := range checks {
		rows, err := v.db.QueryContext(v.ctx, c.query, maxProblems+1)
		if err != nil {
			return err
		}
		var found []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			found = append(found, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range found {
			v.problem(-1, c.format, id)
		}
	}
	return nil
}

func (v *verification) storedHash(idx int64) (tlog.Hash, bool, error) {
	for {
		r, err := v.hashes.peek()
		if err != nil || r == nil || r.idx > idx {
			return tlog.Hash{}, false, err
		}
		v.hashes.next()
		if r.idx == idx {
			h, err := decodeHash(r.hash)
			if err != nil {
				return tlog.Hash{}, true, nil // malformed: compares unequal to any real hash
			}
			return h, true, nil
		}
	}
}

func (v *verification) fetchLog(from, end int64) ([]logRow, int64, error) {
	rows, err := v.db.QueryContext(v.ctx, `SELECT l.seq, l.leaf, e.id, e.org_id, e.at, e.actor_account,
		e.action, e.outcome, e.study_id, e.site_id, e.participant_id, e.object_type, e.object_id,
		e.security, e.body, e.sig
		FROM audit_log l LEFT JOIN audit_events e ON e.id = l.event_id
		WHERE l.seq >= $1 AND l.seq < $2 ORDER BY l.seq LIMIT $3`, from, end, verifyPage)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []logRow
	for rows.Next() {
		var r logRow
		if err := rows.Scan(&r.seq, &r.leaf, &r.id, &r.org, &r.at, &r.actor, &r.action, &r.outcome,
			&r.study, &r.site, &r.participant, &r.objType, &r.ob, &r.security, &r.body, &r.sig); err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	var toCheck []signedEvent
	var at []int
	for i, r := range out {
		if r.sig.String != "" {
			toCheck = append(toCheck, signedEvent{r.body.String, r.sig.String})
			at = append(at, i)
		}
	}
	for j, ok := range checkSignatures(toCheck, v.o.Verifier) {
		out[at[j]].sigOK = ok
	}
	return out, pageNext(out, verifyPage, func(r logRow) int64 { return r.seq }), nil
}

func (v *verification) fetchHashes(from, end int64) ([]storedHash, int64, error) {
	rows, err := v.db.QueryContext(v.ctx, `SELECT idx, hash FROM audit_hashes
		WHERE idx >= $1 AND idx < $2 ORDER BY idx LIMIT $3`, from, end, hashPage)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []storedHash
	for rows.Next() {
		var r storedHash
		if err := rows.Scan(&r.idx, &r.hash); err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	return out, pageNext(out, hashPage, func(r storedHash) int64 { return r.idx }), rows.Err()
}

func (v *verification) fetchCheckpoints(from, last int64) ([]cpRow, int64, error) {
	const page = 500
	rows, err := v.db.QueryContext(v.ctx, `SELECT size, root, note FROM audit_checkpoints
		WHERE size >= $1 AND size <= $2 ORDER BY size LIMIT $3`, from, last, page)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []cpRow
	for rows.Next() {
		var r cpRow
		if err := rows.Scan(&r.size, &r.root, &r.note); err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	return out, pageNext(out, page, func(r cpRow) int64 { return r.size }), rows.Err()
}

// pageNext returns the key the next page starts from, or -1 when this page
// was the last.
func pageNext[T any](page []T, size int, key func(T) int64) int64 {
	if len(page) < size {
		return -1
	}
	return key(page[len(page)-1]) + 1
}

// cursor walks a keyset-paged query one row at a time.
type cursor[T any] struct {
	fetch func(from int64) (page []T, next int64, err error)
	buf   []T
	pos   int
	from  int64 // next page's first key; -1 after the last page
}

// peek returns the current row, or nil at the end.
func (c *cursor[T]) peek() (*T, error) {
	for c.pos >= len(c.buf) {
		if c.from < 0 {
			return nil, nil
		}
		page, next, err := c.fetch(c.from)
		if err != nil {
			return nil, err
		}
		c.buf, c.pos, c.from = page, 0, next
	}
	return &c.buf[c.pos], nil
}

func (c *cursor[T]) next() { c.pos++ }

// askWitness hands w the newest checkpoint that verified and reports what
// the witness saw: a larger tree than the log holds (events removed), more
// than the stored checkpoints cover (checkpoints removed), or a tree this
// trail does not extend (history rewritten). A witness that accepts it
// saw a prefix of this trail; it keeps the checkpoint, as it would have
// from the instance.
func (v *verification) askWitness(w Witness, size int64) error {
	if v.best == nil {
		v.problem(-1, "witness %s: no checkpoint of this trail verified, so there is nothing to ask it about", w.Name())
		return nil
	}
	cp := *v.best
	old := cp.Size
	for range 3 {
		var proof tlog.TreeProof
		if old > 0 && old < cp.Size {
			p, err := tlog.ProveTree(cp.Size, old, newHashReader(v.ctx, v.db))
			if err != nil {
				v.problem(-1, "witness %s: no consistency proof from %d to %d: %s", w.Name(), old, cp.Size, errs.SafeMessage(err))
				return nil
			}
			proof = p
		}
		_, err := w.AddCheckpoint(v.ctx, old, proof, cp.Note)
		var conflict *WitnessConflict
		switch {
		case errors.As(err, &conflict):
			k := conflict.Known
			switch {
			case k > size:
				v.problem(size, "witness %s has seen %d events: the log holds only %d (events removed)", w.Name(), k, size)
				return nil
			case k > cp.Size:
				v.problem(cp.Size, "witness %s has seen %d events, but the newest checkpoint that verifies here covers %d (checkpoints removed or the trail rewritten from there)", w.Name(), k, cp.Size)
				return nil
			}
			old = k
			continue
		case errors.Is(err, ErrWitnessInconsistent):
			from, err := v.lastMatchBefore(old)
			if err != nil {
				return err
			}
			v.problem(from, "witness %s saw a tree of %d events that this trail does not extend (history rewritten at an index from %d to %d)", w.Name(), old, from, old-1)
			return nil
		case err != nil:
			v.problem(-1, "witness %s could not be asked: %s", w.Name(), errs.SafeMessage(err))
			return nil
		}
		v.rep.Witnessed = append(v.rep.Witnessed, fmt.Sprintf("witness %s saw %d events, a prefix of this trail", w.Name(), old))
		return nil
	}
	v.problem(-1, "witness %s keeps changing its size", w.Name())
	return nil
}

// lastMatchBefore bisects the rewrite that a witness found before index
// limit: it returns the largest size up to limit at which a checkpoint
// signed by the audit key (stored or kept outside) still has the root of
// this trail, whose tree hashes the pass has checked; the change lies at
// or after it.
func (v *verification) lastMatchBefore(limit int64) (int64, error) {
	r := newHashReader(v.ctx, v.db)
	matches := func(cp Checkpoint) (bool, error) {
		h, err := tlog.TreeHash(cp.Size, r)
		if errs.Is(err, errs.Internal) {
			return false, nil
		}
		return err == nil && h == cp.Root, err
	}
	best := int64(0)
	for i := len(v.outside) - 1; i >= 0; i-- {
		c := v.outside[i].Checkpoint
		if c.Size > limit {
			continue
		}
		ok, err := matches(c)
		if err != nil {
			return 0, err
		}
		if ok {
			best = c.Size
			break
		}
	}
	rows, err := v.db.QueryContext(v.ctx, `SELECT note FROM audit_checkpoints WHERE size <= $1 AND size > $2
		ORDER BY size DESC LIMIT 64`, limit, best)
	if err != nil {
		return 0, err
	}
	var notes []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return 0, err
		}
		notes = append(notes, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, n := range notes {
		cp, err := ParseCheckpoint([]byte(n), v.o.Verifier)
		if err != nil {
			continue
		}
		ok, err := matches(cp)
		if err != nil {
			return 0, err
		}
		if ok {
			return max(best, cp.Size), nil
		}
	}
	return best, nil
}

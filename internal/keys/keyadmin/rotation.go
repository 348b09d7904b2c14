package keyadmin

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/sqldb"
)

// Phases of a rotation, in order.
const (
	PhaseKEK      = "kek"
	PhaseDataKeys = "data-keys"
	PhaseRewrap   = "rewrap"
	PhaseDone     = "done"
)

// Rotation is one rotation, as recorded.
type Rotation struct {
	ID             string
	RequestID      string
	OrgID          string
	RotateKEK      bool
	RotateDataKeys bool
	FromKEK        string // the key-encryption key version current when it started
	TargetKEK      string // the version every secret is re-wrapped under; "" until known
	Phase          string
	StartedAt      time.Time
	UpdatedAt      time.Time
	FinishedAt     time.Time
	Stores         []StoreProgress
}

// StoreProgress is where one store of a rotation stands.
type StoreProgress struct {
	Store    string
	Position string
	Done     bool
	Visited  int64
	Changed  int64
	Failed   int64
}

// Progress is what a running rotation reports after each batch.
type Progress struct {
	Phase   string
	Store   string
	Done    int64 // secrets (or scopes) visited so far in this phase
	Total   int64 // secrets in this phase; 0 if not known
	Rate    float64
	Elapsed time.Duration
}

// Resealer is a store of values sealed under data keys (the identity
// values of participants), which a rotation of the data keys re-encrypts
// under the new versions, batch by batch, each batch recorded by the store.
type Resealer interface {
	Name() string
	Reseal(ctx context.Context, orgID, cursor string, limit int) (keys.Batch, error)
}

// Keyring is a database's keyring whose data keys a rotation may give new
// versions, named for progress and audit.
type Keyring struct {
	Name    string
	Keyring *keys.Keyring
}

// Runner carries out approved rotations and provider changes. It is
// operator work: every step it records (the start or resume, each batch's
// progress, a new phase, the finish) is a Gate.Operate of its own, short,
// with its event; the re-wrapping itself is the keyrings' and stores' (the
// storage plumbing), batch by batch between those steps.
type Runner struct {
	// Gate is the clinical database's gate: requests and rotations.
	Gate *gate.Gate
	// KEK is the provider every secret ends up wrapped by. For a provider
	// change it is a keys.Chain whose Primary is the new provider.
	KEK      keys.Provider
	Keyrings []Keyring // whose KEK is KEK
	Stores   []keys.WrappedStore
	// Resealers re-encrypt the values sealed under the organization's data
	// keys once they have new versions (ASVS V11.2.2).
	Resealers []Resealer
	// BatchSize is how many secrets one transaction re-wraps [100].
	BatchSize int
	Progress  func(Progress)
	Now       func() time.Time
	// afterBatch runs after each batch is recorded; an error stops the
	// rotation right there, as a crash would (tests).
	afterBatch func() error
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) batchSize() int {
	if r.BatchSize > 0 {
		return r.BatchSize
	}
	return 100
}

// Run carries out the rotation of approved request requestID, or resumes
// it where it stopped if it was started before. It returns the rotation as
// it ended.
func (r *Runner) Run(ctx context.Context, requestID string) (Rotation, error) {
	if err := r.KEK.Check(ctx); err != nil {
		return Rotation{}, errs.Wrap(errs.Unavailable, err, "the key-encryption key is not reachable")
	}
	rot, err := r.begin(ctx, requestID)
	if err != nil {
		return rot, err
	}
	for rot.Phase != PhaseDone {
		switch rot.Phase {
		case PhaseKEK:
			err = r.rotateKEK(ctx, &rot)
		case PhaseDataKeys:
			err = r.rotateDataKeys(ctx, &rot)
		case PhaseRewrap:
			err = r.rewrap(ctx, &rot)
		default:
			err = errs.E(errs.Internal, "rotation %s is in unknown phase %q", rot.ID, rot.Phase)
		}
		if err != nil {
			return rot, err
		}
	}
	return rot, nil
}

// begin starts the rotation of a request, using the request, or finds the
// one started before.
func (r *Runner) begin(ctx context.Context, requestID string) (Rotation, error) {
	var rot Rotation
	err := r.Gate.Operate(ctx, "key.rotate.start", func(tx *gate.OpTx) error {
		var err error
		rot, err = rotationOf(ctx, tx, requestID)
		switch {
		case err == nil && rot.Phase == PhaseDone:
			return errs.E(errs.Conflict, "the rotation of request %s finished already", requestID)
		case err == nil:
			asEvent(tx, rotationEvent("key.rotate.resume", rot))
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		req, err := Get(ctx, tx, "", requestID)
		if err != nil {
			return err
		}
		if req.Kind != Rotate && req.Kind != ProviderChange {
			return errs.E(errs.Invalid, "request %s is for %s, not a rotation", req.ID, req.Kind)
		}
		if req.Kind == ProviderChange && r.KEK.Name() != req.Params.Provider {
			return errs.E(errs.Invalid, "request %s changes the provider to %s, but the key-encryption key given is %s's", req.ID, req.Params.Provider, r.KEK.Name())
		}
		if req, err = Use(ctx, tx, req.ID, req.Kind, r.now()); err != nil {
			return err
		}
		now := r.now().UTC().Truncate(time.Microsecond)
		rot = Rotation{ID: ids.New(), RequestID: req.ID, OrgID: req.OrgID, RotateKEK: req.Params.KEK,
			RotateDataKeys: req.Params.DataKeys, FromKEK: r.KEK.ID(), StartedAt: now, UpdatedAt: now}
		switch {
		case rot.RotateKEK:
			rot.Phase = PhaseKEK
		case rot.RotateDataKeys:
			rot.Phase, rot.TargetKEK = PhaseDataKeys, r.KEK.ID()
		default:
			rot.Phase, rot.TargetKEK = PhaseRewrap, r.KEK.ID()
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO key_rotations (id, request_id, org_id, rotate_kek, rotate_data_keys,
			from_kek, target_kek, phase, running, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)`,
			rot.ID, rot.RequestID, rot.OrgID, rot.RotateKEK, rot.RotateDataKeys, rot.FromKEK, rot.TargetKEK, rot.Phase, now.UnixMicro())
		if sqldb.IsUniqueViolation(err) {
			return errs.E(errs.Conflict, "another rotation is running; let it finish (custodia keys status shows it)")
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "record rotation")
		}
		ev := Event("key.rotate.start", req, audit.Success)
		ev.ObjectType, ev.ObjectID = "key-rotation", rot.ID
		ev.Details["from_kek"] = rot.FromKEK
		asEvent(tx, ev)
		return nil
	})
	return rot, err
}

// rotateKEK adds a version of the key-encryption key, once: a rotation that
// resumes after it has its target already.
func (r *Runner) rotateKEK(ctx context.Context, rot *Rotation) error {
	if rot.TargetKEK == "" {
		rotator, ok := r.KEK.(keys.Rotator)
		if !ok {
			return errs.E(errs.Invalid, "the %s key-encryption key cannot be rotated from here; rotate it in the KMS and run a rotation of the data keys", r.KEK.Name())
		}
		id, err := rotator.RotateKEK(ctx)
		if err != nil {
			return err
		}
		rot.TargetKEK = id
	}
	next := PhaseRewrap
	if rot.RotateDataKeys {
		next = PhaseDataKeys
	}
	return r.setPhase(ctx, rot, next)
}

// setPhase records that rot goes on with phase, as key.rotate.phase.
func (r *Runner) setPhase(ctx context.Context, rot *Rotation, phase string) error {
	now := r.now().UTC().Truncate(time.Microsecond)
	err := r.Gate.Operate(ctx, "key.rotate.phase", func(tx *gate.OpTx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE key_rotations SET phase = $1, target_kek = $2, updated_at = $3 WHERE id = $4`,
			phase, rot.TargetKEK, now.UnixMicro(), rot.ID); err != nil {
			return errs.Wrap(errs.Unavailable, err, "record rotation")
		}
		next := *rot
		next.Phase = phase
		ev := rotationEvent("key.rotate.phase", next)
		ev.Security = false
		asEvent(tx, ev)
		return nil
	})
	if err != nil {
		return err
	}
	rot.Phase, rot.UpdatedAt = phase, now
	return nil
}

// checkTarget refuses to go on if the provider's current version is not
// the rotation's target: another rotation, or a change in the KMS, moved it.
func (r *Runner) checkTarget(rot *Rotation) error {
	if got := r.KEK.ID(); got != rot.TargetKEK {
		return errs.E(errs.Conflict, "the key-encryption key's current version is %s, but rotation %s re-wraps under %s", got, rot.ID, rot.TargetKEK)
	}
	return nil
}

// rotateDataKeys adds a version to every data key of the organization,
// then re-encrypts the values sealed under the older ones (Resealers).
func (r *Runner) rotateDataKeys(ctx context.Context, rot *Rotation) error {
	if err := r.checkTarget(rot); err != nil {
		return err
	}
	for _, kr := range r.Keyrings {
		step := func(cursor string) (keys.Batch, error) {
			return kr.Keyring.RotateScopes(ctx, rot.OrgID, rot.StartedAt.UnixMicro(), cursor, r.batchSize())
		}
		if err := r.batches(ctx, rot, "data-key versions: "+kr.Name, step); err != nil {
			return err
		}
	}
	// Then the values sealed under the older versions move to the new ones.
	for _, rs := range r.Resealers {
		step := func(cursor string) (keys.Batch, error) { return rs.Reseal(ctx, rot.OrgID, cursor, r.batchSize()) }
		if err := r.batches(ctx, rot, "re-encryption: "+rs.Name(), step); err != nil {
			return err
		}
	}
	return r.setPhase(ctx, rot, PhaseRewrap)
}

// batches runs step from the store's recorded place until it is done,
// recording each batch: a rotation that stopped goes on from there.
func (r *Runner) batches(ctx context.Context, rot *Rotation, name string, step func(cursor string) (keys.Batch, error)) error {
	p, err := r.progressOf(ctx, rot, name)
	if err != nil {
		return err
	}
	start := time.Now()
	for !p.Done {
		b, err := step(p.Position)
		if err != nil {
			return err
		}
		if err := r.record(ctx, rot, &p, b); err != nil {
			return err
		}
		r.report(PhaseDataKeys, name, p.Visited, 0, start)
		if err := r.hook(); err != nil {
			return err
		}
	}
	return nil
}

// maxPasses bounds the passes over the stores: a pass re-wraps what was
// there when it went by; a key created meanwhile under an older version is
// caught by the next one.
const maxPasses = 3

// rewrap re-wraps every secret of every store under the target version,
// then retires the versions nothing needs any more and finishes.
func (r *Runner) rewrap(ctx context.Context, rot *Rotation) error {
	if err := r.checkTarget(rot); err != nil {
		return err
	}
	var total int64
	for _, s := range r.Stores {
		n, err := s.Count(ctx)
		if err != nil {
			return err
		}
		total += int64(n)
	}
	start := time.Now()
	var done int64
	for pass := 1; ; pass++ {
		for _, s := range r.Stores {
			p, err := r.progressOf(ctx, rot, s.Name())
			if err != nil {
				return err
			}
			for !p.Done {
				b, err := s.Rewrap(ctx, r.KEK, p.Position, r.batchSize())
				if err != nil {
					return err
				}
				if err := r.record(ctx, rot, &p, b); err != nil {
					return err
				}
				done += int64(b.Visited)
				r.report(PhaseRewrap, s.Name(), done, total, start)
				if err := r.hook(); err != nil {
					return err
				}
			}
		}
		stale, err := r.staleStores(ctx, rot.TargetKEK)
		if err != nil {
			return err
		}
		if len(stale) == 0 {
			break
		}
		if pass == maxPasses {
			return errs.E(errs.Unavailable, "keys wrapped by an older key-encryption key keep appearing in %s; run the rotation again", strings.Join(stale, ", "))
		}
		if err := r.again(ctx, rot, stale, pass+1); err != nil {
			return err
		}
	}
	return r.finish(ctx, rot)
}

// again records that the stores named stale are passed over once more,
// from the start, as key.rotate.pass.
func (r *Runner) again(ctx context.Context, rot *Rotation, stale []string, pass int) error {
	return r.Gate.Operate(ctx, "key.rotate.pass", func(tx *gate.OpTx) error {
		for _, name := range stale {
			if _, err := tx.ExecContext(ctx, `UPDATE key_rotation_progress SET position = '', done = FALSE
				WHERE rotation_id = $1 AND store = $2`, rot.ID, name); err != nil {
				return errs.Wrap(errs.Unavailable, err, "record rotation progress")
			}
		}
		ev := rotationEvent("key.rotate.pass", *rot)
		ev.Security = false
		ev.Details["pass"] = strconv.Itoa(pass)
		ev.Details["stores"] = strings.Join(stale, ",")
		asEvent(tx, ev)
		return nil
	})
}

// staleStores names the stores holding secrets labelled with a version
// other than target.
func (r *Runner) staleStores(ctx context.Context, target string) ([]string, error) {
	var out []string
	for _, s := range r.Stores {
		use, err := s.KEKUse(ctx)
		if err != nil {
			return nil, err
		}
		for id, n := range use {
			if id != target && n > 0 {
				out = append(out, s.Name())
				break
			}
		}
	}
	return out, nil
}

// finish retires the older versions of a rotated key-encryption key that no
// secret names any more, unless some secret failed to re-wrap, and records
// the end.
func (r *Runner) finish(ctx context.Context, rot *Rotation) error {
	var stores []StoreProgress
	err := r.Gate.Operate(ctx, "key.rotate.finish", func(tx *gate.OpTx) error {
		tx.Nothing() // a read
		var err error
		stores, err = progressAll(ctx, tx, rot.ID)
		return err
	})
	if err != nil {
		return err
	}
	var failed, changed, scopes int64
	for _, p := range stores {
		failed += p.Failed
		if strings.HasPrefix(p.Store, "data-key versions: ") {
			scopes += p.Changed
		} else {
			changed += p.Changed
		}
	}
	var retired []string
	if ret, ok := r.KEK.(keys.Retirer); ok && rot.RotateKEK && failed == 0 {
		inUse := map[string]bool{}
		for _, s := range r.Stores {
			use, err := s.KEKUse(ctx)
			if err != nil {
				return err
			}
			for id, n := range use {
				inUse[id] = inUse[id] || n > 0
			}
		}
		for _, v := range ret.Versions() {
			if v == rot.TargetKEK || inUse[v] {
				continue
			}
			if err := ret.RetireKEK(ctx, v); err != nil {
				return err
			}
			retired = append(retired, v)
		}
	}
	now := r.now().UTC().Truncate(time.Microsecond)
	return r.Gate.Operate(ctx, "key.rotate.finish", func(tx *gate.OpTx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE key_rotations SET phase = 'done', running = NULL, updated_at = $1, finished_at = $1
			WHERE id = $2`, now.UnixMicro(), rot.ID); err != nil {
			return errs.Wrap(errs.Unavailable, err, "record rotation")
		}
		rot.Phase, rot.UpdatedAt, rot.FinishedAt, rot.Stores = PhaseDone, now, now, stores
		ev := rotationEvent("key.rotate.finish", *rot)
		if failed > 0 {
			ev.Outcome = audit.Failure
		}
		ev.Details["rewrapped"] = strconv.FormatInt(changed, 10)
		ev.Details["failed"] = strconv.FormatInt(failed, 10)
		ev.Details["data_keys_rotated"] = strconv.FormatInt(scopes, 10)
		if len(retired) > 0 {
			ev.Details["retired"] = strings.Join(retired, ",")
		}
		asEvent(tx, ev)
		return nil
	})
}

func (r *Runner) hook() error {
	if r.afterBatch != nil {
		return r.afterBatch()
	}
	return nil
}

func (r *Runner) report(phase, store string, done, total int64, start time.Time) {
	if r.Progress == nil {
		return
	}
	el := time.Since(start)
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el.Seconds()
	}
	r.Progress(Progress{Phase: phase, Store: store, Done: done, Total: total, Rate: rate, Elapsed: el})
}

// progressOf reads where a store of the rotation stands: from the start if
// nothing is recorded of it yet (record creates its row).
func (r *Runner) progressOf(ctx context.Context, rot *Rotation, store string) (StoreProgress, error) {
	p := StoreProgress{Store: store}
	err := r.Gate.Operate(ctx, "key.rotate.progress", func(tx *gate.OpTx) error {
		tx.Nothing() // a read
		err := tx.QueryRowContext(ctx, `SELECT position, done, visited, changed, failed FROM key_rotation_progress
			WHERE rotation_id = $1 AND store = $2`, rot.ID, store).Scan(&p.Position, &p.Done, &p.Visited, &p.Changed, &p.Failed)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return errs.Wrap(errs.Unavailable, err, "read rotation progress")
		}
		return nil
	})
	return p, err
}

// record keeps where a store stands after a batch that has committed, as
// key.rotate.progress with the store's counts so far.
func (r *Runner) record(ctx context.Context, rot *Rotation, p *StoreProgress, b keys.Batch) error {
	next := *p
	next.Position, next.Done = b.Cursor, b.Done
	next.Visited += int64(b.Visited)
	next.Changed += int64(b.Rewrapped)
	next.Failed += int64(b.Failed)
	now := r.now().UnixMicro()
	err := r.Gate.Operate(ctx, "key.rotate.progress", func(tx *gate.OpTx) error {
		p := next
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_rotation_progress (rotation_id, store) VALUES ($1, $2)
			ON CONFLICT DO NOTHING`, rot.ID, p.Store); err != nil {
			return errs.Wrap(errs.Unavailable, err, "record rotation progress")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE key_rotation_progress SET position = $1, done = $2,
			visited = $3, changed = $4, failed = $5 WHERE rotation_id = $6 AND store = $7`,
			p.Position, p.Done, p.Visited, p.Changed, p.Failed, rot.ID, p.Store); err != nil {
			return errs.Wrap(errs.Unavailable, err, "record rotation progress")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE key_rotations SET updated_at = $1 WHERE id = $2`, now, rot.ID); err != nil {
			return errs.Wrap(errs.Unavailable, err, "record rotation progress")
		}
		ev := rotationEvent("key.rotate.progress", *rot)
		ev.Security = false
		ev.Details["store"] = p.Store
		ev.Details["done"] = strconv.FormatBool(p.Done)
		for k, v := range map[string]int64{"visited": p.Visited, "changed": p.Changed, "failed": p.Failed} {
			ev.Details[k] = strconv.FormatInt(v, 10)
		}
		asEvent(tx, ev)
		return nil
	})
	if err != nil {
		return err
	}
	*p = next
	return nil
}

const selectRotation = `SELECT id, request_id, org_id, rotate_kek, rotate_data_keys, from_kek, target_kek, phase,
	started_at, updated_at, finished_at FROM key_rotations `

func scanRotation(s scanner) (Rotation, error) {
	var (
		rot              Rotation
		started, updated int64
		finished         sql.NullInt64
	)
	if err := s.Scan(&rot.ID, &rot.RequestID, &rot.OrgID, &rot.RotateKEK, &rot.RotateDataKeys, &rot.FromKEK, &rot.TargetKEK,
		&rot.Phase, &started, &updated, &finished); err != nil {
		return Rotation{}, err
	}
	rot.StartedAt, rot.UpdatedAt = time.UnixMicro(started).UTC(), time.UnixMicro(updated).UTC()
	if finished.Valid {
		rot.FinishedAt = time.UnixMicro(finished.Int64).UTC()
	}
	return rot, nil
}

func rotationOf(ctx context.Context, q sqldb.Querier, requestID string) (Rotation, error) {
	rot, err := scanRotation(q.QueryRowContext(ctx, selectRotation+`WHERE request_id = $1`, requestID))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Rotation{}, errs.Wrap(errs.Unavailable, err, "read rotation")
	}
	return rot, err
}

func progressAll(ctx context.Context, q sqldb.Querier, rotationID string) ([]StoreProgress, error) {
	rows, err := q.QueryContext(ctx, `SELECT store, position, done, visited, changed, failed FROM key_rotation_progress
		WHERE rotation_id = $1 ORDER BY store`, rotationID)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "read rotation progress")
	}
	defer rows.Close()
	var out []StoreProgress
	for rows.Next() {
		var p StoreProgress
		if err := rows.Scan(&p.Store, &p.Position, &p.Done, &p.Visited, &p.Changed, &p.Failed); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "read rotation progress")
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Rotations lists the latest rotations, newest first, with their progress.
func Rotations(ctx context.Context, q sqldb.Querier, limit int) ([]Rotation, error) {
	rows, err := q.QueryContext(ctx, selectRotation+`ORDER BY started_at DESC, id LIMIT $1`, limit)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list rotations")
	}
	var out []Rotation
	for rows.Next() {
		rot, err := scanRotation(rows)
		if err != nil {
			rows.Close()
			return nil, errs.Wrap(errs.Unavailable, err, "list rotations")
		}
		out = append(out, rot)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "list rotations")
	}
	for i := range out {
		if out[i].Stores, err = progressAll(ctx, q, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func rotationEvent(action string, rot Rotation) audit.Event {
	d := map[string]string{"request": rot.RequestID, "target_kek": rot.TargetKEK, "phase": rot.Phase}
	return audit.Event{Action: action, OrgID: rot.OrgID, Outcome: audit.Success, Security: true,
		ObjectType: "key-rotation", ObjectID: rot.ID, Details: d}
}

// asOperator makes ev the event of the operation tx: the operator's, who
// acts on the server's machine through the CLI and has no account
// (Gate.Operate names the actor).
func asEvent(tx *gate.OpTx, ev audit.Event) {
	tx.Action(ev.Action)
	tx.Org(ev.OrgID)
	tx.Object(ev.ObjectType, ev.ObjectID)
	if ev.Security {
		tx.Security()
	}
	if ev.Outcome != "" {
		tx.Outcome(ev.Outcome)
	}
	for k, v := range ev.Details {
		tx.Detail(k, v)
	}
	tx.Detail("via", "cli")
}

// KEKUse counts, over every store, the secrets labelled with each version.
func KEKUse(ctx context.Context, stores []keys.WrappedStore) (map[string]int, error) {
	out := map[string]int{}
	for _, s := range stores {
		use, err := s.KEKUse(ctx)
		if err != nil {
			return nil, err
		}
		for id, n := range use {
			out[id] += n
		}
	}
	return out, nil
}

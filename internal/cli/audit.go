package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/audit/witness"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/sqldb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const auditUsage = "audit verify|checkpoint|prove N [flags]"

func runAudit(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(env.Stdout, "Usage: custodia "+auditUsage)
		fmt.Fprintln(env.Stdout, "  verify      recompute the hash tree and check every event and signed checkpoint")
		fmt.Fprintln(env.Stdout, "  checkpoint  sign and print a checkpoint of the current trail, to keep elsewhere")
		fmt.Fprintln(env.Stdout, "  prove N     print event N with a proof of its inclusion in the latest checkpoint")
		if len(args) == 0 {
			return usageError{"missing subcommand (want verify, checkpoint or prove)"}
		}
		return nil
	}
	sub := map[string]func(context.Context, Env, []string) error{
		"verify": runAuditVerify, "checkpoint": runAuditCheckpoint, "prove": runAuditProve,
	}
	if run, ok := sub[args[0]]; ok {
		if err := run(ctx, env, args[1:]); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q (want verify, checkpoint or prove)", args[0])}
}

// auditLog opens the instance and its audit log with the instance's
// checkpoint key.
// A command that signs checkpoints gives kc, the provider that opens a
// sealed audit key; one that only reads gives nil.
func auditLog(ctx context.Context, env Env, cfg *instance.Config, kc *kekConfig) (*instance.Instance, *audit.Log, error) {
	open := openInstance
	if kc != nil {
		open = func(ctx context.Context, cfg *instance.Config) (*instance.Instance, error) {
			return openWriting(ctx, env, cfg, kc)
		}
	}
	inst, err := open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	l, err := instanceLog(inst)
	if err != nil {
		inst.Close()
		return nil, nil, err
	}
	return inst, l, nil
}

func instanceLog(inst *instance.Instance) (*audit.Log, error) {
	return &audit.Log{DB: inst.Clinical, Signer: inst.AuditKey, Verifier: inst.AuditVerifier, Origin: instance.AuditOrigin(inst.ID), Issued: inst.AuditIssued}, nil
}

func runAuditVerify(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "audit verify", "audit verify [--data DIR | --database URL] [--verifier FILE] [--checkpoint FILE] [--witness-file FILE]… [--witness URL@KEY]…")
	cfg := instanceFlags(fs)
	verifierFile := fs.String("verifier", "", "the checkpoint verifier key `file` (default <data>/audit/verifier.pub); keep a copy apart from the server")
	cpFile := fs.String("checkpoint", "", "a checkpoint `file` kept earlier; the trail must still contain it")
	var witnessFiles, witnesses []string
	fs.Func("witness-file", "a witness `file` (serve --audit-witness-file): the trail must contain every checkpoint in it; repeatable", func(v string) error {
		witnessFiles = append(witnessFiles, strings.Fields(v)...)
		return nil
	})
	fs.Func("witness", "a C2SP tlog-witness as `URL@KEY`, asked what it saw; the trail must extend it; repeatable", func(v string) error {
		witnesses = append(witnesses, strings.Fields(v)...)
		return nil
	})
	if err := parse(fs, env, args); err != nil {
		return err
	}
	c := cfg.WithDefaults()
	// Verification reads only: open the clinical database of an existing
	// instance without migrating.
	db, recs, err := instance.OpenClinical(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.State(ctx, sqldb.Clinical); err != nil {
		return err
	}
	if *verifierFile == "" {
		*verifierFile = filepath.Join(c.DataDir, "audit", "verifier.pub")
	}
	v, err := audit.ReadVerifier(*verifierFile)
	if err != nil {
		return err
	}
	var cp []byte
	if *cpFile != "" {
		if cp, err = os.ReadFile(*cpFile); err != nil {
			return errs.Wrap(errs.Invalid, err, "read checkpoint file")
		}
		if _, err := audit.ParseCheckpoint(cp, v); err != nil {
			return err
		}
	}
	// The verifier key is named after its instance: a clinical database of
	// another instance, or one emptied and made anew, is not its trail.
	if owner, ok := strings.CutPrefix(v.Name(), "custodia-audit-"); ok && owner != recs.InstanceID {
		if recs.InstanceID == "" {
			return fmt.Errorf("the audit trail does not verify: the verifier key is of instance %s, but the clinical database %s records no instance (emptied or replaced: restore it from a backup)", owner, db.Location)
		}
		return fmt.Errorf("the audit trail does not verify: the verifier key is of instance %s, but the clinical database %s belongs to instance %s", owner, db.Location, recs.InstanceID)
	}
	outside, err := witnessFileCheckpoints(witnessFiles, v)
	if err != nil {
		return err
	}
	var asked []audit.Witness
	for _, spec := range witnesses {
		w, err := witness.Parse(spec)
		if err != nil {
			return err
		}
		asked = append(asked, w)
	}
	notEmpty := ""
	if recs.People {
		notEmpty = "the clinical database holds organizations and accounts, whose making is on the trail"
	}
	printed := int64(-1)
	rep, err := audit.Verify(ctx, db, audit.VerifyOptions{
		Verifier:   v,
		Checkpoint: cp,
		NotEmpty:   notEmpty,
		Outside:    outside,
		Witnesses:  asked,
		Progress: func(done, total int64) {
			// On long runs, a line per tenth of the trail and one at the end.
			if total >= 10000 && done != printed && (done == total || printed < 0 || done*10/total != printed*10/total) {
				fmt.Fprintf(env.Stderr, "verified %d of %d events\n", done, total)
				printed = done
			}
		},
	})
	if err != nil {
		return err
	}
	for _, w := range rep.Witnessed {
		fmt.Fprintln(env.Stdout, w)
	}
	if !rep.OK() {
		for _, p := range rep.Problems {
			fmt.Fprintln(env.Stdout, p)
		}
		if rep.Queued > 0 {
			fmt.Fprintf(env.Stdout, "%d events wait to be sequenced and were not verified\n", rep.Queued)
		}
		if rep.Equivocations > 0 {
			return fmt.Errorf("the audit key signed two histories: %d equivocations, and the audit trail does not verify (%d problems)", rep.Equivocations, len(rep.Problems))
		}
		if rep.FirstBad >= 0 {
			return fmt.Errorf("the audit trail does not verify: first bad index %d (%d problems)", rep.FirstBad, len(rep.Problems))
		}
		return fmt.Errorf("the audit trail does not verify (%d problems)", len(rep.Problems))
	}
	fmt.Fprintf(env.Stdout, "audit trail verified: %d events, %d signed checkpoints\n", rep.Size, rep.Checkpoints)
	if rep.Queued > 0 {
		fmt.Fprintf(env.Stdout, "%d events wait to be sequenced (a running server does so every second) and are not verified yet\n", rep.Queued)
	}
	if rep.Unsigned > 0 {
		fmt.Fprintf(env.Stdout, "events 0 to %d were written before events were signed: only checkpoints and witnesses protect them\n", rep.Unsigned-1)
	}
	return nil
}

// witnessFileCheckpoints reads the checkpoints of witness files, each of
// which must hold one.
func witnessFileCheckpoints(files []string, v note.Verifier) ([]audit.OutsideCheckpoint, error) {
	var outside []audit.OutsideCheckpoint
	for _, f := range files {
		cps, err := audit.ReadWitnessFile(f, v)
		if err != nil {
			return nil, err
		}
		if len(cps) == 0 {
			return nil, errs.E(errs.Invalid, "witness file %s holds no checkpoint", f)
		}
		for _, c := range cps {
			outside = append(outside, audit.OutsideCheckpoint{Source: "witness file " + f, Checkpoint: c})
		}
	}
	return outside, nil
}

func runAuditCheckpoint(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "audit checkpoint", "audit checkpoint [--data DIR] [--database URL] [--audit-witness URL@KEY]… [--audit-witness-file FILE]")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	ws := witnessFlags(fs)
	if err := parse(fs, env, args); err != nil {
		return err
	}
	inst, l, err := auditLog(ctx, env, cfg, kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	cp, err := witnessedCheckpoint(ctx, l, ws, inst)
	if err != nil {
		return err
	}
	env.Stdout.Write(cp.Note)
	return nil
}

// witnessConfig is the serve command's witness flags, which the commands
// that sign or present checkpoints take too (from the same environment).
type witnessConfig struct {
	specs []string
	file  string
}

func witnessFlags(fs *flag.FlagSet) *witnessConfig {
	w := &witnessConfig{}
	fs.Func("audit-witness", "a C2SP tlog-witness as `URL@KEY`, as for serve; repeatable", func(v string) error {
		w.specs = append(w.specs, strings.Fields(v)...)
		return nil
	})
	fs.StringVar(&w.file, "audit-witness-file", "", "the witness `file` of serve --audit-witness-file")
	return w
}

// witnessedCheckpoint signs or takes the checkpoint of the current trail,
// but only once the witnesses have accepted the trail as it stood: a
// command never presents a tree that a witness has seen larger or
// different (AUD-02). The new checkpoint then goes to the witnesses too.
func witnessedCheckpoint(ctx context.Context, l *audit.Log, w *witnessConfig, inst *instance.Instance) (audit.Checkpoint, error) {
	if w.file != "" {
		if err := audit.CheckWitnessPath(w.file, inst.DataDir); err != nil {
			return audit.Checkpoint{}, err
		}
	}
	ws, err := auditWitnesses(w.specs, w.file, inst)
	if err != nil {
		return audit.Checkpoint{}, err
	}
	l.Witnesses = ws
	handOver := func() error {
		if err := l.WitnessLatest(ctx); err != nil {
			return err
		}
		for _, st := range l.WitnessStatus() {
			if st.Error != "" {
				return errs.E(errs.Unavailable, "%s; no checkpoint is presented until every configured witness has accepted the trail", st.Error)
			}
		}
		return nil
	}
	if err := handOver(); err != nil {
		return audit.Checkpoint{}, err
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return audit.Checkpoint{}, err
	}
	if err := handOver(); err != nil {
		return audit.Checkpoint{}, err
	}
	return cp, nil
}

func runAuditProve(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "audit prove", "audit prove N [--data DIR] [--database URL] [--audit-witness URL@KEY]… [--audit-witness-file FILE]")
	cfg := instanceFlags(fs)
	ws := witnessFlags(fs)
	var rest []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		rest, args = args[:1], args[1:]
	}
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError{"audit prove needs the event index N"}
	}
	var index int64
	if _, err := fmt.Sscan(rest[0], &index); err != nil || index < 0 {
		return usageError{fmt.Sprintf("event index %q is not a number ≥ 0", rest[0])}
	}
	inst, l, err := auditLog(ctx, env, cfg, nil)
	if err != nil {
		return err
	}
	defer inst.Close()
	cp, err := witnessedCheckpoint(ctx, l, ws, inst)
	if err != nil {
		return err
	}
	if index >= cp.Size {
		return errs.E(errs.Invalid, "event index %d is beyond the trail's %d events", index, cp.Size)
	}
	ev, data, err := l.LeafAt(ctx, index)
	if err != nil {
		return err
	}
	proof, err := l.ProveInclusion(ctx, index, cp)
	if err != nil {
		return err
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, index, tlog.RecordHash(data)); err != nil {
		return fmt.Errorf("the inclusion proof of event %d does not verify: %v", index, err)
	}
	out := struct {
		Index      int64       `json:"index"`
		Event      audit.Event `json:"event"`
		Leaf       string      `json:"leaf_hash"`
		LeafData   string      `json:"leaf_data"`
		Proof      []string    `json:"inclusion_proof"`
		Checkpoint string      `json:"checkpoint"`
	}{Index: index, Event: ev, Leaf: base64.StdEncoding.EncodeToString(hashBytes(tlog.RecordHash(data))), LeafData: string(data), Checkpoint: string(cp.Note)}
	for _, h := range proof {
		out.Proof = append(out.Proof, base64.StdEncoding.EncodeToString(hashBytes(h)))
	}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func hashBytes(h tlog.Hash) []byte { return h[:] }

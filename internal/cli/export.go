package cli

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/custodia/custodia/internal/entries"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
)

// runExport writes a study's entries to a file (or standard output) on the
// operator's command, with a progress line on standard error (LIFE-04):
// every site and field, but sensitive values, which open only under a
// person's decrypt grant. It reads one snapshot of the clinical database
// beside a running server, and is on the audit trail as the operator's.
// A file is written under a temporary name and renamed when complete, so
// that an export cut short leaves no file that looks whole.
func runExport(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "export", "export --study ID [--format csv|json|odm|redcap] [--out FILE]")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	studyID := fs.String("study", "", "the study's `id` (required)")
	format := fs.String("format", "csv", "`csv` (one value a line), json (JSON lines), odm (CDISC ODM 1.3.2) or redcap (REDCap's flat records)")
	out := fs.String("out", "-", "the `file` to write; - for standard output")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if *studyID == "" {
		return usageError{"--study is required"}
	}
	kind := map[string]string{"csv": entries.FormatCSV, "json": entries.FormatJSONL, "odm": entries.FormatODM, "redcap": entries.FormatREDCap}[*format]
	if kind == "" {
		return usageError{fmt.Sprintf("--format is csv, json, odm or redcap, not %q", *format)}
	}
	inst, err := openWriting(ctx, env, cfg, kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	read, err := inst.Clinical.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the database")
	}
	defer read.Rollback()
	var total int
	if err := read.QueryRowContext(ctx, `SELECT count(*) FROM entry_values x JOIN entries e ON e.id = x.entry_id
		WHERE e.study_id = $1 AND e.deleted_at IS NULL AND x.value IS NOT NULL`, *studyID).Scan(&total); err != nil {
		return errs.Wrap(errs.Unavailable, err, "read the database")
	}

	var dst io.Writer = env.Stdout
	var tmp *os.File
	if *out != "-" {
		if tmp, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*"); err != nil {
			return errs.Wrap(errs.Invalid, err, "write "+*out)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		dst = tmp
	}
	buf := bufio.NewWriterSize(dst, 256<<10)
	pw := &progressWriter{w: buf}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				pw.report(env.Stderr, kind, total, true)
				return
			case <-t.C:
				pw.report(env.Stderr, kind, total, false)
			}
		}
	}()
	svc := &entries.Service{Gate: gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey})}
	n, err := svc.ExportAsOperator(ctx, read, *studyID, kind, pw)
	if err == nil {
		err = buf.Flush()
	}
	close(stop)
	<-done
	if err != nil {
		return err
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "write "+*out)
		}
		if err := tmp.Close(); err != nil {
			return errs.Wrap(errs.Unavailable, err, "write "+*out)
		}
		if err := os.Rename(tmp.Name(), *out); err != nil {
			return errs.Wrap(errs.Unavailable, err, "write "+*out)
		}
		tmp = nil
		fmt.Fprintf(env.Stderr, "Wrote %d values to %s (sensitive values are left out: they open under a person's decrypt grant only).\n", n, *out)
	}
	return nil
}

// progressWriter counts what an export writes: bytes, and lines (one a
// value, but in ODM).
type progressWriter struct {
	w            io.Writer
	bytes, lines atomic.Int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.bytes.Add(int64(len(b)))
	p.lines.Add(int64(bytes.Count(b, []byte{'\n'})))
	return p.w.Write(b)
}

// report prints the progress line, and a line break at the end.
func (p *progressWriter) report(w io.Writer, kind string, total int, last bool) {
	end := "\r"
	if last {
		end = "\n"
	}
	mb := float64(p.bytes.Load()) / (1 << 20)
	if kind == entries.FormatODM || kind == entries.FormatREDCap || total == 0 {
		fmt.Fprintf(w, "exported %.1f MB (of %d values)%s", mb, total, end)
		return
	}
	done := min(max(p.lines.Load()-1, 0), int64(total)) // the CSV header is a line
	if kind == entries.FormatJSONL {
		done = min(p.lines.Load(), int64(total))
	}
	fmt.Fprintf(w, "exported %d of %d values (%d%%), %.1f MB%s", done, total, done*100/int64(total), mb, end)
}

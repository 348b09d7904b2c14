package cli

import (
	"context"
	"crypto/fips140"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/backup"
	"github.com/custodia/custodia/internal/backup/bucket"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/sqldb"
)

func runBackup(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "verify":
			if err := runBackupVerify(ctx, env, args[1:]); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			return nil
		case "keygen":
			if err := runBackupKeygen(env, args[1:]); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			return nil
		}
	}
	return runBackupWrite(ctx, env, args)
}

// recipientFlags are the flags that name the public backup key.
func recipientFlags(fs *flag.FlagSet) func() ([]age.Recipient, []string, error) {
	var keyText, keyFile string
	fs.StringVar(&keyText, "recipient", "", "the public backup `key` (age1…, from backup keygen) the backup is encrypted to")
	fs.StringVar(&keyFile, "recipient-file", "", "a `file` of public backup keys, one per line")
	return func() ([]age.Recipient, []string, error) {
		text := keyText
		if keyFile != "" {
			b, err := os.ReadFile(keyFile)
			if err != nil {
				return nil, nil, errs.Wrap(errs.Invalid, err, "read --recipient-file")
			}
			text += "\n" + string(b)
		}
		if strings.TrimSpace(text) == "" {
			return nil, nil, usageError{"--recipient (or --recipient-file) is required: the public backup key from custodia backup keygen"}
		}
		return backup.ParseRecipients(text)
	}
}

func runBackupWrite(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "backup", "backup --to DIR --recipient KEY [--data DIR | --database URL --identity-database URL]\n       custodia backup verify FILE [--key FILE]\n       custodia backup keygen --out FILE")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	to := fs.String("to", "", "the `folder` the backup file is written into (off this machine's disk: a mounted backup volume), or an S3-compatible bucket, s3+https://HOST/BUCKET[/PREFIX], with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")
	recipients := recipientFlags(fs)
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if *to == "" {
		return usageError{"--to is required: the folder the backup is written into"}
	}
	rs, names, err := recipients()
	if err != nil {
		return err
	}
	target, err := bucket.ParseTarget(*to, env.Getenv)
	if err != nil {
		return err
	}
	inst, err := openWriting(ctx, env, cfg, kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	res, err := backup.Write(ctx, backup.Source{Instance: inst.ID, Clinical: inst.Clinical, Identity: inst.Identity, Signer: inst.AuditKey},
		rs, names, target, func(line string) { fmt.Fprintln(env.Stderr, line) })
	if err != nil {
		return err
	}
	if err := recordBackup(ctx, gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey}), res, "cli"); err != nil {
		target.Remove(context.WithoutCancel(ctx), res.Where)
		return err
	}
	fmt.Fprintf(env.Stdout, "Wrote %s (%d bytes, SHA-256 %s).\n", res.Where, res.FileSize, res.FileSHA256)
	return nil
}

// recordBackup records a written backup and its event on the trail.
func recordBackup(ctx context.Context, g *gate.Gate, res backup.Result, via string) error {
	return g.Operate(ctx, "backup.create", func(o *gate.OpTx) error {
		o.Security()
		o.Object("backup", filepath.Base(res.Where))
		o.Detail("via", via)
		o.Detail("size", strconv.FormatInt(res.FileSize, 10))
		o.Detail("sha256", res.FileSHA256)
		o.Detail("rows", strconv.FormatInt(res.Rows[sqldb.Clinical.Name]+res.Rows[sqldb.Identity.Name], 10))
		return backup.Record(ctx, o, res)
	})
}

func runBackupKeygen(env Env, args []string) error {
	fs := newFlags(env, "backup keygen", "backup keygen --out FILE")
	out := fs.String("out", "", "the `file` the secret backup key is written to (made mode 0600; never on the server)")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"--out is required: where the secret backup key is written"}
	}
	secret, public, err := backup.GenerateKey()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return errs.E(errs.Invalid, "%s exists already; a backup key is never overwritten", *out)
		}
		return errs.Wrap(errs.Invalid, err, "write the backup key")
	}
	_, werr := fmt.Fprintf(f, "# custodia backup key: keep it offline, apart from the server and its backups\n# public key: %s\n%s\n", public, secret)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(*out)
		return errs.Wrap(errs.Unavailable, err, "write the backup key")
	}
	fmt.Fprintf(env.Stdout, "Wrote the secret backup key to %s. Give the server only the public key:\n%s\n", *out, public)
	return nil
}

// verifierOf reads the audit verifier key: --verifier, or the data
// folder's.
func verifierOf(file, dataDir string) (note.Verifier, error) {
	if file == "" {
		file = audit.VerifierPath(dataDir)
	}
	return audit.ReadVerifier(file)
}

func readBackupKey(file string) ([]age.Identity, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "read the backup key file")
	}
	return backup.ParseKey(string(b))
}

// splitFile takes the backup file named first among args, before or after
// the flags.
func splitFile(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	if n := len(args); n > 0 && !strings.HasPrefix(args[n-1], "-") && (n < 2 || !strings.HasPrefix(args[n-2], "--") || strings.Contains(args[n-2], "=")) {
		return args[n-1], args[:n-1]
	}
	return "", args
}

func runBackupVerify(ctx context.Context, env Env, args []string) error {
	file, rest := splitFile(args)
	fs := newFlags(env, "backup verify", "backup verify FILE [--data DIR | --verifier FILE] [--key FILE]")
	dataDir := fs.String("data", instance.DefaultDataDir, "the data `folder` whose audit verifier key checks the backup's signature")
	verifierFile := fs.String("verifier", "", "the audit verifier key `file` (default <data>/audit/verifier.pub)")
	keyFile := fs.String("key", "", "the secret backup key `file`: also decrypt the content and check every table")
	if err := parse(fs, env, rest); err != nil {
		return err
	}
	if file == "" {
		return usageError{"name the backup file: custodia backup verify FILE"}
	}
	v, err := verifierOf(*verifierFile, *dataDir)
	if err != nil {
		return err
	}
	b, err := backup.Open(file, v)
	if err != nil {
		return err
	}
	defer b.Close()
	m := b.Manifest
	if *keyFile == "" {
		if err := b.CheckContent(); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "backup verified: instance %s, taken %s, schema clinical %d identity %d, %d audit events, content %d bytes matches its signed SHA-256 (give --key to check every table)\n",
			m.Instance, m.Created.Format("2006-01-02 15:04:05Z"), m.Schemas[sqldb.Clinical.Name], m.Schemas[sqldb.Identity.Name], m.AuditEvents, m.Size)
		return nil
	}
	ids, err := readBackupKey(*keyFile)
	if err != nil {
		return err
	}
	sum, err := b.CheckAll(ids)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "backup verified: instance %s, taken %s, clinical %d tables %d rows, identity %d tables %d rows, %d audit events; every table matches its hash\n",
		m.Instance, m.Created.Format("2006-01-02 15:04:05Z"), sum.Tables[sqldb.Clinical.Name], sum.Rows[sqldb.Clinical.Name],
		sum.Tables[sqldb.Identity.Name], sum.Rows[sqldb.Identity.Name], m.AuditEvents)
	return nil
}

// checkBackupOptions checks serve's backup settings and parses the
// target and the recipients.
func checkBackupOptions(o *serveOptions, getenv func(string) string) error {
	if o.backupTo == "" {
		if o.backupRecipient != "" || o.backupRecipientFile != "" {
			return usageError{"--backup-recipient needs --backup-to, the folder backups are written into"}
		}
		return nil
	}
	if fips140.Enabled() {
		return backup.ErrFIPS
	}
	var err error
	if o.backupTarget, err = bucket.ParseTarget(o.backupTo, getenv); err != nil {
		return usageError{"--backup-to: " + errs.SafeMessage(err)}
	}
	if o.backupEvery < 10*time.Minute || o.backupEvery > 7*24*time.Hour {
		return usageError{"--backup-every: want 10m to 168h"}
	}
	if o.backupKeep < 1 {
		return usageError{"--backup-keep: want 1 or more"}
	}
	text := o.backupRecipient
	if o.backupRecipientFile != "" {
		b, err := os.ReadFile(o.backupRecipientFile)
		if err != nil {
			return usageError{"--backup-recipient-file: " + err.Error()}
		}
		text += "\n" + string(b)
	}
	if strings.TrimSpace(text) == "" {
		return usageError{"--backup-to needs --backup-recipient (or --backup-recipient-file): the public backup key from custodia backup keygen"}
	}
	if o.backupRecipients, o.backupNames, err = backup.ParseRecipients(text); err != nil {
		return usageError{"--backup-recipient: " + errs.SafeMessage(err)}
	}
	return nil
}

// backupSchedule is serve's schedule of backups, recorded through the
// operator's gate.
func backupSchedule(o *serveOptions, inst *instance.Instance, operator *gate.Gate, log *slog.Logger) *backup.Schedule {
	return &backup.Schedule{
		Source:     backup.Source{Instance: inst.ID, Clinical: inst.Clinical, Identity: inst.Identity, Signer: inst.AuditKey},
		Recipients: o.backupRecipients, Names: o.backupNames, Target: o.backupTarget, Every: o.backupEvery, Keep: o.backupKeep,
		Holder: ids.New(), Log: log,
		Record: func(ctx context.Context, res backup.Result) error {
			return recordBackup(ctx, operator, res, "schedule")
		},
		Removed: func(ctx context.Context, location string) error {
			return operator.Operate(ctx, "backup.remove", func(op *gate.OpTx) error {
				op.Object("backup", filepath.Base(location))
				op.Detail("reason", "retention")
				return backup.MarkRemoved(ctx, op, location)
			})
		},
	}
}

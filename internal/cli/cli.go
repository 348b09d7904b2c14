// Package cli is the custodia command: it parses arguments and flags (which
// also read CUSTODIA_* environment variables), runs one command, and turns
// any failure into one line, "custodia: <what failed>: <why>", with a
// non-zero exit. It runs in-process in tests.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
)

// Env gives a command its surroundings, so tests can run it in-process.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the HTTPS server", runServe},
		{"init", "create the first organization and its administrator", runInit},
		{"migrate", "bring both databases' schemas up to date", runMigrate},
		{"user", "manage accounts: user add, user unlock", runUser},
		{"keys", "key operations under dual control: status, rotate, approve, export-recovery, provider-change", runKeys},
		{"audit", "verify the audit trail, print a checkpoint or an inclusion proof", runAudit},
		{"backup", "write an encrypted backup of both databases, verify one, or make a backup key", runBackup},
		{"restore", "restore a backup into empty databases and verify it", runRestore},
		{"export", "write a study's entries to a file: csv, json, odm or redcap", runExport},
		{"security-report", "print the security statement: every control, whether it is active and its setting", runSecurityReport},
		{"sbom", "print the software bill of materials of this binary (CycloneDX JSON)", runSBOM},
		{"version", "print the version", runVersion},
	}
}

// Run executes the command line args (args[0] is the program name) and
// returns the process exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := Env{Getenv: getenv, Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if len(args) < 2 {
		usage(stderr)
		return 2
	}
	name := args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(ctx, env, args[2:])
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			if err != nil {
				fmt.Fprintf(stderr, "custodia: %s: %s\n", name, oneLine(err))
				if errs.KindOf(err) == errs.Invalid || isUsage(err) {
					return 2
				}
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "custodia: unknown command %q (run 'custodia --help' for the list)\n", name)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: custodia <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'custodia <command> --help' for a command's flags. Every flag can also be")
	fmt.Fprintln(w, "set through the environment: --identity-database is CUSTODIA_IDENTITY_DATABASE.")
}

// oneLine flattens an error to a single line.
func oneLine(err error) string {
	s := err.Error()
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " ")
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// newFlags makes a flag set whose errors come back to the caller and whose
// help text goes to stdout.
func newFlags(env Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := env.Stdout
		fmt.Fprintf(w, "Usage: custodia %s\n\n", synopsis)
		fmt.Fprintln(w, "Flags (each also read from CUSTODIA_<NAME>, e.g. --addr from CUSTODIA_ADDR):")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parse reads flags from the environment first, then from args, so a flag
// given on the command line wins. Positional arguments are refused.
func parse(fs *flag.FlagSet, env Env, args []string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "CUSTODIA_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := env.Getenv(name); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = usageError{fmt.Sprintf("%s: invalid value %q", name, v)}
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	// The flag package prints the usage on any parse error; only --help
	// should, and only once.
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// instanceFlags are the flags of every command that works on an instance.
func instanceFlags(fs *flag.FlagSet) *instance.Config {
	c := &instance.Config{}
	fs.StringVar(&c.DataDir, "data", instance.DefaultDataDir, "data `folder` (key file, certificates, SQLite databases)")
	fs.StringVar(&c.Database, "database", "", "clinical database: sqlite:`PATH` or postgres://… (default sqlite:<data>/clinical.db)")
	fs.StringVar(&c.IdentityDatabase, "identity-database", "", "identity database, separate from the clinical one: sqlite:`PATH` or postgres://… (default sqlite:<data>/identity.db)")
	return c
}

// readSecret reads a password from stdin: the first line, at most 4 KiB.
func readSecret(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 4097))
	if err != nil {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	if len(b) > 4096 {
		return "", errs.E(errs.Invalid, "the password on stdin is longer than 4096 bytes")
	}
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", errs.E(errs.Invalid, "--password-stdin was given but stdin holds no password")
	}
	return s, nil
}

// openInstance opens the instance that c names, which must exist: only
// serve, init and migrate make one (instance.Open).
func openInstance(ctx context.Context, c *instance.Config) (*instance.Instance, error) {
	return instance.OpenExisting(ctx, *c)
}

// openWriting opens the instance that c names for a command that writes
// its audit trail. When the audit key is sealed by a key-encryption key
// kept in a token or a KMS (instance.OpenAuditKey), kc's provider opens it; the
// provider is closed again, the opened key kept.
func openWriting(ctx context.Context, env Env, c *instance.Config, kc *kekConfig) (*instance.Instance, error) {
	inst, err := openInstance(ctx, c)
	if err != nil || !inst.AuditKeySealed() {
		return inst, err
	}
	kek, err := kc.openFor(ctx, env, inst, true, false)
	if err == nil {
		err = inst.OpenAuditKey(ctx, kek)
		keys.CloseProvider(kek)
	}
	if err != nil {
		inst.Close()
		return nil, err
	}
	return inst, nil
}

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/atomicfile"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/keys/keyadmin"
	"github.com/custodia/custodia/internal/keys/vault"
	"github.com/custodia/custodia/internal/mfa"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/participants"
	"github.com/custodia/custodia/internal/server"
	"github.com/custodia/custodia/internal/sso"
)

// kekConfig selects the key-encryption key's provider (CRY-04). Secrets (a
// PKCS#11 PIN, a Vault token or AppRole secret id) come from files or the
// environment, never from a flag value that would show in ps.
type kekConfig struct {
	provider string
	previous string

	p11Module, p11Token, p11Key, p11PINFile string

	vaultAddr, vaultMount, vaultKey, vaultNamespace, vaultCAFile string
	vaultTokenFile, vaultRoleID, vaultSecretIDFile               string
	vaultTimeout                                                 time.Duration
}

func kekFlags(fs *flag.FlagSet) *kekConfig {
	c := &kekConfig{}
	fs.StringVar(&c.provider, "kek", "local", "key-encryption key `provider`: local (<data>/keys/kek.key), pkcs11 or vault")
	fs.StringVar(&c.previous, "kek-previous", "", "during a change of provider, the previous `provider`, still used to unwrap keys not yet re-wrapped")
	fs.StringVar(&c.p11Module, "pkcs11-module", "", "PKCS#11 module (shared library) `path`, e.g. /usr/lib/softhsm/libsofthsm2.so")
	fs.StringVar(&c.p11Token, "pkcs11-token", "", "PKCS#11 token `label`")
	fs.StringVar(&c.p11Key, "pkcs11-key", "custodia-kek", "`label` of the AES key in the token")
	fs.StringVar(&c.p11PINFile, "pkcs11-pin-file", "", "`file` holding the token's user PIN (or set CUSTODIA_PKCS11_PIN)")
	fs.StringVar(&c.vaultAddr, "vault-addr", "", "Vault/OpenBao `URL`, https://HOST:8200")
	fs.StringVar(&c.vaultMount, "vault-mount", "transit", "`path` of the Transit engine")
	fs.StringVar(&c.vaultKey, "vault-key", "custodia", "`name` of the Transit key")
	fs.StringVar(&c.vaultNamespace, "vault-namespace", "", "Vault `namespace`, if any")
	fs.StringVar(&c.vaultCAFile, "vault-ca-file", "", "PEM `file` of the CA of Vault's certificate (default: system roots)")
	fs.StringVar(&c.vaultTokenFile, "vault-token-file", "", "`file` holding a Vault token (or set VAULT_TOKEN)")
	fs.StringVar(&c.vaultRoleID, "vault-role-id", "", "AppRole role `id`, instead of a token")
	fs.StringVar(&c.vaultSecretIDFile, "vault-secret-id-file", "", "`file` holding the AppRole secret id (or set CUSTODIA_VAULT_SECRET_ID)")
	fs.DurationVar(&c.vaultTimeout, "vault-timeout", 10*time.Second, "`timeout` of each Vault request")
	return c
}

func (c *kekConfig) check() error {
	for _, p := range []string{c.provider, c.previous} {
		if p != "" && !slices.Contains(keys.ProviderNames, p) {
			return usageError{fmt.Sprintf("--kek: unknown provider %q (want local, pkcs11 or vault)", p)}
		}
	}
	if c.previous == c.provider {
		return usageError{"--kek-previous must name a provider other than --kek"}
	}
	return nil
}

// secretFrom reads a secret from a file (first line) or else an
// environment variable.
func secretFrom(env Env, file string, vars ...string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", errs.Wrap(errs.Invalid, err, "read secret file "+file)
		}
		s, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimSpace(s), nil
	}
	for _, v := range vars {
		if s := env.Getenv(v); s != "" {
			return s, nil
		}
	}
	return "", nil
}

// open opens the configured provider. With contact false (the server's
// start) a remote KMS is not contacted yet: /readyz reports whether it
// answers. With create, a missing local key file is made anew; without, it
// is an error that matches os.ErrNotExist.
func (c *kekConfig) open(ctx context.Context, env Env, dataDir string, contact, create bool) (keys.Provider, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	p, err := c.openOne(ctx, env, c.provider, dataDir, contact, create)
	if err != nil || c.previous == "" {
		return p, err
	}
	prev, err := c.openOne(ctx, env, c.previous, dataDir, contact, false)
	if err != nil {
		keys.CloseProvider(p)
		return nil, fmt.Errorf("--kek-previous: %w", err)
	}
	return &keys.Chain{Primary: p, Previous: []keys.Provider{prev}}, nil
}

func (c *kekConfig) openOne(ctx context.Context, env Env, name, dataDir string, contact, create bool) (keys.Provider, error) {
	switch name {
	case "pkcs11":
		pin, err := secretFrom(env, c.p11PINFile, "CUSTODIA_PKCS11_PIN")
		if err != nil {
			return nil, err
		}
		if c.p11Module == "" || c.p11Token == "" || pin == "" {
			return nil, usageError{"--kek pkcs11 needs --pkcs11-module, --pkcs11-token and a PIN (--pkcs11-pin-file or CUSTODIA_PKCS11_PIN)"}
		}
		return keys.OpenPKCS11(ctx, keys.PKCS11Config{Module: c.p11Module, Token: c.p11Token, Key: c.p11Key, PIN: pin})
	case "vault":
		token, err := secretFrom(env, c.vaultTokenFile, "VAULT_TOKEN", "CUSTODIA_VAULT_TOKEN")
		if err != nil {
			return nil, err
		}
		secretID, err := secretFrom(env, c.vaultSecretIDFile, "CUSTODIA_VAULT_SECRET_ID")
		if err != nil {
			return nil, err
		}
		cfg := vault.Config{Addr: c.vaultAddr, Mount: c.vaultMount, Key: c.vaultKey, Namespace: c.vaultNamespace,
			CAFile: c.vaultCAFile, Token: token, RoleID: c.vaultRoleID, SecretID: secretID, Timeout: c.vaultTimeout}
		if c.vaultAddr == "" {
			return nil, usageError{"--kek vault needs --vault-addr"}
		}
		if !contact {
			return vault.New(cfg)
		}
		return vault.Open(ctx, cfg)
	default:
		open := keys.LoadLocalKEK
		if create {
			open = keys.OpenLocalKEK
		}
		k, err := open(dataDir)
		if err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "open the key-encryption key")
		}
		return k, nil
	}
}

// openFor opens the key-encryption key of inst's provider and refuses one
// that lacks a version which wrapped a secret in inst's databases, naming
// the versions and where it looked: a server that started anyway would
// answer 503 for every value under them, and make new keys under another
// key. Only serve (mayCreate) makes a new local key file, and only when no
// secret in the databases is wrapped by a local version: the first start of
// an instance.
func (c *kekConfig) openFor(ctx context.Context, env Env, inst *instance.Instance, contact, mayCreate bool) (keys.Provider, error) {
	use, err := keyadmin.KEKUse(ctx, keyStores(inst))
	if err != nil {
		return nil, err
	}
	var local, elsewhere []string
	for id, n := range use {
		switch p := keys.ProviderOf(id); {
		case n == 0 || id == "":
		case p != c.provider && p != c.previous:
			elsewhere = append(elsewhere, id)
		case p == "local":
			local = append(local, id)
		}
	}
	slices.Sort(local)
	slices.Sort(elsewhere)
	if len(elsewhere) > 0 {
		p := keys.ProviderOf(elsewhere[0])
		return nil, errs.E(errs.Invalid, "this instance holds %s, but this command runs with --kek %s: give the provider that holds them (--kek %s, or --kek-previous %s during a change of provider)",
			wrappedBy(use, elsewhere), c.provider, p, p)
	}
	kek, err := c.open(ctx, env, inst.DataDir, contact, mayCreate && len(local) == 0)
	if errors.Is(err, os.ErrNotExist) && len(local) > 0 {
		return nil, errs.E(errs.Invalid, "the key-encryption key file %s is missing, but the databases hold %s: "+
			"restore the file from a backup or from its recovery material (custodia keys restore-recovery); a new key is made only for an instance with nothing wrapped yet",
			filepath.Join(inst.DataDir, keys.LocalKEKFile), wrappedBy(use, local))
	}
	if err != nil {
		return nil, err
	}
	lacking := keys.Lacking(kek, use)
	if len(lacking) == 0 {
		return kek, nil
	}
	keys.CloseProvider(kek)
	held := "no version"
	if k, err := keys.LoadLocalKEK(inst.DataDir); err == nil {
		held = strings.Join(k.Versions(), ", ")
	}
	return nil, errs.E(errs.Invalid, "this instance holds %s, which the key-encryption key file %s does not (it holds %s): restore the key file that holds them from a backup or from its recovery material",
		wrappedBy(use, lacking), filepath.Join(inst.DataDir, keys.LocalKEKFile), held)
}

// wrappedBy says how many secrets each of the versions wrapped.
func wrappedBy(use map[string]int, versions []string) string {
	parts := make([]string, len(versions))
	for i, v := range versions {
		noun := "secrets"
		if use[v] == 1 {
			noun = "secret"
		}
		parts[i] = fmt.Sprintf("%d %s wrapped by key-encryption key version %s", use[v], noun, v)
	}
	return strings.Join(parts, " and ")
}

// keyStores are every table of secrets the key-encryption key wrapped.
// keyAdmins lets the administrators of inst request and approve key
// operations, proving who they are with their passwords.
func keyAdmins(inst *instance.Instance) *keyadmin.Admins {
	g := gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey})
	return &keyadmin.Admins{Gate: g, Factors: &mfa.Service{Gate: g}}
}

func keyStores(inst *instance.Instance) []keys.WrappedStore {
	return []keys.WrappedStore{
		&keys.DataKeyStore{Label: "clinical data keys", DB: inst.Clinical},
		&keys.DataKeyStore{Label: "identity data keys", DB: inst.Identity},
		mfa.Secrets(gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey})),
		sso.Secrets(gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey})),
		inst.AuditKeyStore(),
	}
}

func runKeys(ctx context.Context, env Env, args []string) error {
	subs := []struct {
		name, synopsis string
		run            func(context.Context, Env, []string) error
	}{
		{"status", "keys status [--kek PROVIDER …]", runKeysStatus},
		{"rotate", "keys rotate --org SLUG --as EMAIL [--kek-version] [--data-keys]   (request; password on stdin)\n       custodia keys rotate --request ID [--batch N]                           (carry out an approved request)", runKeysRotate},
		{"approve", "keys approve ID --as EMAIL   (password on stdin)", runKeysApprove},
		{"export-recovery", "keys export-recovery --org SLUG --as EMAIL   (request; password on stdin)\n       custodia keys export-recovery --request ID --out FILE   (passphrase on stdin)", runKeysExport},
		{"provider-change", "keys provider-change --org SLUG --as EMAIL --to PROVIDER   (request; password on stdin)\n       custodia keys provider-change --request ID --kek NEW --kek-previous OLD", runKeysProviderChange},
		{"restore-recovery", "keys restore-recovery --in FILE   (passphrase on stdin; writes <data>/keys/kek.key)", runKeysRestore},
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		for i, s := range subs {
			prefix := "       "
			if i == 0 {
				prefix = "Usage: "
			}
			fmt.Fprintf(env.Stdout, "%scustodia %s\n", prefix, s.synopsis)
		}
		if len(args) == 0 {
			return usageError{"missing subcommand (want: status, rotate, approve, export-recovery, provider-change, restore-recovery)"}
		}
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, env, args[1:])
		}
	}
	return usageError{fmt.Sprintf("unknown subcommand %q (want: status, rotate, approve, export-recovery, provider-change, restore-recovery)", args[0])}
}

// requestFlags are the flags of a subcommand that either makes a request
// (--org, --as) or carries one out (--request).
type requestFlags struct {
	org, as, request string
}

func addRequestFlags(fs *flag.FlagSet) *requestFlags {
	r := &requestFlags{}
	fs.StringVar(&r.org, "org", "", "`slug` of the organization whose administrator makes the request")
	fs.StringVar(&r.as, "as", "", "e-mail `address` of the administrator making the request (password on stdin)")
	fs.StringVar(&r.request, "request", "", "`id` of an approved request to carry out")
	return r
}

func (r *requestFlags) making() (bool, error) {
	switch {
	case r.request != "" && (r.org != "" || r.as != ""):
		return false, usageError{"give either --org and --as (to make a request) or --request (to carry one out)"}
	case r.request != "":
		return false, nil
	case r.org == "" || r.as == "":
		return false, usageError{"--org and --as are required to make a request (or --request ID to carry one out)"}
	}
	return true, nil
}

// makeRequest records a request by the administrator named in r, whose
// password is read from stdin.
func makeRequest(ctx context.Context, env Env, cfg *instance.Config, kc *kekConfig, r *requestFlags, kind keyadmin.Kind, p keyadmin.Params) error {
	password, err := readSecret(env.Stdin)
	if err != nil {
		return err
	}
	inst, err := openWriting(ctx, env, cfg, kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	org, err := orgs.OrganizationBySlug(ctx, inst.Clinical, r.org)
	if err != nil {
		return err
	}
	req, err := keyAdmins(inst).Request(ctx, r.as, password, org.ID, kind, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Requested %s (request %s). A second administrator of %s approves it with\n", kind, req.ID, org.Slug)
	fmt.Fprintf(env.Stdout, "  custodia keys approve %s --as EMAIL\n", req.ID)
	fmt.Fprintf(env.Stdout, "before %s; then it can be carried out once.\n", req.ExpiresAt.Format(time.RFC3339))
	return nil
}

func runKeysApprove(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "keys approve", "keys approve ID --as EMAIL   (the approver's password on stdin)")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	as := fs.String("as", "", "e-mail `address` of the approving administrator (required; password on stdin)")
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if id == "" || *as == "" {
		return usageError{"the request ID and --as are required"}
	}
	password, err := readSecret(env.Stdin)
	if err != nil {
		return err
	}
	inst, err := openWriting(ctx, env, cfg, kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	req, err := keyAdmins(inst).Approve(ctx, *as, password, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Approved %s request %s; it can be carried out until %s.\n", req.Kind, req.ID, req.ExpiresAt.Format(time.RFC3339))
	return nil
}

func runKeysRotate(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "keys rotate", "keys rotate --org SLUG --as EMAIL [--kek-version] [--data-keys] | --request ID")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	rf := addRequestFlags(fs)
	kekVersion := fs.Bool("kek-version", false, "request: add a version of the key-encryption key and re-wrap every key under it")
	dataKeys := fs.Bool("data-keys", false, "request: add a version of each data key of the organization")
	batch := fs.Int("batch", 100, "carry out: secrets re-wrapped per transaction")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	making, err := rf.making()
	if err != nil {
		return err
	}
	if making {
		if !*kekVersion && !*dataKeys {
			return usageError{"say what to rotate: --kek-version, --data-keys, or both"}
		}
		return makeRequest(ctx, env, cfg, kc, rf, keyadmin.Rotate, keyadmin.Params{KEK: *kekVersion, DataKeys: *dataKeys})
	}
	return carryOutRotation(ctx, env, cfg, kc, rf.request, *batch)
}

func runKeysProviderChange(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "keys provider-change", "keys provider-change --org SLUG --as EMAIL --to PROVIDER | --request ID --kek NEW --kek-previous OLD")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	rf := addRequestFlags(fs)
	to := fs.String("to", "", "request: the new `provider` (local, pkcs11 or vault)")
	batch := fs.Int("batch", 100, "carry out: secrets re-wrapped per transaction")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	making, err := rf.making()
	if err != nil {
		return err
	}
	if making {
		return makeRequest(ctx, env, cfg, kc, rf, keyadmin.ProviderChange, keyadmin.Params{Provider: *to})
	}
	if kc.previous == "" {
		return usageError{"carrying out a provider change needs --kek NEW and --kek-previous OLD"}
	}
	return carryOutRotation(ctx, env, cfg, kc, rf.request, *batch)
}

// carryOutRotation runs (or resumes) the rotation of an approved request,
// printing its progress.
func carryOutRotation(ctx context.Context, env Env, cfg *instance.Config, kc *kekConfig, requestID string, batch int) error {
	if batch < 1 || batch > 10000 {
		return usageError{"--batch: want 1 to 10000"}
	}
	if err := kc.check(); err != nil {
		return err
	}
	inst, err := openInstance(ctx, cfg)
	if err != nil {
		return err
	}
	defer inst.Close()
	// Keys move from --kek-previous to --kek only under an approved
	// provider change (whose provider keyadmin checks), never a rotation's.
	if kc.previous != "" {
		req, err := keyadmin.Get(ctx, inst.Clinical, "", requestID)
		if err != nil {
			return err
		}
		if req.Kind != keyadmin.ProviderChange {
			return errs.E(errs.Invalid, "request %s is for %s, not %s: keys move to another provider only under an approved provider-change request", req.ID, req.Kind, keyadmin.ProviderChange)
		}
	}
	kek, err := kc.openFor(ctx, env, inst, true, false)
	if err != nil {
		return err
	}
	defer keys.CloseProvider(kek)
	// The runner's events are signed by the audit key; a sealed one moves
	// with the other keys (instance.AuditKeyStore), and takes the form
	// the provider asks once they all have (instance.KeepAuditKey).
	if err := inst.OpenAuditKey(ctx, kek); err != nil {
		return err
	}
	last := time.Time{}
	r := &keyadmin.Runner{
		Gate: gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey}),
		KEK:  kek,
		Keyrings: []keyadmin.Keyring{
			{Name: "clinical", Keyring: &keys.Keyring{DB: inst.Clinical, KEK: kek}},
			{Name: "identity", Keyring: &keys.Keyring{DB: inst.Identity, KEK: kek, EpochDir: filepath.Join(inst.DataDir, keys.LocalEpochsDir)}},
		},
		Stores: keyStores(inst),
		// The identity values follow the participant keys' new versions.
		Resealers: []keyadmin.Resealer{participants.Identities{Gate: server.NewGate(inst, kek)}},
		BatchSize: batch,
		Progress: func(p keyadmin.Progress) {
			if time.Since(last) < time.Second && p.Done != p.Total {
				return
			}
			last = time.Now()
			if p.Total > 0 {
				fmt.Fprintf(env.Stdout, "%s %s: %d/%d (%.0f%%), %.0f/s\n", p.Phase, p.Store, p.Done, p.Total, 100*float64(p.Done)/float64(p.Total), p.Rate)
			} else {
				fmt.Fprintf(env.Stdout, "%s %s: %d, %.0f/s\n", p.Phase, p.Store, p.Done, p.Rate)
			}
		},
	}
	rot, err := r.Run(ctx, requestID)
	if err != nil {
		if rot.ID != "" {
			return fmt.Errorf("rotation %s stopped in phase %s (run the same command again to resume): %w", rot.ID, rot.Phase, err)
		}
		return err
	}
	if err := inst.KeepAuditKey(ctx, kek); err != nil {
		return err
	}
	var changed, failed int64
	for _, s := range rot.Stores {
		fmt.Fprintf(env.Stdout, "  %-32s visited %d, changed %d, failed %d\n", s.Store, s.Visited, s.Changed, s.Failed)
		failed += s.Failed
		changed += s.Changed
	}
	fmt.Fprintf(env.Stdout, "Rotation %s finished: every key is wrapped by %s.\n", rot.ID, rot.TargetKEK)
	if failed > 0 {
		return errs.E(errs.Internal, "%d wrapped keys did not unwrap and were left as they were; older key-encryption key versions were kept", failed)
	}
	return nil
}

func runKeysExport(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "keys export-recovery", "keys export-recovery --org SLUG --as EMAIL | --request ID --out FILE")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	rf := addRequestFlags(fs)
	out := fs.String("out", "", "carry out: `file` to write the recovery material to (must not exist)")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	making, err := rf.making()
	if err != nil {
		return err
	}
	if making {
		return makeRequest(ctx, env, cfg, kc, rf, keyadmin.ExportRecovery, keyadmin.Params{})
	}
	if *out == "" {
		return usageError{"--out is required"}
	}
	if _, err := os.Lstat(*out); err == nil {
		return errs.E(errs.Invalid, "%s exists already; the recovery material goes to a new file", *out)
	}
	passphrase, err := readSecret(env.Stdin)
	if err != nil {
		return err
	}
	if len(passphrase) < keys.MinRecoveryPassphrase {
		return errs.E(errs.Invalid, "the passphrase on stdin must be at least %d characters", keys.MinRecoveryPassphrase)
	}
	inst, err := openWriting(ctx, env, cfg, kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	kek, err := keys.LoadLocalKEK(inst.DataDir)
	if err != nil {
		return err
	}
	material, err := keys.RecoveryMaterial(kek, []byte(passphrase))
	if err != nil {
		return err
	}
	// The material is written beside its destination first and moved
	// there only once the request is spent and the export audited.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".recovery-*")
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "write "+*out)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(material); err != nil {
		tmp.Close()
		return errs.Wrap(errs.Invalid, err, "write "+*out)
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return errs.Wrap(errs.Invalid, err, "write "+*out)
	}
	var req keyadmin.Request
	if err := gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey}).Operate(ctx, "key.recovery.export", func(tx *gate.OpTx) error {
		req, err = keyadmin.ExportUse(ctx, tx, rf.request, kek.ID(), time.Now())
		return err
	}); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), *out); err != nil {
		return errs.Wrap(errs.Invalid, err, "write "+*out)
	}
	if err := atomicfile.SyncDir(filepath.Dir(*out)); err != nil {
		return errs.Wrap(errs.Invalid, err, "write "+*out)
	}
	fmt.Fprintf(env.Stdout, "Wrote the recovery material of %s to %s (request %s).\n", kek.ID(), *out, req.ID)
	fmt.Fprintln(env.Stdout, "Keep it and its passphrase apart, away from this server.")
	return nil
}

func runKeysRestore(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "keys restore-recovery", "keys restore-recovery --in FILE [--data DIR]   (passphrase on stdin)")
	dataDir := fs.String("data", instance.DefaultDataDir, "data `folder` to restore the key file into")
	in := fs.String("in", "", "`file` of recovery material (required)")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if *in == "" {
		return usageError{"--in is required"}
	}
	material, err := os.ReadFile(*in)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "read "+*in)
	}
	passphrase, err := readSecret(env.Stdin)
	if err != nil {
		return err
	}
	text, err := keys.OpenRecovery(material, []byte(passphrase))
	if err != nil {
		return err
	}
	defer clear(text)
	if err := keys.RestoreLocalKEK(*dataDir, text); err != nil {
		return err
	}
	k, err := keys.LoadLocalKEK(*dataDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Restored the key-encryption key %s into %s.\n", k.ID(), filepath.Join(*dataDir, keys.LocalKEKFile))
	return nil
}

func runKeysStatus(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "keys status", "keys status [--kek PROVIDER …]")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if err := kc.check(); err != nil {
		return err
	}
	inst, err := openInstance(ctx, cfg)
	if err != nil {
		return err
	}
	defer inst.Close()
	w := env.Stdout
	use, err := keyadmin.KEKUse(ctx, keyStores(inst))
	if err != nil {
		return err
	}
	// keys status looks and changes nothing: it never makes a key.
	var lacking []string
	kek, err := kc.open(ctx, env, inst.DataDir, true, false)
	if err != nil {
		fmt.Fprintf(w, "Key-encryption key: %s, NOT REACHABLE: %s\n", kc.provider, errs.SafeMessage(err))
		for id, n := range use {
			if n > 0 {
				lacking = append(lacking, id)
			}
		}
		slices.Sort(lacking)
	} else {
		fmt.Fprintf(w, "Key-encryption key: %s, current version %s\n", kek.Name(), kek.ID())
		if r, ok := kek.(keys.Retirer); ok {
			fmt.Fprintf(w, "  versions that unwrap: %s\n", strings.Join(r.Versions(), ", "))
		}
		defer keys.CloseProvider(kek)
		lacking = keys.Lacking(kek, use)
	}
	if inst.AuditKeySealed() {
		fmt.Fprintln(w, "Audit key: sealed by the key-encryption key (audit/signing.key.sealed)")
	} else {
		fmt.Fprintln(w, "Audit key: in the clear beside the local key file (audit/signing.key)")
	}
	fmt.Fprintln(w, "Wrapped secrets per key-encryption key version:")
	ids := make([]string, 0, len(use))
	for id := range use {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		missing := ""
		if slices.Contains(lacking, id) {
			missing = "  MISSING: no key-encryption key at hand unwraps them"
		}
		fmt.Fprintf(w, "  %-40s %d%s\n", id, use[id], missing)
	}
	for _, db := range []struct {
		name string
		inst *instance.Instance
		cl   bool
	}{{"clinical", inst, true}, {"identity", inst, false}} {
		d := db.inst.Identity
		if db.cl {
			d = db.inst.Clinical
		}
		counts, err := keys.CountByKind(ctx, d)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "Data keys (%s database):", db.name)
		for _, k := range []keys.ScopeKind{keys.KindOrg, keys.KindStudy, keys.KindParticipant, keys.KindIndex} {
			c := counts[k]
			fmt.Fprintf(w, " %s %d (%d versions, %d destroyed);", k, c.Scopes, c.Versions, c.Destroyed)
		}
		fmt.Fprintln(w)
	}
	now := time.Now()
	reqs, err := keyadmin.List(ctx, inst.Clinical, "", now.Add(-7*24*time.Hour))
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "Key requests of the last 7 days:")
	if len(reqs) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, r := range reqs {
		fmt.Fprintf(w, "  %s  %-16s %-9s requested by %s", r.ID, r.Kind, r.Status(now), r.RequestedBy)
		if r.ApprovedBy != "" {
			fmt.Fprintf(w, ", approved by %s", r.ApprovedBy)
		}
		fmt.Fprintf(w, ", expires %s\n", r.ExpiresAt.Format(time.RFC3339))
	}
	rots, err := keyadmin.Rotations(ctx, inst.Clinical, 5)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "Rotations:")
	if len(rots) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, r := range rots {
		state := "running"
		if !r.FinishedAt.IsZero() {
			state = "finished " + r.FinishedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  %s  request %s, phase %s, %s, target %s\n", r.ID, r.RequestID, r.Phase, state, r.TargetKEK)
		for _, s := range r.Stores {
			fmt.Fprintf(w, "    %-32s visited %d, changed %d, failed %d, done %t\n", s.Store, s.Visited, s.Changed, s.Failed, s.Done)
		}
	}
	if len(lacking) > 0 {
		return errs.E(errs.Unavailable, "%s, which no key-encryption key at hand unwraps", wrappedBy(use, lacking))
	}
	return nil
}

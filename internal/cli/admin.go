package cli

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/custodia/custodia/internal/accounts"
	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/instance"
	"github.com/custodia/custodia/internal/keys"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Version is set at build time with -ldflags "-X …/cli.Version=v1.2.3".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func runVersion(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "version", "version")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "custodia %s (%s, %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func runMigrate(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "migrate", "migrate [--data DIR] [--database URL] [--identity-database URL]")
	cfg := instanceFlags(fs)
	if err := parse(fs, env, args); err != nil {
		return err
	}
	// migrate may make the databases of a new instance, as serve does, and
	// is what brings an existing one up to date.
	c := *cfg
	c.Migrate = true
	inst, err := instance.Open(ctx, c)
	if err != nil {
		return err
	}
	defer inst.Close()
	for _, db := range []struct {
		db *sqldb.DB
		s  sqldb.Schema
	}{{inst.Clinical, sqldb.Clinical}, {inst.Identity, sqldb.Identity}} {
		st, err := db.db.State(ctx, db.s)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s database (%s): schema version %d of %d, current\n", db.s.Name, db.db.Location, st.Applied, st.Known)
	}
	return nil
}

// accountInput checks a new account's e-mail address and, with
// --password-stdin, reads its password and checks it against the policy,
// all before anything is written.
func accountInput(env Env, email, name string, pwStdin bool) (normEmail, password string, err error) {
	if normEmail, err = accounts.NormalizeEmail(email); err != nil {
		return "", "", err
	}
	if !pwStdin {
		return normEmail, "", nil
	}
	if password, err = readSecret(env.Stdin); err != nil {
		return "", "", err
	}
	if err := accounts.DefaultPolicy.Check(password, normEmail, name); err != nil {
		return "", "", err
	}
	return normEmail, password, nil
}

// linkTTL is how long a printed first-password link stays valid.
const linkTTL = 72 * time.Hour

func runInit(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "init", "init --org NAME --admin-email EMAIL [--slug SLUG] [--admin-name NAME] [--password-stdin] [--kek local|pkcs11|vault …]")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	orgName := fs.String("org", "", "the organization's `name` (required)")
	slug := fs.String("slug", "", "the organization's short name in URLs and commands (default: derived from --org)")
	email := fs.String("admin-email", "", "the first administrator's e-mail `address` (required)")
	name := fs.String("admin-name", "", "the administrator's display `name`")
	pwStdin := fs.Bool("password-stdin", false, "read the administrator's password from stdin (otherwise a one-time link is printed)")
	baseURL := fs.String("url", "https://127.0.0.1:8443", "the server's public `URL`, for the printed link")
	if err := parse(fs, env, args); err != nil {
		return err
	}
	if *orgName == "" || *email == "" {
		return usageError{"--org and --admin-email are required"}
	}
	// Check every input before anything is written.
	if _, err := orgs.CheckName("organization", *orgName); err != nil {
		return err
	}
	if *slug == "" {
		*slug = orgs.SlugFrom(*orgName)
	}
	if err := orgs.CheckSlug(*slug); err != nil {
		return err
	}
	if err := kc.check(); err != nil {
		return err
	}
	normEmail, password, err := accountInput(env, *email, *name, *pwStdin)
	if err != nil {
		return err
	}
	// init makes the instance if it does not exist yet, with its
	// key-encryption key (a local key file only while nothing is wrapped).
	inst, err := instance.Open(ctx, *cfg)
	if err != nil {
		return err
	}
	defer inst.Close()
	kek, err := kc.openFor(ctx, env, inst, false, true)
	if err != nil {
		return err
	}
	err = inst.KeepAuditKey(ctx, kek)
	keys.CloseProvider(kek)
	if err != nil {
		return err
	}
	var org orgs.Organization
	var link string
	err = operate(ctx, inst, func(o *gate.OpTx) ([]audit.Event, error) {
		if org, err = orgs.CreateOrganization(ctx, o, *orgName, *slug); err != nil {
			return nil, err
		}
		acc, _, err := accounts.Enrol(ctx, o, normEmail, *name, authz.Assignment{OrgID: org.ID, Role: authz.OrgAdmin})
		if err != nil {
			return nil, err
		}
		if link, err = setPasswordOrLink(ctx, o, acc, password, *baseURL); err != nil {
			return nil, err
		}
		return []audit.Event{
			{Action: "org.create", OrgID: org.ID, ObjectType: "organization", ObjectID: org.ID},
			{Action: "account.create", OrgID: org.ID, ObjectType: "account", ObjectID: acc.ID},
			{Action: "role.assign", OrgID: org.ID, ObjectType: "account", ObjectID: acc.ID,
				Security: true, Details: map[string]string{"role": string(authz.OrgAdmin)}},
		}, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Created organization %q (slug %s) with administrator %s.\n", org.Name, org.Slug, normEmail)
	printLink(env, link)
	return nil
}

func runUser(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(env.Stdout, "Usage: custodia user add --org SLUG --email EMAIL --role ROLE [--study ID] [--site ID] [--password-stdin]")
		fmt.Fprintln(env.Stdout, "       custodia user unlock --org SLUG --email EMAIL")
		fmt.Fprintln(env.Stdout, "       custodia user disable --org SLUG --email EMAIL")
		fmt.Fprintln(env.Stdout, "       custodia user enable --org SLUG --email EMAIL")
		fmt.Fprintln(env.Stdout, "       custodia user sign-out --org SLUG (--email EMAIL | --all)")
		if len(args) == 0 {
			return usageError{"missing subcommand (want: add, unlock, disable, enable, sign-out)"}
		}
		return nil
	}
	switch args[0] {
	case "add":
	case "unlock":
		return runUserUnlock(ctx, env, args[1:])
	case "disable":
		return runUserDisable(ctx, env, args[1:])
	case "enable":
		return runUserEnable(ctx, env, args[1:])
	case "sign-out":
		return runUserSignOut(ctx, env, args[1:])
	default:
		return usageError{fmt.Sprintf("unknown subcommand %q (want: add, unlock, disable, enable, sign-out)", args[0])}
	}
	fs := newFlags(env, "user add", "user add --org SLUG --email EMAIL --role ROLE [--study ID] [--site ID] [--name NAME] [--password-stdin]")
	cfg := instanceFlags(fs)
	kc := kekFlags(fs)
	slug := fs.String("org", "", "the organization's `slug` (required)")
	email := fs.String("email", "", "the person's e-mail `address` (required)")
	name := fs.String("name", "", "the person's display `name`")
	roleName := fs.String("role", "", "built-in `role`: "+roleList()+" (required)")
	study := fs.String("study", "", "study `id` for a study-level role")
	site := fs.String("site", "", "site `id` for a site-level role")
	pwStdin := fs.Bool("password-stdin", false, "read the new account's password from stdin (otherwise a one-time link is printed)")
	baseURL := fs.String("url", "https://127.0.0.1:8443", "the server's public `URL`, for the printed link")
	if err := parse(fs, env, args[1:]); err != nil {
		return err
	}
	if *slug == "" || *email == "" || *roleName == "" {
		return usageError{"--org, --email and --role are required"}
	}
	role, err := authz.ParseRole(*roleName)
	if err != nil {
		return err
	}
	normEmail, password, err := accountInput(env, *email, *name, *pwStdin)
	if err != nil {
		return err
	}
	inst, err := openWriting(ctx, env, cfg, kc)
	if err != nil {
		return err
	}
	defer inst.Close()
	var (
		org     orgs.Organization
		created bool
		link    string
	)
	err = operate(ctx, inst, func(o *gate.OpTx) ([]audit.Event, error) {
		if org, err = orgs.OrganizationBySlug(ctx, o, *slug); err != nil {
			return nil, err
		}
		var acc accounts.Account
		acc, created, err = accounts.Enrol(ctx, o, normEmail, *name,
			authz.Assignment{OrgID: org.ID, Role: role, StudyID: *study, SiteID: *site})
		if err != nil {
			return nil, err
		}
		evs := []audit.Event{{Action: "role.assign", OrgID: org.ID, StudyID: *study, SiteID: *site,
			ObjectType: "account", ObjectID: acc.ID, Security: true, Details: map[string]string{"role": string(role)}}}
		if !created {
			if password != "" {
				return nil, errs.E(errs.Conflict, "%s has an account already; --password-stdin cannot change its password", normEmail)
			}
			return evs, nil
		}
		if link, err = setPasswordOrLink(ctx, o, acc, password, *baseURL); err != nil {
			return nil, err
		}
		return append([]audit.Event{{Action: "account.create", OrgID: org.ID, ObjectType: "account", ObjectID: acc.ID}}, evs...), nil
	})
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(env.Stdout, "Created account %s with role %s in %s.\n", normEmail, role, org.Slug)
	} else {
		fmt.Fprintf(env.Stdout, "Gave the existing account %s the role %s in %s.\n", normEmail, role, org.Slug)
	}
	printLink(env, link)
	return nil
}

// operate runs work from the command line through the gate, as operator
// work: the operator has no account, and the events the work returns say
// the change came through the CLI on the server's machine. They commit
// with the work; work that returns none changed nothing and keeps nothing.
func operate(ctx context.Context, inst *instance.Instance, work func(o *gate.OpTx) ([]audit.Event, error)) error {
	return gate.New(gate.Config{Clinical: inst.Clinical, AuditKey: inst.AuditKey}).Operate(ctx, "cli", func(o *gate.OpTx) error {
		evs, err := work(o)
		if err != nil || len(evs) == 0 {
			o.Nothing()
			return err
		}
		first := evs[0]
		o.Action(first.Action)
		o.Org(first.OrgID)
		o.Study(first.StudyID, first.SiteID)
		o.Object(first.ObjectType, first.ObjectID)
		if first.Security {
			o.Security()
		}
		for k, v := range first.Details {
			o.Detail(k, v)
		}
		o.Detail("via", "cli")
		for _, ev := range evs[1:] {
			ev.Details = maps.Clone(ev.Details)
			if ev.Details == nil {
				ev.Details = map[string]string{}
			}
			ev.Details["via"] = "cli"
			if err := o.Record(ctx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

func roleList() string {
	var names []string
	for _, r := range authz.BuiltinRoles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// setPasswordOrLink stores the given password, or, with none, issues a
// one-time link to choose it and returns the link.
func setPasswordOrLink(ctx context.Context, tx sqldb.Tx, acc accounts.Account, password, baseURL string) (string, error) {
	if password != "" {
		return "", accounts.SetPassword(ctx, tx, acc, password, accounts.DefaultPolicy)
	}
	token, err := accounts.IssueLink(ctx, tx, acc.ID, accounts.PurposeSetup, linkTTL)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(baseURL, "/") + "/setup/" + token, nil
}

func printLink(env Env, link string) {
	if link == "" {
		return
	}
	fmt.Fprintf(env.Stdout, "One-time link to choose a password (valid %s, single use):\n  %s\n", linkTTL, link)
}

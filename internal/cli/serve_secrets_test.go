package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Passwords of the databases and the mail server stay out of the process
// list (ASVS V13.3.1, V13.2.1): a URL with a password given on serve's
// command line is refused in production and warned of elsewhere, naming the
// flag and never the password; the same URL from the environment passes
// that check, and the mail password can come from a file.
func TestWEB08_PasswordsStayOffTheCommandLine(t *testing.T) {
	const secret = "s3cret-Passw0rd"
	data := t.TempDir()
	pgURL := "postgres://custodia:" + secret + "@127.0.0.1:1/custodia?sslmode=disable"
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"database", []string{"--database", pgURL}, "--database on the command line holds a password"},
		{"identity database", []string{"--identity-database", pgURL}, "--identity-database on the command line holds a password"},
		{"mail", []string{"--smtp-url", "smtp://mailer:" + secret + "@mail.example:587"}, "--smtp-url on the command line holds a password"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, nil, "", append([]string{"serve", "--env", "production", "--data", data, "--addr", "127.0.0.1:0"}, c.args...)...)
			checkOneLineError(t, r, c.want)
			if strings.Contains(r.stderr+r.stdout, secret) {
				t.Fatalf("the refusal shows the password: %q", r.stderr)
			}
		})
	}

	// From the environment the URL passes this check (production then
	// refuses for its other settings).
	r := run(t, map[string]string{"CUSTODIA_DATABASE": pgURL}, "", "serve", "--env", "production", "--data", data, "--addr", "127.0.0.1:0")
	if r.code == 0 || strings.Contains(r.stderr, "holds a password") || strings.Contains(r.stderr, secret) {
		t.Fatalf("a database URL from the environment: %d %q", r.code, r.stderr)
	}

	// Elsewhere than production: a warning in the log, without the password.
	r = run(t, nil, "", "serve", "--data", data, "--addr", "127.0.0.1:0", "--database", pgURL)
	if r.code == 0 || !strings.Contains(r.stderr, `"level":"WARN"`) || !strings.Contains(r.stderr, "--database on the command line holds a password") ||
		strings.Contains(r.stderr, secret) {
		t.Fatalf("development with a password on the command line: %d %q", r.code, r.stderr)
	}

	// The mail password from a file, and in one place only.
	pwFile := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, map[string]string{"CUSTODIA_SMTP_URL": "smtp://mailer:" + secret + "@mail.example:587"}, "", "serve", "--data", data, "--addr", "127.0.0.1:0", "--smtp-password-file", pwFile)
	checkOneLineError(t, r, "give it in one place")
	r = run(t, nil, "", "serve", "--data", data, "--addr", "127.0.0.1:0", "--smtp-password-file", pwFile)
	checkOneLineError(t, r, "--smtp-password-file goes with --smtp-url")
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, nil, "", "serve", "--data", data, "--addr", "127.0.0.1:0", "--smtp-url", "smtp://mailer@mail.example:587", "--smtp-password-file", empty)
	checkOneLineError(t, r, "holds no password")
}

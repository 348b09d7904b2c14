package sms

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
)

func TestNormalizePhone(t *testing.T) {
	for in, want := range map[string]string{
		"+31 6 1234 5678":   "+31612345678",
		"+1 (555) 010-9999": "+15550109999",
		" +4915112345678 ":  "+4915112345678",
	} {
		if got, err := NormalizePhone(in); err != nil || got != want {
			t.Errorf("NormalizePhone(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0612345678", "+0612345678", "+31 6 12", "+1234567890123456", "+31abc45678", "+31612345678; rm"} {
		if _, err := NormalizePhone(bad); !errs.Is(err, errs.Invalid) {
			t.Errorf("NormalizePhone(%q): %v, want Invalid", bad, err)
		}
	}
	if m := Mask("+31612345678"); m != "+31•••••••78" {
		t.Errorf("Mask = %q", m)
	}
}

func TestAUTH08_OutboxWritesOwnerOnlyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o := &Outbox{Dir: dir}
	if err := o.Send(context.Background(), Message{To: "+31612345678", Text: "Your Custodia code is 123456."}); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(context.Background(), Message{To: "not a number", Text: "x"}); err == nil {
		t.Error("sent to a malformed number")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.sms"))
	if len(files) != 1 {
		t.Fatalf("%d files, want 1", len(files))
	}
	st, err := os.Stat(files[0])
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("outbox file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	b, _ := os.ReadFile(files[0])
	if !strings.Contains(string(b), "To: +31612345678") || !strings.Contains(string(b), "123456") {
		t.Errorf("outbox file: %q", b)
	}
}

package audit

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func TestAUD02_InclusionAndConsistencyProofsVerify(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		l := newLog(t, db)
		var cps []Checkpoint
		total := 0
		for _, size := range []int{1, 2, 3, 4, 7, 8, 9, 13, 16, 17} {
			for ; total < size; total++ {
				appendEach(t, db, sampleEvent(total))
			}
			cp, err := l.Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// A checkpoint read back from its text alone is as good.
			parsed, err := ParseCheckpoint(cp.Note, l.Verifier)
			if err != nil || parsed.Size != cp.Size || parsed.Root != cp.Root || parsed.Origin != testOrigin {
				t.Fatalf("ParseCheckpoint(own checkpoint) = %+v, %v", parsed, err)
			}
			cps = append(cps, parsed)
		}
		leaves := make([]tlog.Hash, total)
		for i := range leaves {
			_, data, err := l.LeafAt(ctx, int64(i))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := note.Open(data, note.VerifierList(l.Verifier)); err != nil {
				t.Fatalf("leaf %d is not a note signed by the audit key: %v", i, err)
			}
			leaves[i] = tlog.RecordHash(data)
		}
		for _, cp := range cps {
			for i := int64(0); i < cp.Size; i++ {
				p, err := l.ProveInclusion(ctx, i, cp)
				if err != nil {
					t.Fatal(err)
				}
				if err := tlog.CheckRecord(p, cp.Size, cp.Root, i, leaves[i]); err != nil {
					t.Fatalf("inclusion of %d in size %d: %v", i, cp.Size, err)
				}
				if err := tlog.CheckRecord(p, cp.Size, cp.Root, i, tlog.RecordHash([]byte("other"))); err == nil {
					t.Fatalf("inclusion proof of %d accepted a different event", i)
				}
			}
			for _, old := range cps {
				if old.Size > cp.Size {
					continue
				}
				p, err := l.ProveConsistency(ctx, old, cp)
				if err != nil {
					t.Fatal(err)
				}
				if err := tlog.CheckTree(p, cp.Size, cp.Root, old.Size, old.Root); err != nil {
					t.Fatalf("consistency %d → %d: %v", old.Size, cp.Size, err)
				}
			}
		}
		last := cps[len(cps)-1]
		if _, err := l.ProveInclusion(ctx, last.Size, last); !errs.Is(err, errs.Invalid) {
			t.Errorf("inclusion beyond the checkpoint: %v, want Invalid", err)
		}
		if _, err := l.ProveConsistency(ctx, last, cps[0]); !errs.Is(err, errs.Invalid) {
			t.Errorf("consistency from a larger to a smaller tree: %v, want Invalid", err)
		}
		future := last
		future.Size = 1000
		if _, err := l.ProveInclusion(ctx, 5, future); !errs.Is(err, errs.Invalid) {
			t.Errorf("inclusion in a tree larger than the log: %v, want Invalid", err)
		}
	})
}

func TestAUD02_ParseCheckpointRefusesBadNotes(t *testing.T) {
	signer, verifier, err := LoadOrCreateKey(t.TempDir(), "custodia-audit-test")
	if err != nil {
		t.Fatal(err)
	}
	sign := func(s note.Signer, text string) []byte {
		b, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	root := tlog.RecordHash([]byte("r"))
	good := sign(signer, checkpointBody(testOrigin, 42, root))
	if cp, err := ParseCheckpoint(good, verifier); err != nil || cp.Size != 42 || cp.Root != root {
		t.Fatalf("good checkpoint: %+v, %v", cp, err)
	}
	skey, _, err := note.GenerateKey(rand.Reader, "custodia-audit-test")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	altered := []byte(strings.Replace(string(good), "\n42\n", "\n43\n", 1))
	badSig := []byte(string(good[:len(good)-6]) + "AAAA=\n")
	cases := []struct {
		name string
		text []byte
		want string
	}{
		{"garbage", []byte("this is not a checkpoint"), "not a signed note"},
		{"empty", nil, "not a signed note"},
		{"altered size", altered, "does not verify"},
		{"bad signature", badSig, "does not verify"},
		{"other key", sign(stranger, checkpointBody(testOrigin, 42, root)), "not signed by the audit key"},
		{"two lines", sign(signer, testOrigin+"\n42\n"), "origin, size and root"},
		{"bad size", sign(signer, testOrigin+"\n-1\n"+encodeHash(root)+"\n"), "size line"},
		{"leading zero", sign(signer, testOrigin+"\n042\n"+encodeHash(root)+"\n"), "size line"},
		{"bad root", sign(signer, testOrigin+"\n42\nnot-base64\n"), "root line"},
		{"short root", sign(signer, testOrigin+"\n42\nAAAA\n"), "root line"},
	}
	for _, c := range cases {
		_, err := ParseCheckpoint(c.text, verifier)
		switch {
		case !errs.Is(err, errs.Invalid):
			t.Errorf("%s: err = %v, want Invalid", c.name, err)
		case !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: err = %q, want it to mention %q", c.name, err, c.want)
		case strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "checkpoint: "):
			t.Errorf("%s: err = %q, want one line starting with \"checkpoint: \"", c.name, err)
		}
	}
	if _, err := ParseCheckpoint(good, nil); !errs.Is(err, errs.Invalid) {
		t.Errorf("no verifier: %v, want Invalid", err)
	}
	// Extension lines after the root are part of the C2SP format.
	if _, err := ParseCheckpoint(sign(signer, checkpointBody(testOrigin, 42, root)+"ext\n"), verifier); err != nil {
		t.Errorf("checkpoint with an extension line: %v", err)
	}
}

func TestAUD02_SigningKeyFilesAreOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	signer, verifier, err := LoadOrCreateKey(dir, "custodia-audit-inst1")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, "audit"):                 0o700,
		filepath.Join(dir, "audit", "signing.key"):  0o600,
		filepath.Join(dir, "audit", "verifier.pub"): 0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	// The same key comes back, and the verifier file checks its notes.
	signer2, _, err := LoadOrCreateKey(dir, "custodia-audit-inst1")
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := ReadVerifier(filepath.Join(dir, "audit", "verifier.pub"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, signer2)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []note.Verifier{verifier, fromFile} {
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			t.Errorf("reloaded key's note does not verify with %s: %v", v.Name(), err)
		}
	}
	if signer.KeyHash() != signer2.KeyHash() || signer.Name() != "custodia-audit-inst1" {
		t.Errorf("reloaded key differs")
	}
	if _, _, err := LoadOrCreateKey(dir, "custodia-audit-inst2"); !errs.Is(err, errs.Invalid) {
		t.Errorf("key of another name: %v, want Invalid", err)
	}
	key := filepath.Join(dir, "audit", "signing.key")
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(dir, "custodia-audit-inst1"); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: %v, want refusal", err)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	// A verifier file of another key is refused rather than silently kept.
	_, vkey, err := note.GenerateKey(rand.Reader, "custodia-audit-inst1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "audit", "verifier.pub"), []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(dir, "custodia-audit-inst1"); !errs.Is(err, errs.Invalid) {
		t.Errorf("mismatched verifier file: %v, want refusal", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "garbage.pub"), []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadVerifier(filepath.Join(dir, "garbage.pub")); !errs.Is(err, errs.Invalid) {
		t.Errorf("ReadVerifier(garbage) = %v, want Invalid", err)
	}
}

// Keys are random; many of their encodings hold '+', which also separates
// the fields of the key text.
func TestAUD02_EveryGeneratedKeyLoads(t *testing.T) {
	for range 50 {
		dir := t.TempDir()
		s, v, err := LoadOrCreateKey(dir, "custodia-audit-x")
		if err != nil {
			t.Fatal(err)
		}
		msg, err := note.Sign(&note.Note{Text: "x\n"}, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			t.Fatal(err)
		}
	}
}

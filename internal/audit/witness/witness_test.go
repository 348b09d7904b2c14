package witness

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/audit"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// litewitnessModule is the C2SP tlog-witness the tests run: litewitness
// and witnessctl from torchwood, whose v0.6.1 builds with this Go.
const litewitnessModule = "filippo.io/torchwood/cmd/%s@v0.6.1"

// envLitewitness names a folder holding litewitness and witnessctl to use
// instead of building them.
const envLitewitness = "CUSTODIA_TEST_LITEWITNESS"

// litewitness is a running witness.
type litewitness struct {
	url, vkey, db, ctl string
}

// startLitewitness builds litewitness (or takes it from envLitewitness),
// gives it an Ed25519 key through its own ssh-agent, and starts it on a
// loopback port; it skips the test when it cannot be built.
func startLitewitness(t *testing.T) *litewitness {
	t.Helper()
	for _, p := range []string{"ssh-keygen", "ssh-agent", "ssh-add"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("litewitness takes its key from an ssh-agent, and %s is not installed (Debian: openssh-client)", p)
		}
	}
	bin := os.Getenv(envLitewitness)
	if bin == "" {
		bin = t.TempDir()
		cmd := exec.Command("go", "install", fmt.Sprintf(litewitnessModule, "litewitness"), fmt.Sprintf(litewitnessModule, "witnessctl"))
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("litewitness cannot be built (go install %s: %v); set %s to a folder holding litewitness and witnessctl:\n%s",
				fmt.Sprintf(litewitnessModule, "litewitness"), err, envLitewitness, out)
		}
	}
	// A short folder: a Unix socket's path has a small limit.
	dir, err := os.MkdirTemp("", "lw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+filepath.Join(dir, "agent.sock"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	keyFile := filepath.Join(dir, "wkey")
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile)
	agent := exec.Command("ssh-agent", "-D", "-a", filepath.Join(dir, "agent.sock"))
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	waitFor(t, "ssh-agent socket", func() bool { _, err := os.Stat(filepath.Join(dir, "agent.sock")); return err == nil })
	run("ssh-add", "-q", keyFile)
	fp := strings.Fields(run("ssh-keygen", "-lf", keyFile+".pub"))[1]

	// The witness's verifier key, from its public key: the cosignature/v1
	// algorithm byte and the Ed25519 key.
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	wire, err := base64.StdEncoding.DecodeString(strings.Fields(string(pub))[1])
	if err != nil || len(wire) < 32 {
		t.Fatalf("ssh public key: %v", err)
	}
	const name = "witness.test/custodia"
	vkey := cosignatureKey(name, wire[len(wire)-32:])

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w := &litewitness{url: "http://" + addr, vkey: vkey, db: filepath.Join(dir, "w.db"), ctl: filepath.Join(bin, "witnessctl")}
	// The database must exist before witnessctl adds logs to it.
	srv := exec.Command(filepath.Join(bin, "litewitness"), "-db", w.db, "-name", name, "-key", fp,
		"-ssh-agent", filepath.Join(dir, "agent.sock"), "-listen", addr)
	logs, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			if v := logField(sc.Text(), "vkey"); v != "" {
				select {
				case started <- v:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	select {
	case got := <-started:
		if got != vkey {
			t.Fatalf("litewitness logs its key as %s, computed %s", got, vkey)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("litewitness did not log its verifier key within 30s")
	}
	waitFor(t, "litewitness to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return w
}

// addLog lets the witness accept checkpoints of origin signed by vkey.
func (w *litewitness) addLog(t *testing.T, origin, vkey string) {
	t.Helper()
	for _, args := range [][]string{{"add-log", "-db", w.db, "-origin", origin}, {"add-key", "-db", w.db, "-origin", origin, "-key", vkey}} {
		if out, err := exec.Command(w.ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("witnessctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// logField reads key=value from a slog text line.
func logField(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func cosignatureKey(name string, pub []byte) string {
	key := append([]byte{0x04}, pub...)
	h := sha256.Sum256(append([]byte(name+"\n"), key...))
	return fmt.Sprintf("%s+%08x+%s", name, binary.BigEndian.Uint32(h[:]), base64.StdEncoding.EncodeToString(key))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
	}
}

// trail is an audit log of its own origin on a fresh database, with n
// events sequenced and signed.
func trail(t *testing.T, d sqldb.Dialect, s note.Signer, v note.Verifier, origin string, w audit.Witness, n int) *audit.Log {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, d, sqldb.Clinical)
	l := &audit.Log{DB: db, Signer: s, Verifier: v, Origin: origin, Witnesses: []audit.Witness{w}}
	grow(t, l, n)
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

func grow(t *testing.T, l *audit.Log, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		err := l.DB.InTx(ctx, func(tx *sql.Tx) error {
			_, err := audit.Append(ctx, tx, l.Signer, audit.Event{OrgID: "org1", Action: "participant.read", Outcome: audit.Success, ObjectID: fmt.Sprint(i)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

// A real C2SP witness cosigns each checkpoint the trail hands it and the
// growth between them; a database replaced by an older or another copy
// (a restored backup, a rewritten trail) is refused by the witness, and
// then by the instance.
func TestAUD02_RealWitnessCosignsAndCatchesARolledBackTrail(t *testing.T) {
	w := startLitewitness(t)
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		origin := "custodia.audit/lw-" + string(d)
		skey, vkey, err := note.GenerateKey(rand.Reader, "custodia-audit-lw-"+string(d))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := note.NewSigner(skey)
		v, _ := note.NewVerifier(vkey)
		client, err := Parse(w.url + "@" + w.vkey)
		if err != nil {
			t.Fatal(err)
		}

		// Unknown to the witness: refused, reported, not a split.
		l := trail(t, d, s, v, origin, client, 3)
		if err := l.WitnessLatest(ctx); err != nil {
			t.Fatalf("WitnessLatest before the witness knows the log: %v", err)
		}
		st := l.WitnessStatus()
		if st[0].Size != -1 || st[0].Behind != 3 || !strings.Contains(st[0].Error, "does not know this log") {
			t.Fatalf("status of a witness that does not know the log: %+v", st)
		}

		w.addLog(t, origin, vkey)
		fresh := func(l *audit.Log) *audit.Log {
			return &audit.Log{DB: l.DB, Signer: s, Verifier: v, Origin: origin, Witnesses: []audit.Witness{client}}
		}
		l = fresh(l) // forget the failure, as a restart would
		for _, more := range []int{0, 5, 1} {
			grow(t, l, more)
			if err := l.WitnessLatest(ctx); err != nil {
				t.Fatalf("WitnessLatest: %v", err)
			}
			cp, _ := l.Latest(ctx)
			if st := l.WitnessStatus(); st[0].Size != cp.Size || st[0].Behind != 0 || st[0].Error != "" {
				t.Fatalf("after handing over size %d: %+v", cp.Size, st)
			}
		}

		// (a) An older copy of the database: 9 events witnessed, 4 left.
		older := trail(t, d, s, v, origin, client, 4)
		err = older.WitnessLatest(ctx)
		if !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "has seen 9 audit events but this trail holds 4") {
			t.Fatalf("an older trail: %v", err)
		}
		if _, err := older.Checkpoint(ctx); !errs.Is(err, errs.Conflict) {
			t.Errorf("Checkpoint of a refused trail = %v, want the refusal", err)
		}
		// (b) Another trail as long or longer: the witness finds the proof
		// from its tree does not hold.
		other := trail(t, d, s, v, origin, client, 12)
		err = other.WitnessLatest(ctx)
		if !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "does not extend") {
			t.Fatalf("another trail: %v", err)
		}
		// The genuine trail goes on.
		l = fresh(l)
		grow(t, l, 2)
		if err := l.WitnessLatest(ctx); err != nil || l.WitnessStatus()[0].Size != 11 {
			t.Fatalf("the genuine trail after the refusals: %v, %+v", err, l.WitnessStatus())
		}

		// audit verify asks the witness what it saw.
		ask := func(l *audit.Log) audit.Report {
			t.Helper()
			rep, err := audit.Verify(ctx, l.DB, audit.VerifyOptions{Verifier: v, Witnesses: []audit.Witness{client}})
			if err != nil {
				t.Fatal(err)
			}
			return rep
		}
		if rep := ask(l); !rep.OK() || len(rep.Witnessed) != 1 || !strings.Contains(rep.Witnessed[0], "saw 11 events, a prefix of this trail") {
			t.Errorf("verify of the genuine trail against the witness: %+v", rep)
		}
		if rep := ask(older); rep.FirstBad != 4 || !strings.Contains(strings.Join(rep.Problems, "\n"), "has seen 11 events: the log holds only 4 (events removed)") {
			t.Errorf("verify of the older trail against the witness: %+v", rep)
		}
		if rep := ask(other); rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "saw a tree of 11 events that this trail does not extend") {
			t.Errorf("verify of another trail against the witness: %+v", rep)
		}
	})
}

func TestAUD02_WitnessSpecMustNameURLAndKey(t *testing.T) {
	for _, s := range []string{"", "http://127.0.0.1:1", "ftp://x@a+01234567+AQ==", "http://x@notakey", "http://h/@w+00000000+BA=="} {
		if _, err := Parse(s); !errs.Is(err, errs.Invalid) {
			t.Errorf("Parse(%q) = %v, want Invalid", s, err)
		}
	}
	if _, err := Parse("https://user@witness.example/p@" + cosignatureKey("w.example", make([]byte, 32))); err != nil {
		t.Errorf("a URL with user info: %v", err)
	}
}

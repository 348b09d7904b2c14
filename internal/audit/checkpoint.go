package audit

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Checkpoint is a signed statement of the tree's size and root hash. Anyone
// holding an old checkpoint and the verifier key can check that the trail
// still contains everything it covered, unchanged.
type Checkpoint struct {
	Origin string    // names the log: the first line of the body
	Size   int64     // number of events in the tree
	Root   tlog.Hash // RFC 6962 root hash of the first Size events
	Note   []byte    // the signed note text, as stored or kept by an operator
	Time   time.Time // when it was signed; zero when parsed from text alone
}

// checkpointBody is the C2SP tlog-checkpoint body: origin, size and the
// base64 root hash, one per line.
func checkpointBody(origin string, size int64, root tlog.Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
}

// ParseCheckpoint checks that noteText is a note signed by v and that its
// body is a checkpoint. Every failure is errs.Invalid with a one-line
// message.
func ParseCheckpoint(noteText []byte, v note.Verifier) (Checkpoint, error) {
	if v == nil {
		return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: no verifier key to check its signature")
	}
	n, err := note.Open(noteText, note.VerifierList(v))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		var bad *note.InvalidSignatureError
		switch {
		case errors.As(err, &bad):
			return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: signature by %s does not verify (altered or forged)", verifierName(v))
		case errors.As(err, &unknown):
			return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: not signed by the audit key %s", verifierName(v))
		default:
			return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: not a signed note")
		}
	}
	cp, err := parseBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	cp.Note = append([]byte(nil), noteText...)
	return cp, nil
}

// parseBody reads a checkpoint body. Extension lines after the root, which
// C2SP allows, are accepted and ignored.
func parseBody(text string) (Checkpoint, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: body must hold origin, size and root hash lines")
	}
	origin := lines[0]
	if origin == "" {
		return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: origin line is empty")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: size line is not a decimal number")
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: root line is not a base64 SHA-256 hash")
	}
	for _, l := range lines[3:] {
		if l == "" {
			return Checkpoint{}, errs.E(errs.Invalid, "checkpoint: body has an empty line")
		}
	}
	cp := Checkpoint{Origin: origin, Size: size}
	copy(cp.Root[:], raw)
	return cp, nil
}

func validOrigin(origin string) bool {
	if origin == "" || len(origin) > maxString {
		return false
	}
	for _, r := range origin {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func encodeHash(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

func decodeHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != tlog.HashSize {
		return h, errors.New("malformed hash")
	}
	copy(h[:], raw)
	return h, nil
}

// Newest reads the size and time of the newest signed checkpoint in q;
// ok is false while there is none.
func Newest(ctx context.Context, q sqldb.Querier) (size int64, at time.Time, ok bool, err error) {
	var micros int64
	err = q.QueryRowContext(ctx, `SELECT size, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &micros)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, false, nil
	}
	if err != nil {
		return 0, time.Time{}, false, asUnavailable(err, "read the newest audit checkpoint")
	}
	return size, time.UnixMicro(micros).UTC(), true, nil
}

// Package backup writes and restores backups of an instance (AVL-01,
// AVL-02, CRY-10): one file that holds both databases' content, taken from
// one consistent snapshot of each, compressed and encrypted to the backup
// key's public half (age), which the server holds without its secret half,
// so a server writes backups it cannot read back alone. A manifest signed
// with the instance's audit key names the instance, the schema versions,
// the latest audit checkpoint and the size and SHA-256 of the encrypted
// content, so a backup is checked without its key and without restoring it.
//
// The content is the instance's own format, not a database file: rows of
// every table as lines, written in key order (stream.go), so a backup of
// SQLite restores into PostgreSQL and back. It holds what the databases
// hold, every value sealed and every data key wrapped; never a key in
// clear, and never an erasure epoch's key, which stays in the data folder:
// a participant erased after the backup stays unreadable when it is
// restored (LIFE-03).
//
// The package is storage plumbing beside the gate: it reads and writes the
// databases whole, below any organization's authorization; the commands
// and the schedule that call it record each backup on the audit trail.
package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/fips140"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// ErrFIPS refuses a backup in FIPS mode (CRY-11): age's constructions are
// not among FIPS 140's approved algorithms.
var ErrFIPS = errs.E(errs.Invalid, "backups are encrypted with age (X25519 and ML-KEM-768, ChaCha20-Poly1305), which FIPS 140 does not approve, and FIPS mode is on: back the databases up with their own tools instead (every value in them is sealed)")

// Format names this layout of a backup file.
const Format = "custodia-backup-1"

// Suffix ends the name of every backup file.
const Suffix = ".custodia-backup"

// Names of the archive's two entries, in this order.
const (
	manifestEntry = "manifest.note"
	dataEntry     = "data.age"
)

// manifestHeader is the first line of a manifest's signed text; no audit
// checkpoint or event begins so, and the audit key signs both.
const manifestHeader = "custodia backup manifest"

// Manifest describes a backup. It is signed, and readable without the
// backup key.
type Manifest struct {
	Format   string    `json:"format"`
	Instance string    `json:"instance"`
	Created  time.Time `json:"created"`
	// Dialect is the source databases' dialect ("sqlite", "postgres").
	Dialect string `json:"dialect"`
	// Schemas are the schema versions of the clinical and identity
	// databases the content was written from.
	Schemas map[string]int `json:"schemas"`
	// Recipients are the public keys the content is encrypted to.
	Recipients []string `json:"recipients"`
	// Data is the encrypted content: its size and SHA-256.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Checkpoint is the newest signed audit checkpoint in the snapshot
	// (empty for a trail without one yet) and AuditEvents the number of
	// events recorded, sequenced or not.
	Checkpoint  string `json:"checkpoint,omitempty"`
	AuditEvents int64  `json:"audit_events"`
}

// Source is what a backup is taken from.
type Source struct {
	Instance string
	Clinical *sqldb.DB
	Identity *sqldb.DB
	// Signer is the instance's audit key.
	Signer note.Signer
}

// Result is one written backup.
type Result struct {
	Manifest Manifest
	// Where is the file's path (or its URL).
	Where string
	// FileSize and FileSHA256 describe the whole file.
	FileSize   int64
	FileSHA256 string
	// Rows counts the rows written, per database.
	Rows map[string]int64
}

// Progress reports a step of long work in a line for people.
type Progress func(line string)

// ParseRecipients reads public backup keys, one per line ("age1…" or
// "age1pq1…"; # comments allowed), from text.
func ParseRecipients(text string) ([]age.Recipient, []string, error) {
	rs, err := age.ParseRecipients(strings.NewReader(text))
	if err != nil {
		return nil, nil, errs.E(errs.Invalid, "the backup recipient is not a public backup key (age1…): %s", safeAge(err))
	}
	var names []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	return rs, names, nil
}

// safeAge keeps an age error to its first line, without key material
// (age's parse errors do not quote the key).
func safeAge(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// GenerateKey makes a new backup key pair: the secret key's text (to keep
// offline, with the people who may restore) and the public key's.
func GenerateKey() (secret, public string, err error) {
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		return "", "", err
	}
	return id.String(), id.Recipient().String(), nil
}

// FileName is the name of a backup of instance taken at t.
func FileName(instance string, t time.Time) string {
	return "custodia-" + instance + "-" + t.UTC().Format("20060102T150405.000Z") + Suffix
}

// Write writes a backup of src to target, encrypted to recipients (whose
// text names are recorded in the manifest). The file appears whole or not
// at all.
func Write(ctx context.Context, src Source, recipients []age.Recipient, names []string, target Target, progress Progress) (Result, error) {
	if len(recipients) == 0 {
		return Result{}, errs.E(errs.Invalid, "a backup needs the public backup key it is encrypted to")
	}
	if fips140.Enabled() {
		return Result{}, ErrFIPS
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	dir := target.Staging()
	if dir == "" {
		tmp, err := os.MkdirTemp("", "custodia-backup-")
		if err != nil {
			return Result{}, errs.Wrap(errs.Unavailable, err, "make a folder to write the backup in")
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	content, err := os.CreateTemp(dir, ".content-*.partial")
	if err != nil {
		return Result{}, errs.Wrap(errs.Invalid, err, "write into the backup folder "+dir)
	}
	defer os.Remove(content.Name())
	defer content.Close()

	m := Manifest{Format: Format, Instance: src.Instance, Created: now, Dialect: string(src.Clinical.Dialect),
		Recipients: names, Schemas: map[string]int{}}
	h := sha256.New()
	counter := &countWriter{w: io.MultiWriter(content, h)}
	enc, err := age.Encrypt(counter, recipients...)
	if err != nil {
		return Result{}, errs.Wrap(errs.Invalid, err, "encrypt the backup")
	}
	zw, err := gzip.NewWriterLevel(enc, gzip.BestSpeed)
	if err != nil {
		return Result{}, err
	}
	rows, err := writeContent(ctx, src, &m, zw, progress)
	if err != nil {
		return Result{}, err
	}
	if err := zw.Close(); err != nil {
		return Result{}, err
	}
	if err := enc.Close(); err != nil {
		return Result{}, err
	}
	m.Size, m.SHA256 = counter.n, hex.EncodeToString(h.Sum(nil))
	signed, err := signManifest(m, src.Signer)
	if err != nil {
		return Result{}, err
	}
	if _, err := content.Seek(0, io.SeekStart); err != nil {
		return Result{}, err
	}
	out, err := os.CreateTemp(dir, ".backup-*.partial")
	if err != nil {
		return Result{}, errs.Wrap(errs.Invalid, err, "write into the backup folder "+dir)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	fh := sha256.New()
	fc := &countWriter{w: io.MultiWriter(out, fh)}
	tw := tar.NewWriter(fc)
	if err := addEntry(tw, manifestEntry, int64(len(signed)), bytes.NewReader(signed), now); err != nil {
		return Result{}, err
	}
	if err := addEntry(tw, dataEntry, m.Size, content, now); err != nil {
		return Result{}, err
	}
	if err := tw.Close(); err != nil {
		return Result{}, err
	}
	if err := out.Sync(); err != nil {
		return Result{}, errs.Wrap(errs.Unavailable, err, "write the backup file")
	}
	if err := out.Close(); err != nil {
		return Result{}, err
	}
	if err := os.Chmod(out.Name(), 0o600); err != nil {
		return Result{}, err
	}
	where, err := target.Put(ctx, out.Name(), FileName(src.Instance, now))
	if err != nil {
		return Result{}, err
	}
	return Result{Manifest: m, Where: where, FileSize: fc.n, FileSHA256: hex.EncodeToString(fh.Sum(nil)), Rows: rows}, nil
}

func addEntry(tw *tar.Writer, name string, size int64, r io.Reader, t time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: t, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s: wrote %d of %d bytes", name, n, size)
	}
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeContent writes both databases' content to w, each from one
// snapshot: the clinical database first, then the identity database,
// whose writes commit before the clinical ones they go with, so that every
// participant the clinical snapshot holds has its identity in the second.
func writeContent(ctx context.Context, src Source, m *Manifest, w io.Writer, progress Progress) (map[string]int64, error) {
	rows := map[string]int64{}
	for _, part := range []struct {
		schema sqldb.Schema
		db     *sqldb.DB
	}{{sqldb.Clinical, src.Clinical}, {sqldb.Identity, src.Identity}} {
		n, err := dumpDatabase(ctx, part.db, part.schema, m, w, progress)
		if err != nil {
			return nil, err
		}
		rows[part.schema.Name] = n
	}
	return rows, writeMarker(w, marker{Done: true})
}

// snapshot begins a read-only transaction that sees one state of db.
func snapshot(ctx context.Context, db *sqldb.DB) (*sql.Tx, error) {
	if db.Dialect == sqldb.Postgres {
		return db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	}
	// The reader pool's transactions are deferred: the first read fixes
	// the snapshot of the WAL for the rest of the transaction.
	return db.Reader().BeginTx(ctx, nil)
}

func dumpDatabase(ctx context.Context, db *sqldb.DB, s sqldb.Schema, m *Manifest, w io.Writer, progress Progress) (int64, error) {
	state, err := db.State(ctx, s)
	if err != nil {
		return 0, err
	}
	if !state.Current() {
		return 0, errs.E(errs.Invalid, "the %s database is at schema version %d of %d: run custodia migrate first", s.Name, state.Applied, state.Known)
	}
	tx, err := snapshot(ctx, db)
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "begin the "+s.Name+" database's snapshot")
	}
	defer tx.Rollback()
	var q sqldb.Querier = tx
	ts, err := tables(ctx, q, db.Dialect)
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "read the "+s.Name+" database")
	}
	if ts, err = loadOrder(ts); err != nil {
		return 0, err
	}
	m.Schemas[s.Name] = state.Applied
	if s.Name == sqldb.Clinical.Name {
		if err := auditPoint(ctx, q, m); err != nil {
			return 0, err
		}
	}
	if err := writeMarker(w, marker{Database: s.Name, Schema: state.Applied}); err != nil {
		return 0, err
	}
	var total int64
	for _, t := range ts {
		if err := writeMarker(w, marker{Table: t.Name, Columns: t.Columns}); err != nil {
			return 0, err
		}
		n, h, err := dumpTable(ctx, q, db.Dialect, t, w)
		if err != nil {
			return 0, errs.Wrap(errs.Unavailable, err, "read the "+s.Name+" database")
		}
		if err := writeMarker(w, marker{Rows: &n, SHA256: hexSum(h)}); err != nil {
			return 0, err
		}
		total += n
	}
	if err := writeMarker(w, marker{End: s.Name}); err != nil {
		return 0, err
	}
	if progress != nil {
		progress(fmt.Sprintf("%s database: %d tables, %d rows", s.Name, len(ts), total))
	}
	return total, nil
}

// auditPoint records, from the clinical snapshot, the newest signed
// checkpoint and how many events the trail holds.
func auditPoint(ctx context.Context, q sqldb.Querier, m *Manifest) error {
	var text string
	err := q.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&text)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return errs.Wrap(errs.Unavailable, err, "read the audit checkpoint")
	}
	m.Checkpoint = text
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM audit_events`).Scan(&m.AuditEvents); err != nil {
		return errs.Wrap(errs.Unavailable, err, "count the audit events")
	}
	return nil
}

// signManifest signs m with the instance's audit key, as a note whose text
// is the header line and m as JSON.
func signManifest(m Manifest, signer note.Signer) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	signed, err := note.Sign(&note.Note{Text: manifestHeader + "\n" + string(body) + "\n"}, signer)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "sign the backup manifest")
	}
	return signed, nil
}

package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// File is an open backup file whose manifest's signature verified.
type File struct {
	Manifest Manifest
	Path     string
	f        *os.File
	data     io.Reader // the encrypted content, unread
}

// Open opens the backup at path and checks its manifest's signature with
// verifier, the instance's audit verifier key. It reads only the manifest.
func Open(path string, verifier note.Verifier) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "open the backup file")
	}
	bf, err := open(f, path, verifier)
	if err != nil {
		f.Close()
		return nil, err
	}
	return bf, nil
}

func open(f *os.File, path string, verifier note.Verifier) (*File, error) {
	notBackup := func(err error) error {
		return errs.E(errs.Invalid, "%s is not a whole backup file (truncated, or not a backup): %s", path, err)
	}
	tr := tar.NewReader(f)
	h, err := tr.Next()
	if err != nil {
		return nil, notBackup(err)
	}
	if h.Name != manifestEntry || h.Size > 1<<20 {
		return nil, notBackup(fmt.Errorf("its first entry is %q, not the manifest", h.Name))
	}
	signed, err := io.ReadAll(tr)
	if err != nil {
		return nil, notBackup(err)
	}
	n, err := note.Open(signed, note.VerifierList(verifier))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		switch {
		case errors.As(err, &unknown):
			by := make([]string, len(unknown.Note.UnverifiedSigs))
			for i, s := range unknown.Note.UnverifiedSigs {
				by[i] = s.Name
			}
			return nil, errs.E(errs.Invalid, "the backup %s is signed by %s, not by this instance's key %s: it is another instance's backup, or the verifier key is not this instance's",
				path, strings.Join(by, ", "), verifier.Name())
		default:
			return nil, errs.E(errs.Invalid, "the backup %s's manifest does not verify (its signature fails: changed after it was written): %s", path, err)
		}
	}
	body, ok := strings.CutPrefix(n.Text, manifestHeader+"\n")
	if !ok {
		return nil, errs.E(errs.Invalid, "the backup %s's signed note is not a backup manifest", path)
	}
	var m Manifest
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		return nil, errs.E(errs.Invalid, "the backup %s's manifest does not parse: %s", path, err)
	}
	if m.Format != Format {
		return nil, errs.E(errs.Invalid, "the backup %s has format %q; this version of custodia reads %q", path, m.Format, Format)
	}
	if owner, ok := strings.CutPrefix(verifier.Name(), "custodia-audit-"); ok && owner != m.Instance {
		return nil, errs.E(errs.Invalid, "the backup %s names instance %s, but its key is of instance %s", path, m.Instance, owner)
	}
	h, err = tr.Next()
	if err != nil {
		return nil, notBackup(fmt.Errorf("no encrypted content after the manifest: %w", err))
	}
	if h.Name != dataEntry {
		return nil, notBackup(fmt.Errorf("its second entry is %q, not the encrypted content", h.Name))
	}
	if h.Size != m.Size {
		return nil, errs.E(errs.Invalid, "the backup %s's content is %d bytes, but its manifest says %d: it was changed after it was written", path, h.Size, m.Size)
	}
	return &File{Manifest: m, Path: path, f: f, data: tr}, nil
}

// Close closes the file.
func (b *File) Close() error { return b.f.Close() }

// hashed reads the encrypted content and, at its end, checks its size and
// SHA-256 against the manifest.
type hashed struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want Manifest
	path string
}

func (b *File) content() *hashed {
	return &hashed{r: b.data, h: sha256.New(), want: b.Manifest, path: b.Path}
}

func (h *hashed) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = errs.E(errs.Invalid, "the backup %s is truncated: its content ends after %d of %d bytes", h.path, h.n, h.want.Size)
	}
	return n, err
}

// check reads what is left and compares the whole with the manifest.
func (h *hashed) check() error {
	if _, err := io.Copy(io.Discard, h); err != nil {
		return err
	}
	if h.n != h.want.Size || hex.EncodeToString(h.h.Sum(nil)) != h.want.SHA256 {
		return errs.E(errs.Invalid, "the backup %s's content does not match its manifest's SHA-256: it was changed after it was written", h.path)
	}
	return nil
}

// CheckContent checks the encrypted content against the manifest, without
// the backup key: nothing truncated, nothing changed.
func (b *File) CheckContent() error { return b.content().check() }

// ParseKey reads a secret backup key (AGE-SECRET-KEY-…).
func ParseKey(text string) ([]age.Identity, error) {
	ids, err := age.ParseIdentities(strings.NewReader(text))
	if err != nil {
		return nil, errs.E(errs.Invalid, "the backup key file holds no secret backup key: %s", safeAge(err))
	}
	return ids, nil
}

// decrypt opens the content with the secret backup key.
func (b *File) decrypt(h *hashed, ids []age.Identity) (*reader, error) {
	dec, err := age.Decrypt(h, ids...)
	if err != nil {
		var none *age.NoIdentityMatchError
		if errors.As(err, &none) {
			short := make([]string, len(b.Manifest.Recipients))
			for i, r := range b.Manifest.Recipients {
				short[i] = r[:min(len(r), 20)] + "…"
			}
			return nil, errs.E(errs.Invalid, "the backup key does not open the backup %s (it is encrypted to %s)", b.Path, strings.Join(short, ", "))
		}
		return nil, b.unreadable(h, fmt.Errorf("its content does not decrypt: %s", safeAge(err)))
	}
	zr, err := gzip.NewReader(dec)
	if err != nil {
		return nil, b.unreadable(h, fmt.Errorf("its content does not decompress: %w", err))
	}
	return newReader(zr), nil
}

// Summary is what a check of the whole content found.
type Summary struct {
	Tables map[string]int   // per database
	Rows   map[string]int64 // per database
}

// CheckAll decrypts the content with the secret backup key and checks each
// table's rows against their count and hash, then the whole against the
// manifest.
func (b *File) CheckAll(ids []age.Identity) (Summary, error) {
	h := b.content()
	r, err := b.decrypt(h, ids)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Tables: map[string]int{}, Rows: map[string]int64{}}
	err = walk(r, b.Manifest, walker{
		table: func(db string, t table) error { sum.Tables[db]++; return nil },
		row:   func(db string, t table, line []byte) error { sum.Rows[db]++; return nil },
	})
	if err != nil {
		return Summary{}, b.unreadable(h, err)
	}
	return sum, h.check()
}

// unreadable explains content that failed to read: by the manifest's
// hash, which the rest of the content is read for, when it was changed.
func (b *File) unreadable(h *hashed, err error) error {
	if errs.KindOf(err) != errs.Internal {
		return err // truncated, or refused by the target
	}
	if herr := h.check(); herr != nil {
		return herr
	}
	return errs.E(errs.Invalid, "the backup %s's content is not whole: %s", b.Path, errs.SafeMessage(err))
}

// walker is told of each part of the content as walk reads it.
type walker struct {
	database func(db string, schema int) error
	table    func(db string, t table) error
	row      func(db string, t table, line []byte) error
	tableEnd func(db string, t table, rows int64, sha string) error
	end      func(db string) error
}

// walk reads the whole stream, checking its shape, each table's row count
// and hash, and that it ends where it says.
func walk(r *reader, m Manifest, w walker) error {
	dbs := []string{sqldb.Clinical.Name, sqldb.Identity.Name}
	for _, want := range dbs {
		_, mk, isMarker, err := r.next()
		if err != nil {
			return err
		}
		if !isMarker || mk.Database != want {
			return fmt.Errorf("the %s database's part is missing", want)
		}
		if mk.Schema != m.Schemas[want] {
			return fmt.Errorf("the %s database's part is of schema %d, the manifest says %d", want, mk.Schema, m.Schemas[want])
		}
		if w.database != nil {
			if err := w.database(want, mk.Schema); err != nil {
				return err
			}
		}
		for {
			_, mk, isMarker, err := r.next()
			if err != nil {
				return err
			}
			if !isMarker {
				return fmt.Errorf("a row outside any table in the %s database's part", want)
			}
			if mk.End != "" {
				if mk.End != want {
					return fmt.Errorf("the %s database's part ends as %q", want, mk.End)
				}
				break
			}
			if mk.Table == "" {
				return fmt.Errorf("an unexpected marker in the %s database's part", want)
			}
			t := table{Name: mk.Table, Columns: mk.Columns}
			if w.table != nil {
				if err := w.table(want, t); err != nil {
					return err
				}
			}
			h := sha256.New()
			var n int64
			for {
				line, mk, isMarker, err := r.next()
				if err != nil {
					return err
				}
				if isMarker {
					if mk.Rows == nil {
						return fmt.Errorf("table %s does not end", t.Name)
					}
					if *mk.Rows != n || mk.SHA256 != hexSum(h) {
						return fmt.Errorf("table %s holds %d rows that do not match its recorded count %d and SHA-256", t.Name, n, *mk.Rows)
					}
					if w.tableEnd != nil {
						if err := w.tableEnd(want, t, n, mk.SHA256); err != nil {
							return err
						}
					}
					break
				}
				h.Write(line)
				h.Write([]byte{'\n'})
				n++
				if w.row != nil {
					if err := w.row(want, t, line); err != nil {
						return err
					}
				}
			}
		}
		if w.end != nil {
			if err := w.end(want); err != nil {
				return err
			}
		}
	}
	_, mk, isMarker, err := r.next()
	if err != nil {
		return err
	}
	if !isMarker || !mk.Done {
		return errors.New("the content does not end where it should")
	}
	if _, err := r.r.ReadByte(); err != io.EOF {
		return errors.New("the content goes on after its end")
	}
	return nil
}

// Targets are the databases a backup is restored into: empty, of one
// dialect or the other.
type Targets struct {
	Clinical *sqldb.DB
	Identity *sqldb.DB
}

// Restore loads the backup's content into t with the secret backup key.
// Each database is brought to the backup's schema version, then loaded in
// one transaction, table by table in the order of their foreign keys, with
// the tables' own triggers held off (a row restored is not a row changed);
// each table is read back and must give the backup's rows exactly. The
// transactions commit only once the whole content read and matched the
// manifest. The caller checks the targets are empty first, verifies the
// audit trail after, and migrates the schemas on to this binary's.
func (b *File) Restore(ctx context.Context, t Targets, ids []age.Identity, progress Progress) (Summary, error) {
	for _, p := range []struct {
		s  sqldb.Schema
		db *sqldb.DB
	}{{sqldb.Clinical, t.Clinical}, {sqldb.Identity, t.Identity}} {
		ms, err := p.s.Migrations(p.db.Dialect)
		if err != nil {
			return Summary{}, err
		}
		v := b.Manifest.Schemas[p.s.Name]
		if v < 1 || v > len(ms) {
			return Summary{}, errs.E(errs.Invalid, "the backup's %s database is at schema version %d, newer than this custodia knows (%d): restore it with the version of custodia that wrote it, or a newer one", p.s.Name, v, len(ms))
		}
		if _, err := p.db.MigrateTo(ctx, p.s, v); err != nil {
			return Summary{}, err
		}
	}
	h := b.content()
	r, err := b.decrypt(h, ids)
	if err != nil {
		return Summary{}, err
	}
	loads := map[string]*load{}
	defer func() {
		for _, l := range loads {
			l.tx.Rollback()
		}
	}()
	sum := Summary{Tables: map[string]int{}, Rows: map[string]int64{}}
	var cur *load
	err = walk(r, b.Manifest, walker{
		database: func(name string, _ int) error {
			db := t.Clinical
			if name == sqldb.Identity.Name {
				db = t.Identity
			}
			l, err := begin(ctx, db, name)
			if err != nil {
				return err
			}
			loads[name], cur = l, l
			return nil
		},
		table: func(name string, bt table) error {
			sum.Tables[name]++
			return cur.startTable(bt)
		},
		row: func(name string, t table, line []byte) error {
			sum.Rows[name]++
			if progress != nil && sum.Rows[name]%250000 == 0 {
				progress(fmt.Sprintf("%s database: %d rows loaded (table %s)", name, sum.Rows[name], t.Name))
			}
			return cur.row(line)
		},
		tableEnd: func(name string, _ table, rows int64, sha string) error {
			return cur.endTable(rows, sha)
		},
		end: func(name string) error {
			if progress != nil {
				progress(fmt.Sprintf("%s database: %d tables, %d rows loaded and read back", name, sum.Tables[name], sum.Rows[name]))
			}
			return cur.end()
		},
	})
	if err != nil {
		return Summary{}, b.unreadable(h, err)
	}
	if err := h.check(); err != nil {
		return Summary{}, err
	}
	// As the gate commits: the identity database first.
	for _, name := range []string{sqldb.Identity.Name, sqldb.Clinical.Name} {
		if err := loads[name].tx.Commit(); err != nil {
			return Summary{}, errs.Wrap(errs.Unavailable, err, "commit the restored "+name+" database")
		}
		delete(loads, name)
	}
	return sum, nil
}

// load is the restore of one database, in one transaction.
type load struct {
	ctx      context.Context
	db       *sqldb.DB
	name     string
	tx       *sql.Tx
	tables   map[string]table
	triggers []string // SQLite: the triggers to create again
	loaded   map[string]bool
	// The table being loaded, rows waiting to be inserted, and the
	// statement that inserts a full batch of them.
	t       table
	pending [][]any
	full    *sql.Stmt
}

func begin(ctx context.Context, db *sqldb.DB, name string) (*load, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "begin the restore of the "+name+" database")
	}
	l := &load{ctx: ctx, db: db, name: name, tx: tx, tables: map[string]table{}, loaded: map[string]bool{}}
	ts, err := tables(ctx, tx, db.Dialect)
	if err != nil {
		tx.Rollback()
		return nil, errs.Wrap(errs.Unavailable, err, "read the target "+name+" database")
	}
	for _, t := range ts {
		l.tables[t.Name] = t
	}
	if err := l.holdTriggers(); err != nil {
		tx.Rollback()
		return nil, errs.Wrap(errs.Unavailable, err, "hold the "+name+" database's triggers off")
	}
	return l, nil
}

// holdTriggers keeps the tables' triggers from firing on the rows loaded
// (a new role assignment counts its account's privilege epoch up, which
// the backup holds already): SQLite cannot disable a trigger, so they are
// dropped and created again, in the transaction; PostgreSQL disables its
// user triggers for the transaction.
func (l *load) holdTriggers() error {
	switch l.db.Dialect {
	case sqldb.SQLite:
		rows, err := l.tx.QueryContext(l.ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name`)
		if err != nil {
			return err
		}
		var names []string
		for rows.Next() {
			var name, text string
			if err := rows.Scan(&name, &text); err != nil {
				rows.Close()
				return err
			}
			names = append(names, name)
			l.triggers = append(l.triggers, text)
		}
		rows.Close()
		for _, n := range names {
			if _, err := l.tx.ExecContext(l.ctx, `DROP TRIGGER `+quote(n)); err != nil {
				return err
			}
		}
	default:
		for name := range l.tables {
			if _, err := l.tx.ExecContext(l.ctx, `ALTER TABLE `+quote(name)+` DISABLE TRIGGER USER`); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *load) releaseTriggers() error {
	switch l.db.Dialect {
	case sqldb.SQLite:
		for _, text := range l.triggers {
			if _, err := l.tx.ExecContext(l.ctx, text); err != nil {
				return err
			}
		}
	default:
		for name := range l.tables {
			if _, err := l.tx.ExecContext(l.ctx, `ALTER TABLE `+quote(name)+` ENABLE TRIGGER USER`); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *load) startTable(bt table) error {
	t, ok := l.tables[bt.Name]
	if !ok {
		return errs.E(errs.Invalid, "the backup's %s database has table %s, which the target at the same schema version lacks", l.name, bt.Name)
	}
	if !slices.Equal(t.Columns, bt.Columns) {
		return errs.E(errs.Invalid, "the backup's table %s.%s has columns %v, the target's %v", l.name, bt.Name, bt.Columns, t.Columns)
	}
	if l.loaded[bt.Name] {
		return errs.E(errs.Invalid, "the backup holds table %s.%s twice", l.name, bt.Name)
	}
	l.loaded[bt.Name] = true
	// What the schema's migrations put into a table is in the backup too.
	if _, err := l.tx.ExecContext(l.ctx, `DELETE FROM `+quote(t.Name)); err != nil {
		return errs.Wrap(errs.Unavailable, err, "empty table "+t.Name)
	}
	l.t, l.pending = t, l.pending[:0]
	if l.full != nil {
		l.full.Close()
		l.full = nil
	}
	return nil
}

// batchRows is how many rows one INSERT carries, within both dialects'
// limits on parameters.
func (l *load) batchRows() int {
	return max(1, min(500, 30000/len(l.t.Columns)))
}

func (l *load) row(line []byte) error {
	vals, err := decodeRow(l.t, line)
	if err != nil {
		return err
	}
	l.pending = append(l.pending, vals)
	if len(l.pending) >= l.batchRows() {
		return l.flush()
	}
	return nil
}

func (l *load) flush() error {
	n := len(l.pending)
	if n == 0 {
		return nil
	}
	args := make([]any, 0, n*len(l.t.Columns))
	for _, vals := range l.pending {
		args = append(args, vals...)
	}
	var err error
	if n == l.batchRows() {
		if l.full == nil {
			if l.full, err = l.tx.PrepareContext(l.ctx, l.insert(n)); err != nil {
				return errs.Wrap(errs.Unavailable, err, "load table "+l.t.Name)
			}
		}
		_, err = l.full.ExecContext(l.ctx, args...)
	} else {
		_, err = l.tx.ExecContext(l.ctx, l.insert(n), args...)
	}
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "load table "+l.t.Name)
	}
	l.pending = l.pending[:0]
	return nil
}

// insert is the statement that inserts n rows of the table being loaded.
// SQLite's parameters are positional (?): it looks $N up by name, which
// for thousands of parameters costs more than the insert.
func (l *load) insert(n int) string {
	var q strings.Builder
	q.WriteString("INSERT INTO " + quote(l.t.Name) + " (")
	for i, c := range l.t.Columns {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(quote(c.Name))
	}
	q.WriteString(") VALUES ")
	param := sqldb.Placeholder(l.db.Dialect)
	p := 0
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteByte('(')
		for j := range l.t.Columns {
			if j > 0 {
				q.WriteString(", ")
			}
			p++
			param(&q, p)
		}
		q.WriteByte(')')
	}
	return q.String()
}

// endTable inserts what waits and reads the table back: it must hold the
// backup's rows exactly.
func (l *load) endTable(rows int64, sha string) error {
	if err := l.flush(); err != nil {
		return err
	}
	n, h, err := dumpTable(l.ctx, l.tx, l.db.Dialect, l.t, nil)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "read back table "+l.t.Name)
	}
	if n != rows || hexSum(h) != sha {
		return errs.E(errs.Invalid, "table %s.%s read back does not match the backup (%d rows of %d)", l.name, l.t.Name, n, rows)
	}
	return nil
}

func (l *load) end() error {
	if l.full != nil {
		l.full.Close()
		l.full = nil
	}
	for name := range l.tables {
		if !l.loaded[name] {
			return errs.E(errs.Invalid, "the backup's %s database lacks table %s, which its schema version has", l.name, name)
		}
	}
	if err := l.releaseTriggers(); err != nil {
		return errs.Wrap(errs.Unavailable, err, "restore the "+l.name+" database's triggers")
	}
	if l.db.Dialect == sqldb.SQLite {
		rows, err := l.tx.QueryContext(l.ctx, `PRAGMA foreign_key_check`)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "check foreign keys")
		}
		bad := rows.Next()
		rows.Close()
		if bad {
			return errs.E(errs.Invalid, "the restored %s database fails its foreign keys", l.name)
		}
	}
	return nil
}

// Fingerprint is the SHA-256 of each table's rows as a backup writes them,
// by table name: two databases with the same fingerprint hold the same
// values, whatever their dialects.
func Fingerprint(ctx context.Context, db *sqldb.DB) (map[string]string, error) {
	tx, err := snapshot(ctx, db)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	ts, err := tables(ctx, tx, db.Dialect)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ts))
	for _, t := range ts {
		_, h, err := dumpTable(ctx, tx, db.Dialect, t, nil)
		if err != nil {
			return nil, err
		}
		out[t.Name] = hexSum(h)
	}
	return out, nil
}

// Plaintext decrypts the content with the secret backup key, for reading
// what a backup holds: the lines of stream.go.
func (b *File) Plaintext(ids []age.Identity) (io.Reader, error) {
	r, err := b.decrypt(b.content(), ids)
	if err != nil {
		return nil, err
	}
	return r.r, nil
}

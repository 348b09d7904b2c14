package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/custodia/custodia/internal/sqldb"
)

// The databases' content, inside the encryption and the compression, is a
// stream of lines: a marker object ({...}) opens a database, opens a
// table, closes a table with its row count and the SHA-256 of its rows'
// lines, and ends the stream; between a table's markers each line is one
// row, a JSON array of its values in the order of the table's columns
// (text as a string, int as a number, bool as true/false, bytes as
// standard base64, NULL as null). Rows are written in primary-key order, so
// one database's content always gives the same lines, whatever the
// dialect: a restore is checked by writing the restored tables the same
// way and comparing the hashes.
type marker struct {
	Database string   `json:"database,omitempty"`
	Schema   int      `json:"schema,omitempty"`
	Table    string   `json:"table,omitempty"`
	Columns  []column `json:"columns,omitempty"`
	Rows     *int64   `json:"rows,omitempty"`
	SHA256   string   `json:"sha256,omitempty"`
	End      string   `json:"end,omitempty"`
	Done     bool     `json:"done,omitempty"`
}

// maxLine bounds one line of the stream (a row with a consent document's
// images is about 1 MiB).
const maxLine = 64 << 20

// encodeRow appends the line of one row, without its newline.
func encodeRow(dst []byte, t table, vals []any) ([]byte, error) {
	dst = append(dst, '[')
	for i, c := range t.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		v := vals[i]
		if v == nil {
			dst = append(dst, "null"...)
			continue
		}
		switch c.Kind {
		case kindInt:
			n, ok := v.(int64)
			if !ok {
				return nil, fmt.Errorf("table %s column %s holds %T, not an integer", t.Name, c.Name, v)
			}
			dst = strconv.AppendInt(dst, n, 10)
		case kindBool:
			switch b := v.(type) {
			case bool:
				dst = strconv.AppendBool(dst, b)
			case int64: // SQLite keeps booleans as integers
				dst = strconv.AppendBool(dst, b != 0)
			default:
				return nil, fmt.Errorf("table %s column %s holds %T, not a boolean", t.Name, c.Name, v)
			}
		case kindBytes:
			var b []byte
			switch x := v.(type) {
			case []byte:
				b = x
			case string:
				b = []byte(x)
			default:
				return nil, fmt.Errorf("table %s column %s holds %T, not bytes", t.Name, c.Name, v)
			}
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, b)
			dst = append(dst, '"')
		case kindText:
			var s []byte
			switch x := v.(type) {
			case string:
				s = []byte(x)
			case []byte:
				s = x
			default:
				return nil, fmt.Errorf("table %s column %s holds %T, not text", t.Name, c.Name, v)
			}
			enc, err := json.Marshal(string(s))
			if err != nil {
				return nil, err
			}
			dst = append(dst, enc...)
		}
	}
	return append(dst, ']'), nil
}

// decodeRow reads one row's line into the values to insert.
func decodeRow(t table, line []byte) ([]any, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var raw []any
	if err := d.Decode(&raw); err != nil {
		return nil, fmt.Errorf("a row of table %s is not a JSON array: %w", t.Name, err)
	}
	if len(raw) != len(t.Columns) {
		return nil, fmt.Errorf("a row of table %s has %d values for %d columns", t.Name, len(raw), len(t.Columns))
	}
	out := make([]any, len(raw))
	for i, c := range t.Columns {
		v := raw[i]
		if v == nil {
			continue
		}
		var ok bool
		switch c.Kind {
		case kindInt:
			var n json.Number
			if n, ok = v.(json.Number); ok {
				var err error
				if out[i], err = strconv.ParseInt(string(n), 10, 64); err != nil {
					ok = false
				}
			}
		case kindBool:
			out[i], ok = v.(bool)
		case kindBytes:
			var s string
			if s, ok = v.(string); ok {
				b, err := base64.StdEncoding.DecodeString(s)
				out[i], ok = b, err == nil
			}
		case kindText:
			out[i], ok = v.(string)
		}
		if !ok {
			return nil, fmt.Errorf("table %s column %s: a value that is not %s", t.Name, c.Name, c.Kind)
		}
	}
	return out, nil
}

// dumpTable writes t's rows, in key order, each line to w and to the
// returned hash; it returns the row count and the hash.
func dumpTable(ctx context.Context, q sqldb.Querier, d sqldb.Dialect, t table, w io.Writer) (int64, hash.Hash, error) {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = quote(c.Name)
	}
	query := "SELECT " + joinComma(names) + " FROM " + quote(t.Name) + " ORDER BY " + orderBy(t, d)
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return 0, nil, fmt.Errorf("read table %s: %w", t.Name, err)
	}
	defer rows.Close()
	h := sha256.New()
	vals := make([]any, len(t.Columns))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var line []byte
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return 0, nil, fmt.Errorf("read table %s: %w", t.Name, err)
		}
		if line, err = encodeRow(line[:0], t, vals); err != nil {
			return 0, nil, err
		}
		line = append(line, '\n')
		h.Write(line)
		if w != nil {
			if _, err := w.Write(line); err != nil {
				return 0, nil, err
			}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("read table %s: %w", t.Name, err)
	}
	return n, h, nil
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(x)
	}
	return b.String()
}

func writeMarker(w io.Writer, m marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// reader reads the stream's lines.
type reader struct {
	r    *bufio.Reader
	line []byte
}

func newReader(r io.Reader) *reader { return &reader{r: bufio.NewReaderSize(r, 1<<20)} }

// next returns the next line without its newline; a marker comes back
// decoded (isMarker).
func (r *reader) next() (line []byte, m marker, isMarker bool, err error) {
	r.line = r.line[:0]
	for {
		chunk, err := r.r.ReadSlice('\n')
		r.line = append(r.line, chunk...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(r.line) > maxLine {
				return nil, m, false, fmt.Errorf("a line of the backup is longer than %d bytes", maxLine)
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil, m, false, errTruncated
		}
		return nil, m, false, err
	}
	line = r.line[:len(r.line)-1]
	if len(line) > 0 && line[0] == '{' {
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, m, false, fmt.Errorf("a marker of the backup does not parse: %w", err)
		}
		return line, m, true, nil
	}
	return line, m, false, nil
}

var errTruncated = errors.New("the backup's content ends early (truncated)")

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

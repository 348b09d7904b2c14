package entries

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"unicode/utf8"
)

// An entry's values are stored packed, all in one column of its row
// (entries.cells), and what a save changed all in one column of its
// revision (entry_revisions.changes): a database hands out one row an
// entry, not one a value, and that is most of the cost of reading or
// writing many values. Each value keeps its own sealing context (sealedAt)
// as before, so a sealed value moved to another entry, field or row fails
// to open.
//
// The packing is a JSON array, one element a value in the order of field
// and row, that SQL can read too (the views entry_values and
// entry_changes):
//
//	["weight",0,"71.3"]              a value in clear
//	["status",0,null,"01ab…"]        a value sealed (hex of the ciphertext)
//	["drug",2]                       a value removed (in a revision's changes)

// packedCell is one stored value: in clear, sealed, or (in a revision's
// changes) removed.
type packedCell struct {
	c      cell
	value  string // in clear, when clear
	clear  bool
	sealed string // hex of the ciphertext, when sealed
}

func (p packedCell) removed() bool { return !p.clear && p.sealed == "" }

// sealedCell is a value sealed to ciphertext b.
func sealedCell(c cell, b []byte) packedCell {
	return packedCell{c: c, sealed: hex.EncodeToString(b)}
}

// ciphertext answers a sealed value's ciphertext.
func (p packedCell) ciphertext() ([]byte, error) {
	return hex.DecodeString(p.sealed)
}

func compareCells(a, b packedCell) int {
	if c := cmp.Compare(a.c.field, b.c.field); c != 0 {
		return c
	}
	return cmp.Compare(a.c.row, b.c.row)
}

// packCells packs cells, sorting them by field and row.
func packCells(cells []packedCell) string {
	slices.SortFunc(cells, compareCells)
	n := 2
	for _, p := range cells {
		n += len(p.c.field) + len(p.value) + len(p.sealed) + 16
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, p := range cells {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = appendJSONString(b, p.c.field)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(p.c.row), 10)
		switch {
		case p.clear:
			b = append(b, ',')
			b = appendJSONString(b, p.value)
		case p.sealed != "":
			b = append(b, ",null,\""...)
			b = append(b, p.sealed...)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	b = append(b, ']')
	return string(b)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		j, _ := json.Marshal(s) // invalid bytes become U+FFFD
		return append(b, j...)
	}
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var errPacked = errors.New("an entry's stored values do not read as packed values")

// unpackCells reads packed cells into buf (reused), in their stored order:
// the strings of the answer share s's memory.
func unpackCells(s string, buf []packedCell) ([]packedCell, error) {
	out := buf[:0]
	d := cellDecoder{s: s}
	d.ws()
	if !d.eat('[') {
		return nil, errPacked
	}
	d.ws()
	if d.eat(']') {
		return out, nil
	}
	for {
		d.ws()
		if !d.eat('[') {
			return nil, errPacked
		}
		var p packedCell
		var ok bool
		if p.c.field, ok = d.str(); !ok {
			return nil, errPacked
		}
		if !d.comma() {
			return nil, errPacked
		}
		if p.c.row, ok = d.int(); !ok {
			return nil, errPacked
		}
		if d.comma() { // the value, in clear or null
			if v, null, ok := d.strOrNull(); !ok {
				return nil, errPacked
			} else if !null {
				p.value, p.clear = v, true
			}
			if d.comma() { // the ciphertext, or null
				v, null, ok := d.strOrNull()
				if !ok || (!null && p.clear) {
					return nil, errPacked
				}
				p.sealed = v
			}
		}
		d.ws()
		if !d.eat(']') {
			return nil, errPacked
		}
		out = append(out, p)
		d.ws()
		if d.eat(']') {
			return out, nil
		}
		if !d.eat(',') {
			return nil, errPacked
		}
	}
}

type cellDecoder struct {
	s string
	i int
}

func (d *cellDecoder) ws() {
	for d.i < len(d.s) && (d.s[d.i] == ' ' || d.s[d.i] == '\n' || d.s[d.i] == '\t' || d.s[d.i] == '\r') {
		d.i++
	}
}

func (d *cellDecoder) eat(c byte) bool {
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *cellDecoder) comma() bool {
	d.ws()
	return d.eat(',')
}

func (d *cellDecoder) int() (int, bool) {
	d.ws()
	start := d.i
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		d.i++
	}
	n, err := strconv.Atoi(d.s[start:d.i])
	return n, err == nil
}

func (d *cellDecoder) strOrNull() (string, bool, bool) {
	d.ws()
	if len(d.s)-d.i >= 4 && d.s[d.i:d.i+4] == "null" {
		d.i += 4
		return "", true, true
	}
	s, ok := d.str()
	return s, false, ok
}

func (d *cellDecoder) str() (string, bool) {
	d.ws()
	if !d.eat('"') {
		return "", false
	}
	start, escaped := d.i, false
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case '\\':
			escaped = true
			d.i += 2
			continue
		case '"':
			raw := d.s[start:d.i]
			d.i++
			if !escaped {
				return raw, true
			}
			var v string
			if err := json.Unmarshal([]byte(d.s[start-1:d.i]), &v); err != nil {
				return "", false
			}
			return v, true
		}
		d.i++
	}
	return "", false
}

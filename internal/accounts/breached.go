package accounts

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"io"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// commonPasswordsGz is the offline list of common and breached passwords
// (AUTH-02): one lower-case password a line, most frequent first, gzipped.
// breached/README.md says where it comes from and how to rebuild it.
//
//go:embed breached/passwords.txt.gz
var commonPasswordsGz []byte

// commonPasswords is the list as a set, decompressed on first use.
var commonPasswords = sync.OnceValue(loadCommonPasswords)

// loadCommonPasswords decompresses the embedded list into a set. The keys are
// substrings of one decompressed string, so the set holds the text once.
func loadCommonPasswords() map[string]struct{} {
	zr, err := gzip.NewReader(bytes.NewReader(commonPasswordsGz))
	if err != nil {
		panic("accounts: embedded password list: " + err.Error())
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		panic("accounts: embedded password list: " + err.Error())
	}
	text := string(raw)
	set := make(map[string]struct{}, strings.Count(text, "\n")+1)
	for line := range strings.Lines(text) {
		if line = strings.TrimSpace(line); line != "" {
			set[line] = struct{}{}
		}
	}
	return set
}

// minCommonCore is the fewest characters a variant of a password other than
// the whole of it must keep to be looked up, so that trimming "x1!" down to
// "x" does not match a short entry by accident.
const minCommonCore = 4

// IsCommonPassword reports whether pw is on the embedded list of common and
// breached passwords, or is one of them lightly disguised. Matching ignores
// case and looks at the whole password and at these variants of it:
//
//   - each end may be kept or have its run of non-letters (digits, symbols,
//     spaces) trimmed, so "Password123!", "123dragon" and "!!monkey99" match;
//   - each of those may have common leetspeak undone: 0→o, 3→e, 4→a, 5→s,
//     7→t, @→a, $→s, and 1 read either as i or as l (every 1 the same way),
//     so "P@ssw0rd!" and "$hadow1" match.
//
// A trimmed variant shorter than four characters is not looked up. Only whole
// variants are compared: a password that merely contains a common word, such
// as a passphrase of several words, is not refused for it.
func IsCommonPassword(pw string) bool {
	set := commonPasswords()
	lower := strings.ToLower(pw)
	notLetter := func(r rune) bool { return !unicode.IsLetter(r) }
	froms, tos := [2]int{0, 0}, [2]int{len(lower), len(lower)}
	froms[1] = len(lower) - len(strings.TrimLeftFunc(lower, notLetter))
	tos[1] = len(strings.TrimRightFunc(lower, notLetter))
	nf, nt := 1, 1
	if froms[1] > 0 {
		nf = 2
	}
	if tos[1] < len(lower) {
		nt = 2
	}
	for _, from := range froms[:nf] {
		for _, to := range tos[:nt] {
			if to < from {
				continue
			}
			core := lower[from:to]
			whole := from == 0 && to == len(lower)
			if !whole && utf8.RuneCountInString(core) < minCommonCore {
				continue
			}
			if _, ok := set[core]; ok {
				return true
			}
			if plain := unleet(core, 'i'); plain != core {
				if _, ok := set[plain]; ok {
					return true
				}
				if strings.IndexByte(core, '1') >= 0 {
					if _, ok := set[unleet(core, 'l')]; ok {
						return true
					}
				}
			}
		}
	}
	return false
}

// unleet undoes common leetspeak substitutions in s, reading 1 as one. It
// returns s itself when there is nothing to undo.
func unleet(s string, one rune) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '0':
			return 'o'
		case '1':
			return one
		case '3':
			return 'e'
		case '4', '@':
			return 'a'
		case '5', '$':
			return 's'
		case '7':
			return 't'
		}
		return r
	}, s)
}

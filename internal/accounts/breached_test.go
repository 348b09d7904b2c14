package accounts

import (
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
)

func TestAUTH02_CommonPasswordsAreRejected(t *testing.T) {
	if n := len(commonPasswords()); n < 25000 {
		t.Fatalf("the embedded list has %d entries, want at least 25,000", n)
	}
	for _, pw := range []string{
		"password", "123456", "qwerty", "iloveyou", "dragon", "monkey",
		"PASSWORD", "Qwerty", "iLoveYou", "DrAgOn", "MONKEY",
		"Password123!", "password1", "Dragon2024", "123dragon", "!!monkey99", "qwerty 2024",
		"P@ssw0rd!", "p4ssw0rd", "1L0v3y0u", "m0nk3y!", "dr4g0n2024", "$hadow1", "@dmin123", "#1Qwerty",
	} {
		if !IsCommonPassword(pw) {
			t.Errorf("IsCommonPassword(%q) = false, want true", pw)
		}
	}
	for _, pw := range []string{
		"violet quarry tambourine 91", "correct horse battery staple", "plenty-long passphrase 42",
		"twelve chars", "a good long password", "Has Capital and 1 digit",
		"KQ7M2ZP4XW3RNB6TVJ5HCD2LFA", // shaped like a generated demo password
		"dragonfly over the quarry", "my password is long enough", "",
		"x1!", "ab12", // trimmed to fewer than four characters: not looked up
	} {
		if IsCommonPassword(pw) {
			t.Errorf("IsCommonPassword(%q) = true, want false", pw)
		}
	}

	const want = "this password is too common: it appears in lists of breached passwords"
	for _, pw := range []string{"Password123!", "P@ssw0rd!2345", "Dragon2024!!", "iloveyou12345"} {
		err := DefaultPolicy.Check(pw, "josephine.doe@x.example", "Josephine Doe")
		if !errs.Is(err, errs.Invalid) || errs.SafeMessage(err) != want {
			t.Errorf("Check(%q) = %v, want Invalid %q", pw, err, want)
		}
		if err != nil && strings.Contains(strings.ToLower(err.Error()), strings.ToLower(pw)) {
			t.Errorf("error repeats the password: %v", err)
		}
	}
	if err := DefaultPolicy.Check("violet quarry tambourine 91", "josephine.doe@x.example", "Josephine Doe"); err != nil {
		t.Errorf("a long random passphrase is refused: %v", err)
	}
}

func TestCommonPasswordListIsLowerCaseAndUnique(t *testing.T) {
	for pw := range commonPasswords() {
		if pw != strings.ToLower(pw) || pw != strings.TrimSpace(pw) || pw == "" {
			t.Errorf("list entry %q is not a trimmed, lower-case password", pw)
		}
	}
}

func BenchmarkIsCommonPassword(b *testing.B) {
	commonPasswords()
	for _, bc := range []struct{ name, pw string }{
		{"listed", "123456"},
		{"leet", "P@ssw0rd!"},
		{"suffix", "Dragon2024"},
		{"passphrase", "violet quarry tambourine 91"},
		{"random", "KQ7M2ZP4XW3RNB6TVJ5HCD2LFA"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				IsCommonPassword(bc.pw)
			}
		})
	}
}

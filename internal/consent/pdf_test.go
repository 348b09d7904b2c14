package consent

import (
	"bytes"
	"testing"
	"time"
)

// TestAUD01_TheSignedPDFIsDeterministic: the same signature renders to the
// same bytes (its dates are the signing time), so its SHA-256 can be
// recomputed from the sealed record; a countersignature changes it.
func TestAUD01_TheSignedPDFIsDeterministic(t *testing.T) {
	zero := 0
	s := sheet{Org: "Clinic", Study: "Trial", Participant: "p", ConsentID: "c",
		Content: Content{Title: "Zustimmung – ünïcode", Sections: []Section{{Heading: "Über", Text: "Text\nmit Zeilen"}},
			Questions: []Question{{Text: "Freiwillig?", Choices: []string{"Ja", "Nein"}, Answer: &zero}}},
		Record: record{Kind: KindConsent, Language: "de", Version: 1, Answers: []int{0}, Name: "Zoë Ångström", Method: Portal,
			SignedAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixMicro()}}
	a, err := render(s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := render(s)
	if err != nil || !bytes.Equal(a, b) || !bytes.HasPrefix(a, []byte("%PDF-")) {
		t.Fatalf("two renderings differ (%d and %d bytes): %v", len(a), len(b), err)
	}
	s.Record.Countersigner, s.Record.CountersignedAt = "Ines", s.Record.SignedAt+1e6
	if c, err := render(s); err != nil || bytes.Equal(a, c) {
		t.Errorf("the countersigned rendering: %v", err)
	}
}
